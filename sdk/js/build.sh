#!/usr/bin/env bash
# Builds a JavaScript stage project into a component:  sdk/js/build.sh DIR OUT.wasm
#
# DIR holds app.js (the stage) and wit/stage.wit (the contract); weir.js and weir_main.js
# come from DIR when it has its own copies, else from beside this script. Needs
# componentize-js (sdk/toolchains.sh js), or $COMPONENTIZE_JS.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DIR OUT.wasm" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(cd "$1" && pwd)
mkdir -p "$(dirname "$2")"
out=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
# The toolchain: $COMPONENTIZE_JS, else the one sdk/toolchains.sh installed, else PATH's.
tc=${WEIR_TOOLCHAINS:-$here/../../.toolchains}
cjs=${COMPONENTIZE_JS:-$tc/js/node_modules/.bin/componentize-js}
[ -x "$cjs" ] || cjs=$(command -v componentize-js) || {
    echo "componentize-js not found: run sdk/toolchains.sh js" >&2
    exit 1
}

# The engine reads the sources from one folder: the project's, with the SDK's files beside.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here"/weir.js "$here"/weir_main.js "$work"/
cp -r "$dir"/. "$work"/
# -d: StarlingMonkey's stdio and HTTP would import WASI interfaces a stage has no use for
# (console output goes to the host's log through weir:stage/log instead); clocks and
# random stay, for Date and Math.random, and the host grants them to every stage.
(cd "$work" && "$cjs" weir_main.js -w wit -n stage -d stdio http fetch-event -o "$out" >/dev/null)
echo "built $out ($(stat -c %s "$out") bytes)" >&2
