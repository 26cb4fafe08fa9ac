#!/usr/bin/env bash
# bench/summary_1m.sh — `ctdoctor summary` on 1,000,000 real conntrack
# entries vs the awk recipes, in one run on this machine (numbers go to
# docs/BENCHMARKS.md, section "summary").
#
# What it does (as root; holds the kernel-test lock exclusively):
#  1. raises the global nf_conntrack_max to 1.1M (restored on EXIT);
#  2. fills a fresh netns with 1M entries (bench/ct-fill-batch.py, two
#     `conntrack -R` in parallel) and saves its /proc/net/nf_conntrack;
#  3. hyperfine, live: raw ctnetlink dump (ctnetlink's dump_count example,
#     libc recv loop, no decoding) vs `ctdoctor summary --netns` vs
#     `cat /proc/net/nf_conntrack | mawk` and `conntrack -L -o extended | mawk`,
#     each awk answering one question (protocols, TCP states, top-10 sources);
#  4. hyperfine, file: ctdoctor vs mawk/gawk (same three) vs `cat > /dev/null`;
#  5. peak RSS (/usr/bin/time -v) and distinct keys.
# Usage: bench/summary_1m.sh [N]   (default 1000000). Output dir: $OUT or a tempdir.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
NS=ctdbench-summary-$$
OUT=${OUT:-$(mktemp -d /tmp/summary_1m.XXXXXX)}
MAXFILE=/proc/sys/net/netfilter/nf_conntrack_max
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for t in hyperfine mawk gawk conntrack python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t (scripts/test.sh installs test tools; apt-get install hyperfine time)" >&2; exit 1; }
done

exec 9>/tmp/ctdoctor-kernel-tests.lock
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

cargo build --release -q -p ctdoctor --bin ctdoctor
cargo build --release -q -p ctnetlink --example dump_count
BIN=$PWD/target/release/ctdoctor
RAW=$PWD/target/release/examples/dump_count

python3 bench/ct-fill-batch.py "$N" "$OUT/batch.txt" 42
split -n l/2 "$OUT/batch.txt" "$OUT/batch."
ip netns add "$NS"
ip netns exec "$NS" conntrack -R "$OUT/batch.aa" 2>/dev/null &
ip netns exec "$NS" conntrack -R "$OUT/batch.ab" 2>/dev/null &
wait
COUNT=$(ip netns exec "$NS" cat /proc/sys/net/netfilter/nf_conntrack_count)
echo "entries in $NS: $COUNT" | tee "$OUT/info.txt"
ip netns exec "$NS" cat /proc/net/nf_conntrack > "$OUT/proc.txt"
ls -l "$OUT/proc.txt" | tee -a "$OUT/info.txt"

# Correct awk: the l4 name is $3 (/proc and -o extended); the state is $6
# on tcp lines only; the source is the first src= field (not $7: udp/icmp
# lines have no state column).
cat > "$OUT/proto.awk" <<'AWK'
{ c[$3]++ } END { for (k in c) print c[k], k }
AWK
cat > "$OUT/state.awk" <<'AWK'
$3 == "tcp" { c[$6]++ } END { for (k in c) print c[k], k }
AWK
cat > "$OUT/src.awk" <<'AWK'
{ for (i = 6; i <= NF; i++) if (substr($i, 1, 4) == "src=") { c[substr($i, 5)]++; break } }
END { for (k in c) print c[k], k }
AWK

echo "== sanity: ctdoctor vs awk on the saved file ==" | tee -a "$OUT/info.txt"
"$BIN" summary --file "$OUT/proc.txt" --by proto,state,src --top 3 | tee -a "$OUT/info.txt"
mawk -f "$OUT/src.awk" "$OUT/proc.txt" | sort -rn > "$OUT/awk_src.txt"
sed -n 1,3p "$OUT/awk_src.txt" | tee -a "$OUT/info.txt"

echo "== live ==" >&2
hyperfine -N -w 1 -r 5 --export-markdown "$OUT/live_ctnetlink.md" --export-json "$OUT/live_ctnetlink.json" \
  -n "raw ctnetlink dump (recv loop, no decoding)" "$RAW --netns $NS raw" \
  -n "ctdoctor summary (live, all breakdowns)" "$BIN summary --netns $NS"
hyperfine -w 1 -r 3 --export-markdown "$OUT/live_awk.md" --export-json "$OUT/live_awk.json" \
  -n "cat /proc | mawk: protocols" "ip netns exec $NS sh -c 'cat /proc/net/nf_conntrack | mawk -f $OUT/proto.awk'" \
  -n "cat /proc | mawk: states" "ip netns exec $NS sh -c 'cat /proc/net/nf_conntrack | mawk -f $OUT/state.awk'" \
  -n "cat /proc | mawk: top-10 src" "ip netns exec $NS sh -c 'cat /proc/net/nf_conntrack | mawk -f $OUT/src.awk | sort -rn | head -10'" \
  -n "conntrack -L -o extended | mawk: protocols" "ip netns exec $NS sh -c 'conntrack -L -o extended 2>/dev/null | mawk -f $OUT/proto.awk'" \
  -n "conntrack -L -o extended | mawk: states" "ip netns exec $NS sh -c 'conntrack -L -o extended 2>/dev/null | mawk -f $OUT/state.awk'" \
  -n "conntrack -L -o extended | mawk: top-10 src" "ip netns exec $NS sh -c 'conntrack -L -o extended 2>/dev/null | mawk -f $OUT/src.awk | sort -rn | head -10'" \
  -n "ctdoctor summary --file /proc/net/nf_conntrack (in the netns)" "ip netns exec $NS $BIN summary --file /proc/net/nf_conntrack"

echo "== file ==" >&2
F=$OUT/proc.txt
hyperfine -w 2 -r 10 --export-markdown "$OUT/file.md" --export-json "$OUT/file.json" \
  -n "cat file > /dev/null" "cat $F > /dev/null" \
  -n "ctdoctor summary --file (all breakdowns)" "$BIN summary --file $F" \
  -n "ctdoctor summary --file --by proto,state,src" "$BIN summary --file $F --by proto,state,src" \
  -n "mawk: protocols" "mawk -f $OUT/proto.awk $F" \
  -n "mawk: states" "mawk -f $OUT/state.awk $F" \
  -n "mawk: top-10 src" "mawk -f $OUT/src.awk $F | sort -rn | head -10" \
  -n "gawk: protocols" "gawk -f $OUT/proto.awk $F" \
  -n "gawk: states" "gawk -f $OUT/state.awk $F" \
  -n "gawk: top-10 src" "gawk -f $OUT/src.awk $F | sort -rn | head -10"

echo "== peak RSS ==" | tee -a "$OUT/info.txt"
for mode in "--netns $NS" "--file $F"; do
  /usr/bin/time -v "$BIN" summary $mode --json > "$OUT/summary.json" 2> "$OUT/time.txt"
  rss=$(awk -F: '/Maximum resident/ {gsub(/ /, "", $2); print $2}' "$OUT/time.txt")
  keys=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join("%s=%s" % (k, d[k]["distinct"]) for k in ("top_src","top_dst","top_dport","top_src_dport","top_dst_dport")), "entries=%d" % d["entries"])' "$OUT/summary.json")
  echo "summary $mode: peak RSS ${rss} KB; distinct keys: $keys" | tee -a "$OUT/info.txt"
done
echo "results in $OUT" >&2
