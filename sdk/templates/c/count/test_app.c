/* The stage's golden test, built and run natively (./test.sh): every line of
 * golden/input.txt is an input event's value (no key: the value is counted), every line of
 * golden/output.txt an output event's value, in order: one per input, then the final counts
 * the timers emit at the end of the input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir.h"
#include "weir_native.h"

void weir_log_sink(weir_level level, const char *message, size_t len) {
    static const char *const names[] = {"trace", "debug", "info", "warn", "error"};
    fprintf(stderr, "[%s] %.*s\n", names[level], (int)len, message);
}

typedef struct {
    char *lines[256];
    size_t count;
} lines;

static lines read_lines(const char *path) {
    lines l = {{0}, 0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    char buf[4096];
    while (l.count < 256 && fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\n")] = 0;
        l.lines[l.count++] = strdup(buf);
    }
    fclose(f);
    return l;
}

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "FAILED: %s\n", what);
    }
}

/* Output j's value equals `want`. */
static void check_value(const weir_output *o, size_t j, const char *want) {
    const uint32_t *e = o->events.events + 6 * j;
    char what[512];
    snprintf(what, sizeof what, "output is \"%s\"", want);
    check(e[1] == strlen(want) && memcmp(o->events.data + e[0], want, e[1]) == 0, what);
}

int main(void) {
    lines in = read_lines("golden/input.txt"), want = read_lines("golden/output.txt");
    weir_error err = {{0}};
    check(weir_init_with(NULL, NULL, NULL, NULL, 0, &err) == 0, "init with the defaults");

    static uint8_t data[1 << 16];
    static uint32_t events[6 * 256];
    size_t d = 0;
    for (size_t i = 0; i < in.count; i++) {
        uint32_t *e = events + 6 * i;
        size_t vl = strlen(in.lines[i]);
        memcpy(data + d, in.lines[i], vl);
        e[0] = (uint32_t)d, e[1] = (uint32_t)vl, e[2] = 0, e[3] = WEIR_NO_KEY, e[4] = 0, e[5] = 0;
        d += vl;
    }
    weir_batch batch = {data, d, events, 6 * in.count, NULL, 0, NULL, 0};
    const weir_output *o = weir_process_batch(&batch);
    check(o->failures_len == 0 && o->counts_len == 0, "one output per input, no failures");
    size_t n = o->events.events_len / 6, j = 0;
    for (; j < n && j < want.count; j++) check_value(o, j, want.lines[j]);

    /* The input ends: the watermark reaches the end of time and every timer fires. */
    weir_timer fired[256];
    size_t f = weir_native_due(WEIR_END_OF_TIME, fired, 256);
    o = weir_timer_batch(fired, f);
    size_t m = o->events.events_len / 6;
    check(n + m == want.count, "as many outputs as golden/output.txt has lines");
    for (size_t k = 0; k < m && j + k < want.count; k++) {
        check_value(o, k, want.lines[j + k]);
        check(o->events.events[6 * k + 3] == WEIR_NO_KEY, "a final count has no key");
    }
    for (size_t k = 0; k < f; k++) free((void *)fired[k].key);
    weir_native_reset();
    for (size_t i = 0; i < in.count; i++) free(in.lines[i]);
    for (size_t i = 0; i < want.count; i++) free(want.lines[i]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
