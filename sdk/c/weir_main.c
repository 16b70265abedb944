/* The component's glue: binds weir.h's stage to the bindings `wit-bindgen c` generates for
 * weir:stage@0.3.0 (stage.h, stage.c). The author never edits it.
 *
 * Each state and time function of weir.h calls its import directly: the linker drops the
 * ones a stage never calls, and `wasm-tools component new` then leaves their imports out, so
 * a stage that calls none gets no store from the host. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage.h"
#include "weir.h"

/* stdout and stderr go to the host's log, a line at a time (info and warn), and nothing else
 * in libc touches a file: these definitions take the place of wasi-libc's preview1 imports
 * of the same names, so a stage that uses printf imports no WASI at all. Through the
 * preview1 adapter, fd_write alone would import wasi:filesystem (it may write to a file),
 * which a stage is refused without a grant. */
#define WASI_ERRNO_BADF 8
#define WASI_ERRNO_SPIPE 70

typedef struct {
    char line[1024];
    size_t len;
} log_line;

static log_line STDOUT_LINE, STDERR_LINE;

static void log_flush(log_line *l, weir_level level) {
    if (l->len) weir_log_sink(level, l->line, l->len);
    l->len = 0;
}

static void log_bytes(log_line *l, weir_level level, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            log_flush(l, level);
        } else {
            if (l->len == sizeof l->line) log_flush(l, level);
            l->line[l->len++] = (char)p[i];
        }
    }
}

int32_t __imported_wasi_snapshot_preview1_fd_write(int32_t fd, int32_t iovs, int32_t iovs_len,
                                                   int32_t nwritten) {
    if (fd != 1 && fd != 2) return WASI_ERRNO_BADF;
    const struct {
        const uint8_t *buf;
        size_t len;
    } *iov = (void *)(uintptr_t)iovs;
    size_t total = 0;
    for (int32_t i = 0; i < iovs_len; i++) {
        log_bytes(fd == 1 ? &STDOUT_LINE : &STDERR_LINE, fd == 1 ? WEIR_INFO : WEIR_WARN,
                  iov[i].buf, iov[i].len);
        total += iov[i].len;
    }
    *(uint32_t *)(uintptr_t)nwritten = (uint32_t)total;
    return 0;
}

/* stdout and stderr are character devices (so libc buffers them by line) without seek. */
int32_t __imported_wasi_snapshot_preview1_fd_fdstat_get(int32_t fd, int32_t stat) {
    if (fd != 1 && fd != 2) return WASI_ERRNO_BADF;
    memset((void *)(uintptr_t)stat, 0, 24);
    *(uint8_t *)(uintptr_t)stat = 2; /* filetype: character device */
    return 0;
}

int32_t __imported_wasi_snapshot_preview1_fd_close(int32_t fd) {
    (void)fd;
    return WASI_ERRNO_BADF;
}

int32_t __imported_wasi_snapshot_preview1_fd_seek(int32_t fd, int64_t offset, int32_t whence,
                                                  int32_t newoffset) {
    (void)offset, (void)whence, (void)newoffset;
    return fd == 1 || fd == 2 ? WASI_ERRNO_SPIPE : WASI_ERRNO_BADF;
}

void weir_log_sink(weir_level level, const char *message, size_t len) {
    stage_string_t s = {(uint8_t *)message, len};
    weir_stage_log_log((weir_stage_log_level_t)level, &s);
}

static void dup(stage_string_t *ret, const char *s) {
    stage_string_dup(ret, s ? s : "");
}

void exports_stage_describe(stage_description_t *ret) {
    dup(&ret->name, WEIR_NAME);
    dup(&ret->version, WEIR_VERSION);
    size_t n = 0;
    while (WEIR_SETTINGS[n].name) n++;
    ret->settings.len = n;
    ret->settings.ptr = n ? calloc(n, sizeof(weir_stage_types_setting_t)) : NULL;
    for (size_t i = 0; i < n; i++) {
        const weir_setting_decl *d = &WEIR_SETTINGS[i];
        weir_stage_types_setting_t *s = &ret->settings.ptr[i];
        dup(&s->name, d->name);
        s->type = (weir_stage_types_setting_type_t)d->type;
        s->required = d->required;
        s->default_.is_some = d->default_value != NULL;
        if (d->default_value) dup(&s->default_.val, d->default_value);
        dup(&s->help, d->help);
    }
}

bool exports_stage_init(stage_list_tuple2_string_string_t *settings, stage_string_t *err) {
    size_t n = settings->len;
    const char **names = calloc(n + 1, sizeof(char *));
    const char **values = calloc(n + 1, sizeof(char *));
    size_t *name_lens = calloc(n + 1, sizeof(size_t));
    size_t *value_lens = calloc(n + 1, sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        names[i] = (const char *)settings->ptr[i].f0.ptr;
        name_lens[i] = settings->ptr[i].f0.len;
        values[i] = (const char *)settings->ptr[i].f1.ptr;
        value_lens[i] = settings->ptr[i].f1.len;
    }
    weir_error e = {{0}};
    int failed = weir_init_with(names, name_lens, values, value_lens, n, &e);
    free(names), free(values), free(name_lens), free(value_lens);
    stage_list_tuple2_string_string_free(settings);
    if (failed) {
        dup(err, e.message[0] ? e.message : "init failed");
        return false;
    }
    return true;
}

/* The output's buffers belong to weir.c, which reuses them for the next batch; the
 * failures' reasons are freed there too. */
static weir_stage_types_failure_t *FAILURES;
static size_t FAILURES_CAP;

void exports_stage_process(stage_batch_t *batch, stage_output_t *ret) {
    weir_batch in = {
        batch->data.ptr,    batch->data.len,    batch->events.ptr,     batch->events.len,
        batch->headers.ptr, batch->headers.len, batch->timestamps.ptr, batch->timestamps.len,
    };
    const weir_output *o = weir_process_batch(&in);
    stage_batch_free(batch);
    ret->events.data = (stage_list_u8_t){o->events.data, o->events.data_len};
    ret->events.events = (stage_list_u32_t){o->events.events, o->events.events_len};
    ret->events.headers = (stage_list_u32_t){o->events.headers, o->events.headers_len};
    ret->events.timestamps = (stage_list_u64_t){o->events.timestamps, o->events.timestamps_len};
    ret->counts = (stage_list_u32_t){o->counts, o->counts_len};
    if (o->failures_len > FAILURES_CAP) {
        FAILURES_CAP = o->failures_len * 2;
        free(FAILURES);
        FAILURES = malloc(FAILURES_CAP * sizeof *FAILURES);
        if (!FAILURES) abort();
    }
    for (size_t i = 0; i < o->failures_len; i++) {
        FAILURES[i].index = o->failures[i].index;
        FAILURES[i].kind = (weir_stage_types_failure_kind_t)o->failures[i].kind;
        FAILURES[i].reason.ptr = (uint8_t *)o->failures[i].reason;
        FAILURES[i].reason.len = strlen(o->failures[i].reason);
    }
    ret->failures = (weir_stage_types_list_failure_t){FAILURES, o->failures_len};
}

/* Overrides the generated (weak) post-return, which would free the output: its buffers are
 * kept for the next batch. */
__attribute__((__export_name__("cabi_post_process"))) void
__wasm_export_exports_stage_process_post_return(uint8_t *ret) {
    (void)ret;
}

/* ---- State and time. ---- */

static stage_list_u8_t list(const uint8_t *p, size_t len) {
    return (stage_list_u8_t){(uint8_t *)p, len};
}

/* Takes a list the bindings allocated as a weir_bytes (the same malloc'd bytes). */
static weir_bytes take(stage_list_u8_t l) {
    return (weir_bytes){l.ptr, l.len, true};
}

static void state_error(weir_stage_state_state_error_t *e, weir_state_error *err) {
    if (err) {
        err->message[0] = 0;
        switch (e->tag) {
        case WEIR_STAGE_STATE_STATE_ERROR_LIMIT:
            err->status = WEIR_STATE_LIMIT;
            snprintf(err->message, sizeof err->message, "%.*s", (int)e->val.limit.len,
                     (const char *)e->val.limit.ptr);
            break;
        case WEIR_STAGE_STATE_STATE_ERROR_NOT_A_COUNTER:
            err->status = WEIR_STATE_NOT_A_COUNTER;
            break;
        default:
            err->status = WEIR_STATE_OVERFLOW;
        }
    }
    weir_stage_state_state_error_free(e);
}

static void state_ok(weir_state_error *err) {
    if (err) err->status = WEIR_STATE_OK, err->message[0] = 0;
}

static stage_option_u64_t ttl(uint64_t ms) {
    return (stage_option_u64_t){ms != WEIR_NO_TTL, ms};
}

bool weir_state_get(const uint8_t *key, size_t key_len, weir_bytes *value) {
    stage_list_u8_t k = list(key, key_len), v;
    if (!weir_stage_state_get(&k, &v)) {
        *value = (weir_bytes){NULL, 0, false};
        return false;
    }
    *value = take(v);
    return true;
}

/* The keys as the bindings' list of lists, pointing at the caller's bytes. */
static stage_list_list_u8_t key_list(const weir_bytes *keys, size_t n) {
    stage_list_list_u8_t ks = {calloc(n ? n : 1, sizeof(stage_list_u8_t)), n};
    if (!ks.ptr) abort();
    for (size_t i = 0; i < n; i++) ks.ptr[i] = list(keys[i].ptr, keys[i].len);
    return ks;
}

void weir_state_get_many(const weir_bytes *keys, size_t n, weir_bytes *values) {
    stage_list_list_u8_t ks = key_list(keys, n);
    stage_list_option_list_u8_t got;
    weir_stage_state_get_many(&ks, &got);
    free(ks.ptr);
    for (size_t i = 0; i < n; i++) {
        values[i] = i < got.len && got.ptr[i].is_some ? take(got.ptr[i].val)
                                                      : (weir_bytes){NULL, 0, false};
    }
    free(got.ptr);
}

int weir_state_set(const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
                   uint64_t ttl_ms, weir_state_error *err) {
    weir_stage_state_entry_t e = {list(key, key_len), list(value, value_len), ttl(ttl_ms)};
    weir_stage_state_state_error_t failed;
    if (!weir_stage_state_set(&e, &failed)) {
        state_error(&failed, err);
        return -1;
    }
    state_ok(err);
    return 0;
}

void weir_state_set_many(const weir_entry *entries, size_t n, weir_state_error *errs) {
    weir_stage_state_list_entry_t es = {calloc(n ? n : 1, sizeof(weir_stage_state_entry_t)), n};
    if (!es.ptr) abort();
    for (size_t i = 0; i < n; i++) {
        const weir_entry *e = &entries[i];
        es.ptr[i] = (weir_stage_state_entry_t){list(e->key, e->key_len),
                                                list(e->value, e->value_len), ttl(e->ttl_ms)};
    }
    weir_stage_state_list_result_void_state_error_t rs;
    weir_stage_state_set_many(&es, &rs);
    free(es.ptr);
    for (size_t i = 0; i < rs.len; i++) {
        if (rs.ptr[i].is_err) {
            state_error(&rs.ptr[i].val.err, errs ? &errs[i] : NULL);
        } else {
            state_ok(errs ? &errs[i] : NULL);
        }
    }
    free(rs.ptr);
}

void weir_state_delete(const uint8_t *key, size_t key_len) {
    stage_list_u8_t k = list(key, key_len);
    weir_stage_state_delete(&k);
}

void weir_state_delete_many(const weir_bytes *keys, size_t n) {
    stage_list_list_u8_t ks = key_list(keys, n);
    weir_stage_state_delete_many(&ks);
    free(ks.ptr);
}

int weir_state_increment(const uint8_t *key, size_t key_len, int64_t by, int64_t *count,
                         weir_state_error *err) {
    stage_list_u8_t k = list(key, key_len);
    weir_stage_state_state_error_t failed;
    if (!weir_stage_state_increment(&k, by, count, &failed)) {
        state_error(&failed, err);
        return -1;
    }
    state_ok(err);
    return 0;
}

void weir_state_increment_many(const weir_count *counts, size_t n, int64_t *counts_out,
                               weir_state_error *errs) {
    stage_list_tuple2_list_u8_s64_t cs = {calloc(n ? n : 1, sizeof(stage_tuple2_list_u8_s64_t)), n};
    if (!cs.ptr) abort();
    for (size_t i = 0; i < n; i++)
        cs.ptr[i] = (stage_tuple2_list_u8_s64_t){list(counts[i].key, counts[i].key_len), counts[i].by};
    weir_stage_state_list_result_s64_state_error_t rs;
    weir_stage_state_increment_many(&cs, &rs);
    free(cs.ptr);
    for (size_t i = 0; i < rs.len; i++) {
        if (rs.ptr[i].is_err) {
            counts_out[i] = 0;
            state_error(&rs.ptr[i].val.err, errs ? &errs[i] : NULL);
        } else {
            counts_out[i] = rs.ptr[i].val.ok;
            state_ok(errs ? &errs[i] : NULL);
        }
    }
    free(rs.ptr);
}

void weir_state_scan(const uint8_t *prefix, size_t prefix_len, const uint8_t *after,
                     size_t after_len, uint32_t limit, weir_page *page) {
    stage_list_u8_t p = list(prefix, prefix_len), a = list(after, after_len);
    weir_stage_state_page_t got;
    weir_stage_state_scan(&p, after ? &a : NULL, limit, &got);
    size_t n = got.entries.len;
    memset(page, 0, sizeof *page);
    page->keys = calloc(n ? n : 1, sizeof(weir_bytes));
    page->values = calloc(n ? n : 1, sizeof(weir_bytes));
    if (!page->keys || !page->values) abort();
    for (size_t i = 0; i < n; i++) {
        page->keys[i] = take(got.entries.ptr[i].f0);
        page->values[i] = take(got.entries.ptr[i].f1);
    }
    page->len = n;
    free(got.entries.ptr);
    if (got.next.is_some) page->more = true, page->next = take(got.next.val);
}

/* The batch's watermarks, asked for once a batch by weir.c and kept until the next ask. */
static stage_list_u64_t MARKS_LIST;

size_t weir_watermarks(const uint64_t **marks) {
    stage_list_u64_free(&MARKS_LIST);
    weir_stage_time_watermarks(&MARKS_LIST);
    *marks = MARKS_LIST.ptr;
    return MARKS_LIST.len;
}

uint64_t weir_now(void) { return weir_stage_time_now(); }

static weir_stage_time_timer_t host_timer(const weir_timer *t) {
    return (weir_stage_time_timer_t){list(t->key, t->key_len), t->at,
                                     (weir_stage_time_clock_t)t->clock};
}

int weir_set_timer(const weir_timer *timer, weir_state_error *err) {
    weir_stage_time_timer_t t = host_timer(timer);
    weir_stage_time_state_error_t failed;
    if (!weir_stage_time_set_timer(&t, &failed)) {
        state_error(&failed, err);
        return -1;
    }
    state_ok(err);
    return 0;
}

void weir_set_timers(const weir_timer *timers, size_t n, weir_state_error *errs) {
    weir_stage_time_list_timer_t ts = {calloc(n ? n : 1, sizeof(weir_stage_time_timer_t)), n};
    if (!ts.ptr) abort();
    for (size_t i = 0; i < n; i++) ts.ptr[i] = host_timer(&timers[i]);
    weir_stage_time_list_result_void_state_error_t rs;
    weir_stage_time_set_timers(&ts, &rs);
    free(ts.ptr);
    for (size_t i = 0; i < rs.len; i++) {
        if (rs.ptr[i].is_err) {
            state_error(&rs.ptr[i].val.err, errs ? &errs[i] : NULL);
        } else {
            state_ok(errs ? &errs[i] : NULL);
        }
    }
    free(rs.ptr);
}

void weir_cancel_timer(const weir_timer *timer) {
    weir_stage_time_timer_t t = host_timer(timer);
    weir_stage_time_cancel_timer(&t);
}

/* ---- on-timer. ---- */

static weir_timer *FIRED;
static size_t FIRED_CAP;

void exports_stage_on_timer(stage_list_timer_t *fired, stage_batch_t *ret) {
    if (fired->len > FIRED_CAP) {
        FIRED_CAP = fired->len * 2;
        free(FIRED);
        FIRED = malloc(FIRED_CAP * sizeof *FIRED);
        if (!FIRED) abort();
    }
    for (size_t i = 0; i < fired->len; i++) {
        const stage_timer_t *t = &fired->ptr[i];
        FIRED[i] = (weir_timer){t->key.ptr, t->key.len, t->at, (weir_clock)t->clock};
    }
    const weir_output *o = weir_timer_batch(FIRED, fired->len);
    stage_list_timer_free(fired);
    ret->data = (stage_list_u8_t){o->events.data, o->events.data_len};
    ret->events = (stage_list_u32_t){o->events.events, o->events.events_len};
    ret->headers = (stage_list_u32_t){o->events.headers, o->events.headers_len};
    ret->timestamps = (stage_list_u64_t){o->events.timestamps, o->events.timestamps_len};
}

/* Overrides the generated (weak) post-return, as for process: the buffers are weir.c's. */
__attribute__((__export_name__("cabi_post_on-timer"))) void
__wasm_export_exports_stage_on_timer_post_return(uint8_t *ret) {
    (void)ret;
}
