#!/usr/bin/env bash
# Builds a Python stage project into a component:  sdk/python/build.sh DIR OUT.wasm
#
# DIR holds app.py (the stage) and wit/stage.wit (the contract); weir.py and weir_main.py
# come from DIR when it has its own copies, else from beside this script. Needs
# componentize-py (sdk/toolchains.sh python), or $COMPONENTIZE_PY.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DIR OUT.wasm" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(cd "$1" && pwd)
out=$2
# The toolchain: $COMPONENTIZE_PY, else the one sdk/toolchains.sh installed, else PATH's.
tc=${WEIR_TOOLCHAINS:-$here/../../.toolchains}
cpy=${COMPONENTIZE_PY:-$tc/python/bin/componentize-py}
[ -x "$cpy" ] || cpy=$(command -v componentize-py) || {
    echo "componentize-py not found: run sdk/toolchains.sh python" >&2
    exit 1
}
mkdir -p "$(dirname "$out")"

# --stub-wasi: CPython's runtime imports wasi:filesystem and wasi:sockets, which a stage is
# refused without a grant. Stubbed, every WASI import traps if called; the stage needs none:
# print() and uncaught errors go to the host's log through the weir:stage log import.
"$cpy" --quiet -d "$dir/wit" -w stage componentize --stub-wasi \
    -p "$dir" -p "$here" -o "$out" weir_main
echo "built $out ($(stat -c %s "$out") bytes)" >&2
