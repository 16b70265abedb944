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
 * Under the weir:stage@0.3.0 contract a stage also has the host's keyed state
 * (weir_state_*: get, set with a TTL, delete, increment, scan, and their batched forms) and
 * event time (weir_watermark, weir_now, weir_set_timer, ...), and may define weir_on_timer,
 * called with the timers that fired, whose outputs flow on like weir_process's. A component
 * imports `state` and `time` only when the stage calls one of their functions (the linker
 * drops the rest), so a stage that never does gets no store from the host.
 *
 * The layer does the packing: an input event is a view into the batch's buffer, every output
 * is appended to one output buffer that is kept from batch to batch, and `counts` stays empty
 * when every input became exactly one output. weir.c is plain C and builds natively too, for
 * tests, with weir_native.c keeping state and timers in memory; weir_main.c binds it to the
 * generated bindings.
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

/* ---- Keyed state, kept by the host (0.3). ----
 *
 * Keys and values are bytes; each function is one host call. The writes a weir_process call
 * makes take effect only if the call completes, and a stage that fails an event must have
 * made no write for it: check an event before writing for it. Values read are malloc'd
 * (weir_bytes_free). A write the host refuses fills a weir_state_error and writes nothing;
 * weir_reject_state fails the event with a reason the host recognises. */

typedef enum {
    WEIR_STATE_OK = 0,
    WEIR_STATE_LIMIT,         /* a limit of the stage's store; the message names it */
    WEIR_STATE_NOT_A_COUNTER, /* increment of a value that is not 8 bytes */
    WEIR_STATE_OVERFLOW,      /* increment past the range of int64_t */
} weir_state_status;

typedef struct {
    weir_state_status status;
    /* The host's text for a limit, cut to 255 bytes: it ends up in a dead letter's reason,
     * which stays a line, and the struct stays small enough for the stack. */
    char message[256];
} weir_state_error;

/* Bytes: a key to give, or a value read (then malloc'd, `found` false for an absent key). */
typedef struct {
    uint8_t *ptr;
    size_t len;
    bool found;
} weir_bytes;

/* A write for weir_state_set_many; ttl_ms WEIR_NO_TTL lives for ever. */
#define WEIR_NO_TTL UINT64_MAX
typedef struct {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    uint64_t ttl_ms;
} weir_entry;

/* An increment for weir_state_increment_many. */
typedef struct {
    const uint8_t *key;
    size_t key_len;
    int64_t by;
} weir_count;

/* A page of a prefix scan: `len` entries by increasing key; `more` when another page follows,
 * from `next` (give it back as `after`). */
typedef struct {
    weir_bytes *keys;
    weir_bytes *values;
    size_t len;
    bool more;
    weir_bytes next;
} weir_page;

/* Entries a scan asks the host for per call, at most: the contract allows 1,024; a smaller
 * page bounds the memory a scan holds at once and the fuel of each host call. */
#define WEIR_SCAN_PAGE 256

/* The value under `key` into *value (found false when absent); true when found. */
bool weir_state_get(const uint8_t *key, size_t key_len, weir_bytes *value);
/* weir_state_get of each key (keys[i].ptr, .len), in one host call, into values[i]. */
void weir_state_get_many(const weir_bytes *keys, size_t n, weir_bytes *values);
/* Writes value under key, living ttl_ms of processing time (WEIR_NO_TTL: for ever); 0 when
 * written, else -1 and *err says why (err may be NULL). */
int weir_state_set(const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
                   uint64_t ttl_ms, weir_state_error *err);
/* weir_state_set of each entry, in one host call; errs[i].status is WEIR_STATE_OK or why
 * entry i was refused (errs may be NULL). */
void weir_state_set_many(const weir_entry *entries, size_t n, weir_state_error *errs);
/* Removes key; removing an absent key does nothing. */
void weir_state_delete(const uint8_t *key, size_t key_len);
void weir_state_delete_many(const weir_bytes *keys, size_t n);
/* Adds `by` to the counter under key (8 bytes, little-endian; absent counts as 0) and writes
 * the new count to *count; 0, or -1 with *err. */
int weir_state_increment(const uint8_t *key, size_t key_len, int64_t by, int64_t *count,
                         weir_state_error *err);
/* weir_state_increment of each, in one host call: counts_out[i] and errs[i]. */
void weir_state_increment_many(const weir_count *counts, size_t n, int64_t *counts_out,
                               weir_state_error *errs);
/* Up to `limit` entries whose keys start with prefix, after `after` (NULL: from the start). */
void weir_state_scan(const uint8_t *prefix, size_t prefix_len, const uint8_t *after,
                     size_t after_len, uint32_t limit, weir_page *page);
void weir_page_free(weir_page *page);
void weir_bytes_free(weir_bytes *bytes);
/* Fails the event because of a state error: a limit as `state-limit: ...` (the host
 * dead-letters it with the kind `state-limit`), the others as `state: ...`. */
void weir_reject_state(weir_out *out, const weir_state_error *err);

/* ---- Event time and timers (0.3). ---- */

typedef enum { WEIR_EVENT_TIME = 0, WEIR_PROCESSING_TIME = 1 } weir_clock;

/* A timer: key (at most 1 KiB), at (ms since the Unix epoch) on a clock: event time fires
 * once the stage's watermark reaches `at`, processing time once the host's clock does. */
typedef struct {
    const uint8_t *key;
    size_t key_len;
    uint64_t at;
    weir_clock clock;
} weir_timer;

/* The end of time: the watermark once the input has ended, when every event-time timer fires. */
#define WEIR_END_OF_TIME UINT64_MAX

/* The watermark each event of the batch in progress saw, in input order (0 before there is
 * one): *marks points at `returned` of them, valid during the batch; none when no input
 * carries event time, and in weir_on_timer. */
size_t weir_watermarks(const uint64_t **marks);
/* The watermark an input event saw (0 when there is none). */
uint64_t weir_watermark(const weir_event *in);
/* The host's wall clock, in ms since the Unix epoch. */
uint64_t weir_now(void);
/* Sets a timer (setting one that is set does nothing); 0, or -1 with *err over the stage's
 * state limits. */
int weir_set_timer(const weir_timer *timer, weir_state_error *err);
void weir_set_timers(const weir_timer *timers, size_t n, weir_state_error *errs);
/* Cancels a timer; cancelling one that is not set does nothing. */
void weir_cancel_timer(const weir_timer *timer);

/* Optional: the timers that fired, in time order. weir_emit makes an event of a value alone
 * (no key, no timestamp), weir_emit_parts one of its own parts; weir_pass, weir_reject and
 * weir_retry do nothing here. A stage that sets no timer need not define it. */
void weir_on_timer(const weir_timer *fired, size_t n, weir_out *out) __attribute__((weak));

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
/* Runs weir_on_timer over the timers that fired: the events they became (the output's
 * counts and failures are empty). */
const weir_output *weir_timer_batch(const weir_timer *fired, size_t n);
/* Checks `given` (pairs of names and values, `count` of them) against WEIR_SETTINGS and
 * calls weir_init; 0 = ready, else err says why. */
int weir_init_with(const char *const *names, const size_t *name_lens, const char *const *values,
                   const size_t *value_lens, size_t count, weir_error *err);
/* Where weir_log goes: the component sends it to the host, a native build to stderr. */
void weir_log_sink(weir_level level, const char *message, size_t len);

#endif
