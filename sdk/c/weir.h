/* weir: write a weir stage in C, one function per event.
 *
 * A stage defines, in app.c:
 *
 *   const char WEIR_NAME[] = "my-stage";          what `describe` reports
 *   const char WEIR_VERSION[] = "0.1.0";
 *   const weir_setting_decl WEIR_SETTINGS[] = {   settings the pipeline file may give,
 *       {"prefix", WEIR_TEXT, "", false, "put before every value"},
 *       {0},                                      ended by an entry without a name
 *   };
 *   int weir_init(const weir_settings *s, weir_error *err);    0 = ready; else fills err
 *   void weir_process(const weir_event *in, weir_out *out);    once per input event
 *
 * weir_process says what the input event became by calling, any number of times:
 *   weir_emit(out, value, len)          an event with this value, keeping the input's key,
 *                                       headers and timestamp;
 *   weir_emit_space(out, len)           the same, returning the value's bytes to write into
 *                                       (no copy: how uppercase works);
 *   weir_pass(out)                      the input event as it is;
 *   weir_emit_parts(out, &parts)        an event made of its own key, headers, timestamp;
 *   weir_reject(out, reason) / weir_retry(out, reason)   the event failed (once, and instead
 *                                       of any output): dead-letter it, or retry it later.
 * Emitting nothing filters the event out.
 *
 * The layer does the weir:stage@0.2.0 packing: an input event is a view into the batch's
 * buffer, every output is appended to one output buffer that is kept from batch to batch,
 * and `counts` stays empty when every input became exactly one output. weir.c is plain C
 * and builds natively too, for tests; weir_main.c binds it to the generated bindings.
 */
#ifndef WEIR_H
#define WEIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEIR_NO_KEY UINT32_MAX
#define WEIR_NO_TIMESTAMP UINT64_MAX

typedef enum { WEIR_TEXT = 0, WEIR_INTEGER = 1, WEIR_FLOAT = 2, WEIR_BOOLEAN = 3 } weir_setting_type;
typedef enum { WEIR_TRACE = 0, WEIR_DEBUG, WEIR_INFO, WEIR_WARN, WEIR_ERROR } weir_level;
typedef enum { WEIR_REJECT = 0, WEIR_RETRY = 1 } weir_failure_kind;

/* A declared setting: name, type, default as text (NULL for none), whether the pipeline
 * file must give it, one line of help. */
typedef struct {
    const char *name;
    weir_setting_type type;
    const char *default_value;
    bool required;
    const char *help;
} weir_setting_decl;

/* A packed batch, laid out as the contract's `batch` record. */
typedef struct {
    uint8_t *data;
    size_t data_len;
    uint32_t *events; /* 6 per event */
    size_t events_len;
    uint32_t *headers; /* 4 per header */
    size_t headers_len;
    uint64_t *timestamps; /* none, or one per event */
    size_t timestamps_len;
} weir_batch;

/* An input event: views into its batch, valid during weir_process only. */
typedef struct {
    const uint8_t *value;
    size_t value_len;
    const uint8_t *key; /* NULL when the event has no key */
    size_t key_len;
    uint64_t timestamp; /* WEIR_NO_TIMESTAMP when it has none */
    size_t header_count;
    size_t index; /* the event's position in its batch */
    const weir_batch *batch_;
    const uint32_t *fields_;
} weir_event;

/* Header `i` of an input event. */
void weir_header(const weir_event *in, size_t i, const uint8_t **name, size_t *name_len,
                 const uint8_t **value, size_t *value_len);
/* The value of the first header called `name`, or NULL. */
const uint8_t *weir_find_header(const weir_event *in, const char *name, size_t *value_len);

/* A header of an event being made. */
typedef struct {
    const char *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
} weir_header_part;

/* An event made of its own parts; key NULL for none, timestamp WEIR_NO_TIMESTAMP for none. */
typedef struct {
    const uint8_t *value;
    size_t value_len;
    const uint8_t *key;
    size_t key_len;
    const weir_header_part *headers;
    size_t header_count;
    uint64_t timestamp;
} weir_parts;

typedef struct weir_out weir_out;

void weir_emit(weir_out *out, const uint8_t *value, size_t len);
uint8_t *weir_emit_space(weir_out *out, size_t len);
void weir_pass(weir_out *out);
void weir_emit_parts(weir_out *out, const weir_parts *parts);
void weir_reject(weir_out *out, const char *reason);
void weir_retry(weir_out *out, const char *reason);

/* Settings as init gets them: every declared setting's given value or default. */
typedef struct weir_settings weir_settings;
/* The text of a setting, or NULL when it was neither given nor has a default. */
const char *weir_setting_text(const weir_settings *s, const char *name);
int64_t weir_setting_int(const weir_settings *s, const char *name);
double weir_setting_float(const weir_settings *s, const char *name);
bool weir_setting_bool(const weir_settings *s, const char *name);

/* Why init failed: written with weir_fail. */
typedef struct {
    char message[256];
} weir_error;
int weir_fail(weir_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes a line to the host's log (rate-limited by the host). */
void weir_log(weir_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What the stage defines. */
extern const char WEIR_NAME[];
extern const char WEIR_VERSION[];
extern const weir_setting_decl WEIR_SETTINGS[];
int weir_init(const weir_settings *s, weir_error *err);
void weir_process(const weir_event *in, weir_out *out);

/* ---- The packing, for weir_main.c and for tests. ---- */

typedef struct {
    uint32_t index;
    weir_failure_kind kind;
    char *reason; /* malloc'd, NUL-terminated */
} weir_failure;

/* What became of a batch; its buffers belong to the layer and are reused by the next call. */
typedef struct {
    weir_batch events;
    uint32_t *counts; /* NULL, 0 when every input gave one output */
    size_t counts_len;
    weir_failure *failures;
    size_t failures_len;
} weir_output;

/* Runs weir_process over every event of `in`. */
const weir_output *weir_process_batch(const weir_batch *in);
/* Checks `given` (pairs of names and values, `count` of them) against WEIR_SETTINGS and
 * calls weir_init; 0 = ready, else err says why. */
int weir_init_with(const char *const *names, const size_t *name_lens, const char *const *values,
                   const size_t *value_lens, size_t count, weir_error *err);
/* Where weir_log goes: the component sends it to the host, a native build to stderr. */
void weir_log_sink(weir_level level, const char *message, size_t len);

#endif
