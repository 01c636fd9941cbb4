#!/usr/bin/env bash
# Browser test of the booking page: builds the server, starts it on a free port with the demo
# catalogue, and drives two users in headless Chromium (Debian's) with playwright-core (npm).
# Screenshots go to artifacts/browser/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/boxoffice-target}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need() { # command, package
  command -v "$1" >/dev/null && return 0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"
}
need chromium chromium
need node nodejs
need npm npm

cargo build --locked --quiet
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

tmp="$(mktemp -d)"
port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
DATABASE_URL="sqlite://$tmp/browser.db?mode=rwc" DEMO_DATA=true PAYMENT_FAILURE_RATE=0 \
  ADMIN_EMAIL=admin@browser.test ADMIN_PASSWORD=browser-admin-password \
  LISTEN_ADDR="127.0.0.1:$port" RUST_LOG=warn "$CARGO_TARGET_DIR/debug/boxoffice" >"$tmp/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

mkdir -p artifacts/browser
ADMIN_EMAIL=admin@browser.test ADMIN_PASSWORD=browser-admin-password \
  BASE_URL="http://127.0.0.1:$port" ARTIFACTS="$PWD/artifacts/browser" CHROMIUM="$(command -v chromium)" \
  timeout 180 node tests/browser/booking.test.mjs || { echo "--- server log"; cat "$tmp/server.log"; exit 1; }
if grep -E 'panicked| ERROR ' "$tmp/server.log"; then
  echo "browser test: the server logged errors or panicked (above)" >&2; exit 1
fi
