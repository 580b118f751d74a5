#!/bin/bash
# Builds dist/claude-audit_<version>_all.deb with dpkg-deb. The wheel of claude-audit and wheels of
# its PyPI dependencies (pydantic, structlog, sdnotify, pySigma, orjson and theirs) are vendored into
# /usr/share/claude-audit/wheels, so installing needs no network: postinst makes a venv at
# /usr/lib/claude-audit (--system-site-packages, to see Debian's python3-bpfcc) from them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
# CLAUDE_AUDIT_DEB_VERSION overrides the Debian version (tests build two to check upgrades).
version=${CLAUDE_AUDIT_DEB_VERSION:-$($PY -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
wheels="$root/usr/share/claude-audit/wheels"
mkdir -p "$wheels" "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/claude-audit" \
  "$root/etc/logrotate.d" "$root/usr/share/doc/claude-audit" "$root/usr/share/claude-audit/bpf"

# Wheels: ours (no deps) + its dependencies as pyproject.toml lists them (one list, so a new dependency
# cannot be forgotten here), for CPython 3.11 (Debian 12) and 3.13 (Debian 13) on x86_64: pydantic-core,
# pyyaml, google-re2 and jq (pySigma's) are binary; postinst's pip picks the ones its python takes.
# sdnotify is published only as an sdist, which pip cannot fetch for another python version: it is pure
# Python, fetched once and made a wheel below.
.venv/bin/pip wheel -q --no-deps -w "$wheels" .
mapfile -t deps < <($PY -c 'import tomllib;print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))')
binary_deps=()
for d in "${deps[@]}"; do
  case "$d" in sdnotify*) .venv/bin/pip download -q --no-deps -d "$wheels" "$d" ;; *) binary_deps+=("$d") ;; esac
done
for pyver in 3.11 3.13; do
  .venv/bin/pip download -q -d "$wheels" --only-binary=:all: --python-version "$pyver" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --implementation cp "${binary_deps[@]}"
done
# sdnotify is sdist-only on PyPI: turn any sdist into a wheel so install is pure wheel.
for sd in "$wheels"/*.tar.gz; do
  [ -e "$sd" ] || continue
  .venv/bin/pip wheel -q --no-deps -w "$wheels" "$sd" && rm -f "$sd"
done

# The BPF program is compiled by BCC at start from its C source; postinst links it where the package
# looks for it (claude_audit.bpf_layout.BPF_DIR).
install -m 0644 bpf/claude_audit.bpf.c bpf/claude_audit.h "$root/usr/share/claude-audit/bpf/"
install -m 0755 packaging/debian/claude-audit.wrapper "$root/usr/bin/claude-audit"
install -m 0644 systemd/claude-audit.service "$root/lib/systemd/system/claude-audit.service"
if [ -f etc/config.toml ]; then
  install -m 0644 etc/config.toml "$root/etc/claude-audit/config.toml"
else
  # Placeholder until etc/config.toml lands: the daemon's defaults apply.
  printf '# claude-audit configuration. Every key is optional; see README.md.\n' > "$root/etc/claude-audit/config.toml"
fi
install -m 0644 packaging/debian/claude-audit.logrotate "$root/etc/logrotate.d/claude-audit"
[ -f README.md ] && install -m 0644 README.md "$root/usr/share/doc/claude-audit/README.md"
for s in postinst prerm postrm; do install -m 0755 "packaging/debian/$s" "$root/DEBIAN/$s"; done
printf '/etc/claude-audit/config.toml\n/etc/logrotate.d/claude-audit\n' > "$root/DEBIAN/conffiles"
size=$(du -sk "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" packaging/debian/control.in > "$root/DEBIAN/control"

mkdir -p dist
out="dist/claude-audit_${version}_all.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "$out"
