#!/usr/bin/env bash
# Runs INSIDE a kernel-matrix guest (scripts/kernels.sh starts it with
# virtme-ng, as root, sharing the host's root filesystem read-only with
# throwaway overlays). Not for the host: it lowers nf_conntrack_max and
# loads modules. Everything goes to stdout, which the host saves; nothing
# is written outside the guest's own tmpfs.
#
#   kernels-guest.sh PLAN
#
# PLAN (written by kernels.sh) sets test_bin, ctdoctor, test_timeout and
# the array tests (exact names).
#
# Output, line-oriented so the host can parse it:
#   FACT key: value       what this kernel has (docs/kernels.md)
#   RAW key: text         a raw line, byte for byte (the stat header, ...)
#   PROBE name ok|FAILED: why    a check of ctdoctor made here (a matrix cell)
#   KERNELS-TEST-BEGIN NAME, then libtest's own output for that one test
#   (`test NAME ... ok|FAILED|ignored`, the failure's message), then
#   KERNELS-TEST-END NAME rc=N secs=S (rc 124: its TEST_TIMEOUT ran out)
#   KERNELS-GUEST-END rc=N            the completion line; a guest that
#                                     does not print it fails every cell
set -u
exec 2>&1 # one stream, in order
test_bin= ctdoctor= test_timeout=420 tests=() nofile_soft=1024 nofile_hard=4096
# shellcheck disable=SC1090
. "$1"
# The host's open-file limits (the lab needs more than the guest's default).
ulimit -Hn "$nofile_hard"
ulimit -Sn "$nofile_soft"

echo "KERNELS-GUEST-BEGIN $(uname -r)"
# The guest's own /tmp (the kernel tests' lock file and temp dirs): the
# default overlay would show the host's /tmp underneath.
mount -t tmpfs -o mode=1777 guest-tmp /tmp
# The same for ctdoctor's journal, in case the host has one.
mkdir -p /var/lib/ctdoctor && mount -t tmpfs -o mode=0700 guest-journal /var/lib/ctdoctor
export TMPDIR=/tmp CI=true RUST_BACKTRACE=0

fact() { printf 'FACT %s: %s\n' "$1" "$2"; }
mark() { printf 'TIME %s: %s s after boot\n' "$1" "$(cut -d' ' -f1 /proc/uptime)"; }
raw() { printf 'RAW %s: %s\n' "$1" "$2"; }
probe() { printf 'PROBE %s %s: %s\n' "$1" "$2" "$3"; }
ct_modules() { awk '$1 ~ /^(nf_conntrack|nf_conntrack_netlink|nfnetlink)$/ {print $1}' /proc/modules | sort | tr '\n' ' '; }

fact kernel "$(uname -r)"
fact boot_to_script_secs "$(cut -d' ' -f1 /proc/uptime)"
fact kernel_build "$(uname -v)"
fact mem_total_kib "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
fact cpus "$(nproc)"

# --- Before anything loads conntrack: check must not load it, summary
# neither (issue 23), and both must say it is not loaded.
if [ -e /proc/sys/net/netfilter/nf_conntrack_max ] && [ -z "$(ct_modules)" ]; then
  fact conntrack_builtin yes
else
  fact conntrack_builtin no
  fact modules_at_boot "$(ct_modules)"
  out=$("$ctdoctor" check 2>&1); rc=$?
  after=$(ct_modules)
  if [ -z "$after" ]; then
    probe check_loads_no_conntrack_module ok "exit $rc, modules still unloaded"
  else
    probe check_loads_no_conntrack_module FAILED "check loaded: $after"
  fi
  out=$("$ctdoctor" summary 2>&1); rc=$?
  after=$(ct_modules)
  if [ -z "$after" ] && [ "$rc" != 0 ]; then
    probe summary_without_conntrack_says_so ok "exit $rc, modules still unloaded: $(echo "$out" | head -1)"
  else
    probe summary_without_conntrack_says_so FAILED "summary exited $rc and left loaded: [${after% }]; first line: $(echo "$out" | head -1)"
  fi
fi

mark modules
# --- What this kernel has (read with conntrack loaded).
modprobe nf_conntrack 2>/dev/null
modprobe nf_conntrack_netlink 2>/dev/null
raw stat_header "$(head -1 /proc/net/stat/nf_conntrack)"
fact stat_columns "$(head -1 /proc/net/stat/nf_conntrack | wc -w)"
raw conntrack_S "$(conntrack -S 2>&1 | head -1)"
fact conntrack_S_fields "$(conntrack -S 2>&1 | head -1 | tr ' ' '\n' | sed -n 's/=.*//p' | grep -v '^cpu$' | tr '\n' ' ')"
fact conntrack_version "$(conntrack --version 2>&1 | head -1)"
for k in max buckets expect_max; do
  fact "nf_conntrack_$k" "$(cat /proc/sys/net/netfilter/nf_conntrack_$k 2>&1)"
done
fact hashsize "$(cat /sys/module/nf_conntrack/parameters/hashsize 2>&1)"
fact sysctls "$(ls /proc/sys/net/netfilter | sed -n 's/^nf_conntrack_//p' | tr '\n' ' ')"
raw init_line "$(dmesg | grep -m1 'nf_conntrack version' | sed 's/^\[[^]]*\] //')"
fmt=/sys/kernel/tracing/events/skb/kfree_skb/format
[ -e "$fmt" ] || { mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null; }
if [ -e "$fmt" ]; then
  raw kfree_skb_fields "$(sed -n 's/^\s*field:\([^;]*\);.*/\1/p' "$fmt" | tr '\n' '|' | sed 's/|$//')"
  if grep -q 'field:.* reason;' "$fmt"; then fact kfree_skb_reason yes; else fact kfree_skb_reason no; fi
else
  fact kfree_skb_reason "unknown (no $fmt)"
fi

mark child_netns
# A child namespace: which global knobs may it write, and what does it see?
ns=kernels-probe
ip netns add "$ns"
for k in max buckets expect_max count; do
  f=/proc/sys/net/netfilter/nf_conntrack_$k
  mode=$(ip netns exec "$ns" stat -c %a "$f" 2>&1)
  v=$(ip netns exec "$ns" cat "$f" 2>&1)
  if ip netns exec "$ns" sh -c "echo '$v' > $f" 2>/dev/null; then w=writable; else w=refused; fi
  fact "child_netns_$k" "mode $mode, value $v, same-value write $w"
done
ip netns del "$ns"

mark exporter
# --- The exporter: one scrape of a fresh namespace; every counter that
# `conntrack -S` prints must be there with the same value.
ns=kernels-exp
ip netns add "$ns" && ip netns exec "$ns" ip link set lo up
port=19651
"$ctdoctor" exporter --netns "$ns" --listen "127.0.0.1:$port" > /dev/null 2>&1 &
exp=$!
# Wait for the listener with bash's own /dev/tcp (a python per try costs
# seconds under TCG), then one scrape.
for _ in $(seq 1 300); do
  (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
metrics=$(python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$port/metrics', timeout=30).read().decode())" 2>/dev/null)
kill "$exp" 2>/dev/null; wait "$exp" 2>/dev/null
ct_s=$(ip netns exec "$ns" conntrack -S)
ip netns del "$ns"
if [ -z "$metrics" ]; then
  probe exporter_scrape_has_every_conntrack_S_counter FAILED "no scrape from the exporter on 127.0.0.1:$port"
else
  echo "KERNELS-SCRAPE-BEGIN"
  echo "$metrics" | grep '^ctdoctor_conntrack'
  echo "KERNELS-SCRAPE-END"
  fact exporter_stat_families "$(echo "$metrics" | sed -n 's/^ctdoctor_conntrack_stat_\([a-z_]*\)_total{.*/\1/p' | sort -u | tr '\n' ' ')"
  missing=
  for kv in $(echo "$ct_s" | tr ' ' '\n' | grep = | grep -v '^cpu='); do
    k=${kv%%=*}
    sum=$(echo "$ct_s" | tr ' ' '\n' | awk -F= -v k="$k" '$1 == k {s += $2} END {print s + 0}')
    got=$(echo "$metrics" | awk -v k="ctdoctor_conntrack_stat_${k}_total" 'index($0, k "{") == 1 || index($0, k " ") == 1 {print $NF; exit}')
    [ "$got" = "$sum" ] || missing="$missing $k(-S $sum, exporter ${got:-absent})"
  done
  missing=$(echo "$missing" | tr ' ' '\n' | sort -u | tr '\n' ' ')
  if [ -z "${missing// /}" ]; then
    probe exporter_scrape_has_every_conntrack_S_counter ok "$(echo "$ct_s" | head -1 | tr ' ' '\n' | grep -c =) fields"
  else
    probe exporter_scrape_has_every_conntrack_S_counter FAILED "missing or different:$missing"
  fi
fi

mark summary
# --- summary against `conntrack -L`: a mix of entries loaded through
# ctnetlink, counted by ctdoctor's live dump and by conntrack.
ns=kernels-sum
ip netns add "$ns"
python3 - > /tmp/sum-batch.txt <<'EOF'
for i in range(300):
    a, b = i // 250, i % 250 + 1
    if i < 200:
        st, fl = "TIME_WAIT", "-u SEEN_REPLY,ASSURED"
    elif i < 250:
        st, fl = "ESTABLISHED", "-u SEEN_REPLY,ASSURED"
    else:
        st, fl = "SYN_SENT", ""
    print(f"-I -s 10.1.{a}.{b} -d 10.2.0.1 -p tcp --sport 40000 --dport 443 --state {st} -t 300 {fl}")
for i in range(40):
    print(f"-I -s 10.3.0.{i + 1} -d 10.2.0.53 -p udp --sport 5000 --dport 53 -t 300")
EOF
ip netns exec "$ns" conntrack -R /tmp/sum-batch.txt > /dev/null 2>&1
ip netns exec "$ns" conntrack -L > /tmp/sum-L.txt 2>/dev/null
"$ctdoctor" summary --netns "$ns" --json > /tmp/sum.json 2>/tmp/sum.err
r=$(python3 - <<'EOF'
import json, collections
v = json.load(open("/tmp/sum.json"))
lines = [l.split() for l in open("/tmp/sum-L.txt") if l.strip()]
want = {"entries": len(lines)}
want.update({"proto " + k: n for k, n in collections.Counter(l[0] for l in lines).items()})
want.update({"state " + k: n for k, n in collections.Counter(l[3] for l in lines if l[0] == "tcp").items()})
want["assured"] = sum("[ASSURED]" in l for l in lines)
want["unreplied"] = sum("[UNREPLIED]" in l for l in lines)
got = {"entries": v["entries"], "assured": v["flags"]["assured"]["count"], "unreplied": v["flags"]["unreplied"]["count"]}
got.update({"proto " + e["key"]: e["count"] for e in v["by_proto"]})
got.update({"state " + e["key"]: e["count"] for e in v["by_state"]})
bad = [f"{k}: -L {want.get(k)}, summary {got.get(k)}" for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)]
print("FAILED: " + "; ".join(bad) if bad else f"ok: {want}")
EOF
)
ip netns del "$ns"
if [ -s /tmp/sum.json ]; then
  probe summary_matches_conntrack_L "${r%%:*}" "${r#*: }"
else
  probe summary_matches_conntrack_L FAILED "no JSON: $(head -3 /tmp/sum.err)"
fi

# --- The kernel tests, each by its exact name in a run of its own, so a
# test that hangs fails its own cell only.
fact probes_done_secs "$(cut -d' ' -f1 /proc/uptime)"
rc=0
for t in "${tests[@]}"; do
  echo "KERNELS-TEST-BEGIN $t"
  t0=$(date +%s)
  timeout -k 10 "$test_timeout" "$test_bin" --exact --test-threads=1 "$t" 2>&1
  r=$?
  echo "KERNELS-TEST-END $t rc=$r secs=$(($(date +%s) - t0))"
  [ "$r" = 0 ] || rc=1
done
# --- The kernel's "table full" line, for real: a tiny global max (guest
# only), a namespace tracking its loopback, connects that cannot get an
# entry. After the tests: its lines must not be in their kernel log.
ns=kernels-full
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" nft -f - <<'EOF'
table inet kprobe {
  chain out {
    type filter hook output priority 0;
    ct state new accept
  }
}
EOF
old_max=$(cat /proc/sys/net/netfilter/nf_conntrack_max)
echo 8 > /proc/sys/net/netfilter/nf_conntrack_max
ip netns exec "$ns" python3 - <<'EOF'
import socket
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(64)
keep = []
for _ in range(20):
    c = socket.socket(); c.settimeout(0.3)
    try:
        c.connect(ls.getsockname()); keep.append(c)
    except OSError:
        c.close()
EOF
echo "$old_max" > /proc/sys/net/netfilter/nf_conntrack_max
full=$(dmesg | grep 'table full' | tail -1 | sed 's/^\[[^]]*\] //')
raw table_full_line "$full"
fact table_full_names_netns "$(case $full in *"in netns"*) echo yes;; "") echo "no line";; *) echo no;; esac)"
fact netns_inode "$(ip netns exec "$ns" stat -L -c %i /proc/self/ns/net)"
raw conntrack_S_netns "$(ip netns exec "$ns" conntrack -S | head -1)"
ip netns del "$ns"
# check on the init namespace now (no drops of its own; the kernel logged
# lines just now): its table_full title must not deny lines its evidence
# counts (issue 23).
"$ctdoctor" check --json > /tmp/check.json 2>/dev/null
r=$(python3 - <<'EOF'
import json
v = json.load(open("/tmp/check.json"))
f = next(f for f in v["findings"] if f["id"] == "conntrack.table_full")
ev, title = f.get("evidence", {}), f["title"]
n = sum(ev.get(k, 0) or 0 for k in ("log_lines", "unattributed_log_lines", "earlier_netns_log_lines"))
if n and 'no "table full" line' in title:
    print(f"FAILED: title {title!r} while the evidence counts {n} line(s): {json.dumps(ev)}")
else:
    print(f"ok: {title!r}, {n} line(s) in the evidence")
EOF
) || r="FAILED: no table_full finding in check --json (exit of the reader: $?)"
probe table_full_title_matches_its_evidence "${r%%:*}" "${r#*: }"

echo "KERNELS-DMESG-BEGIN"
dmesg | grep -E 'nf_conntrack|conntrack|table full|netfilter' | tail -40
echo "KERNELS-DMESG-END"
echo "KERNELS-GUEST-END rc=$rc"
