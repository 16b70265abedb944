#!/usr/bin/env bash
# The quickstart: parse the sshd log, keep the authentication failures, redact the addresses,
# print them as JSON lines. Build the plugins first: `cargo plugins`.
set -euo pipefail
cd "$(dirname "$0")"
"${WEIR:-weir}" run pipeline.toml
