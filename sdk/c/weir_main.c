/* The component's glue: binds weir.h's stage to the bindings `wit-bindgen c` generates for
 * weir:stage@0.2.0 (stage.h, stage.c). The author never edits it. */
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
