/* weir: state and timers in memory, for a stage's native tests (test.sh links it in place of
 * weir_main.c). The host's semantics (TTLs, the 8-byte counters, sorted prefix scans, one
 * timer per key, time and clock) without its limits, fuel or atomicity; a linear store, since
 * a test holds a few keys. weir_native_* drive it as the host would. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weir.h"
#include "weir_native.h"

typedef struct {
    weir_bytes key, value;
    uint64_t expiry; /* ms since the epoch; WEIR_NO_TTL for none */
} slot;

static slot *SLOTS;
static size_t SLOTS_LEN, SLOTS_CAP;
static weir_timer *TIMERS; /* keys malloc'd */
static size_t TIMERS_LEN, TIMERS_CAP;
static uint64_t *MARKS;
static size_t MARKS_LEN;

static weir_bytes copy(const uint8_t *p, size_t len) {
    weir_bytes b = {malloc(len ? len : 1), len, true};
    if (!b.ptr) abort();
    if (len) memcpy(b.ptr, p, len);
    return b;
}

static int compare(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void drop(size_t i) {
    weir_bytes_free(&SLOTS[i].key);
    weir_bytes_free(&SLOTS[i].value);
    SLOTS[i] = SLOTS[--SLOTS_LEN];
}

/* The live slot of key, or -1 (an expired one is removed). */
static long find(const uint8_t *key, size_t len) {
    for (size_t i = 0; i < SLOTS_LEN; i++) {
        if (compare(SLOTS[i].key.ptr, SLOTS[i].key.len, key, len) == 0) {
            if (SLOTS[i].expiry != WEIR_NO_TTL && SLOTS[i].expiry <= now_ms()) {
                drop(i);
                return -1;
            }
            return (long)i;
        }
    }
    return -1;
}

static void put(const uint8_t *key, size_t kl, const uint8_t *value, size_t vl, uint64_t expiry) {
    long i = find(key, kl);
    if (i >= 0) {
        weir_bytes_free(&SLOTS[i].value);
        SLOTS[i].value = copy(value, vl);
        SLOTS[i].expiry = expiry;
        return;
    }
    if (SLOTS_LEN == SLOTS_CAP) {
        SLOTS_CAP = SLOTS_CAP ? 2 * SLOTS_CAP : 16;
        SLOTS = realloc(SLOTS, SLOTS_CAP * sizeof *SLOTS);
        if (!SLOTS) abort();
    }
    SLOTS[SLOTS_LEN++] = (slot){copy(key, kl), copy(value, vl), expiry};
}

bool weir_state_get(const uint8_t *key, size_t key_len, weir_bytes *value) {
    long i = find(key, key_len);
    if (i < 0) {
        *value = (weir_bytes){NULL, 0, false};
        return false;
    }
    *value = copy(SLOTS[i].value.ptr, SLOTS[i].value.len);
    return true;
}

void weir_state_get_many(const weir_bytes *keys, size_t n, weir_bytes *values) {
    for (size_t i = 0; i < n; i++) weir_state_get(keys[i].ptr, keys[i].len, &values[i]);
}

int weir_state_set(const uint8_t *key, size_t key_len, const uint8_t *value, size_t value_len,
                   uint64_t ttl_ms, weir_state_error *err) {
    put(key, key_len, value, value_len, ttl_ms == WEIR_NO_TTL ? WEIR_NO_TTL : now_ms() + ttl_ms);
    if (err) err->status = WEIR_STATE_OK;
    return 0;
}

void weir_state_set_many(const weir_entry *e, size_t n, weir_state_error *errs) {
    for (size_t i = 0; i < n; i++)
        weir_state_set(e[i].key, e[i].key_len, e[i].value, e[i].value_len, e[i].ttl_ms,
                       errs ? &errs[i] : NULL);
}

void weir_state_delete(const uint8_t *key, size_t key_len) {
    long i = find(key, key_len);
    if (i >= 0) drop((size_t)i);
}

void weir_state_delete_many(const weir_bytes *keys, size_t n) {
    for (size_t i = 0; i < n; i++) weir_state_delete(keys[i].ptr, keys[i].len);
}

int weir_state_increment(const uint8_t *key, size_t key_len, int64_t by, int64_t *count,
                         weir_state_error *err) {
    long i = find(key, key_len);
    int64_t before = 0;
    uint64_t expiry = WEIR_NO_TTL;
    weir_state_error e = {WEIR_STATE_OK, {0}};
    if (i >= 0) {
        if (SLOTS[i].value.len != 8) {
            e.status = WEIR_STATE_NOT_A_COUNTER;
        } else {
            uint64_t u = 0;
            for (int b = 7; b >= 0; b--) u = u << 8 | SLOTS[i].value.ptr[b];
            before = (int64_t)u;
            expiry = SLOTS[i].expiry;
        }
    }
    int64_t after = 0;
    if (e.status == WEIR_STATE_OK && __builtin_add_overflow(before, by, &after))
        e.status = WEIR_STATE_OVERFLOW;
    if (err) *err = e;
    if (e.status != WEIR_STATE_OK) return -1;
    uint8_t bytes[8];
    for (int b = 0; b < 8; b++) bytes[b] = (uint8_t)((uint64_t)after >> (8 * b));
    put(key, key_len, bytes, 8, expiry);
    *count = after;
    return 0;
}

void weir_state_increment_many(const weir_count *c, size_t n, int64_t *out, weir_state_error *errs) {
    for (size_t i = 0; i < n; i++) weir_state_increment(c[i].key, c[i].key_len, c[i].by, &out[i], &errs[i]);
}

static int by_key(const void *a, const void *b) {
    const slot *x = a, *y = b;
    return compare(x->key.ptr, x->key.len, y->key.ptr, y->key.len);
}

void weir_state_scan(const uint8_t *prefix, size_t prefix_len, const uint8_t *after,
                     size_t after_len, uint32_t limit, weir_page *page) {
    memset(page, 0, sizeof *page);
    qsort(SLOTS, SLOTS_LEN, sizeof *SLOTS, by_key);
    page->keys = calloc(limit ? limit : 1, sizeof(weir_bytes));
    page->values = calloc(limit ? limit : 1, sizeof(weir_bytes));
    if (!page->keys || !page->values) abort();
    for (size_t i = 0; i < SLOTS_LEN; i++) {
        const slot *s = &SLOTS[i];
        if (s->key.len < prefix_len || memcmp(s->key.ptr, prefix, prefix_len) != 0) continue;
        if (after && compare(s->key.ptr, s->key.len, after, after_len) <= 0) continue;
        if (s->expiry != WEIR_NO_TTL && s->expiry <= now_ms()) continue;
        if (page->len == limit) {
            page->more = true;
            page->next = copy(page->keys[limit - 1].ptr, page->keys[limit - 1].len);
            break;
        }
        page->keys[page->len] = copy(s->key.ptr, s->key.len);
        page->values[page->len++] = copy(s->value.ptr, s->value.len);
    }
}

size_t weir_watermarks(const uint64_t **marks) {
    *marks = MARKS;
    return MARKS_LEN;
}

uint64_t weir_now(void) { return now_ms(); }

static long find_timer(const weir_timer *t) {
    for (size_t i = 0; i < TIMERS_LEN; i++) {
        const weir_timer *x = &TIMERS[i];
        if (x->at == t->at && x->clock == t->clock &&
            compare(x->key, x->key_len, t->key, t->key_len) == 0)
            return (long)i;
    }
    return -1;
}

int weir_set_timer(const weir_timer *t, weir_state_error *err) {
    if (err) err->status = WEIR_STATE_OK;
    if (find_timer(t) >= 0) return 0;
    if (TIMERS_LEN == TIMERS_CAP) {
        TIMERS_CAP = TIMERS_CAP ? 2 * TIMERS_CAP : 16;
        TIMERS = realloc(TIMERS, TIMERS_CAP * sizeof *TIMERS);
        if (!TIMERS) abort();
    }
    TIMERS[TIMERS_LEN++] = (weir_timer){copy(t->key, t->key_len).ptr, t->key_len, t->at, t->clock};
    return 0;
}

void weir_set_timers(const weir_timer *t, size_t n, weir_state_error *errs) {
    for (size_t i = 0; i < n; i++) weir_set_timer(&t[i], errs ? &errs[i] : NULL);
}

void weir_cancel_timer(const weir_timer *t) {
    long i = find_timer(t);
    if (i < 0) return;
    free((void *)TIMERS[i].key);
    TIMERS[i] = TIMERS[--TIMERS_LEN];
}

void weir_native_set_watermarks(const uint64_t *marks, size_t n) {
    free(MARKS);
    MARKS = n ? malloc(n * sizeof *MARKS) : NULL;
    if (n) memcpy(MARKS, marks, n * sizeof *MARKS);
    MARKS_LEN = n;
}

static int by_time(const void *a, const void *b) {
    const weir_timer *x = a, *y = b;
    if (x->at != y->at) return x->at < y->at ? -1 : 1;
    return compare(x->key, x->key_len, y->key, y->key_len);
}

size_t weir_native_due(uint64_t mark, weir_timer *fired, size_t cap) {
    qsort(TIMERS, TIMERS_LEN, sizeof *TIMERS, by_time);
    size_t n = 0;
    for (size_t i = 0; i < TIMERS_LEN && n < cap;) {
        if (TIMERS[i].clock == WEIR_EVENT_TIME && TIMERS[i].at <= mark) {
            fired[n++] = TIMERS[i];
            memmove(&TIMERS[i], &TIMERS[i + 1], (TIMERS_LEN - i - 1) * sizeof *TIMERS);
            TIMERS_LEN--;
        } else {
            i++;
        }
    }
    return n;
}

void weir_native_reset(void) {
    while (SLOTS_LEN) drop(0);
    for (size_t i = 0; i < TIMERS_LEN; i++) free((void *)TIMERS[i].key);
    TIMERS_LEN = 0;
    weir_native_set_watermarks(NULL, 0);
}
