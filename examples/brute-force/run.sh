#!/usr/bin/env bash
# Which addresses failed to log in 5 times or more within a minute? Build the plugins first:
# `cargo plugins`.
set -euo pipefail
cd "$(dirname "$0")"
"${WEIR:-weir}" run pipeline.toml
