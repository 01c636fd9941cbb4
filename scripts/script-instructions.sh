#!/usr/bin/env bash
# Redis's instructions per call of the hold store's `hold` script (one fresh seat per call, as in
# the bench's low-contention part), counted by valgrind's callgrind on a private redis-server:
# unlike CPU time, the count does not move with this machine's day-to-day speed, so two versions
# of the scripts can be compared in runs minutes or days apart.
#
# Usage: scripts/script-instructions.sh [scripts dir, default src/holds/scripts] [calls, default 20000]
#          [holds per call, default 1: the batch a call carries, holds/redis/batch.rs]
#   e.g. git show <rev>:src/holds/scripts/common.lua > /tmp/old/common.lua (and hold.lua), then
#        scripts/script-instructions.sh /tmp/old
#
# The script is composed as holds/redis/mod.rs composes it (single-node PUBLISH, the shared
# prelude, the body) and called with EVALSHA by redis-benchmark (20 connections), with one
# subscriber on the show's channel as a server would be; the count covers everything Redis does
# meanwhile (reading the requests, the script, publishing, replying), not the kernel's work.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-src/holds/scripts}"
n="${2:-20000}"
batch="${3:-1}"
for tool in valgrind redis-server redis-benchmark redis-cli callgrind_control; do
  command -v "$tool" >/dev/null || { echo "script-instructions: needs $tool" >&2; exit 1; }
done
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.%p" \
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
vg=$!
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; kill $vg 2>/dev/null || true; rm -rf "$work"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.2; done
{ echo "local PUB = 'PUBLISH'"; cat "$dir/common.lua"; echo; cat "$dir/hold.lua"; } >"$work/hold.lua"
sha=$(redis-cli -p "$port" SCRIPT LOAD "$(cat "$work/hold.lua")")
keys=()
for k in seats holds holdrec uholds booked meta plan occ qwait qadm sweep; do keys+=("{b}:$k"); done
redis-cli -p "$port" HSET "{b}:meta" loaded 1 q_cfg 1 q_on 0 ver 0 exp 99999999999999 >/dev/null
redis-cli -p "$port" SUBSCRIBE ch >/dev/null &
sub=$!
sleep 0.3
call=(EVALSHA "$sha" 11 "${keys[@]}" ch)
for _ in $(seq "$batch"); do call+=("h:__rand_int__" "u__rand_int__" 600000 100 1 "__rand_int__"); done
redis-benchmark -p "$port" -n 2000 -c 20 -r 100000000 "${call[@]}" >/dev/null
callgrind_control -i on $vg >/dev/null
redis-benchmark -p "$port" -n "$n" -c 20 -r 100000000 "${call[@]}" >/dev/null
callgrind_control -i off $vg >/dev/null
callgrind_control -d $vg >/dev/null
kill $sub 2>/dev/null || true
answer=$(redis-cli --raw -p "$port" EVALSHA "$sha" 11 "${keys[@]}" ch h:check u1 600000 100 1 42 | head -1)
[ "$answer" = OK ] || { echo "script-instructions: a hold answered $answer" >&2; exit 1; }
ir=$(grep -h '^totals:' "$work"/cg.*.1 | awk '{s += $2} END {print s + 0}')
echo "$(date -u '+%F %T') UTC: $dir: $n hold calls of $batch hold(s), $((ir / n)) Redis instructions per call, $((ir / n / batch)) per hold"
