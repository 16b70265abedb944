#!/usr/bin/env bash
# Regenerates the C and Go bindings of the contract kept in sdk/c/bindings and
# sdk/go/bindings, after wit/0.3/stage.wit changes:  sdk/bindgen.sh
#
# The generators are wit-bindgen's own C and Go ones (sdk/bindgen, a small crate that
# compiles them as libraries: a few minutes, where `cargo install wit-bindgen-cli` with every
# other language takes 14-22). Builds and CI never run this: they use the kept bindings.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$here/..
wit=$root/wit/0.3
target=${CARGO_TARGET_DIR:-$root/target}/bindgen
cargo build --quiet --release --manifest-path "$here/bindgen/Cargo.toml" --target-dir "$target"
for lang in c go; do
    rm -rf "$here/$lang/bindings"
    "$target/release/weir-bindgen" "$lang" "$wit" "$here/$lang/bindings"
done
# The C generator also writes the component type as an object file; the build embeds the
# type from the project's WIT instead.
rm -f "$here/c/bindings/stage_component_type.o"
echo "regenerated sdk/c/bindings and sdk/go/bindings" >&2
