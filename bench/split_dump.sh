#!/usr/bin/env bash
# bench/split_dump.sh — can the kernel's dump filters split one table into
# parts worth dumping in parallel? (docs/BENCHMARKS.md, "split dumps")
#
# As root; holds the kernel-test lock exclusively; raises the global
# nf_conntrack_max to 1.1 × N and restores it on EXIT.
#  1. fills a fresh netns with N entries (bench/ct-fill-batch.py, marks 0–3
#     assigned round-robin so a mark/mask filter can split it evenly);
#  2. hyperfine: one full dump vs 2 and 4 parallel dumps split by mark/mask,
#     vs 2 parallel dumps split by status/mask (ASSURED or not), each part
#     decoding every entry (ctnetlink's split_dump example).
# Usage: bench/split_dump.sh [N]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
NS=ctdbench-split-$$
OUT=$(mktemp -d /tmp/split_dump.XXXXXX)
MAXFILE=/proc/sys/net/netfilter/nf_conntrack_max
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "missing hyperfine" >&2; exit 1; }

exec 9>/tmp/ctdoctor-kernel-tests.lock
flock -x 9
OLD_MAX=$(cat $MAXFILE)
cleanup() {
  ip netns del "$NS" 2>/dev/null || true
  echo "$OLD_MAX" > $MAXFILE
  rm -rf "$OUT"
  echo "restored nf_conntrack_max=$(cat $MAXFILE)" >&2
}
trap cleanup EXIT
NEW_MAX=$((N + N / 10)); [ "$NEW_MAX" -gt "$OLD_MAX" ] || NEW_MAX=$OLD_MAX
echo "$NEW_MAX" > $MAXFILE

cargo build --release -q -p ctnetlink --example split_dump
BIN=target/release/examples/split_dump

python3 bench/ct-fill-batch.py "$N" "$OUT/batch.txt" 42
awk '{ print $0 " -m " (NR % 4) }' "$OUT/batch.txt" > "$OUT/marked.txt"
split -n l/2 "$OUT/marked.txt" "$OUT/part."
ip netns add "$NS"
for f in "$OUT"/part.*; do ip netns exec "$NS" conntrack -R "$f" 2>/dev/null & done
wait
echo "entries: $(ip netns exec "$NS" conntrack -C)"
for m in 0 1 2 3; do echo "mark $m: $(ip netns exec "$NS" conntrack -L -m $m 2>/dev/null | wc -l)"; done
for mode in full "status" "mark 2" "mark 4"; do echo "== $mode"; $BIN --netns "$NS" $mode; done

hyperfine -N --warmup 1 --runs 5 \
  -n "one full dump" "$BIN --netns $NS full" \
  -n "2 parts by mark/mask, in parallel" "$BIN --netns $NS mark 2" \
  -n "4 parts by mark/mask, in parallel" "$BIN --netns $NS mark 4" \
  -n "2 parts by status/mask (ASSURED), in parallel" "$BIN --netns $NS status"
