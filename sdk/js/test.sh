#!/usr/bin/env bash
# Runs a JavaScript stage project's golden test natively:  sdk/js/test.sh [DIR]
# weir.js comes from DIR when it has its own copy, else from beside this script.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(cd "${1:-.}" && pwd)
if [ -f "$dir/weir.js" ]; then
    cd "$dir" && exec node --test test_app.mjs
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$dir"/. "$work"/
cp "$here/weir.js" "$work/"
cd "$work" && node --test test_app.mjs
