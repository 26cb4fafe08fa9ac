#!/usr/bin/env bash
# bench/exporter_vs_node.sh — `ctdoctor exporter` in each `--table` mode
# (events, dump, off) beside Debian's prometheus-node-exporter (conntrack
# collector only) watching the same namespace of N real entries, in one run
# (issue 22; numbers go to docs/BENCHMARKS.md, "exporter").
#
# As root; holds the kernel-test lock exclusively for the whole run (the
# global nf_conntrack_max is raised to N + 200k and restored on EXIT, with
# the namespace, both exporters, the load generator and the temp files).
#  1. a fresh netns with an nft `ct state` rule, filled with N entries
#     (bench/ct-fill-batch.py + two `conntrack -R`); node_exporter started
#     in it (`ip netns exec`, --collector.disable-defaults
#     --collector.conntrack, 127.0.0.1:9100 of the namespace), for the run;
#  2. for each mode, one ctdoctor at a time (`--netns NS --table MODE`,
#     otherwise defaults; on 127.0.0.1 of the host namespace):
#     - CPU and wall time from start to the first completed dump (events,
#       dump) or to listening (off); RSS of both exporters;
#     - SCRAPES sequential scrapes of each exporter, a fresh connection each
#       (examples/scrape_load: p50/p99/max, body size), the exporter CPU they
#       took (per scrape), the gzip body size (curl), RSS after them;
#     - CPU (utime + stime of /proc/PID/stat, % of one core over the window's
#       wall time) of both exporters: idle for SECS, then while bench/conn_load.c
#       opens and closes connections at each of RATES conn/s for SECS in the
#       namespace's loopback (2 client threads up to 4,000/s, else 8; the
#       achieved rate is printed: on a busy 2-core machine the highest may
#       not be reached), then SETTLE s after the last load (the repair resync
#       after lost events falls there; in events mode a scrape a second
#       notes when in_sync is 1 again); nobody else scrapes during these windows
#       (a scrape's cost is measured above); ctdoctor's events received,
#       events lost and resyncs in each window;
#     - before each mode: a wait of up to WINDOW_WAIT s for no QEMU guest
#       (so that a phase stays shorter than the default --table-resync of
#       5 m, the windows themselves do not wait); before and after each
#       window, whether one runs and the load average.
#     The load's entries are deleted (`conntrack -D --dport`) before the next
#     mode, so every mode starts from the same N.
#  3. one table on stdout and in $OUT/table.txt; every raw line in
#     $OUT/info.txt.
# Usage: bench/exporter_vs_node.sh [N] [SECS] [SCRAPES]  (default 200000 20 500)
# Environment: RATES ("1000 4000 16000"), MODES ("events dump off"), SETTLE (60),
# QUIET_WAIT (600: at the start, seconds to wait for no qemu-system before
# taking the lock), WINDOW_WAIT (120), OUT (a new /tmp dir, kept: info.txt,
# table.txt, rows.tsv, the exporters' stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
SECS=${2:-20}
SCRAPES=${3:-500}
RATES=${RATES:-1000 4000 16000}
MODES=${MODES:-events dump off}
SETTLE=${SETTLE:-60}
QUIET_WAIT=${QUIET_WAIT:-600}
WINDOW_WAIT=${WINDOW_WAIT:-120}
NS=ctdbench-vs-$$
NE_PORT=9100
LOAD_PORT=18080
OUT=${OUT:-$(mktemp -d /tmp/exporter_vs_node.XXXXXX)}
mkdir -p "$OUT"
MAXFILE=/proc/sys/net/netfilter/nf_conntrack_max
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for t in conntrack nft python3 curl cc prometheus-node-exporter; do
  command -v "$t" >/dev/null || { echo "missing $t (node_exporter: apt-get install prometheus-node-exporter)" >&2; exit 1; }
done
case "$SECS" in ''|*[!0-9]*) echo "SECS must be a whole number" >&2; exit 2;; esac
[ "$SECS" -le 120 ] || { echo "SECS <= 120" >&2; exit 2; }

qemu() { pgrep -c -f '^[^ ]*qemu-system' 2>/dev/null || true; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# Wait up to $1 s while a QEMU guest runs; print what was seen.
quiet() {
  local end=$((SECONDS + $1)) waited=0
  while [ "$(qemu)" != 0 ] && [ $SECONDS -lt $end ]; do sleep 5; waited=$((waited + 5)); done
  echo "qemu=$(qemu) waited=${waited}s load=$(loadavg | tr ' ' /)"
}

echo "waiting up to ${QUIET_WAIT}s for no qemu-system: $(quiet "$QUIET_WAIT")" >&2
exec 9>/tmp/ctdoctor-kernel-tests.lock
flock -x -w 1800 9 || { echo "kernel-test lock busy for 30 min" >&2; exit 1; }
OLD_MAX=$(cat $MAXFILE)
EXP_PID= NE_PID= LOAD_PID=
cleanup() {
  for p in $LOAD_PID $EXP_PID $NE_PID; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in $LOAD_PID $EXP_PID $NE_PID; do kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -f "$OUT"/batch.* "$OUT/conn_load"
  echo "$OLD_MAX" > $MAXFILE
  echo "restored nf_conntrack_max=$(cat $MAXFILE); results in $OUT" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM
NEW_MAX=$((N + 200000)); [ "$NEW_MAX" -gt "$OLD_MAX" ] || NEW_MAX=$OLD_MAX
echo "$NEW_MAX" > $MAXFILE

cargo build --release -q -p ctdoctor --example scrape_load
cargo build --release -q -p ctdoctor
BIN=$PWD/target/release/ctdoctor
LOAD=$PWD/target/release/examples/scrape_load
cc -O2 -pthread -o "$OUT/conn_load" bench/conn_load.c
CONN=$OUT/conn_load

TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, ticks
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }   # MB (MiB)
calc() { awk "BEGIN {printf \"%.${2:-2}f\", $1}"; }
now() { date +%s.%N; }
cmetrics() { curl -s --max-time 5 "http://$ADDR/metrics"; }
# Sum of a ctdoctor series (every line starting with $1).
csum() { { cmetrics || true; } | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {printf "%d", s}'; }
nemetrics() { ip netns exec "$NS" curl -s --max-time 5 "http://127.0.0.1:$NE_PORT/metrics"; }
gz_size() { curl -s --max-time 5 -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "$1"; }
log() { echo "$*" | tee -a "$OUT/info.txt"; }

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
rm -f "$OUT"/batch.*
count() { ip netns exec "$NS" cat /proc/sys/net/netfilter/nf_conntrack_count; }
log "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
log "machine: $(nproc) CPU $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); $(prometheus-node-exporter --version 2>&1 | head -1)"
log "entries in $NS: $(count); nf_conntrack_max $NEW_MAX (was $OLD_MAX); N=$N SECS=$SECS SCRAPES=$SCRAPES RATES=$RATES"

# node_exporter, in the namespace (its conntrack collector reads that
# namespace's /proc/sys/net/netfilter and /proc/net/stat), for the whole run.
ip netns exec "$NS" prometheus-node-exporter --collector.disable-defaults --collector.conntrack \
  --web.listen-address=127.0.0.1:$NE_PORT 2> "$OUT/node_exporter.err" &
NE_PID=$!
for _ in $(seq 100); do nemetrics 2>/dev/null | grep -q '^node_nf_conntrack_entries ' && break; sleep 0.1; done
nemetrics | grep -q '^node_nf_conntrack_entries ' || { echo "node_exporter did not come up" >&2; exit 1; }
log "node_exporter pid $NE_PID ($(cat /proc/$NE_PID/comm)), CPU to its first answer $(calc "$(cpu $NE_PID) / $TCK") s, RSS $(rss $NE_PID) MB: $(nemetrics | grep -E '^node_nf_conntrack_(entries|entries_limit) ' | tr '\n' ' ')"

# Results, one row per exporter and mode phase (tab-separated).
printf 'exporter\tstart_cpu_s\tstart_wall_s\trss_start_mb\tp50_ms\tp99_ms\tmax_ms\tbody_b\tgzip_b\tcpu_ms_per_scrape\trss_scraped_mb\tidle_pct' > "$OUT/rows.tsv"
for r in $RATES; do printf '\tpct_at_%s' "$r" >> "$OUT/rows.tsv"; done
printf '\tsettle_pct\tlost\trss_end_mb\n' >> "$OUT/rows.tsv"

scrape() {  # $1: which (ctd|ne); prints "p50 p99 max bytes"
  if [ "$1" = ctd ]; then timeout 300 "$LOAD" "$ADDR" "$SCRAPES" 0 > "$OUT/scrape.txt"
  else timeout 300 ip netns exec "$NS" "$LOAD" "127.0.0.1:$NE_PORT" "$SCRAPES" 0 > "$OUT/scrape.txt"; fi
  sed "s/^/$1 /" "$OUT/scrape.txt" >> "$OUT/info.txt"
  head -1 "$OUT/scrape.txt" | sed -E 's/.*p50_ms=([^ ]*) p99_ms=([^ ]*) max_ms=([^ ]*) response_bytes=([^ ]*).*/\1 \2 \3 \4/'
}

for MODE in $MODES; do
  log "== ctdoctor --table $MODE (node_exporter beside it) =="
  ip netns exec "$NS" conntrack -D -p tcp --orig-port-dst $LOAD_PORT >/dev/null 2>&1 || true
  log "entries before start: $(count); waited for no qemu-system (up to ${WINDOW_WAIT}s): $(quiet "$WINDOW_WAIT")"
  t0=$(now)
  "$BIN" exporter --listen 127.0.0.1:0 --netns "$NS" --table "$MODE" 2> "$OUT/exporter-$MODE.err" &
  EXP_PID=$!
  for _ in $(seq 100); do grep -q listening "$OUT/exporter-$MODE.err" 2>/dev/null && break; sleep 0.05; done
  ADDR=$(grep -o '127.0.0.1:[0-9]*' "$OUT/exporter-$MODE.err" | head -1)
  [ -n "$ADDR" ] || { cat "$OUT/exporter-$MODE.err" >&2; exit 1; }
  if [ "$MODE" != off ]; then
    for _ in $(seq 600); do
      [ "$(csum 'ctdoctor_conntrack_table_resyncs_total{' )" -ge 1 ] && break; sleep 0.05
    done
  fi
  t1=$(now); c1=$(cpu $EXP_PID)
  start_cpu=$(calc "$c1 / $TCK"); start_wall=$(calc "$t1 - $t0")
  sleep 2
  rc=$(rss $EXP_PID); rn=$(rss $NE_PID)
  log "start: CPU ${start_cpu} s, wall ${start_wall} s (to the first dump$([ "$MODE" = off ] && echo ', none: to listening'));" \
      "table sum $(csum 'ctdoctor_conntrack_table_entries{') of count $(count); RSS ctdoctor $rc MB, node_exporter $rn MB"

  log "scrapes: qemu=$(qemu) load=$(loadavg | tr ' ' /)"
  a=$(cpu $EXP_PID); read -r cp50 cp99 cmax cbytes < <(scrape ctd); b=$(cpu $EXP_PID)
  cpers=$(calc "1000 * ($b - $a) / $TCK / $SCRAPES" 3)
  a=$(cpu $NE_PID); read -r np50 np99 nmax nbytes < <(scrape ne); b=$(cpu $NE_PID)
  npers=$(calc "1000 * ($b - $a) / $TCK / $SCRAPES" 3)
  cgz=$(gz_size "http://$ADDR/metrics")
  ngz=$(ip netns exec "$NS" curl -s --max-time 5 -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "http://127.0.0.1:$NE_PORT/metrics")
  rc2=$(rss $EXP_PID); rn2=$(rss $NE_PID)
  log "  ctdoctor: p50 $cp50 p99 $cp99 max $cmax ms, $cbytes B (gzip $cgz B), CPU $cpers ms/scrape, RSS $rc2 MB;" \
      "node_exporter: p50 $np50 p99 $np99 max $nmax ms, $nbytes B (gzip $ngz B), CPU $npers ms/scrape, RSS $rn2 MB; load $(loadavg | tr ' ' /)"

  crow="" nrow="" lost_all=0
  for W in idle $RATES settle; do
    [ "$W" = settle ] || log "window $W: qemu=$(qemu) load=$(loadavg | tr ' ' /)"
    r0=$(csum 'ctdoctor_conntrack_table_resyncs_total{')
    e0=$(csum 'ctdoctor_conntrack_events_total{'); l0=$(csum 'ctdoctor_conntrack_events_lost_total{')
    ca=$(cpu $EXP_PID); na=$(cpu $NE_PID); ta=$(now)
    case "$W" in
      idle) sleep "$SECS"; achieved="-" ;;
      settle) achieved="-"; back="-"
         # events: when in_sync is 1 again (one scrape a second, ~0.2 ms of CPU each)
         while [ "$(calc "$(now) - $ta" 0)" -lt "$SETTLE" ]; do
           if [ "$MODE" = events ] && [ "$back" = - ] && [ "$(csum 'ctdoctor_conntrack_table_in_sync{')" = 1 ]; then
             back=$(calc "$(now) - $ta" 0)
           fi
           sleep 1
         done ;;
      *) workers=2; [ "$W" -le 4000 ] || workers=8
         timeout $((SECS + 30)) ip netns exec "$NS" "$CONN" $LOAD_PORT "$W" "$SECS" $workers > "$OUT/load.txt" &
         LOAD_PID=$!; wait $LOAD_PID || true; LOAD_PID=
         achieved=$(sed -E 's/.*rate=([0-9]*).*/\1/' "$OUT/load.txt")
         cat "$OUT/load.txt" >> "$OUT/info.txt"
         sleep 1 ;;
    esac
    cb=$(cpu $EXP_PID); nb=$(cpu $NE_PID); tb=$(now)
    e1=$(csum 'ctdoctor_conntrack_events_total{'); l1=$(csum 'ctdoctor_conntrack_events_lost_total{')
    r1=$(csum 'ctdoctor_conntrack_table_resyncs_total{')
    cpct=$(calc "100 * ($cb - $ca) / $TCK / ($tb - $ta)" 1)
    npct=$(calc "100 * ($nb - $na) / $TCK / ($tb - $ta)" 1)
    lost_all=$((lost_all + l1 - l0))
    cell=$cpct; [ "$achieved" = - ] || cell="$cpct@$achieved"
    crow="$crow\t$cell"; nrow="$nrow\t$npct"
    [ "$W" != settle ] || log "  in_sync 1 again ${back} s after the load (-: not within ${SETTLE} s, or not events)"
    log "  $W: ctdoctor $cpct % ($(calc "($cb - $ca) / $TCK") s in $(calc "$tb - $ta" 1) s), node_exporter $npct %;" \
        "achieved ${achieved}/s; events $((e1 - e0)) ($(calc "($e1 - $e0) / ($tb - $ta)" 0)/s), lost $((l1 - l0)), resyncs $((r1 - r0)); entries $(count); load $(loadavg | tr ' ' /)"
  done
  log "  table sum $(csum 'ctdoctor_conntrack_table_entries{') of count $(count);" \
      "dump_only $(csum 'ctdoctor_conntrack_table_dump_only_entries{'); resync age $(csum 'ctdoctor_conntrack_table_resync_age_seconds{') s"
  log "  resyncs: $(cmetrics | grep '^ctdoctor_conntrack_table_resyncs_total{' | sed -E 's/.*reason="([a-z]*)"} /\1=/' | tr '\n' ' ')in_sync=$(csum 'ctdoctor_conntrack_table_in_sync{')"
  rc3=$(rss $EXP_PID); rn3=$(rss $NE_PID)
  log "  RSS at the end: ctdoctor $rc3 MB, node_exporter $rn3 MB"
  lost=$lost_all; [ "$MODE" = events ] || lost="-"
  printf "ctdoctor --table $MODE\t$start_cpu\t$start_wall\t$rc\t$cp50\t$cp99\t$cmax\t$cbytes\t$cgz\t$cpers\t$rc2$crow\t$lost\t$rc3\n" >> "$OUT/rows.tsv"
  printf "node_exporter (beside $MODE)\t-\t-\t$rn\t$np50\t$np99\t$nmax\t$nbytes\t$ngz\t$npers\t$rn2$nrow\t-\t$rn3\n" >> "$OUT/rows.tsv"
  kill -TERM "$EXP_PID"; st=0; wait "$EXP_PID" || st=$?; EXP_PID=
  log "  exit status after SIGTERM: $st"
done
log "node_exporter log lines: $(wc -l < "$OUT/node_exporter.err"); load at the end $(loadavg)"
column -t -s "$(printf '\t')" "$OUT/rows.tsv" | tee "$OUT/table.txt"
