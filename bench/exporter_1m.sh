#!/usr/bin/env bash
# bench/exporter_1m.sh — `ctdoctor exporter` following a table of 1,000,000
# real entries, in one run (numbers go to docs/BENCHMARKS.md, "exporter").
#
# As root; holds the kernel-test lock exclusively while the global
# nf_conntrack_max is raised to 1.1M (restored on EXIT, with the namespace
# and every process this script started removed).
#  1. fill a fresh netns with N entries (bench/ct-fill-batch.py + two
#     `conntrack -R`); baselines: `conntrack -L > /dev/null` and the raw
#     ctnetlink dump (ctnetlink's dump_count example, no decoding);
#  2. start the exporter on 127.0.0.1 (--netns NS): first resync wall time
#     and CPU, RSS after it (1M entries followed by events);
#  3. idle CPU over SECS, then CPU while RATE connections/s run in the
#     namespace for SECS (the event stream), events received;
#  4. 10,000 scrapes, 1,000 of them malformed or slow (examples/scrape_load):
#     p50/p99 of the good ones, RSS before/after, the exporter still up.
# Usage: bench/exporter_1m.sh [N] [RATE] [SECS]  (default 1000000 2000 20).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
RATE=${2:-2000}
SECS=${3:-20}
NS=ctdbench-exp-$$
OUT=${OUT:-$(mktemp -d /tmp/exporter_1m.XXXXXX)}
MAXFILE=/proc/sys/net/netfilter/nf_conntrack_max
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for t in conntrack python3 curl; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done

exec 9>/tmp/ctdoctor-kernel-tests.lock
flock -x 9
OLD_MAX=$(cat $MAXFILE)
EXP_PID=
cleanup() {
  [ -z "$EXP_PID" ] || kill "$EXP_PID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  echo "$OLD_MAX" > $MAXFILE
  echo "restored nf_conntrack_max=$(cat $MAXFILE)" >&2
}
trap cleanup EXIT
NEW_MAX=$((N + N / 10)); [ "$NEW_MAX" -gt "$OLD_MAX" ] || NEW_MAX=$OLD_MAX
echo "$NEW_MAX" > $MAXFILE

cargo build --release -q -p ctdoctor --example scrape_load
cargo build --release -q -p ctnetlink --example dump_count
BIN=$PWD/target/release/ctdoctor
LOAD=$PWD/target/release/examples/scrape_load
RAW=$PWD/target/release/examples/dump_count

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, ticks
TCK=$(getconf CLK_TCK)
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
calc() { awk "BEGIN {printf \"%.3f\", $1}"; }
metric() { curl -s "http://$ADDR/metrics" | awk -v m="$1" 'index($0, m) == 1 {print $NF; exit}'; }

python3 bench/ct-fill-batch.py "$N" "$OUT/batch.txt" 42
split -n l/2 "$OUT/batch.txt" "$OUT/batch."
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" nft -f - <<'NFT'
table inet ctdbench {
  chain in { type filter hook input priority 0; ct state new,established accept; }
  chain out { type filter hook output priority 0; ct state new,established accept; }
}
NFT
ip netns exec "$NS" conntrack -R "$OUT/batch.aa" 2>/dev/null &
ip netns exec "$NS" conntrack -R "$OUT/batch.ab" 2>/dev/null &
wait
COUNT=$(ip netns exec "$NS" cat /proc/sys/net/netfilter/nf_conntrack_count)
{
  echo "machine: $(nproc) CPU $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r)"
  echo "entries in $NS: $COUNT"
  echo "== baselines (same table) =="
  s=$(date +%s.%N); ip netns exec "$NS" conntrack -L > /dev/null 2>&1; e=$(date +%s.%N)
  echo "conntrack -L > /dev/null: $(calc "$e - $s") s"
  s=$(date +%s.%N); "$RAW" --netns "$NS" raw > /dev/null; e=$(date +%s.%N)
  echo "raw ctnetlink dump (no decoding): $(calc "$e - $s") s"
} | tee "$OUT/info.txt"

echo "== exporter ==" | tee -a "$OUT/info.txt"
"$BIN" exporter --listen 127.0.0.1:0 --netns "$NS" --interval 10s 2> "$OUT/exporter.err" &
EXP_PID=$!
for _ in $(seq 100); do grep -q listening "$OUT/exporter.err" 2>/dev/null && break; sleep 0.1; done
ADDR=$(grep -o '127.0.0.1:[0-9]*' "$OUT/exporter.err" | head -1)
c0=$(cpu $EXP_PID); t0=$(date +%s.%N)
for _ in $(seq 600); do
  r=$(metric 'ctdoctor_conntrack_table_resyncs_total{' || true)
  [ "${r:-0}" = 1 ] && break; sleep 0.1
done
t1=$(date +%s.%N); c1=$(cpu $EXP_PID)
{
  echo "first resync (dump + 1M inserts): $(metric ctdoctor_conntrack_table_resync_duration_seconds) s wall;" \
       "exporter CPU from start to done: $(calc "($c1 - $c0) / $TCK") s (wall $(calc "$t1 - $t0") s)"
  echo "followed: $(curl -s "http://$ADDR/metrics" | awk '/^ctdoctor_conntrack_table_entries\{/ {s += $NF} END {print s}') entries;" \
       "map $(metric ctdoctor_conntrack_table_tracker_bytes) bytes; RSS $(rss $EXP_PID) KB, peak $(hwm $EXP_PID) KB"
} | tee -a "$OUT/info.txt"

sleep 2
c0=$(cpu $EXP_PID); sleep "$SECS"; c1=$(cpu $EXP_PID)
echo "idle ${SECS}s: exporter CPU $(calc "($c1 - $c0) / $TCK") s" | tee -a "$OUT/info.txt"
e0=$(curl -s "http://$ADDR/metrics" | awk '/^ctdoctor_conntrack_events_total\{/ {s += $NF} END {print s}')
c0=$(cpu $EXP_PID)
ip netns exec "$NS" "$LOAD" conn 18080 "$RATE" "$SECS" | tee -a "$OUT/info.txt"
sleep 1
c1=$(cpu $EXP_PID)
e1=$(curl -s "http://$ADDR/metrics" | awk '/^ctdoctor_conntrack_events_total\{/ {s += $NF} END {print s}')
{
  echo "events during the load: $((e1 - e0)); lost: $(metric ctdoctor_conntrack_events_lost_total)"
  echo "exporter CPU during ${SECS}s at $RATE conn/s: $(calc "($c1 - $c0) / $TCK") s" \
       "= $(calc "100 * ($c1 - $c0) / $TCK / $SECS") % of one core"
  echo "RSS after the load: $(rss $EXP_PID) KB, peak $(hwm $EXP_PID) KB"
} | tee -a "$OUT/info.txt"

echo "== 10,000 scrapes, 1,000 bad ==" | tee -a "$OUT/info.txt"
r0=$(rss $EXP_PID)
"$LOAD" "$ADDR" 10000 1000 | tee -a "$OUT/info.txt"
r1=$(rss $EXP_PID)
"$LOAD" "$ADDR" 10000 1000 | tee -a "$OUT/info.txt"
r2=$(rss $EXP_PID)
{
  echo "RSS before / after 10k / after 20k scrapes: $r0 / $r1 / $r2 KB (peak $(hwm $EXP_PID) KB)"
  echo "http: $(curl -s "http://$ADDR/metrics" | grep -E '^ctdoctor_exporter_http_(requests|rejected)' | tr '\n' ' ')"
  kill -0 "$EXP_PID" && echo "exporter still running"
} | tee -a "$OUT/info.txt"
kill -TERM "$EXP_PID"; wait "$EXP_PID"; echo "exit status after SIGTERM: $?" | tee -a "$OUT/info.txt"
EXP_PID=
echo "results in $OUT" >&2
