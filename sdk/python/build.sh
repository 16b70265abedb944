#!/usr/bin/env bash
# Builds a Python stage project into a component:  sdk/python/build.sh DIR OUT.wasm
#
# DIR holds app.py (the stage) and wit/stage.wit (the contract, 0.3 or 0.2); weir.py and
# weir_main.py come from DIR when it has its own copies, else from beside this script. Needs
# componentize-py (sdk/toolchains.sh python), or $COMPONENTIZE_PY, and python3.
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
layer=$here
[ -f "$dir/weir_uses.py" ] && layer=$dir

# componentize-py binds every function of the world, so a component built against the whole
# 0.3 contract imports all of `state` and `time`, and the host would keep a store for a
# stage that never uses one. The build reads which of the two the stage's sources use
# (weir_uses.py) and cuts the functions of the others out of a copy of the contract; their
# types stay, since `on-timer`'s argument is a `time` record.
wit=$dir/wit
used=$(python3 "$layer/weir_uses.py" "$dir")
if grep -q '^package weir:stage@0\.2\.' "$dir/wit/stage.wit"; then
    if [ -n "$used" ]; then
        echo "the stage uses weir.${used// / and weir.}, which the 0.2 contract in" \
            "$dir/wit/stage.wit does not have: put wit/0.3/stage.wit there" >&2
        exit 1
    fi
else
    cut=""
    for what in state time; do
        [[ " $used " == *" $what "* ]] || cut+=" $what"
    done
    if [ -n "$cut" ]; then
        wit=$(mktemp -d)
        trap 'rm -rf "$wit"' EXIT
        # Drops the `name: func(...)` lines (and their doc comments) of the interfaces named
        # in $cut; every function of the contract is on one line.
        awk -v drop="$cut" '
            BEGIN { n = split(drop, d, " "); for (i = 1; i <= n; i++) cut[d[i]] = 1 }
            /^interface [a-z-]+ \{/ { iface = $2 }
            /^\}/ { iface = "" }
            {
                if (iface in cut) {
                    if ($0 ~ /^[ \t]*\/\/\//) { doc = doc $0 "\n"; next }
                    if ($0 ~ /^[ \t]*[a-z][a-z0-9-]*: func\(/) { doc = ""; next }
                }
                printf "%s", doc; doc = ""; print
            }' "$dir/wit/stage.wit" >"$wit/stage.wit"
    fi
fi

# --stub-wasi: CPython's runtime imports wasi:filesystem and wasi:sockets, which a stage is
# refused without a grant. Stubbed, every WASI import traps if called; the stage needs none:
# print() and uncaught errors go to the host's log through the weir:stage log import.
"$cpy" --quiet -d "$wit" -w stage componentize --stub-wasi \
    -p "$dir" -p "$here" -o "$out" weir_main
echo "built $out ($(stat -c %s "$out") bytes)${used:+, using ${used// / and }}" >&2
