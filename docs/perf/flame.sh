#!/usr/bin/env bash
# Flame graphs of workloads W1 and W3 through `weir run`, as SVG.
#
#   docs/perf/flame.sh OUT_DIR [PLUGIN_DIR] [LABEL]
#
# perf samples both threads' stacks (DWARF call graphs, so that the host's frames unwind
# without frame pointers); wasmtime's perf map (WEIR_PERF_MAP=1) names the plugins' compiled
# functions; inferno (`cargo install inferno`) folds the stacks and draws them. PLUGIN_DIR
# (default target/plugins/wasm32-wasip2/plugin) holds passthrough.wasm, sshd_parse.wasm,
# auth_filter.wasm and redact_ip.wasm; LABEL goes into the file names and titles.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
plugins=$(cd "${2:-$root/target/plugins/wasm32-wasip2/plugin}" && pwd)
label=${3:-now}
weir=${WEIR:-$root/target/release/weir}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/w1.toml" <<TOML
[sources.gen]
type = "generate"
count = 2000000
size = 100
[stages.a]
inputs = ["gen"]
plugin = "$plugins/passthrough.wasm"
[stages.b]
inputs = ["a"]
plugin = "$plugins/passthrough.wasm"
[stages.c]
inputs = ["b"]
plugin = "$plugins/passthrough.wasm"
[sinks.out]
inputs = ["c"]
type = "null"
TOML

cat >"$work/w3.toml" <<TOML
[sources.auth_log]
type = "file"
path = "$root/examples/auth-log/data/OpenSSH_2k.log"
repeat = 500
[stages.parse]
inputs = ["auth_log"]
plugin = "$plugins/sshd_parse.wasm"
[stages.filter]
inputs = ["parse"]
plugin = "$plugins/auth_filter.wasm"
[stages.redact]
inputs = ["filter"]
plugin = "$plugins/redact_ip.wasm"
[sinks.out]
inputs = ["redact"]
type = "file"
path = "$work/w3.jsonl"
TOML

for w in w1 w3; do
    "$weir" check "$work/$w.toml" >/dev/null # compiled into the cache before sampling
    WEIR_PERF_MAP=1 perf record -q -F 1999 --call-graph dwarf,16384 -o "$work/$w.data" \
        "$weir" run "$work/$w.toml" 2>"$work/$w.summary"
    perf script -i "$work/$w.data" 2>/dev/null | inferno-collapse-perf >"$work/$w.folded"
    title="${w^^} through weir run ($label): $(grep -o '[0-9]* in, [0-9]* out' "$work/$w.summary")"
    inferno-flamegraph --title "$title" --width 1400 --minwidth 1 <"$work/$w.folded" >"$out/$w-$label.svg"
    echo "$out/$w-$label.svg: $(wc -l <"$work/$w.folded") stacks; $(tail -1 "$work/$w.summary")"
done
