#!/usr/bin/env bash
# Batch create rate: ctnetlink::Socket::create_batch (1 and 2 threads) next to
# two `conntrack -R` processes in parallel (the baseline), on the same N
# entries from ct-fill-batch.py, each run into an emptied netns.
# Usage: bench/batch_create.sh [N=200000]   (root; N must stay below nf_conntrack_max)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
NS=ctnl-bench-batch-$$
TMP=$(mktemp -d)
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
exec 9>/tmp/ctdoctor-kernel-tests.lock
flock -s 9   # shared: we only use our own netns
max=$(cat /proc/sys/net/netfilter/nf_conntrack_max)
if (( N > max )); then echo "N=$N exceeds nf_conntrack_max=$max" >&2; exit 1; fi

cargo build -q --release -p ctnetlink --example batch_create
BIN=target/release/examples/batch_create
python3 crates/ctnetlink/tests/data/ct-fill-batch.py "$N" "$TMP/all.txt" 42
half=$(( (N + 1) / 2 ))
split -l "$half" "$TMP/all.txt" "$TMP/part."
ip netns add "$NS"
flush="ip netns exec $NS conntrack -F"
hyperfine --runs 5 --export-markdown "$TMP/batch.md" \
  --prepare "$flush" \
  -n "conntrack -R x2 parallel" "ip netns exec $NS sh -c 'conntrack -R $TMP/part.aa & conntrack -R $TMP/part.ab & wait'" \
  --prepare "$flush" \
  -n "create_batch 1 thread" "$BIN --netns $NS $TMP/all.txt" \
  --prepare "$flush" \
  -n "create_batch 2 threads" "$BIN --netns $NS --threads 2 $TMP/all.txt"
cat "$TMP/batch.md"
# One more run of each of ours, printing entries/s (includes no file parsing).
$flush 2>/dev/null; $BIN --netns "$NS" "$TMP/all.txt"
echo "count after: $(ip netns exec "$NS" conntrack -C)"
$flush 2>/dev/null; $BIN --netns "$NS" --threads 2 "$TMP/all.txt"
echo "count after: $(ip netns exec "$NS" conntrack -C)"
