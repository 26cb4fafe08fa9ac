#!/usr/bin/env bash
# Build what a gateway installs without a Rust toolchain (issue 25) into
# target/dist/ (docs/packaging.md has the what and why):
#
#   ctdoctor                              the static binary (glibc, +crt-static), stripped
#   ctdoctor_VERSION-1_amd64.deb          Debian package holding that binary
#   ctdoctor-VERSION-x86_64-linux.tar.gz  binary, man page, completions, unit, docs
#                                         (RHEL / Amazon Linux: unpack into /usr/local)
#   ctdoctor-VERSION-1.x86_64.rpm         the same for rpm hosts (when rpmbuild is here)
#   SHA256SUMS
#
#   bash scripts/package.sh           no root needed; needs cargo, dpkg-deb, file, strip
#
# The static binary is built in its own target dir (target/static), so it
# never rebuilds target/release. CARGO_BUILD_JOBS is honoured. The package
# is a staged tree packed by dpkg-deb: no cargo tool beyond the toolchain.
# Nothing is left outside target/dist/ (the staging tree is removed on exit).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS

die() { echo "package.sh: $*" >&2; exit 1; }
trap 'echo "package.sh: failed at line $LINENO" >&2' ERR
for tool in cargo dpkg-deb file strip gzip tar sha256sum; do
  command -v "$tool" >/dev/null || die "\`$tool\` is needed (apt-get install dpkg-dev file binutils)"
done
[ "$(uname -m)" = x86_64 ] || die "only x86_64 is packaged (this is $(uname -m))"

triple=x86_64-unknown-linux-gnu
arch=amd64
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml's [workspace.package]"
debversion="$version-1"
# The commit build.rs puts into --version; the same here for the changelog.
if [ -n "${CTDOCTOR_COMMIT:-}" ]; then
  commit=$CTDOCTOR_COMMIT
else
  commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
fi
# Reproducible times: the commit's (or now, outside git).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
maintainer=${DEB_MAINTAINER:-$(git log -1 --format='%an <%ae>' 2>/dev/null || true)}
[ -n "$maintainer" ] || die "set DEB_MAINTAINER='Name <email>' (no git author to take it from)"

# 1. The static binary. glibc with crt-static: nothing to download (the
#    musl target is a rustup download), the same libc the test suite runs
#    against. RUSTFLAGS with --target apply to the binary, not to build
#    scripts and proc macros.
echo "building the static binary (target/static)..."
t0=$SECONDS
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --locked -p ctdoctor --bin ctdoctor \
  --target "$triple" --target-dir target/static
built=target/static/$triple/release/ctdoctor
build_s=$((SECONDS - t0))
kind=$(file -b "$built")
case "$kind" in
  *"static-pie linked"* | *"statically linked"*) ;;
  *) die "$built is not static: $kind" ;;
esac
# ldd exits 1 for a static binary ("not a dynamic executable" or
# "statically linked", depending on the loader): anything it lists is a
# dependency we must not have.
if ldd "$built" 2>&1 | grep -q '=>'; then
  die "$built needs shared libraries: $(ldd "$built" 2>&1 | tr '\n' ' ')"
fi

dist=target/dist
rm -rf "$dist"
mkdir -p "$dist"
stage=$(mktemp -d "$repo/target/.package-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
umask 022

strip --strip-all --remove-section=.comment -o "$dist/ctdoctor" "$built"
chmod 0755 "$dist/ctdoctor"
bin=$dist/ctdoctor
got=$("$bin" --version)
[ "$got" = "ctdoctor $version ($commit)" ] || die "--version says '$got', expected 'ctdoctor $version ($commit)'"

# 2. Generated pages: the man page and the completions, from the binary.
gen=$stage/gen
mkdir -p "$gen"
"$bin" man > "$gen/ctdoctor.1"
"$bin" completions bash > "$gen/ctdoctor.bash"
"$bin" completions zsh > "$gen/_ctdoctor"
"$bin" completions fish > "$gen/ctdoctor.fish"
for f in "$gen"/*; do [ -s "$f" ] || die "generated $f is empty"; done

# A unit whose ExecStart names PATH instead of deploy/'s /usr/local/bin
# (exactly one line in each file, or the layout changed: say so).
unit_for() { # SRC PATH DEST
  local n
  n=$(grep -c '^ExecStart=/usr/local/bin/ctdoctor ' "$1") || true
  [ "$n" = 1 ] || die "$1: expected one 'ExecStart=/usr/local/bin/ctdoctor ' line, found $n"
  install -D -m 0644 /dev/null "$3"
  sed "s|^ExecStart=/usr/local/bin/ctdoctor |ExecStart=$2 |" "$1" > "$3"
}
unit=deploy/systemd/ctdoctor-exporter.service
dropin=deploy/systemd/ctdoctor-exporter.service.d/all-netns.conf

# What the .deb and the rpm both install under ROOT: the binary in
# /usr/bin, the gzipped man page, the completions (zsh's directory is
# ZSH_DIR), the unit in UNIT_DIR and the drop-in — not active where
# systemd reads it: copied to /etc/systemd/system/ctdoctor-exporter.service.d/
# by whoever wants it — and /var/lib/ctdoctor, 0700.
install_system() { # ROOT ZSH_DIR UNIT_DIR
  install -D -m 0755 "$bin" "$1/usr/bin/ctdoctor"
  install -d -m 0755 "$1/usr/share/man/man1"
  gzip -9n < "$gen/ctdoctor.1" > "$1/usr/share/man/man1/ctdoctor.1.gz"
  install -D -m 0644 "$gen/ctdoctor.bash" "$1/usr/share/bash-completion/completions/ctdoctor"
  install -D -m 0644 "$gen/_ctdoctor" "$1$2/_ctdoctor"
  install -D -m 0644 "$gen/ctdoctor.fish" "$1/usr/share/fish/vendor_completions.d/ctdoctor.fish"
  unit_for "$unit" /usr/bin/ctdoctor "$1$3/ctdoctor-exporter.service"
  unit_for "$dropin" /usr/bin/ctdoctor "$1/usr/share/ctdoctor/systemd/all-netns.conf"
  install -d -m 0700 "$1/var/lib/ctdoctor"
}

# 3. The Debian package, from a staged tree.
root=$stage/deb
doc=$root/usr/share/doc/ctdoctor
# bookworm's systemd and lintian want units in /lib/systemd/system.
install_system "$root" /usr/share/zsh/vendor-completions /lib/systemd/system
install -d -m 0755 "$doc"
for f in README.md docs/deploy.md docs/runbook.md docs/checks.md docs/metrics.md \
         docs/tune.md docs/notrack.md docs/plan.md docs/lab.md docs/packaging.md; do
  [ -f "$f" ] || die "missing $f"
  # As dh_compress does: documentation over 4 kB is gzipped.
  if [ "$(stat -c %s "$f")" -gt 4096 ]; then
    gzip -9n < "$f" > "$doc/$(basename "$f").gz"
  else
    install -m 0644 "$f" "$doc/"
  fi
done
changedate=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
printf '%s\n' "ctdoctor ($debversion) unstable; urgency=medium" "" \
  "  * Built by scripts/package.sh from commit $commit." "" \
  " -- $maintainer  $changedate" | gzip -9n > "$doc/changelog.Debian.gz"
first=$(git log --format=%cd --date=format:%Y 2>/dev/null | tail -n 1)
years=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)
[ -z "$first" ] || [ "$first" = "$years" ] || years="$first-$years"
cat > "$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ctdoctor
Comment: /usr/bin/ctdoctor is linked statically: it holds GNU libc (LGPL-2.1+,
 source in Debian's glibc source package of the building machine) and Rust
 crates listed in the source's Cargo.lock, under their own (MIT, Apache-2.0
 or similarly permissive) licenses.

Files: *
Copyright: $years the ctdoctor authors
License: MIT or Apache-2.0

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.

License: LGPL-2.1+
 On Debian systems, the full text of the GNU Lesser General Public License,
 version 2.1, is in /usr/share/common-licenses/LGPL-2.1.
EOF
chmod 0644 "$doc/copyright"
# Lintian overrides, each with its reason (docs/packaging.md).
install -D -m 0644 deploy/debian/lintian-overrides "$root/usr/share/lintian/overrides/ctdoctor"

install -d -m 0755 "$root/DEBIAN"
for s in postinst prerm postrm; do
  install -m 0755 "deploy/debian/$s" "$root/DEBIAN/$s"
done
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
size_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: ctdoctor
Version: $debversion
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size_kb
Section: net
Priority: optional
Description: find and fix conntrack-table-full packet loss on Linux gateways
 ctdoctor diagnoses the packet loss that turns into 504s and connect
 timeouts on busy Linux gateways: a full connection-tracking table first,
 and its companions (fd limits, ephemeral ports and TIME_WAIT, listen-queue
 overflow, NIC and cloud allowances). It says exactly what to change,
 changes it safely when asked (journaled in /var/lib/ctdoctor, rolled
 back on request), and exports Prometheus metrics.
 .
 The binary is static: no dependencies. The exporter's systemd unit,
 ctdoctor-exporter.service, is installed but not enabled; its --all-netns
 drop-in is in /usr/share/ctdoctor/systemd/.
EOF
deb=$dist/ctdoctor_${debversion}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null

# 4. The tarball for hosts without dpkg: a /usr/local tree.
#    tar -xzf ctdoctor-*.tar.gz -C /usr/local --strip-components=1
name=ctdoctor-$version-x86_64-linux
t=$stage/$name
install -D -m 0755 "$bin" "$t/bin/ctdoctor"
install -D -m 0644 "$gen/ctdoctor.1" "$t/share/man/man1/ctdoctor.1"
install -D -m 0644 "$gen/ctdoctor.bash" "$t/share/bash-completion/completions/ctdoctor"
install -D -m 0644 "$gen/_ctdoctor" "$t/share/zsh/site-functions/_ctdoctor"
install -D -m 0644 "$gen/ctdoctor.fish" "$t/share/fish/vendor_completions.d/ctdoctor.fish"
# systemd reads /usr/local/lib/systemd/system; the unit's ExecStart is
# deploy/'s own /usr/local/bin/ctdoctor.
install -D -m 0644 "$unit" "$t/lib/systemd/system/ctdoctor-exporter.service"
install -D -m 0644 "$dropin" "$t/share/ctdoctor/systemd/all-netns.conf"
install -D -m 0644 README.md "$t/share/doc/ctdoctor/README.md"
install -m 0644 docs/deploy.md docs/packaging.md "$t/share/doc/ctdoctor/"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  -C "$stage" -czf "$dist/$name.tar.gz" "$name"

# 5. An rpm for RHEL / Amazon Linux, when rpmbuild is here (Debian's
#    `rpm` package): the files of the tarball at the paths of the .deb
#    (/usr/bin, units in /usr/lib/systemd/system). Removal stops and
#    disables the exporter; rpm has no purge: /var/lib/ctdoctor stays when
#    tune's journal is in it (rpm -e says so), `rm -rf` it by hand.
rpm=
if command -v rpmbuild >/dev/null; then
  top=$stage/rpm
  r=$top/files
  install_system "$r" /usr/share/zsh/site-functions /usr/lib/systemd/system
  install -D -m 0644 README.md "$r/usr/share/doc/ctdoctor/README.md"
  install -m 0644 docs/deploy.md docs/packaging.md "$r/usr/share/doc/ctdoctor/"
  sed -e "s|@VERSION@|$version|" -e "s|@COMMIT@|$commit|" -e "s|@FILES@|$r|" \
    deploy/rpm/ctdoctor.spec > "$top/ctdoctor.spec"
  rpmbuild -bb --quiet --define "_topdir $top" --define "_build_id_links none" \
    --define "source_date_epoch_from_changelog 0" --define "use_source_date_epoch_as_buildtime 1" \
    --define "clamp_mtime_to_source_date_epoch 1" --define "_binary_payload w9.xzdio" \
    --target x86_64 "$top/ctdoctor.spec" >/dev/null
  rpm=$(basename "$top"/RPMS/x86_64/ctdoctor-*.rpm)
  mv "$top/RPMS/x86_64/$rpm" "$dist/"
else
  echo "no rpmbuild here (apt-get install rpm): no rpm built" >&2
fi

(cd "$dist" && sha256sum ctdoctor "$(basename "$deb")" "$name.tar.gz" $rpm > SHA256SUMS)
echo "target/dist (static binary built in ${build_s} s, all in $((SECONDS - started)) s):"
ls -l "$dist" | tail -n +2
