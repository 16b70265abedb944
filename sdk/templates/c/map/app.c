/* {{name}}: a weir stage that upper-cases the ASCII letters of every value.
 *
 * Bytes other than a-z (UTF-8 multi-byte sequences included) are left as they are; the key,
 * headers and timestamp pass through unchanged. See weir.h for what weir_process may do. */
#include "weir.h"

const char WEIR_NAME[] = "{{name}}";
const char WEIR_VERSION[] = "0.1.0";

/* Settings the pipeline file may give, e.g.
 *   {"suffix", WEIR_TEXT, "", false, "appended to every value"}, */
const weir_setting_decl WEIR_SETTINGS[] = {{0}};

int weir_init(const weir_settings *s, weir_error *err) {
    (void)s, (void)err;
    return 0;
}

void weir_process(const weir_event *in, weir_out *out) {
    uint8_t *value = weir_emit_space(out, in->value_len);
    for (size_t i = 0; i < in->value_len; i++) {
        uint8_t c = in->value[i];
        value[i] = c >= 'a' && c <= 'z' ? c - ('a' - 'A') : c;
    }
}
