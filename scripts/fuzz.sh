#!/usr/bin/env bash
# Fuzz the live GraphQL endpoint with schemathesis (PyPI) for a fixed time budget: the server
# (debug build, SQLite, demo catalogue) must never answer 5xx, never answer an error without a
# public code or with INTERNAL_SERVER_ERROR (tests/fuzz/hooks.py), never log an error, and must
# still be running at the end. FUZZ_SECONDS (default 60) sets the budget.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/boxoffice-target}"
venv="${BOXOFFICE_FUZZ_VENV:-$HOME/.cache/boxoffice-fuzz-venv}"
if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r tests/fuzz/requirements.txt
fi
cargo build --locked --quiet

tmp="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
DATABASE_URL="sqlite://$tmp/fuzz.db?mode=rwc" DEMO_DATA=true LISTEN_ADDR="127.0.0.1:$port" \
  ADMIN_EMAIL=admin@fuzz.test ADMIN_PASSWORD=fuzz-admin-pass \
  RATE_LIMIT_IP_PER_MINUTE=0 RATE_LIMIT_USER_PER_MINUTE=0 READ_BUDGET_PER_SECOND=0 LOG_FORMAT=json RUST_LOG=warn \
  "$CARGO_TARGET_DIR/debug/boxoffice" >"$tmp/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
token="$(python3 - "$port" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/graphql",
    data=json.dumps({"query": 'mutation { logIn(email: "admin@fuzz.test", password: "fuzz-admin-pass") { token } }'}).encode(),
    headers={"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["data"]["logIn"]["token"])
PY
)"
(cd tests/fuzz && SCHEMATHESIS_HOOKS=hooks PYTHONPATH=. "$venv/bin/schemathesis" run \
  "http://127.0.0.1:$port/graphql" -H "Authorization: Bearer $token" \
  --checks boxoffice_contract --max-time "${FUZZ_SECONDS:-60}" --suppress-health-check all)
if ! kill -0 "$server" 2>/dev/null; then
  echo "fuzz: the server died" >&2; cat "$tmp/server.log" >&2; exit 1
fi
if grep -qE '"level":"ERROR"|panicked' "$tmp/server.log"; then
  echo "fuzz: the server logged errors or panicked:" >&2
  grep -E '"level":"ERROR"|panicked' "$tmp/server.log" | head -20 >&2; exit 1
fi
echo "fuzz: no 5xx, no uncoded or internal error, no logged error, server alive"
