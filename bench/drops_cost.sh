#!/usr/bin/env bash
# bench/drops_cost.sh — what counting drops costs (issue 24; numbers go to
# docs/BENCHMARKS.md, "drops"). As root; holds the kernel-test lock
# exclusively; a fresh netns (removed on EXIT with the temp files).
# For each RATE (datagrams/s to a closed UDP port on the netns's loopback,
# bench/udp_drop.c, each a NO_SOCKET drop) and for 0 (nothing drops):
#   - baseline: SECS s of the load alone;
#   - census: the same with `ctdoctor exporter --drop-reasons --table off`
#     running (the long-lived form; `ctdoctor drops` runs the same reader);
# and reports the machine's busy CPU (/proc/stat: all but idle and iowait,
# % of one core) in both, the exporter's own CPU (utime+stime), the rate
# reached, and the drops the exporter counted against those sent.
# Usage: bench/drops_cost.sh [SECS]  (default 10); RATES ("0 10000 100000").
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
RATES=${RATES:-"0 10000 100000"}
BIN=${BIN:-target/release/ctdoctor}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
tmp=$(mktemp -d)
ns=ctd-dropbench-$$
cleanup() {
  [ -n "${exp:-}" ] && kill "$exp" 2>/dev/null && wait "$exp" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
exec 9>/tmp/ctdoctor-kernel-tests.lock
flock -x -w 1800 9 || { echo "kernel-test lock busy for 30 min" >&2; exit 1; }
cc -O2 -o "$tmp/udp_drop" bench/udp_drop.c
ip netns add "$ns"
ip -n "$ns" link set lo up
hz=$(getconf CLK_TCK)
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
pcpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
load() { # RATE -> "sent rate" (or idle for SECS)
  if [ "$1" = 0 ]; then sleep "$SECS"; echo "0 0"; else ip netns exec "$ns" "$tmp/udp_drop" "$1" "$SECS" 9; fi
}
printf '%-8s %-10s %-14s %-14s %-12s %-10s %s\n' rate reached busy_base busy_census exporter_cpu counted sent
for r in $RATES; do
  b0=$(busy); base=$(load "$r"); b1=$(busy)
  base_busy=$(awk -v d=$((b1 - b0)) -v s="$SECS" -v hz="$hz" 'BEGIN{printf "%.1f%%", 100*d/hz/s}')
  "$BIN" exporter --listen 127.0.0.1:19651 --table off --drop-reasons 2>"$tmp/err" &
  exp=$!
  for _ in $(seq 50); do grep -q listening "$tmp/err" && break; sleep 0.1; done
  before=$(curl -s 127.0.0.1:19651/metrics | awk '/^ctdoctor_kernel_drops_total\{reason="NO_SOCKET"\}/{print $2}')
  c0=$(pcpu "$exp"); b0=$(busy); out=$(load "$r"); b1=$(busy); c1=$(pcpu "$exp")
  sleep 0.3
  after=$(curl -s 127.0.0.1:19651/metrics | awk '/^ctdoctor_kernel_drops_total\{reason="NO_SOCKET"\}/{print $2}')
  lost=$(curl -s 127.0.0.1:19651/metrics | awk '/^ctdoctor_kernel_drop_events_lost_total /{print $2}')
  kill "$exp"; wait "$exp" 2>/dev/null || true; exp=
  census_busy=$(awk -v d=$((b1 - b0)) -v s="$SECS" -v hz="$hz" 'BEGIN{printf "%.1f%%", 100*d/hz/s}')
  ecpu=$(awk -v d=$((c1 - c0)) -v s="$SECS" -v hz="$hz" 'BEGIN{printf "%.2f%%", 100*d/hz/s}')
  counted=$(( ${after:-0} - ${before:-0} ))
  printf '%-8s %-10s %-14s %-14s %-12s %-10s %s (lost %s; baseline reached %s)\n' \
    "$r" "$(echo "$out" | cut -d' ' -f2)" "$base_busy" "$census_busy" "$ecpu" "$counted" \
    "$(echo "$out" | cut -d' ' -f1)" "${lost:-?}" "$(echo "$base" | cut -d' ' -f2)"
done
