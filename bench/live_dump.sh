#!/usr/bin/env bash
# Live dump of 1M real entries: ctnetlink (raw recv loop, dump without
# decoding, dump + Entry::summary aggregate) next to `cat /proc/net/nf_conntrack`
# and `conntrack -L`, all in one hyperfine run on the same table.
#
# Raises the GLOBAL nf_conntrack_max to 1.1M for the run (restored on exit,
# trap EXIT) while holding the kernel test lock exclusively, so no test sees
# it. Needs root, ~2 GB RAM, a few minutes.
# Usage: bench/live_dump.sh [N=1000000] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
RUNS=${2:-5}
NS=ctnl-bench-dump-$$
TMP=$(mktemp -d)
MAXF=/proc/sys/net/netfilter/nf_conntrack_max

cargo build -q --release -p ctnetlink --example dump_count
BIN=$PWD/target/release/examples/dump_count
python3 crates/ctnetlink/tests/data/ct-fill-batch.py "$N" "$TMP/all.txt" 42
half=$(( (N + 1) / 2 ))
split -l "$half" "$TMP/all.txt" "$TMP/part."

exec 9>/tmp/ctdoctor-kernel-tests.lock
echo "waiting for the exclusive kernel test lock..."
flock -x 9
OLD=$(cat $MAXF)
cleanup() {
  ip netns del "$NS" 2>/dev/null || true
  echo "$OLD" > $MAXF
  echo "restored nf_conntrack_max=$(cat $MAXF)"
  rm -rf "$TMP"
}
trap cleanup EXIT
echo $(( N + N / 10 )) > $MAXF
ip netns add "$NS"
ip netns exec "$NS" sh -c "conntrack -R $TMP/part.aa & conntrack -R $TMP/part.ab & wait" 2>/dev/null
echo "entries: $(ip netns exec "$NS" conntrack -C)"
x="ip netns exec $NS"
hyperfine --warmup 1 --runs "$RUNS" --export-markdown "$TMP/dump.md" \
  -n "cat /proc/net/nf_conntrack" "$x cat /proc/net/nf_conntrack > /dev/null" \
  -n "conntrack -L" "$x conntrack -L > /dev/null 2>&1" \
  -n "raw recv loop (no decoding)" "$BIN --netns $NS raw" \
  -n "ctnetlink dump, no decoding" "$BIN --netns $NS count" \
  -n "ctnetlink dump + summary()" "$BIN --netns $NS summary"
cat "$TMP/dump.md"
$BIN --netns "$NS" summary
