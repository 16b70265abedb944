#!/usr/bin/env bash
# Makes a new stage project from a template, as `weir plugin new NAME --lang LANG` will:
#
#   sdk/new.sh NAME LANG [TEMPLATE] [DIR]   LANG: python, js, c, go; TEMPLATE: map, filter, count
#
# DIR (default ./NAME) gets the template's files with {{name}} replaced by NAME, the
# contract (wit/stage.wit, from wit/0.3) and a copy of the language's SDK layer and build
# script, so it builds and tests outside this repository. With WEIR_NEW_NO_SDK=1 the SDK layer is left
# out (the examples in this repository use the one in sdk/LANG/).
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 4 ]; then
    echo "usage: $0 NAME LANG [TEMPLATE] [DIR]" >&2
    exit 2
fi
name=$1 lang=$2 template=${3:-map} dir=${4:-./$1}
sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$sdk/templates/$lang/$template
if [ ! -d "$src" ]; then
    echo "no template $lang/$template (templates: $(cd "$sdk/templates" && echo */*))" >&2
    exit 1
fi
if ! [[ $name =~ ^[a-z][a-z0-9-]*$ ]]; then
    echo "a stage name is lower-case letters, digits and dashes: $name" >&2
    exit 1
fi
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    echo "$dir exists and is not empty" >&2
    exit 1
fi
mkdir -p "$dir"
(cd "$src" && find . -type f ! -path '*/__pycache__/*') | while read -r f; do
    mkdir -p "$dir/$(dirname "$f")"
    sed -e "s/{{name}}/$name/g" "$src/$f" >"$dir/$f"
    [ -x "$src/$f" ] && chmod +x "$dir/$f"
    true
done
# The contract, from wit/ (the templates carry no copy of it).
mkdir -p "$dir/wit"
cp "$sdk/../wit/0.3/stage.wit" "$dir/wit/stage.wit"
if [ "${WEIR_NEW_NO_SDK:-0}" != 1 ]; then
    while read -r f; do
        mkdir -p "$dir/$(dirname "$f")"
        cp -p "$sdk/$lang/$f" "$dir/$f"
    done < <(cd "$sdk/$lang" && find . -type f ! -name '*.md' ! -path '*/__pycache__/*')
fi
echo "made $dir ($lang/$template)" >&2
