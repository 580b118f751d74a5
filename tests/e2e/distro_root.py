"""A real root file system of another Debian release, for booting the .deb built for it with systemd.

`debian_root("trixie")` returns a directory holding a Debian 13 system made by `debootstrap` from
Debian's archive (minbase), with the packages the test needs installed by apt inside it: systemd, the
claude-audit package's Depends (python3, python3-venv, python3-bpfcc, kernel headers, passwd) and nodejs
for Claude Code 2.0.x. It is cached under .distro-cache/ (gitignored), keyed by release and package
list, built into a temporary sibling and renamed into place only once complete, so a half-built root is
never used; a lock file serialises concurrent builds. The test boots it as the lower layer of an overlay
(systemd_env.booted_systemd(lower=...)), so the cached tree itself is never written.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".distro-cache"
MIRROR = "http://deb.debian.org/debian"
_STAMP = ".claude-audit-root-ready"
PRIVATE_MOUNTS = ("unshare", "--mount", "--propagation", "private")

# What a Debian host running claude-audit has, and what the test drives inside it.
TEST_PACKAGES = (
    "systemd",
    "dbus",
    "python3",
    "python3-venv",
    "python3-bpfcc",
    "linux-headers-amd64",
    "passwd",
    "logrotate",
    "procps",
    "nodejs",
)

# Run inside the fresh root (chroot, private mount namespace with its own /proc): apt resolves and
# orders the packages, which debootstrap's --include cannot do for systemd (its pre-dependency on
# libsystemd-shared is unpacked but not configured in time, measured on trixie).
_APT_SCRIPT = r"""
set -eu
R="$1"; shift
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
cp /etc/resolv.conf "$R/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"
chmod +x "$R/usr/sbin/policy-rc.d"
chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 sh -ec '
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  apt-get clean' apt "$@"
rm -f "$R/usr/sbin/policy-rc.d"
"""


def root_key(suite: str, packages: Sequence[str]) -> str:
    """The cache name of a root: release plus a digest of the package list."""
    digest = hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()[:12]
    return f"{suite}-amd64-{digest}"


def debian_root(
    suite: str = "trixie", packages: Sequence[str] = TEST_PACKAGES, cache_dir: Path = CACHE_DIR
) -> Path:
    """The cached root of `suite` with `packages` installed; built (minutes) when absent."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = root_key(suite, packages)
    final = cache_dir / key
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / _STAMP).is_file():
            return final
        shutil.rmtree(final, ignore_errors=True)
        build = cache_dir / f"{key}.building"
        shutil.rmtree(build, ignore_errors=True)
        t0 = time.monotonic()
        try:
            # In a private mount namespace: debootstrap mounts /proc in the target while it configures,
            # and a killed run must not leave that mount on the host.
            _run(
                [*PRIVATE_MOUNTS, "debootstrap", "--variant=minbase", suite, str(build), MIRROR],
                "debootstrap",
                timeout=1800,
            )
            t1 = time.monotonic()
            _run(
                [*PRIVATE_MOUNTS, "sh", "-c", _APT_SCRIPT, "apt",
                 str(build), *packages],
                "apt-get install in the new root",
                timeout=1800,
            )  # fmt: skip
            t2 = time.monotonic()
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        (build / _STAMP).write_text(
            f"debootstrap {t1 - t0:.0f} s, apt-get install {t2 - t1:.0f} s\n" + "\n".join(packages) + "\n"
        )
        os.rename(build, final)
        return final


def foreign_root(suite: str, arch: str, packages: Sequence[str], cache_dir: Path = CACHE_DIR) -> Path:
    """A root of `suite` for another architecture, its packages unpacked but never configured.

    debootstrap's first stage (--foreign) downloads the release's required packages and `packages` with
    their dependencies for `arch`; every one of them is unpacked with `dpkg -x`. No maintainer script
    runs (they would need the other architecture's binaries to run), which is enough for running that
    architecture's python3 under qemu-user emulation against files in the tree.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()[:12]
    key = f"{suite}-{arch}-foreign-{digest}"
    final = cache_dir / key
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / _STAMP).is_file():
            return final
        shutil.rmtree(final, ignore_errors=True)
        build = cache_dir / f"{key}.building"
        shutil.rmtree(build, ignore_errors=True)
        t0 = time.monotonic()
        try:
            _run(
                [*PRIVATE_MOUNTS, "debootstrap", "--foreign", f"--arch={arch}", "--variant=minbase",
                 f"--include={','.join(packages)}", suite, str(build), MIRROR],
                "debootstrap --foreign",
                timeout=1800,
            )  # fmt: skip
            for deb in sorted((build / "var/cache/apt/archives").glob("*.deb")):
                _run(["dpkg-deb", "-x", str(deb), str(build)], f"dpkg-deb -x {deb.name}", timeout=300)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        (build / _STAMP).write_text(f"debootstrap --foreign + unpack {time.monotonic() - t0:.0f} s\n")
        os.rename(build, final)
        return final


def build_seconds(root: Path) -> str:
    """The build times recorded in a cached root's stamp (for the test's printed timings)."""
    return (root / _STAMP).read_text().splitlines()[0]


def _run(cmd: list[str], what: str, timeout: float) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
