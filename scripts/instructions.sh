#!/usr/bin/env bash
# The server's instructions per store script call (EVALSHA) and per GraphQL request, counted by
# valgrind's callgrind:
# unlike CPU time, an instruction count does not move with this machine's day-to-day speed
# (±40%), so two builds can be compared in runs minutes or days apart.
#
# Usage: scripts/instructions.sh "<progress line of the part to count>" [loadtest bench args…]
#   e.g. scripts/instructions.sh "low contention, redis" --seconds 5 --only hold --rate-limits
#
# It runs `loadtest bench` (release build, fresh database `boxoffice_bench`) with the Redis-store
# server under callgrind, instrumentation off; once the named part's store calls flow, it counts
# 3 s of the server's instructions, the EVALSHA calls Redis served meanwhile (every hold and
# release is one) and the requests the server answered on /graphql (its own /metrics). A part
# without store calls (the trivial query: "ceiling") is counted per request only. Under callgrind the server runs ~50x slower, so the bench's own figures of that
# server mean nothing; only the ratio printed here does. The counts include everything the
# server did in the window (HTTP, GraphQL, the store client, background tasks), and none of
# Redis's own work. SERVER_BIN picks another server build (default: the release build);
# KEEP_PROFILE=<file> keeps the callgrind profile (for callgrind_annotate).
set -euo pipefail
cd "$(dirname "$0")/.."
pattern="$1"
shift
command -v valgrind >/dev/null || { echo "instructions: needs valgrind" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/boxoffice-target}"
exec 9>"${TMPDIR:-/tmp}/boxoffice-bench.lock"
flock 9
cargo build --release --locked -p boxoffice -p loadtest --bins
PG_ADMIN="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="${BENCH_DATABASE:-boxoffice_bench}"
psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
export DATABASE_URL="${PG_ADMIN%/*}/$DB"
export REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The bench starts its servers through this wrapper; only the Redis-store one runs under callgrind.
cat >"$work/server" <<WRAP
#!/usr/bin/env bash
if [ "\$HOLD_STORE" = redis ]; then
  exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$work/cg.%p "${SERVER_BIN:-$CARGO_TARGET_DIR/release/boxoffice}" "\$@"
fi
exec "${SERVER_BIN:-$CARGO_TARGET_DIR/release/boxoffice}" "\$@"
WRAP
chmod +x "$work/server"
evalsha() {
  redis-cli -u "$REDIS_URL" INFO commandstats | tr -d '\r' |
    sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p'
}
BOXOFFICE_BIN="$work/server" "$CARGO_TARGET_DIR/release/loadtest" bench "$@" >"$work/out" 2>"$work/err" &
bench=$!
until grep -qF "$pattern" "$work/err" 2>/dev/null; do
  kill -0 $bench 2>/dev/null || { echo "instructions: the bench ended before \"$pattern\"" >&2; cat "$work/err" >&2; exit 1; }
  sleep 0.1
done
pid=$(pgrep -f "callgrind.*$work/cg" | head -1)
addr=$(tr '\0' '\n' <"/proc/$pid/environ" | sed -n 's/^LISTEN_ADDR=//p')
requests() {
  curl -s "http://$addr/metrics" |
    awk '/^http_requests_total\{/ && /route="\/graphql"/ {s += $NF} END {printf "%d", s}'
}
# Wait for the part's requests to flow (its set-up comes first).
a=$(requests); sleep 1; b=$(requests)
while [ "$((b - a))" -lt 20 ]; do a=$b; sleep 0.5; b=$(requests); done
sleep 1
c0=$(evalsha)
r0=$(requests)
callgrind_control -i on "$pid" >/dev/null 2>&1
sleep 3
callgrind_control -i off "$pid" >/dev/null 2>&1
c1=$(evalsha)
r1=$(requests)
callgrind_control -d "$pid" >/dev/null 2>&1
wait $bench || true
if [ -n "${KEEP_PROFILE:-}" ]; then cp "$(ls "$work"/cg.*.1 | head -1)" "$KEEP_PROFILE"; fi
ir=$(grep -h '^totals:' "$work"/cg.*.1 | awk '{s += $2} END {print s + 0}')
n=$((c1 - c0))
r=$((r1 - r0))
[ "$r" -gt 0 ] || { echo "instructions: no requests in the window" >&2; exit 1; }
per_call=""
[ "$n" -gt 0 ] && per_call=", $((ir / n)) per store call"
echo "$(date -u '+%F %T') UTC: \"$pattern\" ($*): $n store calls, $r requests, $ir server instructions, $((ir / r)) per request$per_call"
