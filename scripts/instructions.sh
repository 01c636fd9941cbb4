#!/usr/bin/env bash
# The server's instructions per store script call (EVALSHA), counted by valgrind's callgrind:
# unlike CPU time, an instruction count does not move with this machine's day-to-day speed
# (±40%), so two builds can be compared in runs minutes or days apart.
#
# Usage: scripts/instructions.sh "<progress line of the part to count>" [loadtest bench args…]
#   e.g. scripts/instructions.sh "low contention, redis" --seconds 5 --only hold --rate-limits
#
# It runs `loadtest bench` (release build, fresh database `boxoffice_bench`) with the Redis-store
# server under callgrind, instrumentation off; once the named part's store calls flow, it counts
# 3 s of the server's instructions and the EVALSHA calls Redis served meanwhile (every hold and
# release is one). Under callgrind the server runs ~50x slower, so the bench's own figures of that
# server mean nothing; only the ratio printed here does. The counts include everything the
# server did in the window (HTTP, GraphQL, the store client, background tasks), and none of
# Redis's own work. SERVER_BIN picks another server build (default: the release build).
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
# Wait for the part's store calls to flow (its set-up comes first).
a=$(evalsha); sleep 0.5; b=$(evalsha)
while [ "${a:-0}" = "${b:-0}" ]; do a=$b; sleep 0.5; b=$(evalsha); done
sleep 1
pid=$(pgrep -f "callgrind.*$work/cg" | head -1)
c0=$(evalsha)
callgrind_control -i on "$pid" >/dev/null 2>&1
sleep 3
callgrind_control -i off "$pid" >/dev/null 2>&1
c1=$(evalsha)
callgrind_control -d "$pid" >/dev/null 2>&1
wait $bench || true
ir=$(grep -h '^totals:' "$work"/cg.*.1 | awk '{s += $2} END {print s + 0}')
n=$((c1 - c0))
[ "$n" -gt 0 ] || { echo "instructions: no store calls in the window" >&2; exit 1; }
echo "$(date -u '+%F %T') UTC: \"$pattern\" ($*): $n store calls, $ir server instructions, $((ir / n)) per call"
