"""`make deb`'s matrix: one package per Debian release and architecture, each complete for its Python.

The four packages are built once (packaging/build-deb.sh). Their control data must match what they
carry (architecture, the CPython minor version of the vendored pydantic-core, the headers package of that
architecture), and their documentation must be Debian's (copyright, changelog.Debian.gz).

arm64 cannot run here natively: each arm64 package's payload is checked under qemu-user emulation, in an
arm64 root of its release (debootstrap's first stage, unpacked; tests/e2e/distro_root.py). There the
release's own arm64 python3 makes the venv; pip installs claude-audit into it from the vendored wheels
only (no index, binary only, resolved for that platform, Python and ABI as postinst's pip resolves them;
run natively, since pip under emulation took minutes); the arm64 interpreter imports the compiled
pydantic-core and runs the CLI on the shipped config. Not tested on arm64: postinst's own pip run, the
maintainer scripts (the group, header links, service enable/start), BCC compiling and loading the BPF
program on an arm64 kernel, and the daemon recording a session there; those need an arm64 kernel (a
full-system emulator, far beyond this tier's time budget).
"""

from __future__ import annotations

import gzip
import re
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from distro_root import build_seconds, foreign_root
from systemd_env import build_debs

pytestmark = [pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
# target -> (Debian release number, CPython minor version, machine in the wheel tag)
TARGETS = {
    "bookworm-amd64": ("12", "3.11", "x86_64"),
    "bookworm-arm64": ("12", "3.11", "aarch64"),
    "trixie-amd64": ("13", "3.13", "x86_64"),
    "trixie-arm64": ("13", "3.13", "aarch64"),
}
QEMU = Path("/usr/bin/qemu-aarch64-static")


@pytest.fixture(scope="module")
def debs() -> dict[str, Path]:
    t0 = time.monotonic()
    built = build_debs()
    print(f"build-deb.sh (4 packages): {time.monotonic() - t0:.1f} s")
    by_target = {}
    for path in built:
        m = re.fullmatch(r"claude-audit_[^_]+\+deb(\d+)_(amd64|arm64)\.deb", path.name)
        assert m, path.name
        suite = {"12": "bookworm", "13": "trixie"}[m.group(1)]
        by_target[f"{suite}-{m.group(2)}"] = path
    assert set(by_target) == set(TARGETS)
    return by_target


def control(deb: Path) -> dict[str, str]:
    out = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
    fields: dict[str, str] = {}
    for line in out.splitlines():
        if line[:1] not in (" ", "\t") and ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def contents(deb: Path) -> list[str]:
    out = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    return [line.split()[-1].removeprefix(".") for line in out.splitlines()]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_control_matches_payload(debs: dict[str, Path], target: str) -> None:
    """Architecture, python3 bounds, headers and version name the ABI and machine of the vendored wheels."""
    release, pyver, machine = TARGETS[target]
    deb = debs[target]
    arch = target.split("-")[1]
    f = control(deb)
    assert f["Architecture"] == arch
    assert f["Version"].endswith(f"-1+deb{release}")
    minor = int(pyver.split(".")[1])
    depends = [d.strip() for d in f["Depends"].split(",")]
    assert f"python3 (>= {pyver})" in depends
    assert f"python3 (<< 3.{minor + 1})" in depends
    assert f"linux-headers-{arch} | linux-headers-generic" in depends
    assert {"python3-venv", "python3-bpfcc", "systemd", "passwd"} <= set(depends)
    assert "localhost" not in f["Maintainer"] and re.fullmatch(r".+ <[^@ ]+@[^@ ]+>", f["Maintainer"])
    wheels = [
        Path(p).name
        for p in contents(deb)
        if p.startswith("/usr/share/claude-audit/wheels/") and p.endswith(".whl")
    ]
    binary = [w for w in wheels if not w.endswith("-none-any.whl")]
    # Every compiled wheel (pydantic-core, orjson, google-re2, jq, pyyaml, markupsafe, charset-normalizer)
    # is for exactly this interpreter (or its stable ABI) and machine.
    assert binary and any(w.startswith("pydantic_core-") for w in binary), binary
    for w in binary:
        assert f"-cp3{minor}-cp3{minor}-" in w or "-abi3-" in w, w
        assert machine in w, w
    # The wheel set is exactly the vendored requirements (and ours): nothing missing, nothing extra.
    pinned = {
        ln.split("==")[0].strip().lower().replace("-", "_")
        for ln in (REPO / "packaging/vendor-requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    assert {w.split("-")[0].lower() for w in wheels} == pinned | {"claude_audit"}
    assert not [p for p in contents(deb) if p.endswith((".tar.gz", ".zip"))], "an sdist would need a build"


@pytest.mark.parametrize("target", ["bookworm-amd64", "trixie-arm64"])
def test_debian_documentation(debs: dict[str, Path], target: str) -> None:
    """copyright (DEP-5, a stanza and license files per vendored wheel) and changelog.Debian.gz ship."""
    deb = debs[target]
    with tempfile.TemporaryDirectory(prefix="claude-audit-deb-") as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        doc = Path(tmp) / "usr/share/doc/claude-audit"
        copyright_text = (doc / "copyright").read_text()
        assert copyright_text.startswith(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
        )
        wheels = sorted((Path(tmp) / "usr/share/claude-audit/wheels").glob("*.whl"))
        for whl in wheels:
            dist = whl.name.split("-")[0]
            if dist == "claude_audit":
                continue
            assert f"Files: usr/share/claude-audit/wheels/{dist}-" in copyright_text, dist
            assert any((doc / "licenses" / dist).iterdir()), f"no license file for {dist}"
        changelog = gzip.decompress((doc / "changelog.Debian.gz").read_bytes()).decode()
        version = control(deb)["Version"]
        suite = target.split("-", maxsplit=1)[0]
        assert changelog.startswith(f"claude-audit ({version}) {suite}; urgency=medium\n")
        # dpkg-parsechangelog accepts it (the trailer line's format, the date).
        plain = Path(tmp) / "changelog"
        plain.write_text(changelog)
        parsed = subprocess.run(
            ["dpkg-parsechangelog", "-l", str(plain), "-S", "Version"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert parsed.stdout.strip() == version


# Inside an overlay over the arm64 root (the cached tree is never written), chrooted, every arm64 program
# started explicitly through qemu-aarch64-static: there is no binfmt_misc registration on this host, so
# nothing may exec an arm64 binary by itself. The venv is made by the release's arm64 python3 (without
# pip: ensurepip would exec it); the wheels are installed into it by this host's pip told the target's
# platform, Python version and ABI, from the package's wheel directory alone (--no-index, --only-binary),
# which resolves exactly as postinst's pip does. (pip itself under emulation took over 5 minutes for
# Python 3.13 on this 2-core machine.) Then the arm64 interpreter imports the compiled pydantic-core and
# runs the CLI on the shipped config and on a bad one.
_EMULATED = r"""
set -eu
LOWER="$1"; B="$2"; DEB="$3"; PYVER="$4"; PIP="$5"
mount -t tmpfs tmpfs "$B"
mkdir -p "$B/upper" "$B/work" "$B/root"
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$B/upper,workdir=$B/work" "$B/root"
R="$B/root"
mount -t proc proc "$R/proc"
# Only the payload postinst uses: extracting the whole package over the root would replace the merged-/usr
# symlinks (/lib -> usr/lib) with directories, which dpkg itself never does.
mkdir "$B/deb"
dpkg-deb -x "$DEB" "$B/deb"
mkdir -p "$R/usr/share/claude-audit" "$R/etc/claude-audit"
cp -a "$B/deb/usr/share/claude-audit/." "$R/usr/share/claude-audit/"
cp -a "$B/deb/etc/claude-audit/." "$R/etc/claude-audit/"
cp /usr/bin/qemu-aarch64-static "$R/qemu"
Q="chroot $R /qemu"
$Q /usr/bin/python3 -c 'import platform, sys; print(platform.machine(), sys.version.split()[0])'
$Q /usr/bin/python3 -m venv --without-pip --system-site-packages /usr/lib/claude-audit
"$PIP" install -q --disable-pip-version-check --no-compile --no-index --only-binary=:all: \
  --find-links "$R/usr/share/claude-audit/wheels" --implementation cp --python-version "$PYVER" \
  --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 \
  --target "$R/usr/lib/claude-audit/lib/python$PYVER/site-packages" claude-audit
PY="$Q /usr/lib/claude-audit/bin/python"
$PY -c '
import pydantic_core
print("pydantic_core", pydantic_core.__version__, pydantic_core._pydantic_core.__file__.rsplit("/", 1)[-1])
'
$PY -m claude_audit --version
$PY -m claude_audit check-config --config /etc/claude-audit/config.toml
printf '[daemon]\npoll_interval_seconds = "often"\n[capture]\nargv_max_bytes = 1000\n' > "$R/tmp/bad.toml"
if $PY -m claude_audit check-config --config /tmp/bad.toml 2> "$R/tmp/bad.err"; then
  echo "bad config accepted"; exit 1
fi
cat "$R/tmp/bad.err"
"""


@pytest.mark.parametrize("target", ["bookworm-arm64", "trixie-arm64"])
def test_arm64_payload_under_emulation(debs: dict[str, Path], target: str) -> None:
    """The arm64 wheels install offline for that release's arm64 python3; the CLI runs on them."""
    suite = target.split("-", maxsplit=1)[0]
    _, pyver, _ = TARGETS[target]
    t0 = time.monotonic()
    root = foreign_root(suite, "arm64", ("python3", "python3-venv"))
    print(f"{suite} arm64 root: {time.monotonic() - t0:.1f} s ({build_seconds(root)})")
    with tempfile.TemporaryDirectory(prefix="claude-audit-arm64-") as tmp:
        t1 = time.monotonic()
        r = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", _EMULATED, "emulated",
             str(root), tmp, str(debs[target]), pyver, str(REPO / ".venv/bin/pip")],
            capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip
        print(f"emulated install and checks: {time.monotonic() - t1:.1f} s")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"aarch64 {pyver}."), lines[0]
    minor = pyver.split(".")[1]
    so = rf"^pydantic_core \S+ _pydantic_core\.cpython-3{minor}-aarch64-linux-gnu\.so$"
    assert re.search(so, r.stdout, re.M), r.stdout
    assert "claude-audit 0.1.0" in r.stdout
    # pydantic's validation errors, through the compiled core, name both bad keys.
    assert "daemon.poll_interval_seconds" in r.stdout and "capture.argv_max_bytes" in r.stdout, r.stdout
