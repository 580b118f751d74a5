"""Decode ring-buffer records from the BPF program into typed events. Pure: bytes in, events out."""

from __future__ import annotations

import ctypes
import functools
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
    ExitEventRaw,
)
from .enforce import decision_of
from .events import CandidateEvent, Denial, ExecEvent, ExitEvent, TrackFlag

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


# struct exec_event's header as one precompiled template: one unpack per record instead of a ctypes
# copy and a Python object per field (the layout is ExecEventHeader's; a unit test holds them equal).
_EXEC_HEADER = struct.Struct("<8I5Q4I16s4I2Q")


@functools.lru_cache(maxsize=64)
def _exec_flags(flags: int) -> tuple[TrackFlag, frozenset[str], bool, bool]:
    # A handful of flag combinations ever occur: their decoded form is computed once each.
    track = TrackFlag.PENDING_ROOT if flags & TRACK_PENDING_ROOT else TrackFlag.NONE
    quality: set[str] = set()
    if flags & TRACK_SEEDED:
        quality.add("seeded_from_proc")
    if flags & TRACK_RECOVERED:
        quality.add("tracking_recovered")
    if flags & EXEC_ARGS_UNREADABLE:
        quality.add("args_unreadable")
    if flags & EXEC_IS_ROOT:
        quality.add("session_root")
    return (
        track,
        frozenset(quality),
        bool(flags & EXEC_ARGS_TRUNCATED),
        bool(flags & EXEC_FILENAME_TRUNCATED),
    )


def _decode_exec(raw: bytes, boot_to_wall_ns: int) -> ExecEvent:
    if len(raw) < EXEC_DATA_OFFSET:
        raise DecodeError(f"ExecEventHeader: {len(raw)} bytes, need {EXEC_DATA_OFFSET}")
    (
        _,
        pid,
        tid,
        ppid,
        uid,
        gid,
        root,
        invocation,
        boot_ns,
        start_ticks,
        root_start_ticks,
        invocation_start_ticks,
        cgroup_id,
        flags,
        filename_len,
        args_len,
        args_orig_len,
        comm,
        euid,
        egid,
        suid,
        sgid,
        cap_effective,
        parent_start_ticks,
    ) = _EXEC_HEADER.unpack_from(raw)
    end_name = EXEC_DATA_OFFSET + filename_len
    end_args = end_name + args_len
    if end_args > len(raw):
        raise DecodeError(f"exec record of {len(raw)} bytes claims {end_args}")
    track, quality, args_truncated, filename_truncated = _exec_flags(flags)
    return ExecEvent(
        wall_time_ns=boot_ns + boot_to_wall_ns,
        pid=pid,
        tid=tid,
        ppid=ppid,
        uid=uid,
        gid=gid,
        session_root=root,
        root_start_ticks=root_start_ticks,
        invocation=invocation,
        invocation_start_ticks=invocation_start_ticks,
        start_ticks=start_ticks,
        cgroup_id=cgroup_id,
        comm=_cstr(comm),
        filename=raw[EXEC_DATA_OFFSET:end_name],
        argv=split_argv(raw[end_name:end_args]),
        args_truncated=args_truncated,
        args_original_len=args_orig_len,
        filename_truncated=filename_truncated,
        track_flags=track,
        data_flags=quality,
        denial=_denial(flags),
        euid=euid,
        egid=egid,
        suid=suid,
        sgid=sgid,
        cap_effective=cap_effective,
        parent_start_ticks=parent_start_ticks,
    )


def _denial(flags: int) -> Denial | None:
    decided = decision_of(flags)
    if decided is None:
        return None
    decision, generation, index = decided
    return Denial(decision=decision, generation=generation, index=index)
