/* {{name}}: a weir stage that counts events per key in the host's keyed state.
 *
 * Each event adds one to the counter of its key (of its value, when it has no key) and
 * becomes the event `KEY,N`, N the key's count so far, keeping the input's key, headers and
 * timestamp. The first event of a key sets an event-time timer at the end of time, which
 * fires when the input ends (in a pipeline whose events carry event time): the stage then
 * emits `KEY,N,final`, the key's final count. The counts live in the host, not in this
 * instance: they survive the instance being replaced, and count each event once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir.h"

const char WEIR_NAME[] = "{{name}}";
const char WEIR_VERSION[] = "0.1.0";
const weir_setting_decl WEIR_SETTINGS[] = {{0}};

int weir_init(const weir_settings *s, weir_error *err) {
    (void)s, (void)err;
    return 0;
}

/* `KEY,N` (and `,final`) into a fresh buffer: the key's bytes, then the count. */
static void emit_count(weir_out *out, const uint8_t *key, size_t len, int64_t count, bool final) {
    char tail[40];
    int tl = snprintf(tail, sizeof tail, ",%lld%s", (long long)count, final ? ",final" : "");
    uint8_t *dst = weir_emit_space(out, len + (size_t)tl);
    memcpy(dst, key, len);
    memcpy(dst + len, tail, (size_t)tl);
}

void weir_process(const weir_event *in, weir_out *out) {
    const uint8_t *key = in->key ? in->key : in->value;
    size_t len = in->key ? in->key_len : in->value_len;
    int64_t count;
    weir_state_error err;
    if (weir_state_increment(key, len, 1, &count, &err) != 0) {
        weir_reject_state(out, &err); /* nothing was written */
        return;
    }
    if (count == 1) {
        weir_timer end = {key, len, WEIR_END_OF_TIME, WEIR_EVENT_TIME};
        if (weir_set_timer(&end, &err) != 0) {
            /* The count landed; only the final line is lost. Say so rather than fail. */
            weir_log(WEIR_WARN, "no final count for a key: %s", err.message);
        }
    }
    emit_count(out, key, len, count, false);
}

void weir_on_timer(const weir_timer *fired, size_t n, weir_out *out) {
    for (size_t i = 0; i < n; i++) {
        weir_bytes value;
        if (!weir_state_get(fired[i].key, fired[i].key_len, &value)) continue;
        int64_t count = 0;
        if (value.len == 8) {
            uint64_t u = 0;
            for (int b = 7; b >= 0; b--) u = u << 8 | value.ptr[b];
            count = (int64_t)u;
        }
        weir_bytes_free(&value);
        emit_count(out, fired[i].key, fired[i].key_len, count, true);
    }
}
