#!/usr/bin/env bash
# CPU used by each kind of process over a window: `scripts/cpu-split.sh 4` while a bench part
# runs prints e.g. "postgres 1.03 cores". Reads /proc (utime + stime, clock ticks of 1/100 s).
set -euo pipefail
secs="${1:-4}"
snap() {
  for p in /proc/[0-9]*; do
    c=$(cat "$p/comm" 2>/dev/null) || continue
    s=$(awk '{print $14 + $15}' "$p/stat" 2>/dev/null) || continue
    echo "$c $s"
  done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
a="$(mktemp)"; b="$(mktemp)"
trap 'rm -f "$a" "$b"' EXIT
snap > "$a"; sleep "$secs"; snap > "$b"
join "$a" "$b" | awk -v t="$secs" '{d = ($3 - $2) / 100 / t; if (d > 0.02) printf "%-20s %.2f cores\n", $1, d}' | sort -k2 -nr
