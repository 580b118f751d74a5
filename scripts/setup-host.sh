#!/bin/bash
# Installs everything claude-audit needs on a Debian 12 host, idempotently: Debian packages (BCC and a
# kernel-headers fallback), the headers link BCC looks for, the tracefs mount, and the virtual
# environment at .venv. Run as root. WITH_TEST_DEPS=1 also installs what the test tiers need.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "setup-host: run as root" >&2; exit 1; }

PKGS="python3-bpfcc python3-venv python3-pip linux-headers-amd64 bpftool"
if [ "${WITH_TEST_DEPS:-0}" = 1 ]; then
  PKGS="$PKGS systemd systemd-journal-remote rsyslog auditd logrotate dpkg-dev util-linux"
  # The tests check every record they read against docs/schema/record.schema.json.
  PKGS="$PKGS python3-jsonschema"
  # The kernel tier (tests/kernels) boots Debian's kernels under QEMU with a busybox initramfs.
  PKGS="$PKGS qemu-system-x86 busybox-static cpio"
  # The package tests boot a Debian 13 root made by debootstrap and run the arm64 packages' Python
  # under qemu-user emulation.
  PKGS="$PKGS debootstrap qemu-user-static"
  # The real Claude Code CLI comes from the npm registry. Some images ship NodeSource's nodejs, which
  # bundles npm and conflicts with Debian's npm package: install Debian's only when there is none.
  command -v node >/dev/null || PKGS="$PKGS nodejs"
  command -v npm >/dev/null || PKGS="$PKGS npm"
fi
# One dpkg-query for all packages: this also runs in the kernel tier's emulated guests, where each
# process start is costly. It exits 1 when any package is unknown or purged (a fresh machine): that is
# an answer here, not an error, so pipefail must not see it.
installed=$({ dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $PKGS 2>/dev/null || true; } | awk '$1 == "ii" {print $2}')
missing=""
for p in $PKGS; do grep -qx "$p" <<< "$installed" || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "setup-host: installing$missing"
  apt-get update -qq
  # auditd and rsyslog must not start on the host: tests start their own instances where needed.
  # A policy-rc.d the image already has is put back afterwards, not deleted.
  rcd=/usr/sbin/policy-rc.d
  [ -e "$rcd" ] && cp -p "$rcd" "$rcd.claude-audit-saved"
  printf '#!/bin/sh\nexit 101\n' > "$rcd" && chmod +x "$rcd"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  if [ -e "$rcd.claude-audit-saved" ]; then mv "$rcd.claude-audit-saved" "$rcd"; else rm -f "$rcd"; fi
fi

# BCC finds headers through /lib/modules/$(uname -r)/{build,source}. This kernel has none, so point
# them at Debian's 6.1 headers: BCC only needs them to compile; every kernel struct offset the
# program uses comes from BTF instead.
kmod=/lib/modules/$(uname -r)
if [ ! -e "$kmod/build/include/linux/sched.h" ] && [ ! -e "$kmod/source/include/linux/sched.h" ]; then
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -1)
  common=$(ls -d /usr/src/linux-headers-*-common | sort -V | tail -1)
  mkdir -p "$kmod"
  ln -sfn "$hdr" "$kmod/build"
  ln -sfn "$common" "$kmod/source"
fi

if ! mountpoint -q /sys/kernel/tracing; then
  mount -t tracefs nodev /sys/kernel/tracing
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import bcc' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -e "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
