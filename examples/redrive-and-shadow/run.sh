#!/usr/bin/env bash
# Dead-letter redrive and shadowing, end to end, on the sshd log fed three times through stdin:
#   1. `label` version 1 runs, and dead-letters the messages it does not know;
#   2. version 2 runs as its shadow (`weir reload --shadow`) on the second round: compared
#      with version 1 event by event, its outputs never sent on;
#   3. `weir shadow promote` makes it live for the third round;
#   4. `weir redrive` sends version 1's dead letters through version 2, each once; a second
#      redrive sends nothing.
# Then it checks that every line of the three rounds is in out/labelled.jsonl exactly once, as
# version 2 labels it. ADMIN_PORT (default 7878) is the admin API's port.
set -euo pipefail
cd "$(dirname "$0")"
weir=${WEIR:-weir}
port=${ADMIN_PORT:-7878}
export WEIR_ADMIN=127.0.0.1:$port
export WEIR_ADMIN_TOKEN=${WEIR_ADMIN_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}

for v in v1 v2; do
    "$weir" plugin build "label-$v" --out "build/label-$v.wasm" >/dev/null
done
cp build/label-v1.wasm build/label.wasm # the version the pipeline file names, for now

work=$(mktemp -d .run.XXXXXX)
pid=
trap 'exec 3>&- 2>/dev/null; kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
# The pipeline file names port 7878; another is written into a copy beside it, so that its
# relative paths still hold.
sed "s|127.0.0.1:7878|127.0.0.1:$port|; s|\"\\.\\./|\"../../|; s|\"out/|\"../out/|; s|\"build/|\"../build/|" \
    pipeline.toml >"$work/pipeline.toml"
mkdir -p out
rm -f out/labelled.jsonl out/dead-letters.jsonl out/dead-letters.jsonl.redrive out/dead-again.jsonl
# awk ends the log's last line, which has no line end, so that rounds do not run together.
awk 1 ../auth-log/data/OpenSSH_2k.log >"$work/log.txt"
mkfifo "$work/feed"
"$weir" run "$work/pipeline.toml" <"$work/feed" 2>"$work/stderr" &
pid=$!
exec 3>"$work/feed"

lines() { [ -f "$1" ] && wc -l <"$1" || echo 0; }
settled() { # waits until $1 lines came out or were dead-lettered
    for _ in $(seq 600); do
        [ $(($(lines out/labelled.jsonl) + $(lines out/dead-letters.jsonl))) -ge "$1" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "the pipeline never took $1 lines" >&2
    cat "$work/stderr" >&2
    exit 1
}
field() { grep -o "\"$1\": *[0-9]*" "$work/status" | head -1 | tr -dc 0-9; }

cat "$work/log.txt" >&3
settled 2000
first=$(lines out/dead-letters.jsonl)
echo "round 1, label v1: 2000 lines, $(lines out/labelled.jsonl) labelled, $first dead-lettered (unknown message)"

"$weir" reload --stage label --plugin build/label-v2.wasm --shadow >/dev/null
cat "$work/log.txt" >&3
settled 4000
# The shadow compares on its own thread, behind the live path: let it finish its queue.
for _ in $(seq 100); do
    "$weir" shadow status label --json >"$work/status"
    before=$(field compared)
    sleep 0.2
    "$weir" shadow status label --json >"$work/status"
    [ "$(field compared)" = "$before" ] && [ "$before" -gt 0 ] && break
done
different=$(field different)
shadow_failed=$(grep -c '"shadow_failed": {}' "$work/status" || true)
dead=$(lines out/dead-letters.jsonl)
echo "round 2, label v1 with v2 as its shadow: 2000 lines, $((dead - first)) more dead-lettered"
if [ "$different" = 0 ] && [ "$shadow_failed" = 1 ]; then
    echo "  v2 labelled every event v1 labelled the same way, and failed none"
else
    echo "  v2 differs from v1:"
    cat "$work/status"
fi

"$weir" shadow promote label >/dev/null
cp build/label-v2.wasm build/label.wasm # a restart, and the redrive below, run v2 now
cat "$work/log.txt" >&3
exec 3>&-
wait "$pid"
pid=
echo "round 3, label v2 (promoted): 2000 lines, $(($(lines out/labelled.jsonl) - 4000 + dead)) labelled, $(($(lines out/dead-letters.jsonl) - dead)) dead-lettered"

sent() { grep -o '[0-9]* in,' | cut -d' ' -f1; }
redriven=$("$weir" redrive out/dead-letters.jsonl --pipeline "$work/pipeline.toml" \
    --dead-letters out/dead-again.jsonl 2>&1 | sent)
again=$("$weir" redrive out/dead-letters.jsonl --pipeline "$work/pipeline.toml" \
    --dead-letters out/dead-again.jsonl 2>&1 | sent || true)
echo "redrive: ${redriven:-0} letters sent through label v2, $(lines out/dead-again.jsonl) failed again; a second redrive sent ${again:-0}"

# Every line of the three rounds, once, as v2 labels it: the log through v2 alone, three times.
cat >"$work/check.toml" <<TOML
[sources.log]
type = "file"
path = "log.txt"
[stages.parse]
inputs = ["log"]
plugin = "$PWD/../../target/plugins/wasm32-wasip2/plugin/sshd_parse.wasm"
[stages.label]
inputs = ["parse"]
plugin = "$PWD/build/label-v2.wasm"
[sinks.out]
inputs = ["label"]
type = "file"
path = "once.jsonl"
TOML
"$weir" run "$work/check.toml" 2>/dev/null
for _ in 1 2 3; do cat "$work/once.jsonl"; done | sort >"$work/want"
if sort out/labelled.jsonl | cmp -s - "$work/want"; then
    echo "out/labelled.jsonl: $(lines out/labelled.jsonl) lines, every line of the three rounds exactly once"
else
    echo "out/labelled.jsonl: $(lines out/labelled.jsonl) lines, not every line of the three rounds once"
fi
