/* {{name}}: a weir stage that drops the events whose value contains a word.
 *
 * An event whose value is empty is rejected (the host dead-letters it with the reason);
 * every other event passes through unchanged, or is filtered out when it contains the word. */
#include <ctype.h>
#include <string.h>

#include "weir.h"

const char WEIR_NAME[] = "{{name}}";
const char WEIR_VERSION[] = "0.1.0";

const weir_setting_decl WEIR_SETTINGS[] = {
    {"drop", WEIR_TEXT, "DEBUG", false, "drop the events whose value contains this"},
    {"ignore-case", WEIR_BOOLEAN, "false", false, "match the word in any case"},
    {0},
};

static const char *word;
static size_t word_len;
static bool ignore_case;

int weir_init(const weir_settings *s, weir_error *err) {
    word = weir_setting_text(s, "drop");
    word_len = strlen(word);
    ignore_case = weir_setting_bool(s, "ignore-case");
    if (word_len == 0) return weir_fail(err, "`drop` must not be empty");
    weir_log(WEIR_DEBUG, "dropping events containing \"%s\"", word);
    return 0;
}

static bool contains(const uint8_t *v, size_t len) {
    for (size_t i = 0; i + word_len <= len; i++) {
        size_t j = 0;
        while (j < word_len && (ignore_case ? tolower(v[i + j]) == tolower((uint8_t)word[j])
                                            : v[i + j] == (uint8_t)word[j]))
            j++;
        if (j == word_len) return true;
    }
    return false;
}

void weir_process(const weir_event *in, weir_out *out) {
    if (in->value_len == 0) {
        weir_reject(out, "empty value");
        return;
    }
    if (contains(in->value, in->value_len)) return; /* filtered out */
    weir_pass(out);                                  /* passed through as it is */
}
