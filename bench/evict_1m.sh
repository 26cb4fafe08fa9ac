#!/usr/bin/env bash
# `ctdoctor tune --evict time_wait --apply` on 1M real entries, next to the
# two baselines of the same run on the same table: one raw ctnetlink dump
# (the floor: no kernel filter selects by TCP state) and
# `conntrack -D -p tcp --state TIME_WAIT` (dump, then one DELETE per entry).
# Each delete run starts from a freshly loaded table (hyperfine --prepare:
# flush, then create_batch with 2 threads from the same fill file).
#
# Raises the GLOBAL nf_conntrack_max to 1.1M for the run (restored on exit,
# trap EXIT) while holding the kernel test lock exclusively, so no test sees
# it. Needs root, hyperfine, ~2 GB RAM, a few minutes.
# Usage: bench/evict_1m.sh [N=1000000] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
RUNS=${2:-5}
NS=ctd-bench-evict-$$
TMP=$(mktemp -d)
MAXF=/proc/sys/net/netfilter/nf_conntrack_max

cargo build -q --release -p ctnetlink --example dump_count --example batch_create
cargo build -q --release -p ctdoctor
DUMP=$PWD/target/release/examples/dump_count
LOAD=$PWD/target/release/examples/batch_create
CTD=$PWD/target/release/ctdoctor
python3 bench/ct-fill-batch.py "$N" "$TMP/all.txt" 42

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
OURS=$(( N + N / 10 ))
echo $OURS > $MAXF
# Anything that lowers the global max under us (a process ignoring the lock)
# makes the numbers meaningless: stop.
still_ours() {
  [ "$(cat $MAXF)" = "$OURS" ] || { echo "nf_conntrack_max changed under the run ($(cat $MAXF)): numbers discarded" >&2; exit 1; }
}
ip netns add "$NS"
x="ip netns exec $NS"
# Reload the table; a load that falls short fails the run (hyperfine stops).
cat > "$TMP/load.sh" <<LOAD
#!/bin/sh
$x conntrack -F 2>/dev/null
$LOAD --netns $NS --threads 2 $TMP/all.txt > $TMP/load.log 2>&1
[ "\$(cat $MAXF)" = "$OURS" ] || { echo "nf_conntrack_max changed under the run" >&2; exit 1; }
n=\$($x conntrack -C)
[ "\$n" = "$N" ] || { echo "load: \$n of $N entries" >&2; cat $TMP/load.log >&2; exit 1; }
LOAD
chmod +x "$TMP/load.sh"
load="$TMP/load.sh"
$load
echo "entries: $($x conntrack -C), TIME_WAIT: $($x conntrack -L -p tcp --state TIME_WAIT 2>/dev/null | wc -l)"
hyperfine --warmup 1 --runs "$RUNS" --export-markdown "$TMP/dump.md" \
  -n "raw dump (dump_count raw)" "$DUMP --netns $NS raw"
hyperfine --runs "$RUNS" --export-markdown "$TMP/delete.md" \
  --prepare "$load" \
  -n "conntrack -D -p tcp --state TIME_WAIT" "$x conntrack -D -p tcp --state TIME_WAIT > /dev/null 2>&1" \
  --prepare "$load" \
  -n "ctdoctor tune --evict time_wait --apply" "$CTD tune --netns $NS --evict time_wait --apply > /dev/null"
still_ours
cat "$TMP/dump.md" "$TMP/delete.md"
# One more of ours, with its own report (freed, time), then the oracle.
$load
$CTD tune --netns "$NS" --evict time_wait --apply
still_ours
echo "TIME_WAIT left: $($x conntrack -L -p tcp --state TIME_WAIT 2>/dev/null | wc -l), entries: $($x conntrack -C)"
