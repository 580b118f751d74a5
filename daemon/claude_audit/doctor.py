"""Host checks: what the daemon needs of this machine and its kernel, item by item, with the fix.

`claude-audit doctor` prints every check; `claude-audit run` refuses to start on a fatal one, with the
same words. The kernel items come from kernel.py, which reads them from the running kernel's BTF, so the
doctor and the daemon agree on what a kernel lacks.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from .btf import VMLINUX_BTF, Btf, BtfError
from .kernel import HELPERS, MAP_TYPES, TRACEPOINTS, kernel_support

# CAP_PERFMON (38), CAP_BPF (39): what loading and attaching tracepoints needs on kernels >= 5.8. The
# systemd unit grants these and not CAP_SYS_ADMIN (tested in booted systemd, docs/SYSTEMD.md).
NEEDED_CAPS = {38: "CAP_PERFMON", 39: "CAP_BPF"}
LOCKDOWN = Path("/sys/kernel/security/lockdown")
UNPRIVILEGED_BPF = Path("/proc/sys/kernel/unprivileged_bpf_disabled")


@dataclass(frozen=True)
class Check:
    """One thing the daemon depends on: whether this host has it, what was found, and the fix if not."""

    name: str
    ok: bool
    what: str
    fix: str = ""
    fatal: bool = True


Problem = Check  # a Check that failed


def effective_caps(status_text: str) -> int:
    """CapEff from the text of /proc/self/status."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _privileges(proc_status: Path) -> Check:
    caps = effective_caps(_read(proc_status) or "")
    missing = [name for bit, name in NEEDED_CAPS.items() if not caps & (1 << bit)]
    if missing:
        what = f"missing capabilities {', '.join(missing)} (uid {os.getuid()})"
        return Check("privileges", False, what, "run as root, or under the systemd unit, which grants them")
    return Check("privileges", True, "CAP_BPF and CAP_PERFMON")


def _kernel(btf_path: Path, *, items: bool) -> list[Check]:
    release = platform.release()
    if not btf_path.exists():
        fix = "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (every kernel struct offset comes from it)"
        return [Check("btf", False, f"kernel {release} has no BTF at {btf_path}", fix)]
    if not items:
        return [Check("btf", True, f"kernel {release} with BTF at {btf_path}")]
    try:
        support = kernel_support(Btf.load(btf_path))
    except (OSError, BtfError) as exc:
        return [Check("btf", False, f"cannot read {btf_path}: {exc}", "report this kernel's BTF as a bug")]
    found = [Check("btf", True, f"kernel {release} with BTF at {btf_path}")]
    if support.missing:
        fix = "use Linux 5.14 or later (the kernels of Debian 12, Ubuntu 22.04, RHEL 9 and newer)"
        found += [Check("kernel", False, f"kernel {release} lacks {m}", fix) for m in support.missing]
    else:
        what = (
            f"{len(TRACEPOINTS)} raw tracepoints, {len(HELPERS)} BPF helpers, {len(MAP_TYPES)} map types, "
            f"every struct offset; session exits from the {support.exit_detection}"
        )
        found.append(Check("kernel", True, what))
    if support.can_kill:
        found.append(
            Check("enforce", True, '[enforce] mode "enforce" can kill in the kernel (bpf_send_signal)')
        )
    else:
        # Not fatal: the recorder works, and deny rules then run as dry-run (records only).
        why = "; ".join(support.cannot_kill)
        found.append(
            Check(
                "enforce",
                False,
                f"kernel {release} lacks {why}: deny rules can only be recorded (dry-run), not enforced",
                'use Linux 5.3 or later for [enforce] mode = "enforce"',
                fatal=False,
            )
        )
    return found


def _lockdown(lockdown: Path) -> Check:
    mode = _read(lockdown)
    if mode is not None and "[confidentiality]" in mode:
        return Check(
            "lockdown",
            False,
            "kernel lockdown is in confidentiality mode: BPF programs may not read kernel memory",
            "boot with lockdown=integrity (or none); Secure Boot alone selects integrity on Debian",
        )
    state = mode or f"state unreadable at {lockdown} (securityfs not mounted)"
    return Check("lockdown", True, f"lockdown {state}; only confidentiality mode stops BPF reads")


def _unprivileged_bpf(sysctl: Path) -> Check:
    value = _read(sysctl)
    what = f"kernel.unprivileged_bpf_disabled = {value or 'unknown'}: not used (the daemon loads BPF as root)"
    return Check("unprivileged-bpf", True, what, fatal=False)


def _headers(modules: Path) -> Check:
    kdir = modules / platform.release()
    if any((kdir / d / "include" / "linux" / "sched.h").exists() for d in ("build", "source")):
        return Check("headers", True, f"kernel headers for BCC under {kdir}")
    return Check(
        "headers",
        False,
        f"no kernel headers under {kdir}/build (BCC needs some to compile)",
        f"apt install linux-headers-{platform.release()} (or linux-headers-amd64, then link {kdir}/build -> "
        f"/usr/src/linux-headers-<v>-amd64 and {kdir}/source -> /usr/src/linux-headers-<v>-common; "
        "scripts/setup-host.sh does this; struct offsets come from BTF, so other versions' headers work)",
    )


def _bcc() -> Check:
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return Check(
            "bcc",
            False,
            f"cannot import bcc: {exc}",
            "apt install python3-bpfcc and run with /usr/bin/python3 or a venv made with "
            "--system-site-packages (the PyPI package named bcc is unrelated)",
        )
    return Check("bcc", True, "bcc importable")


def checks(
    proc_status: Path = Path("/proc/self/status"),
    btf: Path = VMLINUX_BTF,
    modules: Path = Path("/lib/modules"),
    lockdown: Path = LOCKDOWN,
    unprivileged_bpf: Path = UNPRIVILEGED_BPF,
    *,
    kernel_items: bool = True,
) -> list[Check]:
    """Every check, passed or not, in the order the doctor prints them.

    `kernel_items` False skips reading the kernel's BTF for helpers, map types and tracepoints (the
    sensor checks those itself before compiling, with the same words).
    """
    return [
        _privileges(proc_status),
        *_kernel(btf, items=kernel_items),
        _lockdown(lockdown),
        _unprivileged_bpf(unprivileged_bpf),
        _headers(modules),
        _bcc(),
    ]


def problems(
    proc_status: Path = Path("/proc/self/status"),
    btf: Path = VMLINUX_BTF,
    modules: Path = Path("/lib/modules"),
    lockdown: Path = LOCKDOWN,
) -> list[Check]:
    """Every failed check that `claude-audit run` looks at before starting (empty when it can start)."""
    return [c for c in checks(proc_status, btf, modules, lockdown, kernel_items=False) if not c.ok]
