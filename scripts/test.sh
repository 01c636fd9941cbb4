#!/usr/bin/env bash
# The whole test suite, against both backends: SQLite + in-process holds, and PostgreSQL + Redis;
# then the Redis-backed tests of holds, live maps, instances, crashes and limits again on a local
# Redis Cluster (3 masters + 3 replicas on loopback ports, started here and torn down after).
# Installs (apt-get) and starts PostgreSQL and Redis when they are missing, then runs format and
# lint checks and every test. Set BOXOFFICE_TEST_EMBEDDED_ONLY=1 to skip the PostgreSQL/Redis half.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/boxoffice-target}"
export TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# The local cluster's ports (loopback only).
CLUSTER_PORTS="${TEST_CLUSTER_PORTS:-30101 30102 30103 30104 30105 30106}"
CLUSTER_DIR=""

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
  # shellcheck disable=SC2086 # a function, or a command with its arguments
  for _ in $(seq 1 60); do $2 >/dev/null 2>&1 && return 0; sleep 0.5; done
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

node_ok() { [ "$(redis-cli -p "$1" cluster info 2>/dev/null | tr -d '\r' | grep -c '^cluster_state:ok$')" = 1 ]; }
node_synced() { redis-cli -p "$1" info replication 2>/dev/null | tr -d '\r' | grep -Eq '^(role:master|master_link_status:up)$'; }
cluster_formed() { for p in $CLUSTER_PORTS; do node_ok "$p" && node_synced "$p" || return 1; done; }

stop_cluster() {
  for p in $CLUSTER_PORTS; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  if [ -n "$CLUSTER_DIR" ]; then rm -rf "$CLUSTER_DIR"; fi
}

start_node() { # port
  # Replicas sync at once (the default waits 5 s), so that a failover right after start works.
  # The cluster bus listens 10,000 below the port, not 10,000 above (Redis's default): 40101–40106
  # lie in Linux's range of ephemeral ports (32768–60999), where any outgoing connection of the
  # machine may already hold one ("bind: Address already in use" for 40106, 2026-12-04).
  redis-server --daemonize yes --bind 127.0.0.1 --port "$1" --cluster-port "$(($1 - 10000))" \
    --cluster-enabled yes \
    --cluster-config-file "nodes-$1.conf" --cluster-node-timeout 2000 --repl-diskless-sync-delay 0 \
    --maxmemory-policy noeviction --save "" --appendonly no --dir "$CLUSTER_DIR" \
    --logfile "$CLUSTER_DIR/$1.log"
}

start_cluster() {
  command -v redis-cli >/dev/null || apt_install redis-tools
  stop_cluster # a cluster left by an interrupted run
  CLUSTER_DIR="$(mktemp -d)"
  trap stop_cluster EXIT
  log "starting a Redis Cluster on ports $CLUSTER_PORTS"
  local nodes=""
  for p in $CLUSTER_PORTS; do
    start_node "$p"
    nodes="$nodes 127.0.0.1:$p"
  done
  for p in $CLUSTER_PORTS; do
    if ! wait_for "cluster node $p" "redis-cli -p $p ping"; then
      tail -n 20 "$CLUSTER_DIR/$p.log" >&2 || true # say why
      return 1
    fi
  done
  # shellcheck disable=SC2086
  redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes >"$CLUSTER_DIR/create.log"
  wait_for "the Redis Cluster" cluster_formed
  TEST_REDIS_CLUSTER_URL="redis+cluster://$(echo $nodes | sed 's/ /,/g')"
  export TEST_REDIS_CLUSTER_URL
}

if [ "${BOXOFFICE_TEST_EMBEDDED_ONLY:-0}" = 1 ]; then
  log "BOXOFFICE_TEST_EMBEDDED_ONLY=1: PostgreSQL/Redis tests are skipped"
else
  ensure_postgres
  ensure_redis
  start_cluster
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

if [ "${BOXOFFICE_TEST_EMBEDDED_ONLY:-0}" != 1 ]; then
  log "the Redis-backed tests again, on the Redis Cluster ($TEST_REDIS_CLUSTER_URL)"
  # Holds and their races, expiry announcements, live maps, two instances (in-process and as
  # processes), crash convergence, checkout, rate limits, the waiting room, best available, the
  # audit's checks, simulated rushes with their audit (one with an instance SIGKILLed) and key
  # lifetimes. Tests that run a Redis of their own (flush, kill, SIGSTOP) are not repeated.
  cluster_tests='(test(/^(holds|live|renders|crash|limits|checkout|queue|best|compact|sockets|audit|simulate)::/) | test(/^cluster::keys_of/))'
  cluster_tests="$cluster_tests & not test(/sqlite_memory\$/) & not test(/redis_flush|lost_hold_never/)"
  if cargo nextest --version >/dev/null 2>&1; then
    TEST_REDIS_URL="$TEST_REDIS_CLUSTER_URL" cargo nextest run --workspace --locked --no-fail-fast -E "$cluster_tests"
  else
    TEST_REDIS_URL="$TEST_REDIS_CLUSTER_URL" cargo test --workspace --locked --no-fail-fast --test it -- \
      postgres_redis instances_ two_server budgets_are_shared keys_of_past audit:: simulate::
  fi
fi

log "browser test (headless Chromium, two users)"
bash scripts/browser-test.sh

log "fuzz the live GraphQL endpoint (schemathesis, ${FUZZ_SECONDS:-60} s)"
bash scripts/fuzz.sh

log "all green"
