#!/usr/bin/env bash
# Builds a Go stage project into a component:  sdk/go/build.sh DIR OUT.wasm
#
# DIR holds the stage's package main (app.go: it registers the stage with package weir) and
# wit/stage.wit (the contract); the packages weir and export_wit_world come from DIR when
# it has its own copies, else from beside this script, and so do the bindings of the contract
# (bindings/, what `wit-bindgen go` writes; sdk/bindgen.sh regenerates them). Needs Go,
# wasm-tools, the preview1 adapter and wit-bindgen's Go package (sdk/toolchains.sh go).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DIR OUT.wasm" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(cd "$1" && pwd)
mkdir -p "$(dirname "$2")"
out=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
# shellcheck source-path=SCRIPTDIR source=env.sh
. "$here/env.sh"
tool() { # the toolchains folder's copy, else PATH's
    if [ -x "$tc/bin/$1" ]; then echo "$tc/bin/$1"; else command -v "$1" || {
        echo "$1 not found: run sdk/toolchains.sh go" >&2
        exit 1
    }; fi
}
wasm_tools=$(tool wasm-tools)
adapter=${WEIR_ADAPTER:-$tc/adapter/wasi_snapshot_preview1.reactor.wasm}
pkg=${WEIR_GO_PKG:-$tc/go-pkg}

# The kept bindings are the 0.3 contract's (sdk/bindgen.sh). Go's linker drops the state and
# time functions a stage never calls, with their imports: a stage that calls none gets no
# store from the host.
if ! grep -q '^package weir:stage@0\.3\.' "$dir/wit/stage.wit"; then
    echo "$dir/wit/stage.wit is not the 0.3 contract this layer is built for: put" \
        "wit/0.3/stage.wit there" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$dir"/. "$work"/
for p in weir export_wit_world; do
    [ -d "$work/$p" ] || cp -r "$here/$p" "$work/$p"
done
rm -f "$work"/*_test.go
bindings=$dir/bindings
[ -f "$bindings/go.mod" ] || bindings=$here/bindings
rm -rf "$work/bindings"
cp -r "$bindings"/*/ "$work"/
cp "$bindings/wit_exports.go" "$bindings/go.mod" "$work/"
printf '\nreplace go.bytecodealliance.org/pkg => %s\n' "$pkg" >>"$work/go.mod"
# -checklinkname=0: the bindings' runtime allocates with runtime.sbrk before Go's own runtime is up.
(cd "$work" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags="-s -checklinkname=0" -o core.wasm .)
# Go's file functions go to shim.wat rather than to the preview1 adapter (see shim.wat).
shimmed="fd_write|fd_close|fd_fdstat_get|fd_fdstat_set_flags|fd_prestat_get|fd_prestat_dir_name|poll_oneoff"
"$wasm_tools" print "$work/core.wasm" |
    sed -E "s/^(\s*\(import )\"wasi_snapshot_preview1\" \"($shimmed)\"/\1\"weir_wasi_shim\" \"\2\"/" |
    "$wasm_tools" parse -o "$work/core-shimmed.wasm"
mkdir -p "$work/shim-wit/deps/stage"
cp "$dir/wit/stage.wit" "$work/shim-wit/deps/stage/"
printf 'package weir:go-shim;\nworld shim {\n    import weir:stage/log@0.3.0;\n}\n' >"$work/shim-wit/shim.wit"
"$wasm_tools" parse "$here/shim.wat" -o "$work/shim.wasm"
"$wasm_tools" component embed "$work/shim-wit" --world shim "$work/shim.wasm" -o "$work/shim.wasm"
"$wasm_tools" component embed "$dir/wit" --world stage "$work/core-shimmed.wasm" -o "$work/embedded.wasm"
"$wasm_tools" component new "$work/embedded.wasm" -o "$out" \
    --adapt "wasi_snapshot_preview1=$adapter" --adapt "weir_wasi_shim=$work/shim.wasm"
echo "built $out ($(stat -c %s "$out") bytes)" >&2
