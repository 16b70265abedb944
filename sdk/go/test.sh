#!/usr/bin/env bash
# Runs a Go stage project's golden test natively:  sdk/go/test.sh [DIR]   (default: .)
# The package weir comes from DIR when it has its own copy, else from beside this script.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=$(cd "${1:-.}" && pwd)
# shellcheck source-path=SCRIPTDIR source=env.sh
. "$here/env.sh"
if [ -d "$dir/weir" ]; then
    cd "$dir" && exec go test ./...
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$dir"/. "$work"/
cp -r "$here/weir" "$work/weir"
cd "$work" && go test ./...
