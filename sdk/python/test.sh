#!/usr/bin/env bash
# Runs a Python stage project's golden test natively:  sdk/python/test.sh [DIR]
# weir.py comes from DIR when it has its own copy, else from beside this script.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(cd "${1:-.}" && pwd)
cd "$dir" && PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$dir:$here" python3 -m unittest -v test_app
