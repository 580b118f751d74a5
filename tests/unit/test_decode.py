"""Tests for decoding ring-buffer records into events."""

from __future__ import annotations

import ctypes

import pytest
from builders import raw_exec
from hypothesis import given
from hypothesis import strategies as st

from claude_audit import bpf_layout
from claude_audit.decode import _EXEC_HEADER, DecodeError, decode_event, split_argv
from claude_audit.events import CandidateEvent, ExecEvent, ExitEvent, TrackFlag


def test_exec_record_decodes_every_field() -> None:
    """All header fields, the path and the argv come through; boot time becomes wall time."""
    ev = decode_event(raw_exec(b"/bin/echo", b"echo\0a b\0c\nd\0"), boot_to_wall_ns=5_000)
    assert isinstance(ev, ExecEvent)
    assert (ev.pid, ev.tid, ev.ppid, ev.uid, ev.gid) == (10, 11, 9, 1000, 1001)
    assert (ev.session_root, ev.root_start_ticks, ev.invocation, ev.invocation_start_ticks) == (5, 40, 7, 45)
    assert ev.wall_time_ns == 6_000
    assert ev.filename == b"/bin/echo"
    assert ev.argv == [b"echo", b"a b", b"c\nd"]
    assert ev.comm == b"bash"
    assert not ev.args_truncated


def test_exec_header_template_is_the_kernel_layout() -> None:
    """The decoder's precompiled header template has ExecEventHeader's size and field order: each field
    set to a distinct value through ctypes comes back as that field (start ticks and cgroup included)."""
    assert _EXEC_HEADER.size == ctypes.sizeof(bpf_layout.ExecEventHeader) == bpf_layout.EXEC_DATA_OFFSET
    names = [name for name, *_ in bpf_layout.ExecEventHeader._fields_]
    h = bpf_layout.ExecEventHeader(**{n: i + 1 for i, n in enumerate(names) if n != "comm"}, comm=b"c")
    assert list(_EXEC_HEADER.unpack_from(bytes(h))) == [
        b"c".ljust(16, b"\0") if n == "comm" else i + 1 for i, n in enumerate(names)
    ]
    h.type, h.filename_len, h.args_len = bpf_layout.EVENT_EXEC, 0, 0
    ev = decode_event(bytes(h), 0)
    assert isinstance(ev, ExecEvent)
    assert (ev.start_ticks, ev.cgroup_id, ev.args_original_len) == (10, 13, 17)


def test_exec_flags() -> None:
    """Kernel flags become typed flags and data-quality labels."""
    flags = (
        bpf_layout.EXEC_ARGS_TRUNCATED
        | bpf_layout.TRACK_PENDING_ROOT
        | bpf_layout.TRACK_SEEDED
        | bpf_layout.EXEC_IS_ROOT
    )
    ev = decode_event(raw_exec(b"/x", b"abc", flags=flags, orig=100_000), 0)
    assert isinstance(ev, ExecEvent)
    assert ev.args_truncated and ev.args_original_len == 100_000
    assert ev.track_flags == TrackFlag.PENDING_ROOT
    assert ev.data_flags == {"seeded_from_proc", "session_root"}
    assert ev.argv == [b"abc"]  # a truncated area keeps its partial last argument


def test_short_and_lying_records_are_errors() -> None:
    """A record shorter than it claims raises DecodeError (the daemon counts and skips it)."""
    rec = raw_exec(b"/bin/true", b"true\0")
    with pytest.raises(DecodeError):
        decode_event(rec[:-3], 0)
    with pytest.raises(DecodeError):
        decode_event(b"\x01", 0)
    with pytest.raises(DecodeError, match="unknown event type"):
        decode_event(b"\x63\0\0\0" + b"\0" * 64, 0)


def test_candidate_and_exit() -> None:
    """Candidate and exit records decode to their own event types."""
    c = bpf_layout.CandidateEventRaw(
        type=bpf_layout.EVENT_CANDIDATE,
        pid=3,
        ppid=2,
        reason=bpf_layout.CANDIDATE_RENAME,
        boot_ns=10,
        start_ticks=7,
        comm=b"claude",
        filename=b"",
    )
    ev = decode_event(bytes(c), 1)
    assert ev == CandidateEvent(
        wall_time_ns=11, pid=3, ppid=2, reason="rename", comm=b"claude", filename=b"", start_ticks=7
    )
    x = bpf_layout.ExitEventRaw(
        type=bpf_layout.EVENT_EXIT, pid=3, root=3, exit_code=256, boot_ns=10, start_ticks=7
    )
    assert decode_event(bytes(x), 0) == ExitEvent(
        wall_time_ns=10, pid=3, session_root=3, root_start_ticks=7, exit_code=256
    )
    assert ctypes.sizeof(x) == len(bytes(x))


@given(st.lists(st.binary().filter(lambda b: b"\0" not in b), min_size=1, max_size=20))
def test_split_argv_roundtrip(args: list[bytes]) -> None:
    """Any argv (empty strings, newlines, any bytes but NUL) is split back exactly."""
    area = b"".join(a + b"\0" for a in args)
    assert split_argv(area) == args


def test_split_argv_empty() -> None:
    """No argv area (an unreadable or empty one) is no arguments."""
    assert split_argv(b"") == []


def test_exec_decision_is_decoded() -> None:
    """A denied exec's record carries the decision and the rule's generation and index."""
    flags = bpf_layout.EXEC_DENIED | ((1 << 8 | 3) << bpf_layout.EXEC_DENY_RULE_SHIFT)
    ev = decode_event(raw_exec(b"/usr/bin/git", b"git\0push\0--force\0", flags=flags), 0)
    assert isinstance(ev, ExecEvent)
    assert ev.denial is not None
    assert (ev.denial.decision, ev.denial.generation, ev.denial.index) == ("denied", 1, 3)
    plain = decode_event(raw_exec(b"/usr/bin/git", b"git\0push\0"), 0)
    assert isinstance(plain, ExecEvent) and plain.denial is None
