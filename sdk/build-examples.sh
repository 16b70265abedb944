#!/usr/bin/env bash
# Builds every language's uppercase example and filter and count templates into
# target/languages/ (or $WEIR_LANG_DIR), where host/sandbox/tests/languages.rs looks for them:
#
#   sdk/build-examples.sh [LANG]...        (default: python js c go)
#
# Prints each build's time. The toolchains come from sdk/toolchains.sh.
set -euo pipefail

sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${WEIR_LANG_DIR:-$sdk/../target/languages}
mkdir -p "$out"
langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(python js c go)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for lang in "${langs[@]}"; do
    # The filter and count templates, made into projects as `weir plugin new` would.
    for template in filter count; do
        WEIR_NEW_NO_SDK=1 "$sdk/new.sh" "$lang-$template" "$lang" $template "$work/$lang-$template" 2>/dev/null
    done
    for project in "$sdk/examples/$lang-uppercase" "$work/$lang-filter" "$work/$lang-count"; do
        name=$(basename "$project")
        start=$(date +%s%N)
        "$sdk/$lang/build.sh" "$project" "$out/$name.wasm"
        ms=$((($(date +%s%N) - start) / 1000000))
        printf '%s: built in %d.%d s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100)) >&2
    done
done
