#!/bin/bash
# Builds one .deb per Debian release and architecture, with dpkg-deb:
#   dist/claude-audit_<upstream>-1+deb12_amd64.deb   Debian 12 (bookworm), CPython 3.11, x86_64
#   dist/claude-audit_<upstream>-1+deb12_arm64.deb   Debian 12 (bookworm), CPython 3.11, aarch64
#   dist/claude-audit_<upstream>-1+deb13_amd64.deb   Debian 13 (trixie),   CPython 3.13, x86_64
#   dist/claude-audit_<upstream>-1+deb13_arm64.deb   Debian 13 (trixie),   CPython 3.13, aarch64
# Usage: build-deb.sh [TARGET ...] with TARGET one of bookworm-amd64 bookworm-arm64 trixie-amd64
# trixie-arm64 (default: all four). Prints the path of each package built, one a line.
#
# Each package vendors the wheel of claude-audit and the wheels of its PyPI dependencies
# (packaging/vendor-requirements.txt) for its CPython ABI and machine in /usr/share/claude-audit/wheels:
# pydantic-core is a compiled extension, so a package is specific to both, and its Depends pin python3
# to that minor version. postinst makes a venv at /usr/lib/claude-audit (--system-site-packages, to see
# Debian's python3-bpfcc) from those wheels only: installing needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
PIP=(.venv/bin/pip --disable-pip-version-check)
# CLAUDE_AUDIT_DEB_VERSION overrides the upstream part of the version (tests build two to check upgrades).
upstream=${CLAUDE_AUDIT_DEB_VERSION:-$($PY -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')}
maintainer=${CLAUDE_AUDIT_DEB_MAINTAINER:-claude-audit maintainers <maintainers@users.noreply.r-seed-83ff6a08.example>}
# Reproducible dates: the last commit's time (the build time outside a git checkout).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

ALL_TARGETS=(bookworm-amd64 bookworm-arm64 trixie-amd64 trixie-arm64)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Pure parts, built once: our wheel (no deps) and sdnotify, which PyPI has as an sdist only.
common="$work/common"
mkdir -p "$common"
"${PIP[@]}" wheel -q --no-deps -w "$common" . 2>/dev/null
"${PIP[@]}" download -q --no-deps --no-binary=:all: -d "$work/sdist" \
  "$(grep -E '^sdnotify==' packaging/vendor-requirements.txt)" 2>/dev/null
for sd in "$work"/sdist/*.tar.gz; do "${PIP[@]}" wheel -q --no-deps -w "$common" "$sd" 2>/dev/null; done

build_one() {
  local target=$1 suite arch debrel pyver machine
  suite=${target%-*}
  arch=${target#*-}
  case "$suite" in
    bookworm) debrel=12 pyver=3.11 ;;
    trixie) debrel=13 pyver=3.13 ;;
    *) echo "build-deb: unknown release in $target (known: ${ALL_TARGETS[*]})" >&2; return 2 ;;
  esac
  case "$arch" in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) echo "build-deb: unknown architecture in $target (known: ${ALL_TARGETS[*]})" >&2; return 2 ;;
  esac
  local pyabi=cp${pyver/./} pynext="${pyver%.*}.$(( ${pyver#*.} + 1 ))"
  # Debian 13 packages ship nothing under the /lib alias of merged /usr (DEP 17): the unit goes to
  # /usr/lib/systemd/system there, and stays at Debian 12's usual /lib/systemd/system on Debian 12.
  local unitdir=lib/systemd/system
  [ "$debrel" -ge 13 ] && unitdir=usr/lib/systemd/system
  local version="${upstream}-1+deb${debrel}"
  local root="$work/$target"
  local wheels="$root/usr/share/claude-audit/wheels" doc="$root/usr/share/doc/claude-audit"
  mkdir -p "$wheels" "$root/DEBIAN" "$root/usr/bin" "$root/$unitdir" "$root/etc/claude-audit" \
    "$root/etc/logrotate.d" "$doc/licenses" "$root/usr/share/claude-audit/bpf"

  cp "$common"/*.whl "$wheels/"
  # Binary wheels for exactly this interpreter and machine; pip fails rather than fall back to a source
  # build or another ABI. sdnotify (pure, built above) is excluded from this resolution.
  grep -vE '^(#|sdnotify==|$)' packaging/vendor-requirements.txt > "$work/req-$target.txt"
  "${PIP[@]}" download -q --no-deps -d "$wheels" --only-binary=:all: --implementation cp \
    --python-version "$pyver" --abi "$pyabi" --abi abi3 --abi none \
    --platform "manylinux2014_$machine" --platform "manylinux_2_17_$machine" --platform "manylinux_2_28_$machine" --platform any \
    -r "$work/req-$target.txt" 2>/dev/null
  # The wheel set must be complete for this target (no dependency missing from the pins) and installable
  # without network: resolve claude-audit against it as postinst will.
  "${PIP[@]}" install -q --dry-run --ignore-installed --no-index --find-links "$wheels" --target "$work/dry-$target" \
    --only-binary=:all: --implementation cp --python-version "$pyver" \
    --platform "manylinux2014_$machine" --platform "manylinux_2_17_$machine" --platform "manylinux_2_28_$machine" claude-audit 2>/dev/null \
    || { echo "build-deb: the vendored wheels do not satisfy claude-audit for $target" >&2; return 1; }
  ls "$wheels"/pydantic_core-*-"$pyabi"-*"$machine"*.whl >/dev/null \
    || { echo "build-deb: no $pyabi $machine pydantic-core wheel for $target" >&2; return 1; }

  # Every vendored distribution has a stanza in debian/copyright, and its own license files ship.
  local whl dist
  for whl in "$wheels"/*.whl; do
    dist=$(basename "$whl"); dist=${dist%%-*}
    [ "$dist" = claude_audit ] && continue
    grep -q "^Files: usr/share/claude-audit/wheels/${dist}-" packaging/debian/copyright \
      || { echo "build-deb: $dist is vendored but not in packaging/debian/copyright" >&2; return 1; }
    mkdir -p "$doc/licenses/$dist"
    $PY -c '
import sys, zipfile, pathlib
out = pathlib.Path(sys.argv[2])
for name in zipfile.ZipFile(sys.argv[1]).namelist():
    parts = name.split("/")
    if parts[0].endswith(".dist-info") and (parts[1:2] == ["licenses"] or parts[-1].startswith("LICENSE")):
        if not name.endswith("/"):
            (out / parts[-1]).write_bytes(zipfile.ZipFile(sys.argv[1]).read(name))
' "$whl" "$doc/licenses/$dist"
  done
  for sd in "$work"/sdist/*.tar.gz; do
    dist=$(basename "$sd"); dist=${dist%%-*}
    tar -xzf "$sd" -C "$doc/licenses" --wildcards '*/LICENSE*' && mv "$doc/licenses/$(basename "$sd" .tar.gz)" "$doc/licenses/$dist.tmp"
    rm -rf "$doc/licenses/$dist" && mv "$doc/licenses/$dist.tmp" "$doc/licenses/$dist"
  done

  # The BPF program is compiled by BCC at start from its C source; postinst links it where the package
  # looks for it (claude_audit.bpf_layout.BPF_DIR).
  install -m 0644 bpf/claude_audit.bpf.c bpf/claude_audit.h "$root/usr/share/claude-audit/bpf/"
  install -m 0755 packaging/debian/claude-audit.wrapper "$root/usr/bin/claude-audit"
  install -m 0644 systemd/claude-audit.service "$root/$unitdir/claude-audit.service"
  install -m 0644 etc/config.toml "$root/etc/claude-audit/config.toml"
  install -m 0644 packaging/debian/claude-audit.logrotate "$root/etc/logrotate.d/claude-audit"
  install -m 0644 README.md "$doc/README.md"
  install -m 0644 packaging/debian/copyright "$doc/copyright"
  {
    printf 'claude-audit (%s) %s; urgency=medium\n\n' "$version" "$suite"
    printf '  * Built for Debian %s (%s), CPython %s, %s.\n\n' "$debrel" "$suite" "$pyver" "$arch"
    printf ' -- %s  %s\n\n' "$maintainer" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
    cat packaging/debian/changelog
  } | gzip -9n > "$doc/changelog.Debian.gz"
  for s in postinst prerm postrm; do install -m 0755 "packaging/debian/$s" "$root/DEBIAN/$s"; done
  printf '/etc/claude-audit/config.toml\n/etc/logrotate.d/claude-audit\n' > "$root/DEBIAN/conffiles"
  # Installed-Size counts what the package unpacks; postinst's venv adds about as much again (README).
  local size
  size=$(du -sk --apparent-size "$root" | cut -f1)
  sed -e "s|@VERSION@|$version|" -e "s|@SIZE@|$size|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
    -e "s|@PYVER@|$pyver|" -e "s|@PYNEXT@|$pynext|" -e "s|@DEBREL@|$debrel|" \
    packaging/debian/control.in > "$root/DEBIAN/control"
  find "$root" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"

  mkdir -p dist
  local out="dist/claude-audit_${version}_${arch}.deb"
  dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
  echo "$out"
}

for t in "${targets[@]}"; do build_one "$t"; done
