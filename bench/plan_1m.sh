#!/usr/bin/env bash
# bench/plan_1m.sh — what `ctdoctor plan` costs on 1,000,000 real conntrack
# entries, next to a raw ctnetlink dump in the same run (numbers go to
# docs/BENCHMARKS.md, section "plan").
#
# What it does (as root; holds the kernel-test lock exclusively):
#  1. raises the global nf_conntrack_max to 1.1M (restored on EXIT);
#  2. fills a fresh netns with N entries (bench/ct-fill-batch.py, two
#     `conntrack -R` in parallel; their timeouts are 6000-7200 s, so the
#     netns's time_wait and established timeouts are set to 7200 to make
#     every age known);
#  3. hyperfine: raw ctnetlink dump (ctnetlink's dump_count example, libc
#     recv loop, no decoding) vs `ctdoctor plan` (sizing only: no dump) vs
#     `ctdoctor plan --what-if` (one dump) vs `--what-if` with `--rate`
#     (still one dump);
#  4. peak RSS of the what-if run (/usr/bin/time -v) and its prediction.
# Usage: bench/plan_1m.sh [N]   (default 1000000). Output dir: $OUT or a tempdir.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
NS=ctdbench-plan-$$
OUT=${OUT:-$(mktemp -d /tmp/plan_1m.XXXXXX)}
MAXFILE=/proc/sys/net/netfilter/nf_conntrack_max
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for t in hyperfine conntrack python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t (apt-get install hyperfine time conntrack)" >&2; exit 1; }
done

# Two builds: `--example` alone would build only the example.
cargo build --release -q -p ctdoctor --bin ctdoctor
cargo build --release -q -p ctnetlink --example dump_count
BIN=$PWD/target/release/ctdoctor
RAW=$PWD/target/release/examples/dump_count
python3 bench/ct-fill-batch.py "$N" "$OUT/batch.txt" 42
split -n l/2 "$OUT/batch.txt" "$OUT/batch."

exec 9>/tmp/ctdoctor-kernel-tests.lock
echo "waiting for the exclusive kernel test lock..." >&2
flock -x 9
OLD_MAX=$(cat $MAXFILE)
cleanup() {
  ip netns del "$NS" 2>/dev/null || true
  echo "$OLD_MAX" > $MAXFILE
  echo "restored nf_conntrack_max=$(cat $MAXFILE)" >&2
}
trap cleanup EXIT
NEW_MAX=$((N + N / 10)); [ "$NEW_MAX" -gt "$OLD_MAX" ] || NEW_MAX=$OLD_MAX
echo "$NEW_MAX" > $MAXFILE

ip netns add "$NS"
ip netns exec "$NS" sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=7200 \
  net.netfilter.nf_conntrack_tcp_timeout_established=7200
ip netns exec "$NS" conntrack -R "$OUT/batch.aa" 2>/dev/null &
ip netns exec "$NS" conntrack -R "$OUT/batch.ab" 2>/dev/null &
wait
COUNT=$(ip netns exec "$NS" cat /proc/sys/net/netfilter/nf_conntrack_count)
echo "entries in $NS: $COUNT" | tee "$OUT/info.txt"

WI="--what-if tcp_timeout_time_wait=3600,tcp_timeout_established=3600"
hyperfine -N -w 1 -r 5 --export-markdown "$OUT/plan.md" --export-json "$OUT/plan.json" \
  -n "raw ctnetlink dump (recv loop, no decoding)" "$RAW --netns $NS raw" \
  -n "ctdoctor plan (sizing only, no dump)" "$BIN plan --netns $NS" \
  -n "ctdoctor plan --what-if (one dump)" "$BIN plan --netns $NS $WI" \
  -n "ctdoctor plan --rate --what-if (one dump)" "$BIN plan --netns $NS --rate 2000 $WI"

/usr/bin/time -v "$BIN" plan --netns "$NS" $WI --json > "$OUT/whatif.json" 2> "$OUT/time.txt"
rss=$(awk -F: '/Maximum resident/ {gsub(/ /, "", $2); print $2}' "$OUT/time.txt")
echo "plan --what-if: peak RSS ${rss} KB" | tee -a "$OUT/info.txt"
python3 - "$OUT/whatif.json" <<'PY' | tee -a "$OUT/info.txt"
import json, sys
w = json.load(open(sys.argv[1]))["what_if"]
for k in ("TIME_WAIT", "ESTABLISHED"):
    s = w["states"][k]
    print(f"{k}: now {s['now']}, predicted {s['predicted']}, unknown age {s['unknown_age']}")
print("total", w["total"], "converges within", w["converges_within_s"], "s")
PY
echo "results in $OUT" >&2
