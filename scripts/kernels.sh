#!/usr/bin/env bash
# The kernel matrix (issue 23): boot Debian's own kernels under QEMU and run
# a subset of ctdoctor's kernel tests inside each, then print a matrix
# kernel x test. As root (it installs what it lacks with apt-get, like
# scripts/test.sh).
#
#   scripts/kernels.sh                  every kernel below, the default subset
#   scripts/kernels.sh --kernel 5.10    one kernel (repeat or comma-separate)
#   scripts/kernels.sh --ci             CI's run (scripts/test.sh): 5.10 and 6.1
#   scripts/kernels.sh --list           the kernels it knows, and which are cached
#   scripts/kernels.sh --help
#
# How (docs/kernels.md has the why and the findings):
# - Kernels: `apt-get download` of Debian's linux-image package with a
#   sources list and state kept under target/kernels/apt/ (never the
#   machine's apt configuration), `dpkg -x` into target/kernels/LABEL/root
#   (no maintainer scripts), `depmod -b` there. Cached: a second run
#   downloads nothing (--refresh asks the archive again).
# - Guests: virtme-ng (PyPI, in a venv under target/tools/vng) boots the
#   kernel under TCG (software; the nested /dev/kvm here runs only PVM
#   guests and a stock kernel hangs under it), 2 vCPUs, 2 GiB, sharing this
#   machine's root filesystem read-only with throwaway tmpfs overlays, the
#   kernel's modules linked in from target/kernels/LABEL/root. One guest at a
#   time. The root is mounted over virtiofs (the Rust virtiofsd, `cargo
#   install`ed into target/tools/virtiofsd the first time, ~4 minutes): 5.10
#   ran the default subset in 182 s on it, 618 s on 9p (no cache). `--9p` uses 9p instead where the kernel has it (the cloud
#   flavour has none) and builds nothing.
# - No udevd on this machine: virtme-ng-init finds no /dev/virtio-ports
#   links and falls back to the serial console (exit code and stdout lost),
#   so the venv's virtme-ng-init is wrapped by a script that makes them.
# - Inside, scripts/kernels-guest.sh records what the kernel has (FACT/RAW
#   lines), runs a few probes of ctdoctor that need a kernel whose conntrack
#   is a module (PROBE lines), then each test of the subset by exact name
#   with CI=true and a timeout of its own, and prints a completion line. A
#   guest that does not print it fails all its cells.
# - Output: the matrix on stdout; each guest's whole output in
#   target/kernels/results/LABEL.log. Exit 1 when a cell failed, 2 on a
#   setup error.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
K=$repo/target/kernels
T=$repo/target/tools

# label | Debian suites (main component) | package | root filesystems it can mount
KERNELS=(
  "5.10|bullseye bullseye-security|linux-image-amd64|virtiofs 9p"
  "5.10-cloud|bullseye bullseye-security|linux-image-cloud-amd64|virtiofs"
  "6.1|bookworm bookworm-updates bookworm-security|linux-image-amd64|virtiofs 9p"
  "6.12|trixie trixie-updates trixie-security|linux-image-amd64|virtiofs 9p"
  "trixie-bpo|trixie-backports|linux-image-amd64|virtiofs 9p"
)

# The subset: every reader and writer, the incident, tune, notrack, the
# exporter and the lab — not the nginx/Prometheus acceptance tests nor the
# 100,000+ entry fills (TCG is 10-50x slower than this machine), nor tests
# that time the machine rather than the kernel (a scrape 50 ms after start,
# idle ages measured around two slow `summary` runs): docs/kernels.md.
DEFAULT_TESTS=(
  check_conntrack_kernel::readers_match_kernel_in_a_netns
  check_conntrack_kernel::clean_host_has_no_critical_conntrack_finding
  check_conntrack_kernel::acceptance_table_full_in_netns
  check_conntrack_kernel::snapshot_keeps_the_kernel_log_and_counters
  stat_fallback_kernel::ctnetlink_stats_equal_proc_stats_in_a_netns
  check_persist_kernel::proc_modules_and_builtin_conntrack
  check_persist_kernel::per_netns_timeout_change_is_reported_against_the_builtin_default
  summary_check::live_check_reads_the_real_mix
  tune_kernel::per_netns_timeouts_apply_verify_and_roll_back_exactly
  tune_kernel::global_knobs_apply_and_roll_back_on_the_host
  tune_kernel::a_global_key_in_a_child_netns_is_refused_with_the_reason
  notrack_kernel::applied_rules_leave_selected_loopback_traffic_untracked_and_remove_restores_the_ruleset
  exporter_kernel::the_count_is_read_at_scrape_time
  lab_kernel::lab_table_full_without_a_fix_reports_the_failure_and_leaves_nothing
  drops_kernel::a_closed_udp_port_is_no_socket
  drops_kernel::the_instance_is_removed_after_sigterm_and_after_kill_9_by_the_next_run
)
# --ci: what CI runs on each of its kernels, about 3 minutes a guest on
# virtiofs: the same less the_count_is_read_at_scrape_time, whose first
# scrape lacked the count on 5.10 and 6.12 in slower guests on 9p (a race,
# it seems: docs/kernels.md); the exporter's scrape is still probed.
CI_TESTS=()
for t in "${DEFAULT_TESTS[@]}"; do
  [ "$t" = exporter_kernel::the_count_is_read_at_scrape_time ] || CI_TESTS+=("$t")
done
# Kernels CI boots (--ci without --kernel).
CI_KERNELS=(5.10 6.1)

usage() {
  cat <<EOF
usage: scripts/kernels.sh [--kernel LABEL[,LABEL]]... [--tests NAME[,NAME]...] [--ci]
                          [--timeout SECS] [--test-timeout SECS] [--fetch-only]
                          [--refresh] [--test-bin PATH] [--cpus N] [--memory SIZE] [--9p]
       scripts/kernels.sh --list | --help

Boots Debian kernels under QEMU (TCG) and runs ctdoctor's kernel tests in
each; prints a matrix kernel x test. Needs root. Exit 0 when every cell
passed, 1 when one failed, 2 on a setup error.

  --kernel LABEL    only these kernels (default: all; see --list)
  --tests NAMES     these kernel tests (exact names, comma-separated) instead
                    of the default subset
  --ci              CI's run: the kernels ${CI_KERNELS[*]} (unless --kernel says) and
                    a smaller subset (unless --tests says)
  --timeout SECS    a whole guest's limit, boot included (default 1500, with
                    --ci 900)
  --test-timeout S  one test's limit inside the guest (default 420)
  --fetch-only      fetch and cache the kernels and tools, boot nothing
  --report          print the matrix of the last run again (from its logs)
  --refresh         ask Debian's archive for the newest package again
  --test-bin PATH   the kernel test binary (default: built with cargo)
  --cpus N, --memory SIZE   the guest (default 2, 2G)
  --9p              share the root over 9p, not virtiofs (no virtiofsd to
                    build; several times slower; not for the cloud kernels)
  --list            the kernels this script knows and what is cached

Kernels are cached under target/kernels/, tools under target/tools/;
each guest's output goes to target/kernels/results/LABEL.log.
EOF
}

die() {
  echo "kernels.sh: $*" >&2
  exit 2
}

field() { # field ENTRY N
  local IFS='|'
  # shellcheck disable=SC2206
  local f=($1)
  echo "${f[$2]}"
}

entry_of() {
  local e
  for e in "${KERNELS[@]}"; do
    [ "$(field "$e" 0)" = "$1" ] && { echo "$e"; return 0; }
  done
  return 1
}

# --- arguments
want_kernels=() tests=() guest_timeout=1500 test_timeout=420 fetch_only= refresh=
test_bin= cpus=2 memory=2G list= ci= report= timeout_given= use_9p=
while (($#)); do
  case $1 in
    --help | -h) usage; exit 0 ;;
    --list) list=1 ;;
    --kernel) [ $# -ge 2 ] || die "--kernel needs a label"; IFS=, read -ra a <<<"$2"; want_kernels+=("${a[@]}"); shift ;;
    --kernel=*) IFS=, read -ra a <<<"${1#*=}"; want_kernels+=("${a[@]}") ;;
    --tests) [ $# -ge 2 ] || die "--tests needs names"; IFS=, read -ra a <<<"$2"; tests+=("${a[@]}"); shift ;;
    --tests=*) IFS=, read -ra a <<<"${1#*=}"; tests+=("${a[@]}") ;;
    --timeout) guest_timeout=${2:?} timeout_given=1; shift ;;
    --test-timeout) test_timeout=${2:?}; shift ;;
    --fetch-only) fetch_only=1 ;;
    --report) report=1 ;;
    --ci) ci=1 ;;
    --9p) use_9p=1 ;;
    --refresh) refresh=1 ;;
    --test-bin) test_bin=${2:?}; shift ;;
    --cpus) cpus=${2:?}; shift ;;
    --memory) memory=${2:?}; shift ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
res=$K/results
if [ -n "$report" ]; then
  # The tests and kernels of the last run, unless named.
  ((${#tests[@]})) || mapfile -t tests <"$res/tests" 2>/dev/null || die "no run in $res"
  if ((${#want_kernels[@]} == 0)); then
    for e in "${KERNELS[@]}"; do
      l=$(field "$e" 0)
      [ ! -e "$res/$l.status" ] || want_kernels+=("$l")
    done
  fi
fi
if [ -n "$ci" ]; then
  # CI's budget: a guest that needs more than 15 minutes has failed anyway.
  [ -n "$timeout_given" ] || guest_timeout=900
  ((${#tests[@]})) || tests=("${CI_TESTS[@]}")
  ((${#want_kernels[@]})) || want_kernels=("${CI_KERNELS[@]}")
fi
((${#tests[@]})) || tests=("${DEFAULT_TESTS[@]}")
if ((${#want_kernels[@]} == 0)); then
  for e in "${KERNELS[@]}"; do want_kernels+=("$(field "$e" 0)"); done
fi
for l in "${want_kernels[@]}"; do
  entry_of "$l" >/dev/null || die "unknown kernel '$l' (see --list)"
done

if [ -n "$list" ]; then
  printf '%-12s %-40s %-24s %-12s %s\n' LABEL SUITES PACKAGE ROOTFS CACHED
  for e in "${KERNELS[@]}"; do
    l=$(field "$e" 0)
    c="no"
    [ -e "$K/$l/ok" ] && c="$(cat "$K/$l/kver") ($(cat "$K/$l/pkgver"))"
    printf '%-12s %-40s %-24s %-12s %s\n' "$l" "$(field "$e" 1)" "$(field "$e" 2)" "$(field "$e" 3)" "$c"
  done
  exit 0
fi

if [ -n "$report" ]; then
  for l in "${want_kernels[@]}"; do
    [ -e "$res/$l.status" ] || die "no finished run of $l in $res"
  done
fi
[ -n "$report" ] || [ "$(id -u)" = 0 ] || die "needs root (it installs packages and boots guests that run kernel tests)"

# --- tools
if [ -z "$report" ]; then
apt_install() {
  command -v apt-get >/dev/null || die "missing $* and no apt-get"
  echo "kernels.sh: installing $*" >&2
  [ -n "${apt_updated:-}" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v depmod >/dev/null || need+=(kmod) # depmod here, modprobe in the guests
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
for pair in dpkg-deb:dpkg ip:iproute2 nft:nftables conntrack:conntrack; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
((${#need[@]} == 0)) || apt_install "${need[@]}"

mkdir -p "$T"
# virtme-ng, pinned, in its own venv.
VNG_VERSION=1.42
vng=$T/vng
if [ ! -x "$vng/bin/vng" ] || ! "$vng/bin/vng" --version 2>/dev/null | grep -q " $VNG_VERSION\$"; then
  echo "kernels.sh: installing virtme-ng $VNG_VERSION into $vng" >&2
  rm -rf "$vng"
  python3 -m venv "$vng"
  "$vng/bin/pip" install -q "virtme-ng==$VNG_VERSION"
fi
# The udev-less wrapper around virtme-ng-init (see the header).
guest_bin=$("$vng/bin/python3" -c 'import virtme.resources as r; print(r.find_guest_tools())')/bin
if [ ! -e "$guest_bin/virtme-ng-init.real" ]; then
  mv "$guest_bin/virtme-ng-init" "$guest_bin/virtme-ng-init.real"
fi
# busybox for virtme-ng's initramfs: Debian's static one, unpacked here
# (not installed on the machine).
busybox=$T/busybox/root/bin/busybox
if [ ! -x "$busybox" ]; then
  rm -rf "$T/busybox" && mkdir -p "$T/busybox"
  bb_get() { (cd "$T/busybox" && apt-get download -q busybox-static >/dev/null 2>&1 && dpkg -x busybox-static_*.deb root && rm -f ./*.deb); }
  bb_get || { apt-get update -qq && apt_updated=1 && bb_get; } || die "could not fetch busybox-static"
fi
cat >"$guest_bin/virtme-ng-init.new" <<EOF
#!$busybox sh
# Installed by ctdoctor's scripts/kernels.sh: this machine has no udevd, so
# make the /dev/virtio-ports/NAME links udev would make, then run the real
# init. The /dev and /sys seen here are still the host's (the shared root):
# mount the guest's own first (devtmpfs is one instance, so the links
# outlive this mount).
bb=$busybox
\$bb mount -t devtmpfs devtmpfs /dev
\$bb mount -t sysfs sysfs /sys
for p in /sys/class/virtio-ports/vport*; do
  [ -r "\$p/name" ] || continue
  n=\$(\$bb cat "\$p/name")
  [ -n "\$n" ] || continue
  \$bb mkdir -p /dev/virtio-ports
  \$bb ln -sfn "../\${p##*/}" "/dev/virtio-ports/\$n"
done
\$bb umount /sys
exec "\$0.real" "\$@"
EOF
chmod +x "$guest_bin/virtme-ng-init.new"
mv "$guest_bin/virtme-ng-init.new" "$guest_bin/virtme-ng-init"

# The Rust virtiofsd (cloud kernels only: they have no 9p).
virtiofsd_ready() {
  [ -x "$T/virtiofsd/bin/virtiofsd" ] && return 0
  echo "kernels.sh: building virtiofsd (cargo install) into $T/virtiofsd" >&2
  local n=()
  [ -e /usr/include/cap-ng.h ] || n+=(libcap-ng-dev)
  [ -e /usr/include/seccomp.h ] || n+=(libseccomp-dev)
  ((${#n[@]} == 0)) || apt_install "${n[@]}"
  cargo install -q --locked --root "$T/virtiofsd" virtiofsd
}

# --- kernels
# Debian's archive as this machine's apt is set up to reach it (no host
# names here): the first main and security URIs of its sources.
mirror() { # mirror main|security
  local uris
  uris=$(
    {
      grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
      grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
        sed 's/\[[^]]*\]//' | awk '{print $2}'
    } | grep -E '/debian(-security)?/?$' || true
  )
  if [ "$1" = security ]; then
    echo "$uris" | grep -m1 -- '-security' || true
  else
    echo "$uris" | grep -v -- '-security' | head -1
  fi
}

fetch() { # fetch LABEL: cache the kernel; prints nothing on success
  local label=$1 e suites pkg dir apt s uri comp main sec meta img deb kver ver p pkgs
  e=$(entry_of "$label")
  suites=$(field "$e" 1) pkg=$(field "$e" 2)
  dir=$K/$label
  if [ -e "$dir/ok" ] && [ -z "$refresh" ]; then
    return 0
  fi
  main=$(mirror main) sec=$(mirror security)
  [ -n "$main" ] || die "no Debian archive in this machine's apt sources"
  [ -n "$sec" ] || sec="${main%/debian*}/debian-security"
  apt=$K/apt/$label
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
  : >"$apt/sources.list"
  for s in $suites; do
    uri=$main
    case $s in *-security) uri=$sec ;; esac
    comp=main
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $s $comp" >>"$apt/sources.list"
  done
  local O=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
    -o Acquire::Languages=none -o APT::Sandbox::User=root
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false)
  echo "kernels.sh: $label: asking Debian's archive ($suites) for $pkg" >&2
  apt-get "${O[@]}" update -qq >/dev/null || die "$label: apt-get update failed"
  # The metapackage names this suite's current image package.
  meta=$(apt-cache "${O[@]}" show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Depends: //p' | head -1)
  img=$(echo "$meta" | tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ ]*\).*/\1/p' | head -1)
  [ -n "$img" ] || die "$label: no image package behind $pkg ($meta)"
  ver=$(apt-cache "${O[@]}" show --no-all-versions "$img" | sed -n 's/^Version: //p' | head -1)
  kver=${img#linux-image-}
  kver=${kver%-unsigned}
  if [ -e "$dir/ok" ] && [ "$(cat "$dir/pkgver")" = "$img $ver" ]; then
    return 0
  fi
  # Newer packaging splits the image: linux-binary-KVER (vmlinuz) and
  # linux-modules-KVER beside a small linux-image-KVER.
  pkgs=("$img")
  for p in $(apt-cache "${O[@]}" show --no-all-versions "$img" | sed -n 's/^Depends: //p' |
    tr ',|' '\n\n' | awk '{print $1}'); do
    case $p in "linux-binary-$kver" | "linux-modules-$kver") pkgs+=("$p") ;; esac
  done
  rm -rf "$dir" && mkdir -p "$dir/dl"
  (cd "$dir/dl" && apt-get "${O[@]}" download -q "${pkgs[@]}" >/dev/null) || die "$label: downloading ${pkgs[*]} failed"
  for deb in "$dir"/dl/*.deb; do
    dpkg -x "$deb" "$dir/root"
  done
  rm -rf "$dir/dl"
  # trixie's packages are merged-/usr (usr/lib/modules): depmod -b and
  # virtme-ng look under lib/modules.
  [ -e "$dir/root/lib" ] || ln -s usr/lib "$dir/root/lib"
  local kimg
  for kimg in "boot/vmlinuz-$kver" "usr/lib/modules/$kver/vmlinuz" ""; do
    [ -z "$kimg" ] || [ ! -e "$dir/root/$kimg" ] || break
  done
  [ -n "$kimg" ] || die "$label: ${pkgs[*]} have no boot/vmlinuz-$kver nor usr/lib/modules/$kver/vmlinuz"
  echo "$kimg" >"$dir/kimg"
  depmod -a -b "$dir/root" "$kver"
  echo "$kver" >"$dir/kver"
  echo "$img $ver" >"$dir/pkgver"
  touch "$dir/ok"
  echo "kernels.sh: $label: $img $ver cached in $dir ($(du -sh "$dir" | cut -f1))" >&2
}

rootfs() { # rootfs LABEL: how this run shares the root with that kernel
  local can
  can=$(field "$(entry_of "$1")" 3)
  if [ -n "$use_9p" ] && [[ " $can " == *" 9p "* ]]; then echo 9p; else echo virtiofs; fi
}
for l in "${want_kernels[@]}"; do
  fetch "$l"
  [ "$(rootfs "$l")" != virtiofs ] || virtiofsd_ready || die "virtiofsd could not be built"
done
[ -z "$fetch_only" ] || exit 0

# --- the binaries under test
if [ -z "$test_bin" ]; then
  test_bin=$(cargo test --release -p ctdoctor --test kernel --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "kernel" and m.get("executable"):
        print(m["executable"])')
fi
[ -x "$test_bin" ] || die "no kernel test binary (cargo test --release -p ctdoctor --test kernel --no-run)"
ctdoctor=$repo/target/release/ctdoctor
[ -x "$ctdoctor" ] || die "no $ctdoctor (cargo build --release)"
# Every name of the subset must be a test of the binary.
known=$("$test_bin" --list 2>/dev/null | sed -n 's/: test$//p')
for t in "${tests[@]}"; do
  grep -qxF "$t" <<<"$known" || die "no kernel test named $t"
done

# --- the guests, one at a time
mkdir -p "$res"
run=$K/run
declare -A secs status
rm -f "$res"/*.status
printf '%s\n' "${tests[@]}" >"$res/tests"
for l in "${want_kernels[@]}"; do
  e=$(entry_of "$l")
  kver=$(cat "$K/$l/kver")
  fs=$(rootfs "$l")
  log=$res/$l.log
  rm -rf "$run" && mkdir -p "$run/tmp" "$run/home"
  args=(--run "$K/$l/root/$(cat "$K/$l/kimg")" --busybox "$busybox" --disable-kvm
    --cpus "$cpus" --memory "$memory" --name "kernels-$l")
  path=$vng/bin:$PATH
  if [ "$fs" = 9p ]; then
    args+=(--force-9p)
  else
    path=$T/virtiofsd/bin:$path
  fi
  # What the guest runs, in a file: the kernel command line (2048 bytes)
  # cannot carry the list of tests.
  {
    printf 'test_bin=%q ctdoctor=%q test_timeout=%q\n' "$test_bin" "$ctdoctor" "$test_timeout"
    printf 'nofile_soft=%q nofile_hard=%q\n' "$(ulimit -Sn)" "$(ulimit -Hn)"
    printf 'tests=('
    printf ' %q' "${tests[@]}"
    printf ' )\n'
  } >"$run/plan"
  # A copy: bash reads a script as it goes, so an edit of the original
  # during a run must not reach a running guest.
  cp scripts/kernels-guest.sh "$run/guest.sh"
  rm -f "$log.first"
  echo "kernels.sh: $l ($kver): booting (TCG, $cpus vCPUs, $memory, root over $fs), ${#tests[@]} tests" >&2
  t0=$(date +%s)
  note=
  for attempt in 1 2; do
    set +e
    # virtme-ng's temp files (script, exit code, virtiofsd socket) go to
    # target/kernels/run, removed below; the guest writes nothing here.
    # Through a pipe: QEMU opens /proc/self/fd/1 and /2 once per port, and
    # on a regular file each open would write from offset 0 over the others.
    TMPDIR=$run/tmp HOME=$run/home PATH=$path timeout -k 20 "$guest_timeout" \
      "$vng/bin/vng" "${args[@]}" --exec "bash $run/guest.sh $run/plan" \
      </dev/null 2>&1 | cat >"$log"
    rc=${PIPESTATUS[0]}
    set -e
    # virtiofsd outlives a killed guest: end ours (its pid file is in $run).
    for p in "$run"/tmp/*.pid; do
      [ ! -e "$p" ] || kill "$(cat "$p")" 2>/dev/null || true
    done
    # A boot whose script never started (nothing printed: seen about once
    # in 55 boots) is tried once more; a guest that started and did not
    # finish is not.
    grep -q '^KERNELS-GUEST-BEGIN ' "$log" || [ "$attempt" = 2 ] || {
      note="; the first boot printed nothing (vng exit $rc), booted again"
      cp "$log" "$log.first"
      continue
    }
    break
  done
  secs[$l]=$(($(date +%s) - t0))
  rm -rf "$run"
  if grep -q '^KERNELS-GUEST-END ' "$log"; then
    status[$l]="completed (vng exit $rc)$note"
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    status[$l]="TIMED OUT after ${guest_timeout}s, no completion line$note"
  else
    status[$l]="NO COMPLETION LINE (vng exit $rc)$note"
  fi
  echo "kernels.sh: $l: ${status[$l]} in ${secs[$l]} s; output in $log" >&2
  echo "${secs[$l]} ${status[$l]}" >"$res/$l.status"
done

fi # [ -z "$report" ]

# --- the matrix
exec python3 - "$res" "${#want_kernels[@]}" "${want_kernels[@]}" "${tests[@]}" <<'EOF'
import re, sys
res, n = sys.argv[1], int(sys.argv[2])
kernels, tests = sys.argv[3:3 + n], sys.argv[3 + n:]
cells, details, probes, info = {}, [], [], {}
for k in kernels:
    text = open(f"{res}/{k}.log", errors="replace").read()
    done = re.search(r"^KERNELS-GUEST-END ", text, re.M)
    kv = re.search(r"^FACT kernel: (.*)$", text, re.M)
    info[k] = kv.group(1) if kv else "?"
    for m in re.finditer(r"^PROBE (\S+) (ok|FAILED|skipped): (.*)$", text, re.M):
        name = "probe::" + m.group(1)
        if name not in probes:
            probes.append(name)
        cells[(name, k)] = {"ok": "pass", "FAILED": "FAIL"}.get(m.group(2), "skipped")
        if m.group(2) == "FAILED":
            details.append((k, name, m.group(3)))
    blocks = {m.group(1): m for m in re.finditer(
        r"^KERNELS-TEST-BEGIN (\S+)\n(.*?)(?:^KERNELS-TEST-END \S+ rc=(\d+) secs=(\d+)\n|\Z)",
        text, re.M | re.S)}
    for t in tests:
        b = blocks.get(t)
        if b is None:
            cells[(t, k)] = "FAIL"
            details.append((k, t, "not run: the guest ended before it (no completion line)" if not done
                            else "not run"))
            continue
        body, rc, secs = b.group(2), b.group(3), b.group(4)
        r = re.search(r"^test " + re.escape(t) + r" \.\.\. (ok|FAILED|ignored)", body, re.M)
        if rc is None:
            cells[(t, k)] = "FAIL"
            details.append((k, t, "the guest died or timed out while it ran"))
        elif r and r.group(1) == "ok" and rc == "0":
            cells[(t, k)] = f"pass {secs}s"
        elif r and r.group(1) == "ignored":
            cells[(t, k)] = "skipped (ignored)"
        else:
            cells[(t, k)] = f"FAIL {secs}s"
            why = "timed out (the test's own limit)" if rc == "124" else ""
            m = re.search(r"^---- " + re.escape(t) + r" stdout ----\n\s*(.*?)\n\s*\nfailures:", body, re.M | re.S)
            msg = (m.group(1).strip() if m else body.strip()[-1500:])
            details.append((k, t, (why + "\n" + msg).strip()))
rows = probes + tests
w = max(len(r) for r in rows)
cw = [max(len(k), 12) for k in kernels]
print()
print("kernel matrix:", ", ".join(f"{k} = {info[k]}" for k in kernels))
print(" " * w + "  " + "  ".join(k.ljust(c) for k, c in zip(kernels, cw)))
failed = 0
for r in rows:
    line = []
    for k, c in zip(kernels, cw):
        v = cells.get((r, k), "-")
        failed += v.startswith("FAIL")
        line.append(v.ljust(c))
    print(r.ljust(w) + "  " + "  ".join(line))
if details:
    print("\nfailures:")
    for k, t, msg in details:
        print(f"\n--- {t} on {k} ({info[k]}):")
        lines = [l if len(l) <= 800 else l[:800] + " ..." for l in msg.splitlines()[:40]]
        print("    " + "\n    ".join(lines))
print()
for k in kernels:
    secs, _, status = open(f"{res}/{k}.status").read().strip().partition(" ")
    print(f"guest {k} ({info[k]}): {status}, {secs} s")
print(f"{failed} failed cell(s)")
sys.exit(1 if failed else 0)
EOF
