/* weir: the packing behind weir.h. Plain C: no bindings, no WASI. */
#include "weir.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct weir_out {
    weir_output o;
    size_t data_cap, events_cap, headers_cap, ts_cap, counts_cap, failures_cap;
    bool any_ts;
    /* The input event being processed and what it has become so far. */
    const weir_event *in;
    uint32_t count;
    bool failed;
    size_t mark_data, mark_events, mark_headers, mark_ts;
};

static weir_out OUT;

/* Which batch is in progress, so that weir_watermark asks the host for the batch's marks
 * once, and only when a stage asks for one. */
static uint64_t BATCH_SEQ, MARKS_SEQ;
static const uint64_t *MARKS;
static size_t MARKS_LEN;

/* Resets the output for the next call, keeping its buffers. */
static void restart(weir_out *out) {
    weir_output *o = &out->o;
    for (size_t i = 0; i < o->failures_len; i++) free(o->failures[i].reason);
    o->events.data_len = o->events.events_len = o->events.headers_len = 0;
    o->events.timestamps_len = o->counts_len = o->failures_len = 0;
    out->any_ts = false;
}

static void *grow(void *ptr, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return ptr;
    size_t cap2 = *cap ? *cap * 2 : 64;
    while (cap2 < need) cap2 *= 2;
    void *p = realloc(ptr, cap2 * size);
    if (!p) abort();
    *cap = cap2;
    return p;
}

/* Appends bytes to the output buffer; returns their start. */
static uint32_t put(weir_out *out, const uint8_t *src, size_t len) {
    weir_batch *b = &out->o.events;
    b->data = grow(b->data, &out->data_cap, b->data_len + len, 1);
    uint32_t start = (uint32_t)b->data_len;
    if (len) memcpy(b->data + start, src, len);
    b->data_len += len;
    return start;
}

static void push_header(weir_out *out, uint32_t ns, uint32_t nl, uint32_t vs, uint32_t vl) {
    weir_batch *b = &out->o.events;
    b->headers = grow(b->headers, &out->headers_cap, b->headers_len + 4, sizeof(uint32_t));
    uint32_t *h = b->headers + b->headers_len;
    h[0] = ns, h[1] = nl, h[2] = vs, h[3] = vl;
    b->headers_len += 4;
}

static void push_event(weir_out *out, uint32_t vs, uint32_t vl, uint32_t ks, uint32_t kl,
                       uint32_t first, uint32_t count, uint64_t ts) {
    weir_batch *b = &out->o.events;
    b->events = grow(b->events, &out->events_cap, b->events_len + 6, sizeof(uint32_t));
    uint32_t *e = b->events + b->events_len;
    e[0] = vs, e[1] = vl, e[2] = ks, e[3] = kl, e[4] = count ? first : 0, e[5] = count;
    b->events_len += 6;
    b->timestamps = grow(b->timestamps, &out->ts_cap, b->timestamps_len + 1, sizeof(uint64_t));
    b->timestamps[b->timestamps_len++] = ts;
    if (ts != WEIR_NO_TIMESTAMP) out->any_ts = true;
    out->count++;
}

/* Copies the input's key and headers; returns the value's start after them. */
static void copy_key_headers(weir_out *out, uint32_t *ks, uint32_t *kl, uint32_t *first,
                             uint32_t *count) {
    const weir_event *in = out->in;
    const uint32_t *f = in->fields_;
    const weir_batch *src = in->batch_;
    *kl = f[3];
    *ks = f[3] == WEIR_NO_KEY ? 0 : put(out, src->data + f[2], f[3]);
    *first = (uint32_t)(out->o.events.headers_len / 4);
    *count = f[5];
    for (uint32_t h = f[4]; h < f[4] + f[5]; h++) {
        const uint32_t *hf = src->headers + 4 * h;
        uint32_t ns = put(out, src->data + hf[0], hf[1]);
        uint32_t vs = put(out, src->data + hf[2], hf[3]);
        push_header(out, ns, hf[1], vs, hf[3]);
    }
}

uint8_t *weir_emit_space(weir_out *out, size_t len) {
    uint32_t ks = 0, kl = WEIR_NO_KEY, first = 0, count = 0;
    /* In weir_on_timer there is no input: the value alone. */
    if (out->in) copy_key_headers(out, &ks, &kl, &first, &count);
    weir_batch *b = &out->o.events;
    b->data = grow(b->data, &out->data_cap, b->data_len + len, 1);
    uint32_t vs = (uint32_t)b->data_len;
    b->data_len += len;
    push_event(out, vs, (uint32_t)len, ks, kl, first, count,
               out->in ? out->in->timestamp : WEIR_NO_TIMESTAMP);
    return b->data + vs;
}

void weir_emit(weir_out *out, const uint8_t *value, size_t len) {
    uint8_t *dst = weir_emit_space(out, len);
    if (len) memcpy(dst, value, len);
}

void weir_pass(weir_out *out) {
    if (out->in) weir_emit(out, out->in->value, out->in->value_len);
}

void weir_emit_parts(weir_out *out, const weir_parts *p) {
    uint32_t ks = p->key ? put(out, p->key, p->key_len) : 0;
    uint32_t kl = p->key ? (uint32_t)p->key_len : WEIR_NO_KEY;
    uint32_t first = (uint32_t)(out->o.events.headers_len / 4);
    for (size_t i = 0; i < p->header_count; i++) {
        const weir_header_part *h = &p->headers[i];
        size_t nl = h->name_len ? h->name_len : strlen(h->name);
        uint32_t ns = put(out, (const uint8_t *)h->name, nl);
        uint32_t vs = put(out, h->value, h->value_len);
        push_header(out, ns, (uint32_t)nl, vs, (uint32_t)h->value_len);
    }
    uint32_t vs = put(out, p->value, p->value_len);
    push_event(out, vs, (uint32_t)p->value_len, ks, kl, first, (uint32_t)p->header_count,
               p->timestamp);
}

static void fail(weir_out *out, weir_failure_kind kind, const char *reason) {
    if (out->failed || !out->in) return;
    weir_output *o = &out->o;
    o->failures = grow(o->failures, &out->failures_cap, o->failures_len + 1, sizeof(weir_failure));
    weir_failure *f = &o->failures[o->failures_len++];
    f->index = (uint32_t)out->in->index;
    f->kind = kind;
    f->reason = strdup(reason ? reason : "");
    if (!f->reason) abort();
    out->failed = true;
}

void weir_reject(weir_out *out, const char *reason) { fail(out, WEIR_REJECT, reason); }
void weir_retry(weir_out *out, const char *reason) { fail(out, WEIR_RETRY, reason); }

void weir_reject_state(weir_out *out, const weir_state_error *err) {
    char reason[300];
    switch (err->status) {
    case WEIR_STATE_LIMIT:
        snprintf(reason, sizeof reason, "state-limit: %s", err->message);
        break;
    case WEIR_STATE_NOT_A_COUNTER:
        snprintf(reason, sizeof reason, "state: the value under the key is not a counter (8 bytes)");
        break;
    default:
        snprintf(reason, sizeof reason,
                 "state: the counter would leave the range of a signed 64-bit integer");
    }
    fail(out, WEIR_REJECT, reason);
}

uint64_t weir_watermark(const weir_event *in) {
    if (MARKS_SEQ != BATCH_SEQ) {
        MARKS_LEN = weir_watermarks(&MARKS);
        MARKS_SEQ = BATCH_SEQ;
    }
    return in->index < MARKS_LEN ? MARKS[in->index] : 0;
}

void weir_bytes_free(weir_bytes *b) {
    free(b->ptr);
    b->ptr = NULL;
    b->len = 0;
    b->found = false;
}

void weir_page_free(weir_page *page) {
    for (size_t i = 0; i < page->len; i++) {
        weir_bytes_free(&page->keys[i]);
        weir_bytes_free(&page->values[i]);
    }
    free(page->keys);
    free(page->values);
    weir_bytes_free(&page->next);
    memset(page, 0, sizeof *page);
}

const weir_output *weir_timer_batch(const weir_timer *fired, size_t n) {
    weir_out *out = &OUT;
    restart(out);
    BATCH_SEQ++;
    out->in = NULL;
    if (weir_on_timer) weir_on_timer(fired, n, out);
    if (!out->any_ts) out->o.events.timestamps_len = 0;
    return &out->o;
}

void weir_header(const weir_event *in, size_t i, const uint8_t **name, size_t *name_len,
                 const uint8_t **value, size_t *value_len) {
    const uint32_t *hf = in->batch_->headers + 4 * (in->fields_[4] + i);
    *name = in->batch_->data + hf[0];
    *name_len = hf[1];
    *value = in->batch_->data + hf[2];
    *value_len = hf[3];
}

const uint8_t *weir_find_header(const weir_event *in, const char *name, size_t *value_len) {
    size_t len = strlen(name);
    for (size_t i = 0; i < in->header_count; i++) {
        const uint8_t *n, *v;
        size_t nl, vl;
        weir_header(in, i, &n, &nl, &v, &vl);
        if (nl == len && memcmp(n, name, len) == 0) {
            *value_len = vl;
            return v;
        }
    }
    return NULL;
}

const weir_output *weir_process_batch(const weir_batch *in) {
    weir_out *out = &OUT;
    weir_output *o = &out->o;
    restart(out);
    BATCH_SEQ++;
    size_t n = in->events_len / 6;
    o->counts = grow(o->counts, &out->counts_cap, n ? n : 1, sizeof(uint32_t));
    bool one_each = true;
    for (size_t i = 0; i < n; i++) {
        const uint32_t *f = in->events + 6 * i;
        weir_event ev = {
            .value = in->data + f[0],
            .value_len = f[1],
            .key = f[3] == WEIR_NO_KEY ? NULL : in->data + f[2],
            .key_len = f[3] == WEIR_NO_KEY ? 0 : f[3],
            .timestamp = in->timestamps_len ? in->timestamps[i] : WEIR_NO_TIMESTAMP,
            .header_count = f[5],
            .index = i,
            .batch_ = in,
            .fields_ = f,
        };
        out->in = &ev;
        out->count = 0;
        out->failed = false;
        out->mark_data = o->events.data_len;
        out->mark_events = o->events.events_len;
        out->mark_headers = o->events.headers_len;
        out->mark_ts = o->events.timestamps_len;
        weir_process(&ev, out);
        if (out->failed) {
            /* A failed event has no outputs: drop any it emitted. */
            o->events.data_len = out->mark_data;
            o->events.events_len = out->mark_events;
            o->events.headers_len = out->mark_headers;
            o->events.timestamps_len = out->mark_ts;
            out->count = 0;
        }
        o->counts[i] = out->count;
        if (out->count != 1) one_each = false;
    }
    out->in = NULL;
    o->counts_len = one_each ? 0 : n;
    if (!out->any_ts) o->events.timestamps_len = 0;
    return o;
}

/* ---- Settings ---- */

struct weir_settings {
    size_t count;
    const char **values; /* per declared setting, NULL when neither given nor defaulted */
};

static weir_settings SETTINGS;

static size_t declared_count(void) {
    size_t n = 0;
    while (WEIR_SETTINGS[n].name) n++;
    return n;
}

static const char *lookup(const weir_settings *s, const char *name) {
    for (size_t i = 0; i < s->count; i++) {
        if (strcmp(WEIR_SETTINGS[i].name, name) == 0) return s->values[i];
    }
    return NULL;
}

const char *weir_setting_text(const weir_settings *s, const char *name) { return lookup(s, name); }

int64_t weir_setting_int(const weir_settings *s, const char *name) {
    const char *v = lookup(s, name);
    return v ? strtoll(v, NULL, 10) : 0;
}

double weir_setting_float(const weir_settings *s, const char *name) {
    const char *v = lookup(s, name);
    return v ? strtod(v, NULL) : 0.0;
}

bool weir_setting_bool(const weir_settings *s, const char *name) {
    const char *v = lookup(s, name);
    return v && strcmp(v, "true") == 0;
}

int weir_fail(weir_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return 1;
}

static bool fits(weir_setting_type type, const char *v) {
    char *end;
    switch (type) {
    case WEIR_INTEGER:
        errno = 0;
        strtoll(v, &end, 10);
        return *v && !*end && errno == 0;
    case WEIR_FLOAT:
        strtod(v, &end);
        return *v && !*end;
    case WEIR_BOOLEAN:
        return strcmp(v, "true") == 0 || strcmp(v, "false") == 0;
    default:
        return true;
    }
}

static char *dup_n(const char *s, size_t len) {
    char *d = malloc(len + 1);
    if (!d) abort();
    memcpy(d, s, len);
    d[len] = 0;
    return d;
}

int weir_init_with(const char *const *names, const size_t *name_lens, const char *const *values,
                   const size_t *value_lens, size_t count, weir_error *err) {
    size_t n = declared_count();
    SETTINGS.count = n;
    SETTINGS.values = calloc(n ? n : 1, sizeof(char *));
    if (!SETTINGS.values) abort();
    for (size_t g = 0; g < count; g++) {
        size_t i = 0;
        while (i < n && !(strlen(WEIR_SETTINGS[i].name) == name_lens[g] &&
                          memcmp(WEIR_SETTINGS[i].name, names[g], name_lens[g]) == 0))
            i++;
        if (i == n) return weir_fail(err, "unknown setting `%.*s`", (int)name_lens[g], names[g]);
        SETTINGS.values[i] = dup_n(values[g], value_lens[g]);
    }
    for (size_t i = 0; i < n; i++) {
        const weir_setting_decl *d = &WEIR_SETTINGS[i];
        if (!SETTINGS.values[i]) {
            if (d->required) return weir_fail(err, "setting `%s` is required", d->name);
            if (d->default_value) SETTINGS.values[i] = d->default_value;
        }
        if (SETTINGS.values[i] && !fits(d->type, SETTINGS.values[i])) {
            static const char *const what[] = {"text", "an integer", "a number", "true or false"};
            return weir_fail(err, "setting `%s`: \"%s\" is not %s", d->name, SETTINGS.values[i],
                             what[d->type]);
        }
    }
    return weir_init(&SETTINGS, err);
}

void weir_log(weir_level level, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    weir_log_sink(level, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}
