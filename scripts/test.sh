#!/usr/bin/env bash
# The whole test suite, against both backends: SQLite + in-process holds, and PostgreSQL + Redis.
# Installs (apt-get) and starts PostgreSQL and Redis when they are missing, then runs format and
# lint checks and every test. Set BOXOFFICE_TEST_EMBEDDED_ONLY=1 to skip the PostgreSQL/Redis half.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/boxoffice-target}"
export TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

apt_install() {
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

postgres_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_up() { [ "$( (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3) 2>/dev/null)" = "+PONG" ]; }

wait_for() { # name, check function
  for _ in $(seq 1 60); do "$2" && return 0; sleep 0.5; done
  echo "$1 did not come up" >&2; return 1
}

ensure_postgres() {
  postgres_up && return 0
  if ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  # The suite connects as `postgres` without a password, over TCP: trust on loopback only.
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! as_root grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
    as_root sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL postgres_up
}

ensure_redis() {
  redis_up && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_up
}

if [ "${BOXOFFICE_TEST_EMBEDDED_ONLY:-0}" = 1 ]; then
  log "BOXOFFICE_TEST_EMBEDDED_ONLY=1: PostgreSQL/Redis tests are skipped"
else
  ensure_postgres
  ensure_redis
fi

log "format"
cargo fmt --all -- --check

log "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "build (the server and the load tools: the suite drives both binaries)"
cargo build --workspace --locked --bins

log "tests (SQLite + in-process, PostgreSQL + Redis)"
# Tests that skip themselves (the PostgreSQL/Redis half, on opt-out) say so in this file.
export BOXOFFICE_TEST_SKIP_LOG="$(mktemp)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi
skipped="$(sort -u "$BOXOFFICE_TEST_SKIP_LOG" | wc -l)"
echo "tests skipped: $skipped"
sort -u "$BOXOFFICE_TEST_SKIP_LOG" | sed 's/^/  skipped: /'
if [ "$skipped" -gt 0 ] && [ "${BOXOFFICE_TEST_EMBEDDED_ONLY:-0}" != 1 ]; then
  echo "tests were skipped without BOXOFFICE_TEST_EMBEDDED_ONLY=1" >&2
  exit 1
fi

log "browser test (headless Chromium, two users)"
bash scripts/browser-test.sh

log "fuzz the live GraphQL endpoint (schemathesis, ${FUZZ_SECONDS:-60} s)"
bash scripts/fuzz.sh

log "all green"
