#!/usr/bin/env bash
# Workload W2 (generated 100-byte values through three uppercase stages into a null sink)
# through `weir run`, once per language's uppercase stage:  sdk/bench-languages.sh
#
# Each stage is built by `weir plugin build` (the examples in sdk/examples/, and the Rust map
# template from `weir plugin new`), beside the Rust `uppercase` plugin of plugins/ (`cargo
# plugins`). Prints a Markdown table: events/s (source events over the run's elapsed_s), the
# component's size and its contract version. One warm-up run per stage first fills the
# compile cache, so compiling is not timed. Needs target/release/weir (cargo build
# --release -p weir) and the toolchains (sdk/toolchains.sh). WEIR_BENCH_SCALE multiplies the
# event counts (1 by default; the interpreters get fewer events to keep each run short).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
weir=${WEIR:-$root/target/release/weir}
scale=${WEIR_BENCH_SCALE:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export WEIR_CACHE_DIR=$work/cache WEIR_TOOLCHAINS=${WEIR_TOOLCHAINS:-$root/.toolchains}
mkdir -m 700 "$WEIR_CACHE_DIR"

# The component of each row: `label path contract events`.
rows=()
add() { rows+=("$1|$2|$3|$(($4 * scale))"); }
"$weir" plugin new bench-rust --lang rust --dir "$work/rust" >/dev/null
# The SDK's dependencies compiled once, in the target folder the tests use too.
CARGO_TARGET_DIR=$root/target/authoring "$weir" plugin build "$work/rust" --out "$work/rust.wasm" >/dev/null 2>&1
add "Rust, template (Stage, owned events)" "$work/rust.wasm" 0.2 2000000
cargo plugins --quiet >/dev/null 2>&1 || true
add "Rust, plugins/uppercase (Transform)" "$root/target/plugins/wasm32-wasip2/plugin/uppercase.wasm" 0.2 2000000
for lang in c go python js; do
    "$weir" plugin build "$root/sdk/examples/$lang-uppercase" --out "$work/$lang.wasm" >/dev/null 2>&1
done
add "C" "$work/c.wasm" 0.2 2000000
add "Go" "$work/go.wasm" 0.2 1000000
add "Python" "$work/python.wasm" 0.2 100000
add "JavaScript" "$work/js.wasm" 0.2 30000

pipeline() { # PLUGIN EVENTS
    printf '[pipeline]\n\n[sources.input]\ntype = "generate"\ncount = %s\nsize = 100\n' "$2"
    local input=input
    for s in s1 s2 s3; do
        printf '\n[stages.%s]\ninputs = ["%s"]\nplugin = "%s"\n' "$s" "$input" "$1"
        input=$s
    done
    printf '\n[sinks.out]\ninputs = ["s3"]\ntype = "null"\n'
}

echo "| stage | contract | component size | events | events/s | instances replaced (traps + recycled, 3 stages) |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
for row in "${rows[@]}"; do
    IFS='|' read -r label wasm contract events <<<"$row"
    pipeline "$wasm" 1000 >"$work/warm.toml"
    "$weir" run "$work/warm.toml" >/dev/null 2>&1
    pipeline "$wasm" "$events" >"$work/w2.toml"
    # The report goes to stderr, after the stages' own log lines.
    "$weir" run --report json "$work/w2.toml" 2>&1 >/dev/null | grep '^{"acknowledged"' >"$work/report.json"
    python3 - "$work/report.json" "$label" "$contract" "$(stat -c %s "$wasm")" "$events" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
label, contract, size, events = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
nodes = {n["name"]: n for n in report["nodes"]}
# Every stage passed every event: the figure is of a correct run.
for name in ["s1", "s2", "s3", "out"]:
    assert nodes[name]["events_in"] == events and nodes[name]["failed"] == 0, nodes[name]
replaced = sum(nodes[s]["traps"] + nodes[s]["recycled"] for s in ["s1", "s2", "s3"])
rate = events / report["elapsed_s"]
print(f"| {label} | {contract} | {size:,} B | {events:,} | {rate:,.0f} | {replaced} |")
PY
done
