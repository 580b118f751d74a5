"""Tests for kernel.py: what the BPF program needs of a kernel, found in that kernel's BTF."""

from __future__ import annotations

import re
import struct
from pathlib import Path

from btf_builder import Builder

from claude_audit.btf import KERNEL_FACTS, KIND_INT, KIND_PTR, KIND_STRUCT, KIND_TYPEDEF, Btf
from claude_audit.kernel import ENFORCE_HELPERS, HELPERS, MAP_TYPES, PROG_TYPES, TRACEPOINTS, kernel_support

BPF_SOURCE = Path(__file__).parents[2] / "bpf" / "claude_audit.bpf.c"


def _kernel_btf(
    *,
    exit_params: int = 1,
    drop_helper: str = "",
    drop_map: str = "",
    drop_member: str = "",
    drop_tp: str = "",
) -> Btf:
    """A BTF blob with everything kernel_support looks for, minus what the arguments leave out."""
    b = Builder()
    u64 = b.add(KIND_INT, "u64", 8, extra=struct.pack("<I", 64))
    structs: dict[str, list[str]] = {}
    for f in KERNEL_FACTS:
        members = structs.setdefault(f.struct_name, [])
        if f.member is not None and f.member != drop_member:
            members.append(f.member)
    for name, members in structs.items():
        b.add(KIND_STRUCT, name, 8 * len(members), members=[(m, u64, 64 * i) for i, m in enumerate(members)])
    for tp, (needed, _) in TRACEPOINTS.items():
        if tp == drop_tp:
            continue
        params = exit_params if tp == "sched_process_exit" else needed
        proto = b.func_proto([u64] * (1 + params))
        b.add(KIND_TYPEDEF, f"btf_trace_{tp}", b.add(KIND_PTR, "", proto))
    helpers = [*HELPERS, *ENFORCE_HELPERS]
    b.enum("bpf_func_id", ["BPF_FUNC_" + h for h in helpers if h != drop_helper])
    b.enum("bpf_map_type", ["BPF_MAP_TYPE_" + m for m in MAP_TYPES if m != drop_map])
    b.enum("bpf_prog_type", ["BPF_PROG_TYPE_" + p for p in PROG_TYPES])
    return Btf(b.blob())


def test_complete_kernel_lacks_nothing() -> None:
    """A kernel with every helper, map type, tracepoint and member gets offsets and no complaints."""
    support = kernel_support(_kernel_btf())
    assert support.missing == ()
    assert "-DEXIT_TP_HAS_GROUP_DEAD=0" in support.cflags()
    assert "-DENFORCE_CAN_KILL=1" in support.cflags()
    assert support.can_kill
    assert len(support.cflags()) == len(KERNEL_FACTS) + 2


def test_kernel_without_send_signal_runs_but_cannot_kill() -> None:
    """No bpf_send_signal (before 5.3) is not fatal: the program loads, enforce mode is said impossible."""
    support = kernel_support(_kernel_btf(drop_helper="send_signal"))
    assert support.missing == ()
    assert not support.can_kill
    assert support.cannot_kill == ("BPF helper BPF_FUNC_send_signal (Linux 5.3 and later)",)
    assert "-DENFORCE_CAN_KILL=0" in support.cflags()


def test_group_dead_argument_is_used_where_the_kernel_passes_it() -> None:
    """sched_process_exit with (task, group_dead), as since 2025, switches the exit check to the argument."""
    support = kernel_support(_kernel_btf(exit_params=2))
    assert support.exit_has_group_dead
    assert "-DEXIT_TP_HAS_GROUP_DEAD=1" in support.cflags()
    assert "group_dead" in support.exit_detection
    assert "signal->live" in kernel_support(_kernel_btf()).exit_detection


def test_missing_ring_buffer_is_named_with_its_release() -> None:
    """A kernel without ring buffers (before 5.8) is told exactly that, not a compiler error."""
    support = kernel_support(_kernel_btf(drop_map="RINGBUF", drop_helper="ringbuf_reserve"))
    assert support.missing == (
        "BPF helper BPF_FUNC_ringbuf_reserve (Linux 5.8 and later)",
        "BPF map type BPF_MAP_TYPE_RINGBUF (Linux 5.8 and later)",
    )
    assert support.offsets is None


def test_missing_tracepoint_and_member_are_named() -> None:
    """A missing tracepoint and a missing struct member each get a sentence naming them."""
    support = kernel_support(_kernel_btf(drop_tp="task_rename", drop_member="start_boottime"))
    assert any("tracepoint task_rename" in m for m in support.missing)
    assert any("task_struct.start_boottime" in m for m in support.missing)


def test_every_helper_map_and_probe_of_the_bpf_source_is_checked() -> None:
    """What the BPF source calls, declares and attaches is exactly what kernel.py checks a kernel for."""
    src = BPF_SOURCE.read_text()
    helpers = set(re.findall(r"\bbpf_(\w+)\(", src))
    methods = {"lookup": "map_lookup_elem", "update": "map_update_elem", "delete": "map_delete_elem"}
    for method in re.findall(r"\.(\w+)\(", src):
        helpers.add(methods.get(method, method))
    assert helpers == set(HELPERS) | set(ENFORCE_HELPERS)
    macros = {
        "HASH": "HASH",
        "ARRAY": "ARRAY",
        "PERCPU_ARRAY": "PERCPU_ARRAY",
        "RINGBUF_OUTPUT": "RINGBUF",
        "LPM_TRIE": "LPM_TRIE",
    }
    declared = {macros[m] for m in re.findall(r"\bBPF_([A-Z_]+)\(", src) if m != "TABLE"}
    declared |= {t.upper() for t in re.findall(r'\bBPF_TABLE\("(\w+)"', src)}
    assert declared == set(MAP_TYPES)
    assert set(re.findall(r"RAW_TRACEPOINT_PROBE\((\w+)\)", src)) == set(TRACEPOINTS)
    assert "TRACEPOINT_PROBE(" not in src.replace("RAW_TRACEPOINT_PROBE(", "")


def test_running_kernel_lacks_nothing() -> None:
    """This machine's kernel has everything the program uses (CI runs on it)."""
    assert kernel_support(Btf.load()).missing == ()
    assert kernel_support(Btf.load()).can_kill
