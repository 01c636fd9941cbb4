#!/usr/bin/env bash
# Release build, then `loadtest bench` against this machine's PostgreSQL and Redis (a fresh
# database `boxoffice_bench` each run). Extra arguments go to `loadtest bench`
# (e.g. `scripts/bench.sh --seconds 10 --only hold`). Figures: docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# One bench at a time on a machine: a second one would drop the database under the first and
# share its cores, so both would measure each other (on 2026-12-03 a run started while the last
# seconds of another still ran: its `pgbench -N` reference came out a third low). Wait for the
# other to finish.
exec 9>"${TMPDIR:-/tmp}/boxoffice-bench.lock"
if ! flock -n 9; then
  echo "bench: another bench is running on this machine; waiting for it to finish" >&2
  flock 9
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/boxoffice-target}"
PG_ADMIN="${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="${BENCH_DATABASE:-boxoffice_bench}"
psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
cargo build --release --locked -p boxoffice -p loadtest --bins
ulimit -n 65536 2>/dev/null || ulimit -n 20000 2>/dev/null || true
export DATABASE_URL="${PG_ADMIN%/*}/$DB"
export REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
exec "$CARGO_TARGET_DIR/release/loadtest" bench "$@"
