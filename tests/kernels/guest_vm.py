"""Boot one of Debian's own kernels under QEMU with this machine's root file system, run tests in it.

Nested KVM does not work on these machines, so guests run under TCG (see ../shared/FIELD_NOTES.md,
"Booting other kernels"). The kernel comes from Debian's archive by package name (the newest version
matching a pattern, downloaded once into .kernel-cache/); a busybox initramfs loads the virtio-9p and
overlay modules, mounts the host's root read-only with a tmpfs overlay, and hands over to
guest/stage2.sh, which sets the guest up as a user would and runs pytest. Results come back through a
second, writable 9p share: pytest's junit report and exit code, timings, set-up and doctor logs.
"""

from __future__ import annotations

import lzma
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".kernel-cache"
GUEST_DIR = Path(__file__).resolve().parent / "guest"
BUSYBOX = Path("/bin/busybox")  # busybox-static: the initramfs has no libc

# What reaching the host's root over virtio-9p with an overlay on top needs, in no particular order:
# which of these are modules, and which module needs which, differs between builds (init.sh loads in
# passes; built-in ones are skipped).
MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "netfs",
    "fscache",
    "9pnet",
    "9pnet_virtio",
    "9p",
    "overlay",
)


@dataclass(frozen=True)
class KernelSpec:
    """A kernel the tier boots: a test id and the Debian package name pattern (newest match wins)."""

    name: str
    package_pattern: str
    exit_detection: str  # what daemon-started must say about session exits on this kernel


KERNELS = (
    KernelSpec("debian12-6.1", r"linux-image-6\.1\.0-\d+-amd64-unsigned", "task->signal->live"),
    KernelSpec("debian12-6.1-rt", r"linux-image-6\.1\.0-\d+-rt-amd64-unsigned", "task->signal->live"),
    KernelSpec("debian12-6.12", r"linux-image-6\.12\.\d+\+deb12-amd64-unsigned", "task->signal->live"),
)


class GuestError(Exception):
    """The guest could not be prepared or booted (the message says which step)."""


def _version_key(name: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", name)]


def newest_package(pattern: str, search_output: str) -> str:
    """The newest package name in `apt-cache search --names-only` output that matches pattern whole."""
    names = [line.split(" - ", 1)[0].strip() for line in search_output.splitlines()]
    matching = [n for n in names if re.fullmatch(pattern, n)]
    if not matching:
        raise GuestError(f"no package matching {pattern} in the apt lists")
    return max(matching, key=_version_key)


def resolve_package(pattern: str) -> str:
    """The newest package matching pattern, from the apt lists (updated once if they know none)."""
    for attempt in range(2):
        out = subprocess.run(
            ["apt-cache", "search", "--names-only", "^linux-image-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        try:
            return newest_package(pattern, out)
        except GuestError:
            if attempt:
                raise
            subprocess.run(["apt-get", "update", "-qq"], check=True)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class KernelFiles:
    """An extracted kernel: its release, vmlinuz, and the modules init.sh loads."""

    release: str
    vmlinuz: Path
    modules: dict[str, Path]
    builtin: Path


def fetch_kernel(package: str, cache: Path = CACHE) -> KernelFiles:
    """Download (once) and extract (once) a kernel package into cache/<package>/."""
    dest = cache / package
    done = dest / ".extracted"
    if not done.exists():
        cache.mkdir(parents=True, exist_ok=True)
        debs = list(cache.glob(f"{package}_*.deb"))
        if not debs:
            # apt's sandbox user cannot write into a root-owned checkout; download as root, quietly
            subprocess.run(
                ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package],
                cwd=cache,
                check=True,
                capture_output=True,
            )
            debs = list(cache.glob(f"{package}_*.deb"))
        if len(debs) != 1:
            raise GuestError(f"expected one {package}_*.deb in {cache}, found {debs}")
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(dest)], check=True)
        done.touch()
    vmlinuz = next(dest.glob("boot/vmlinuz-*"))
    release = vmlinuz.name.removeprefix("vmlinuz-")
    kdir = dest / "lib" / "modules" / release
    modules: dict[str, Path] = {}
    for ko in kdir.rglob("*.ko*"):
        stem = ko.name.split(".ko")[0]
        if stem in MODULES:
            modules[stem] = ko
    return KernelFiles(release, vmlinuz, modules, kdir / "modules.builtin")


def _cpio_entry(name: str, mode: int, data: bytes, ino: int) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    hdr = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    hdr += b"\0" * (-len(hdr) % 4)
    return hdr + data + b"\0" * (-len(data) % 4)


def build_initramfs(kernel: KernelFiles, out: Path) -> None:
    """A newc cpio: busybox, init.sh as /init, the modules (decompressed), their load list."""
    dirs = ("bin", "dev", "proc", "sys", "modules")
    entries: list[tuple[str, int, bytes]] = [(d, 0o40755, b"") for d in dirs]
    entries.append(("bin/busybox", 0o100755, BUSYBOX.read_bytes()))
    entries.append(("init", 0o100755, (GUEST_DIR / "init.sh").read_bytes()))
    for name, path in kernel.modules.items():
        data = path.read_bytes()
        if path.name.endswith(".xz"):
            data = lzma.decompress(data)  # busybox insmod loads plain .ko files only
        entries.append((f"modules/{name}.ko", 0o100644, data))
    order = [m for m in MODULES if m in kernel.modules]
    entries.append(("modules.order", 0o100644, "\n".join(order).encode() + b"\n"))
    builtin = kernel.builtin.read_bytes() if kernel.builtin.exists() else b""
    entries.append(("modules.builtin", 0o100644, builtin))
    blob = b"".join(_cpio_entry(n, m, d, i + 1) for i, (n, m, d) in enumerate(entries))
    out.write_bytes(blob + _cpio_entry("TRAILER!!!", 0, b"", 0))


@dataclass
class GuestRun:
    """What one boot produced: the results share's files, the console, and host-side timings."""

    kernel: KernelSpec
    package: str
    release: str
    results: Path
    console: str
    wall_seconds: float
    qemu_rc: int
    timings: dict[str, str] = field(default_factory=dict)

    def text(self, name: str) -> str:
        """A file the guest left in the results share ("" if it did not get that far)."""
        p = self.results / name
        return p.read_text(errors="replace") if p.exists() else ""

    def junit_cases(self) -> list[tuple[str, str | None]]:
        """(test id, failure text or None) for every test pytest ran in the guest."""
        path = self.results / "junit.xml"
        if not path.exists():
            return []
        cases = []
        for tc in ET.parse(path).getroot().iter("testcase"):  # noqa: S314 - written by our own guest
            bad = next((c for c in tc if c.tag in ("failure", "error")), None)
            text = None if bad is None else (bad.get("message") or bad.text or bad.tag)
            cases.append((f"{tc.get('classname')}::{tc.get('name')}", text))
        return cases


def run_guest(
    kernel: KernelSpec,
    work: Path,
    tests: list[str],
    *,
    test_timeout: int,
    expect: str,
    memory_mib: int = 4096,
    cpus: int = 2,
) -> GuestRun:
    """Boot `kernel` with this machine's root, run pytest on `tests` (paths in the repo) inside, power off.

    `expect` is what the guest's daemon-started must say about exit detection on this kernel.
    """
    package = resolve_package(kernel.package_pattern)
    files = fetch_kernel(package)
    initrd = work / "initrd.cpio"
    build_initramfs(files, initrd)
    results = work / "results"
    results.mkdir()
    (results / "job.env").write_text(
        f'GUEST_TESTS="{" ".join(tests)}"\nGUEST_TEST_TIMEOUT={test_timeout}\n'
        f'export CLAUDE_AUDIT_EXPECT_EXIT_DETECTION="{expect}"\n'
    )
    console = work / "console.log"
    cmd = [
        "qemu-system-x86_64",
        *("-accel", "tcg", "-cpu", "max", "-m", str(memory_mib), "-smp", str(cpus)),
        *("-display", "none", "-no-reboot", "-net", "none", "-serial", f"file:{console}"),
        *("-kernel", str(files.vmlinuz), "-initrd", str(initrd)),
        *("-append", f"console=ttyS0 loglevel=4 panic=-1 ca_repo={REPO}"),
        *("-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"),
        *("-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"),
        *("-fsdev", f"local,id=results,path={results},security_model=none"),
        *("-device", "virtio-9p-pci,fsdev=results,mount_tag=results"),
    ]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=test_timeout + 300, check=False)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = -1
    wall = time.monotonic() - start
    timings: dict[str, str] = {}
    tpath = results / "timings.env"
    if tpath.exists():
        for line in tpath.read_text().splitlines():
            k, _, v = line.partition("=")
            timings[k] = v
    return GuestRun(
        kernel=kernel,
        package=package,
        release=files.release,
        results=results,
        console=console.read_text(errors="replace") if console.exists() else "",
        wall_seconds=wall,
        qemu_rc=rc,
        timings=timings,
    )
