#!/usr/bin/env bash
# Builds a JavaScript stage project into a component:  sdk/js/build.sh DIR OUT.wasm
#
# DIR holds app.js (the stage) and wit/stage.wit (the contract, 0.3 or 0.2); weir.js and weir_main.js
# come from DIR when it has its own copies, else from beside this script. Needs
# componentize-js (sdk/toolchains.sh js), or $COMPONENTIZE_JS, and node.
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
layer=$here
[ -f "$dir/weir_uses.mjs" ] && layer=$dir

# componentize-js imports every function of the world, so a component built against the
# whole 0.3 contract imports all of `state` and `time`, and the host would keep a store for a
# stage that never uses one. The build reads which of the two the stage's sources use
# (weir_uses.mjs), cuts the functions of the others out of a copy of the contract (their
# types stay, since `on-timer`'s argument is a `time` record), and writes weir_bind.js, the
# host imports weir_main.js takes, to match.
used=$(node "$layer/weir_uses.mjs" "$dir")
version=0.3.0
if grep -q '^package weir:stage@0\.2\.' "$dir/wit/stage.wit"; then
    version=0.2.0
    if [ -n "$used" ]; then
        echo "the stage uses ${used// / and } from weir.js, which the 0.2 contract in" \
            "$dir/wit/stage.wit does not have: put wit/0.3/stage.wit there" >&2
        exit 1
    fi
fi
bind=$work/weir_bind.js
echo "export { log as hostLog } from \"weir:stage/log@$version\";" >"$bind"
cut=""
if [[ " $used " == *" state "* ]]; then
    cat >>"$bind" <<EOF2
import { get, getMany, set, setMany, delete as del, deleteMany, increment, incrementMany, scan } from "weir:stage/state@$version";
export const hostState = { get, getMany, set, setMany, del, deleteMany, increment, incrementMany, scan };
EOF2
else
    echo "export const hostState = null;" >>"$bind"
    cut+=" state"
fi
if [[ " $used " == *" time "* ]]; then
    cat >>"$bind" <<EOF2
import { watermarks, now, setTimer, setTimers, cancelTimer } from "weir:stage/time@$version";
export const hostTime = { watermarks, now, setTimer, setTimers, cancelTimer };
EOF2
else
    echo "export const hostTime = null;" >>"$bind"
    cut+=" time"
fi
if [ $version = 0.3.0 ] && [ -n "$cut" ]; then
    # Drops the `name: func(...)` lines (and their doc comments) of the interfaces named in
    # $cut; every function of the contract is on one line.
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
        }' "$dir/wit/stage.wit" >"$work/wit/stage.wit"
fi
# -d: StarlingMonkey's stdio and HTTP would import WASI interfaces a stage has no use for
# (console output goes to the host's log through weir:stage/log instead); clocks and
# random stay, for Date and Math.random, and the host grants them to every stage.
(cd "$work" && "$cjs" weir_main.js -w wit -n stage -d stdio http fetch-event -o "$out" >/dev/null)
echo "built $out ($(stat -c %s "$out") bytes)${used:+, using ${used// / and }}" >&2
