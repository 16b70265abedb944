#!/usr/bin/env bash
# Runs a C stage project's golden test natively:  sdk/c/test.sh [DIR]   (default: .)
# weir.h, weir.c and weir_native.c (state and timers in memory) come from DIR when it has
# its own copies, else from beside this script.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(cd "${1:-.}" && pwd)
sdk=$dir
[ -f "$sdk/weir.c" ] || sdk=$here
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
${CC:-cc} -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -g -fsanitize=address,undefined \
    -I"$sdk" -o "$bin" "$dir/app.c" "$dir/test_app.c" "$sdk/weir.c" "$sdk/weir_native.c"
cd "$dir" && "$bin"
