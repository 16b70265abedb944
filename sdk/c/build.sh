#!/usr/bin/env bash
# Builds a C stage project into a component:  sdk/c/build.sh DIR OUT.wasm
#
# DIR holds app.c (the stage) and wit/stage.wit (the contract); weir.h, weir.c and
# weir_main.c come from DIR when it has its own copies, else from beside this script.
# The bindings of the contract (stage.c, stage.h) are the ones kept in bindings/ beside this
# script (sdk/bindgen.sh regenerates them), or DIR/bindings when the project has its own.
# Needs clang-19 and wasi-libc (Debian), wasm-tools and the preview1 adapter
# (sdk/toolchains.sh c). $CC overrides the compiler.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 DIR OUT.wasm" >&2
    exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(cd "$1" && pwd)
out=$2
tc=${WEIR_TOOLCHAINS:-$here/../../.toolchains}
tool() { # the toolchains folder's copy, else PATH's
    if [ -x "$tc/bin/$1" ]; then echo "$tc/bin/$1"; else command -v "$1" || {
        echo "$1 not found: run sdk/toolchains.sh c" >&2
        exit 1
    }; fi
}
wasm_tools=$(tool wasm-tools)
adapter=${WEIR_ADAPTER:-$tc/adapter/wasi_snapshot_preview1.reactor.wasm}
cc=${CC:-clang-19}
sdk=$dir
[ -f "$sdk/weir_main.c" ] || sdk=$here
bindings=$dir/bindings
[ -f "$bindings/stage.c" ] || bindings=$here/bindings

# The kept bindings are the 0.3 contract's (sdk/bindgen.sh). The linker drops the state and
# time functions a stage never calls, and `component new` their imports: a stage that calls
# none gets no store from the host.
if ! grep -q '^package weir:stage@0\.3\.' "$dir/wit/stage.wit"; then
    echo "$dir/wit/stage.wit is not the 0.3 contract this layer is built for: put" \
        "wit/0.3/stage.wit there" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A reactor (no main): the host calls the exports. The stage's own sources are every .c file
# of DIR but its native test.
sources=()
for f in "$dir"/*.c; do
    case "$(basename "$f")" in test_*.c | weir.c | weir_main.c | weir_native.c) ;; *) sources+=("$f") ;; esac
done
# The component type comes from the project's own WIT (component embed below) rather than from
# the object file wit-bindgen writes beside the bindings, one binary file fewer to keep; the
# bindings still link to the symbol that object defines.
echo 'void __component_type_object_force_link_stage(void) {}' >"$work/component_type.c"
"$cc" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror=implicit-function-declaration \
    -I"$bindings" -I"$sdk" -o "$work/core.wasm" \
    "${sources[@]}" "$sdk/weir.c" "$sdk/weir_main.c" "$bindings/stage.c" "$work/component_type.c"
"$wasm_tools" component embed "$dir/wit" --world stage "$work/core.wasm" -o "$work/embedded.wasm"
mkdir -p "$(dirname "$out")"
"$wasm_tools" component new "$work/embedded.wasm" --adapt "wasi_snapshot_preview1=$adapter" -o "$out"
echo "built $out ($(stat -c %s "$out") bytes)" >&2
