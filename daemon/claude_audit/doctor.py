"""Host checks: what the daemon needs (root or capabilities, BTF, tracefs, headers, bcc) and how to fix it."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from .btf import VMLINUX_BTF

TRACEFS = Path("/sys/kernel/tracing")
# CAP_PERFMON (38), CAP_BPF (39): what loading and attaching tracepoints needs on kernels >= 5.8. The
# systemd unit grants these and not CAP_SYS_ADMIN (tested in booted systemd, docs/SYSTEMD.md).
NEEDED_CAPS = {38: "CAP_PERFMON", 39: "CAP_BPF"}


@dataclass(frozen=True)
class Problem:
    """One thing that stops (fatal) or degrades the daemon, with the fix."""

    name: str
    what: str
    fix: str
    fatal: bool = True


def effective_caps(status_text: str) -> int:
    """CapEff from the text of /proc/self/status."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def problems(
    proc_status: Path = Path("/proc/self/status"),
    btf: Path = VMLINUX_BTF,
    tracefs: Path = TRACEFS,
    modules: Path = Path("/lib/modules"),
) -> list[Problem]:
    """Every problem found on this host (empty when the daemon can run)."""
    found: list[Problem] = []
    try:
        caps = effective_caps(proc_status.read_text())
    except OSError:
        caps = 0
    missing = [name for bit, name in NEEDED_CAPS.items() if not caps & (1 << bit)]
    if missing:
        found.append(
            Problem(
                "privileges",
                f"missing capabilities {', '.join(missing)} (uid {os.getuid()})",
                "run as root, or under the systemd unit, which grants them",
            )
        )
    if not btf.exists():
        found.append(
            Problem(
                "btf",
                f"no kernel BTF at {btf}",
                "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (kernel struct offsets come from it)",
            )
        )
    if not (tracefs / "events").is_dir():
        found.append(
            Problem(
                "tracefs",
                f"tracefs is not mounted at {tracefs}",
                f"mount -t tracefs nodev {tracefs}  (make setup does it; the unit does it at start)",
            )
        )
    kdir = modules / platform.release()
    if not any((kdir / d / "include" / "linux" / "sched.h").exists() for d in ("build", "source")):
        found.append(
            Problem(
                "headers",
                f"no kernel headers under {kdir}/build (BCC needs some to compile)",
                "apt install linux-headers-amd64, then link "
                f"{kdir}/build -> /usr/src/linux-headers-<v>-amd64 and {kdir}/source -> "
                "/usr/src/linux-headers-<v>-common (scripts/setup-host.sh does this)",
            )
        )
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        found.append(
            Problem(
                "bcc",
                f"cannot import bcc: {exc}",
                "apt install python3-bpfcc and run with /usr/bin/python3 or a venv made with "
                "--system-site-packages (the PyPI package named bcc is unrelated)",
            )
        )
    return found
