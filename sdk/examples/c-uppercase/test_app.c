/* The stage's golden test, built and run natively (./test.sh): every line of
 * golden/input.txt is an input event's value (with a key, a header and a timestamp), every
 * line of golden/output.txt an output event's value, in order; outputs keep the key, header
 * and timestamp of their input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir.h"

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

int main(void) {
    lines in = read_lines("golden/input.txt"), want = read_lines("golden/output.txt");
    weir_error err = {{0}};
    check(weir_init_with(NULL, NULL, NULL, NULL, 0, &err) == 0, "init with the defaults");

    /* The input batch: key "k<i>", header h=v, timestamp 1000+i. */
    static uint8_t data[1 << 16];
    static uint32_t events[6 * 256], headers[4 * 256];
    static uint64_t timestamps[256];
    size_t d = 0;
    for (size_t i = 0; i < in.count; i++) {
        uint32_t *e = events + 6 * i, *h = headers + 4 * i;
        int kl = sprintf((char *)data + d, "k%zu", i);
        e[2] = (uint32_t)d, e[3] = (uint32_t)kl, d += kl;
        memcpy(data + d, "hv", 2);
        h[0] = (uint32_t)d, h[1] = 1, h[2] = (uint32_t)d + 1, h[3] = 1, d += 2;
        e[4] = (uint32_t)i, e[5] = 1;
        size_t vl = strlen(in.lines[i]);
        memcpy(data + d, in.lines[i], vl);
        e[0] = (uint32_t)d, e[1] = (uint32_t)vl, d += vl;
        timestamps[i] = 1000 + i;
    }
    weir_batch batch = {data, d, events, 6 * in.count, headers, 4 * in.count, timestamps, in.count};
    const weir_output *o = weir_process_batch(&batch);

    check(o->failures_len == 0, "no failures");
    size_t n = o->events.events_len / 6;
    check(n == want.count, "as many outputs as golden/output.txt has lines");
    for (size_t j = 0; j < n && j < want.count; j++) {
        const uint32_t *e = o->events.events + 6 * j;
        const uint8_t *od = o->events.data;
        char what[512];
        snprintf(what, sizeof what, "output %zu is \"%s\"", j, want.lines[j]);
        check(e[1] == strlen(want.lines[j]) && memcmp(od + e[0], want.lines[j], e[1]) == 0, what);
        /* The key names the input it came from. */
        size_t i = e[3] != WEIR_NO_KEY && e[3] > 1 ? strtoul((const char *)od + e[2] + 1, NULL, 10) : 9999;
        check(i < in.count, "the output keeps its input's key");
        check(e[5] == 1 && memcmp(od + o->events.headers[4 * e[4]], "h", 1) == 0 &&
                  memcmp(od + o->events.headers[4 * e[4] + 2], "v", 1) == 0,
              "the output keeps its input's header");
        check(o->events.timestamps_len == n && o->events.timestamps[j] == 1000 + i,
              "the output keeps its input's timestamp");
    }
    for (size_t i = 0; i < in.count; i++) free(in.lines[i]);
    for (size_t i = 0; i < want.count; i++) free(want.lines[i]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
