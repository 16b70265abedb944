#!/usr/bin/env bash
# Builds the Python, JavaScript and Go stages with `weir plugin build` (their toolchains as
# sdk/toolchains.sh installs them), then runs the pipeline: JSON lines on stdout.
set -euo pipefail
cd "$(dirname "$0")"
weir=${WEIR:-weir}
for stage in keep-failures user-and-address count-by-address; do
    "$weir" plugin build "$stage" --out "build/$stage.wasm" >/dev/null
done
"$weir" run pipeline.toml
