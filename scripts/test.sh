#!/usr/bin/env bash
# Run ctdoctor's whole test suite. First installs what the kernel tests use
# (apt-get, as root) when it is missing. Kernel tests need root: without it
# they print why they are skipped (under CI=true they fail instead).
# nginx (the lab's gateway proxy) comes from Debian's nginx-light.
set -euo pipefail
cd "$(dirname "$0")/.."

# tool -> Debian package
need=()
for pair in ip:iproute2 nft:nftables iptables:iptables conntrack:conntrack ethtool:ethtool \
            mawk:mawk gawk:gawk tmux:tmux sysctl:procps python3:python3 nginx:nginx-light; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    # Packages with a service (nginx, prometheus) must not start it on the
    # host: the tests start what they need inside their own namespaces.
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    if [ -n "$made_policy" ]; then rm -f "$policy"; fi
  else
    echo "missing (kernel tests will be skipped): ${need[*]}; run this script as root to install them" >&2
  fi
fi

cargo test --workspace --release "$@"
