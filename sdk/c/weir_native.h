/* weir_native: how a stage's native test drives the in-memory state and timers of
 * weir_native.c as the host would. */
#ifndef WEIR_NATIVE_H
#define WEIR_NATIVE_H

#include "weir.h"

/* The watermarks the events of the next batch see (weir_watermarks). */
void weir_native_set_watermarks(const uint64_t *marks, size_t n);
/* Removes the event-time timers at or before mark, up to cap of them, into fired in time
 * order (their keys are then the caller's to free); how many. */
size_t weir_native_due(uint64_t mark, weir_timer *fired, size_t cap);
/* Empties the state and the timers. */
void weir_native_reset(void);

#endif
