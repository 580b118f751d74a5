"""Decode ring-buffer records from the BPF program into typed events. Pure: bytes in, events out."""

from __future__ import annotations

import ctypes
import struct
from typing import TypeVar

from .bpf_layout import (
    EVENT_CANDIDATE,
    EVENT_EXEC,
    EVENT_EXIT,
    EXEC_ARGS_TRUNCATED,
    EXEC_ARGS_UNREADABLE,
    EXEC_DATA_OFFSET,
    EXEC_FILENAME_TRUNCATED,
    EXEC_IS_ROOT,
    TRACK_PENDING_ROOT,
    TRACK_RECOVERED,
    TRACK_SEEDED,
    CandidateEventRaw,
    ExecEventHeader,
    ExitEventRaw,
)
from .events import CandidateEvent, ExecEvent, ExitEvent, TrackFlag

Event = ExecEvent | CandidateEvent | ExitEvent
_S = TypeVar("_S", bound=ctypes.Structure)


class DecodeError(ValueError):
    """A ring-buffer record that cannot be decoded (counted and skipped by the daemon, never fatal)."""


def split_argv(area: bytes) -> list[bytes]:
    """Split an argv area (NUL-terminated strings, back to back) into arguments: the kernel's capture or
    a /proc cmdline (the one splitter for both).

    The area ends with the last argument's NUL; a truncated area, or a cmdline a process rewrote (node's
    title), may end mid-argument without one, and its last, partial argument is kept. Empty arguments
    ("") are real and kept.
    """
    if not area:
        return []
    if area.endswith(b"\0"):
        area = area[:-1]
    return area.split(b"\0")


def _cstr(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def decode_event(raw: bytes, boot_to_wall_ns: int) -> Event:
    """Decode one ring-buffer record. `boot_to_wall_ns` converts kernel boot-time ns to epoch ns."""
    if len(raw) < 4:
        raise DecodeError(f"record of {len(raw)} bytes is shorter than its type field")
    (kind,) = struct.unpack_from("<I", raw, 0)
    if kind == EVENT_EXEC:
        return _decode_exec(raw, boot_to_wall_ns)
    if kind == EVENT_CANDIDATE:
        c = _struct_from(CandidateEventRaw, raw)
        return CandidateEvent(
            wall_time_ns=c.boot_ns + boot_to_wall_ns,
            pid=c.pid,
            ppid=c.ppid,
            reason="exec" if c.reason == 1 else "rename",
            comm=_cstr(bytes(c.comm)),
            filename=_cstr(bytes(c.filename)),
            start_ticks=c.start_ticks,
        )
    if kind == EVENT_EXIT:
        x = _struct_from(ExitEventRaw, raw)
        return ExitEvent(
            wall_time_ns=x.boot_ns + boot_to_wall_ns,
            pid=x.pid,
            session_root=x.root,
            root_start_ticks=x.start_ticks,
            exit_code=x.exit_code,
        )
    raise DecodeError(f"unknown event type {kind}")


def _struct_from(cls: type[_S], raw: bytes) -> _S:
    if len(raw) < ctypes.sizeof(cls):
        raise DecodeError(f"{cls.__name__}: {len(raw)} bytes, need {ctypes.sizeof(cls)}")
    return cls.from_buffer_copy(raw[: ctypes.sizeof(cls)])


def _decode_exec(raw: bytes, boot_to_wall_ns: int) -> ExecEvent:
    h = _struct_from(ExecEventHeader, raw)
    end_name = EXEC_DATA_OFFSET + h.filename_len
    end_args = end_name + h.args_len
    if end_args > len(raw):
        raise DecodeError(f"exec record of {len(raw)} bytes claims {end_args}")
    track = TrackFlag.NONE
    if h.flags & TRACK_PENDING_ROOT:
        track |= TrackFlag.PENDING_ROOT
    quality: set[str] = set()
    if h.flags & TRACK_SEEDED:
        quality.add("seeded_from_proc")
    if h.flags & TRACK_RECOVERED:
        quality.add("tracking_recovered")
    if h.flags & EXEC_ARGS_UNREADABLE:
        quality.add("args_unreadable")
    if h.flags & EXEC_IS_ROOT:
        quality.add("session_root")
    return ExecEvent(
        wall_time_ns=h.boot_ns + boot_to_wall_ns,
        pid=h.pid,
        tid=h.tid,
        ppid=h.ppid,
        uid=h.uid,
        gid=h.gid,
        session_root=h.root,
        root_start_ticks=h.root_start_ticks,
        invocation=h.invocation,
        invocation_start_ticks=h.invocation_start_ticks,
        start_ticks=h.start_ticks,
        cgroup_id=h.cgroup_id,
        comm=_cstr(bytes(h.comm)),
        filename=raw[EXEC_DATA_OFFSET:end_name],
        argv=split_argv(raw[end_name:end_args]),
        args_truncated=bool(h.flags & EXEC_ARGS_TRUNCATED),
        args_original_len=h.args_orig_len,
        filename_truncated=bool(h.flags & EXEC_FILENAME_TRUNCATED),
        track_flags=track,
        data_flags=frozenset(quality),
        euid=h.euid,
        egid=h.egid,
        suid=h.suid,
        sgid=h.sgid,
        cap_effective=h.cap_effective,
        parent_start_ticks=h.parent_start_ticks,
    )
