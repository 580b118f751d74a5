"""Tests for the BTF reader: member offsets, anonymous members, errors."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from btf_builder import Builder

from claude_audit.btf import (
    KERNEL_FACTS,
    KIND_INT,
    KIND_PTR,
    KIND_STRUCT,
    KIND_TYPEDEF,
    KIND_UNION,
    Btf,
    BtfError,
    KernelOffsets,
)


def _sample() -> bytes:
    b = Builder()
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


def test_enum_names() -> None:
    """enum_names lists a named enum's value names; an unknown enum is named in the error."""
    b = Builder()
    b.enum("bpf_map_type", ["BPF_MAP_TYPE_HASH", "BPF_MAP_TYPE_RINGBUF"])
    btf = Btf(b.blob())
    assert btf.enum_names("bpf_map_type") == {"BPF_MAP_TYPE_HASH", "BPF_MAP_TYPE_RINGBUF"}
    with pytest.raises(BtfError, match="enum bpf_func_id"):
        btf.enum_names("bpf_func_id")


def test_typedef_func_params() -> None:
    """A tracepoint's btf_trace_* typedef gives its parameter count through the pointer to its prototype."""
    b = Builder()
    u64 = b.add(KIND_INT, "u64", 8, extra=struct.pack("<I", 64))
    proto = b.func_proto([u64, u64, u64])
    b.add(KIND_TYPEDEF, "btf_trace_sched_process_exit", b.add(KIND_PTR, "", proto))
    b.add(KIND_TYPEDEF, "not_a_function", u64)
    btf = Btf(b.blob())
    assert btf.typedef_func_params("btf_trace_sched_process_exit") == 3
    with pytest.raises(BtfError, match="not a function"):
        btf.typedef_func_params("not_a_function")
    with pytest.raises(BtfError, match="btf_trace_nope"):
        btf.typedef_func_params("btf_trace_nope")


def test_enum_kind_is_parsed_with_its_entries() -> None:
    """Enum entries (8 bytes each) are skipped correctly, so types after an enum are still found."""
    b = Builder()
    b.enum("e", ["A", "B", "C"])
    u64 = b.add(KIND_INT, "u64", 8, extra=struct.pack("<I", 64))
    b.add(KIND_STRUCT, "after", 8, members=[("x", u64, 0)])
    assert Btf(b.blob()).struct_size("after") == 8


def test_running_kernel_offsets_are_plausible() -> None:
    """On the running kernel every offset the BPF program needs is found, in a sane order."""
    vmlinux = Path("/sys/kernel/btf/vmlinux")
    if not vmlinux.exists():  # pragma: no cover - every CI machine of this kind has BTF
        pytest.fail("this machine kind must have /sys/kernel/btf/vmlinux")
    btf = Btf.load(vmlinux)
    off = KernelOffsets.from_btf(btf)
    size = btf.struct_size("task_struct")
    for macro in ("OFF_TASK_PID", "OFF_TASK_TGID", "OFF_TASK_REAL_PARENT", "OFF_TASK_MM", "OFF_TASK_SIGNAL"):
        assert 0 < off[macro] < size
    assert off["OFF_TASK_TGID"] == off["OFF_TASK_PID"] + 4  # pid_t pid; pid_t tgid; adjacent since 2.6
    assert off["OFF_MM_ARG_END"] == off["OFF_MM_ARG_START"] + 8
    assert off.cflags() == [f"-D{f.macro}={off[f.macro]}" for f in KERNEL_FACTS]


def test_every_kernel_fact_is_used_by_the_bpf_source() -> None:
    """The table and the BPF source agree: each -D macro the daemon passes is read by the program."""
    src = (Path(__file__).parents[2] / "bpf" / "claude_audit.bpf.c").read_text()
    unused = [f.macro for f in KERNEL_FACTS if f.macro not in src]
    assert unused == []
