#!/usr/bin/env bash
# Publishes the sshd log to NATS (feed.toml), runs the fan-out pipeline until the file branch
# holds every failure, stops it with SIGTERM (it drains both branches first), and says what
# each branch got. NATS_URL (default nats://127.0.0.1:4222) names the server; the streams
# LOGS (subject `logs`) and PARSED (subject `parsed`) must exist, as README.md says.
set -euo pipefail
cd "$(dirname "$0")"
weir=${WEIR:-weir}
url=${NATS_URL:-nats://127.0.0.1:4222}
want=1225 # the failures among the log's 2,000 lines

# The pipeline files name the default server; another is written into copies beside them,
# so that their relative paths still hold.
run_dir=$(mktemp -d .run.XXXXXX)
pid=
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$run_dir"' EXIT
for file in feed.toml pipeline.toml; do
    sed "s|nats://127.0.0.1:4222|$url|; s|\"\\.\\./|\"../../|; s|\"out/|\"../out/|" "$file" >"$run_dir/$file"
done
mkdir -p out
rm -f out/failures.jsonl # the count below must not read an earlier run's

"$weir" run "$run_dir/feed.toml" 2>/dev/null
echo "published 2000 lines on logs"

"$weir" run "$run_dir/pipeline.toml" 2>"$run_dir/stderr" &
pid=$!
for _ in $(seq 600); do
    [ -f out/failures.jsonl ] && [ "$(wc -l <out/failures.jsonl)" -ge "$want" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$run_dir/stderr" >&2; exit 1; }
    sleep 0.1
done
kill -TERM "$pid"
wait "$pid" || { cat "$run_dir/stderr" >&2; exit 1; }
pid=
echo "out/failures.jsonl: $(wc -l <out/failures.jsonl) lines"
grep -o '[0-9]* out, [0-9]* dead-lettered' "$run_dir/stderr" | sed 's/^/pipeline: /'
