#!/usr/bin/env bash
# Hot reload under load: feeds the sshd log to the pipeline through a pipe that stays open, in
# three rounds of 50,000 lines, each written in paced chunks. While the first round flows,
# `uppercase` is swapped into the stage `shout` (`weir reload`); while the second flows, it is
# rolled back (`weir rollback`). Then it checks the output line by line: every line once and in
# order, as it came, then upper-cased from the swap on, then as it came again from the
# rollback on. ADMIN_PORT (default 7878) is the admin API's port.
set -euo pipefail
cd "$(dirname "$0")"
weir=${WEIR:-weir}
port=${ADMIN_PORT:-7878}
plugins=../../target/plugins/wasm32-wasip2/plugin
round=25 # copies of the 2,000-line log per round
lines=$((round * 2000))

export WEIR_ADMIN=127.0.0.1:$port
export WEIR_ADMIN_TOKEN=${WEIR_ADMIN_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}

work=$(mktemp -d .run.XXXXXX)
pid= feeder=
trap 'exec 3>&- 2>/dev/null; kill $feeder $pid 2>/dev/null || true; rm -rf "$work"' EXIT
# The pipeline file names port 7878; another is written into a copy beside it, so that its
# relative paths still hold.
sed "s|127.0.0.1:7878|127.0.0.1:$port|; s|\"\\.\\./|\"../../|; s|\"out/|\"../out/|" pipeline.toml >"$work/pipeline.toml"
mkdir -p out
rm -f out/lines.txt # the count below must not read an earlier run's
# awk ends the log's last line, which has no line end, so that copies do not run together;
# its lines end in CR LF, and a line event holds neither, so the output's end in LF alone.
awk 1 ../auth-log/data/OpenSSH_2k.log >"$work/log.txt"
for _ in $(seq "$round"); do tr -d '\r' <"$work/log.txt"; done >"$work/as-is.txt"
tr 'a-z' 'A-Z' <"$work/as-is.txt" >"$work/upper.txt"
mkfifo "$work/feed"

"$weir" run "$work/pipeline.toml" <"$work/feed" 2>"$work/stderr" &
pid=$!
exec 3>"$work/feed"

feed_round() { # a round, one log at a time, 20 ms apart
    for _ in $(seq "$round"); do
        cat "$work/log.txt" >&3
        sleep 0.02
    done
}

out_holds() { # waits until out/lines.txt holds $1 lines
    for _ in $(seq 600); do
        [ -f out/lines.txt ] && [ "$(wc -l <out/lines.txt)" -ge "$1" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "out/lines.txt never held $1 lines" >&2
    cat "$work/stderr" >&2
    exit 1
}

feed_round &
feeder=$!
out_holds 20000
"$weir" reload --stage shout --plugin "$plugins/uppercase.wasm" >/dev/null
wait "$feeder"
feed_round &
feeder=$!
out_holds $((lines + 20000))
"$weir" rollback --stage shout >/dev/null
wait "$feeder"
feeder=
feed_round
exec 3>&-
wait "$pid"
pid=

# Line by line against the input as it came and upper-cased: one run of upper-cased lines
# between two runs of lines as they came (a line with no lower-case letter reads as either).
for _ in 1 2 3; do cat "$work/as-is.txt"; done >"$work/in.txt"
for _ in 1 2 3; do cat "$work/upper.txt"; done >"$work/in-upper.txt"
paste -d '\n' out/lines.txt "$work/in.txt" "$work/in-upper.txt" | awk -v want=$((3 * lines)) '
    NR % 3 == 1 { out = $0; next }
    NR % 3 == 2 { same = $0; next }
    {
        n++
        if (out == same && out == $0) next
        if (out == same) { if (phase == 1) phase = 2; if (phase == 0) before++; else after++; next }
        if (out == $0) { if (phase == 2) { bad = "upper-cased after the rollback"; exit }
                         phase = 1; upper++; next }
        bad = "neither as it came nor upper-cased"; exit
    }
    END {
        if (bad != "") { printf "line %d: %s\n", n, bad; exit 1 }
        if (n != want) { printf "%d lines out, %d in\n", n, want; exit 1 }
        if (before == 0 || upper == 0 || after == 0) {
            printf "the swap or the rollback took no traffic (%d, %d, %d)\n", before, upper, after; exit 1
        }
        printf "%d lines out, each once and in order\n", n
        print "as they came, then upper-cased from the swap, then as they came from the rollback"
        printf "(%d, then %d, then %d of them)\n", before, upper, after > "/dev/stderr"
    }'
