#!/usr/bin/env bash
# Starts the pipeline, POSTs the sshd log to it with curl in four requests of 500 lines (again
# after a 429, which means "no room now, nothing taken"), prints each answer, stops the run
# with SIGTERM and compares what it wrote with the quickstart's output. HTTP_PORT (default
# 8080) is the port it listens on.
set -euo pipefail
cd "$(dirname "$0")"
weir=${WEIR:-weir}
port=${HTTP_PORT:-8080}
url=http://127.0.0.1:$port/

work=$(mktemp -d .run.XXXXXX)
pid=
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
# The pipeline file names port 8080; another is written into a copy beside it, so that its
# relative paths still hold.
sed "s|127.0.0.1:8080|127.0.0.1:$port|; s|\"\\.\\./|\"../../|; s|\"out/|\"../out/|" pipeline.toml >"$work/pipeline.toml"
mkdir -p out
split -l 500 -d ../auth-log/data/OpenSSH_2k.log "$work/part-"

"$weir" run "$work/pipeline.toml" 2>"$work/stderr" &
pid=$!
for part in "$work"/part-*; do
    n=${part##*-}
    for _ in $(seq 600); do
        status=$(curl -s -o "$work/answer" -w '%{http_code}' --data-binary "@$part" \
            -H "X-Request-Id: part-$n" "$url" || true)
        case $status in
        200) break ;;
        000 | 429) # not listening yet, or no room now: nothing was taken
            kill -0 "$pid" 2>/dev/null || { cat "$work/stderr" >&2; exit 1; }
            sleep 0.1
            ;;
        *) echo "part $n: HTTP $status: $(cat "$work/answer")" >&2; exit 1 ;;
        esac
    done
    echo "part $n: $(awk 'END { print NR }' "$part") lines, HTTP $status $(cat "$work/answer")"
done
kill -TERM "$pid"
wait "$pid" || { cat "$work/stderr" >&2; exit 1; }
pid=
echo "out/failures.jsonl: $(wc -l <out/failures.jsonl) lines"
if cmp -s out/failures.jsonl ../auth-log/expected.jsonl; then
    echo "the same lines as the quickstart's, in the same order"
else
    echo "not the quickstart's lines"
fi
