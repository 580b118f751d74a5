"""Tests for the BTF reader: member offsets, anonymous members, errors."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from claude_audit.btf import KIND_INT, KIND_PTR, KIND_STRUCT, KIND_UNION, Btf, BtfError, KernelOffsets


class _Builder:
    """Builds a tiny BTF blob by hand, the way the kernel lays it out."""

    def __init__(self) -> None:
        self.types = b""
        self.strs = b"\0"
        self.count = 0

    def name(self, s: str) -> int:
        if not s:
            return 0
        off = len(self.strs)
        self.strs += s.encode() + b"\0"
        return off

    def add(
        self,
        kind: int,
        name: str,
        size_or_type: int,
        *,
        members: tuple[tuple[str, int, int], ...] | list[tuple[str, int, int]] = (),
        extra: bytes = b"",
        kind_flag: bool = False,
    ) -> int:
        info = (kind << 24) | len(members) | (1 << 31 if kind_flag else 0)
        self.types += struct.pack("<III", self.name(name), info, size_or_type) + extra
        for mname, mtype, bits in members:
            self.types += struct.pack("<III", self.name(mname), mtype, bits)
        self.count += 1
        return self.count

    def blob(self) -> bytes:
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strs))
        return hdr + self.types + self.strs


def _sample() -> bytes:
    b = _Builder()
    u64 = b.add(KIND_INT, "u64", 8, extra=struct.pack("<I", 64))
    ptr = b.add(KIND_PTR, "", u64)
    inner = b.add(KIND_STRUCT, "", 16, members=[("arg_start", u64, 0), ("arg_end", u64, 64)])
    uni = b.add(KIND_UNION, "", 16, members=[("", inner, 0)])
    b.add(KIND_STRUCT, "mm_struct", 40, members=[("first", ptr, 0), ("", uni, 128)])
    b.add(KIND_STRUCT, "flags", 4, members=[("bit", u64, (1 << 24) | 3)], kind_flag=True)
    return b.blob()


def test_member_offset_in_plain_struct() -> None:
    """A named member's offset is its bit offset divided by eight."""
    assert Btf(_sample()).member_offset("mm_struct", "first") == 0


def test_member_offset_through_anonymous_struct_and_union() -> None:
    """Members inside anonymous structs and unions are found, with the offsets added up."""
    btf = Btf(_sample())
    assert btf.member_offset("mm_struct", "arg_start") == 16
    assert btf.member_offset("mm_struct", "arg_end") == 24


def test_missing_struct_and_member_are_named() -> None:
    """Errors name what is missing, so the daemon's message says which field this kernel lacks."""
    btf = Btf(_sample())
    with pytest.raises(BtfError, match="struct nope"):
        btf.member_offset("nope", "x")
    with pytest.raises(BtfError, match=r"mm_struct\.nope"):
        btf.member_offset("mm_struct", "nope")


def test_bitfield_member_is_rejected() -> None:
    """A bitfield has no byte offset; asking for one is an error, not a wrong number."""
    with pytest.raises(BtfError, match="bitfield"):
        Btf(_sample()).member_offset("flags", "bit")


def test_bad_magic() -> None:
    """Data that is not BTF is refused."""
    with pytest.raises(BtfError, match="magic"):
        Btf(b"\0" * 32)


def test_struct_size() -> None:
    """struct_size reports the size BTF records."""
    assert Btf(_sample()).struct_size("mm_struct") == 40


def test_running_kernel_offsets_are_plausible() -> None:
    """On the running kernel every offset the BPF program needs is found, in a sane order."""
    vmlinux = Path("/sys/kernel/btf/vmlinux")
    if not vmlinux.exists():  # pragma: no cover - every CI machine of this kind has BTF
        pytest.fail("this machine kind must have /sys/kernel/btf/vmlinux")
    btf = Btf.load(vmlinux)
    off = KernelOffsets.from_btf(btf)
    size = btf.struct_size("task_struct")
    for value in (off.task_pid, off.task_tgid, off.task_real_parent, off.task_mm, off.task_start_boottime):
        assert 0 < value < size
    assert off.task_tgid == off.task_pid + 4  # pid_t pid; pid_t tgid; adjacent since 2.6
    assert off.mm_arg_end == off.mm_arg_start + 8
    assert all(f.startswith("-D") and "=" in f for f in off.cflags())
