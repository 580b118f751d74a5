"""Tests for doctor.py: each host check, passed and failed, with its fix, from files under tmp_path."""

from __future__ import annotations

import platform
from pathlib import Path

from claude_audit.doctor import Check, checks, effective_caps, problems

ROOT_STATUS = "Name:\tx\nCapEff:\t000001ffffffffff\n"
USER_STATUS = "Name:\tx\nCapEff:\t0000000000000000\n"


def _host(
    tmp_path: Path, *, status: str = ROOT_STATUS, lockdown: str | None = None, headers: bool = True
) -> dict[str, Path]:
    """Fake /proc status, lockdown file and /lib/modules; BTF is this machine's own."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "status").write_text(status)
    if lockdown is not None:
        (tmp_path / "lockdown").write_text(lockdown)
    modules = tmp_path / "modules"
    if headers:
        inc = modules / platform.release() / "build" / "include" / "linux"
        inc.mkdir(parents=True)
        (inc / "sched.h").write_text("")
    return {
        "proc_status": tmp_path / "status",
        "btf": Path("/sys/kernel/btf/vmlinux"),
        "modules": modules,
        "lockdown": tmp_path / "lockdown",
    }


def _by_name(found: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in found}


def test_effective_caps_parsed() -> None:
    """CapEff is read as hex; a status without it means no capabilities."""
    assert effective_caps(ROOT_STATUS) == 0x1FFFFFFFFFF
    assert effective_caps("Name:\tx\n") == 0


def test_this_host_passes_every_check(tmp_path: Path) -> None:
    """As root on this kernel with headers, every check is ok, the kernel one naming its exit detection."""
    found = checks(**_host(tmp_path, lockdown="[none] integrity confidentiality"))
    assert [c.name for c in found if not c.ok] == []
    kernel = next(c for c in found if c.name == "kernel")
    assert "raw tracepoints" in kernel.what and "exit" in kernel.what
    assert "bpf_send_signal" in _by_name(found)["enforce"].what
    assert problems(**_host(tmp_path / "again")) == []


def test_missing_capabilities_are_named_with_the_fix(tmp_path: Path) -> None:
    """Without CAP_BPF and CAP_PERFMON the check fails, naming both and how to get them."""
    (bad,) = problems(**_host(tmp_path, status=USER_STATUS))
    assert bad.name == "privileges" and "CAP_PERFMON" in bad.what and "CAP_BPF" in bad.what
    assert "root" in bad.fix


def test_lockdown_confidentiality_is_fatal_integrity_is_not(tmp_path: Path) -> None:
    """Confidentiality lockdown forbids BPF kernel reads: fatal, with the boot option that fixes it."""
    (bad,) = problems(**_host(tmp_path, lockdown="none integrity [confidentiality]"))
    assert bad.name == "lockdown" and bad.fatal and "lockdown=integrity" in bad.fix
    assert problems(**_host(tmp_path / "i", lockdown="none [integrity] confidentiality")) == []


def test_missing_btf_and_headers(tmp_path: Path) -> None:
    """No BTF and no headers: two failures, each with its fix."""
    host = _host(tmp_path, headers=False)
    host["btf"] = tmp_path / "no-btf"
    found = _by_name(problems(**host))
    assert set(found) == {"btf", "headers"}
    assert "CONFIG_DEBUG_INFO_BTF" in found["btf"].fix
    assert "linux-headers" in found["headers"].fix
