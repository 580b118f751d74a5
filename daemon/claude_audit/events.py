"""Decoded kernel events: the typed form of what the BPF program reports.

These are the values every later stage (records, sessions, sinks) works from. The raw byte layouts
they are decoded from are mirrored in `bpf_layout`; this module holds no I/O.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass, field
from enum import IntFlag

USER_HZ = 100
"""Clock ticks per second in /proc/<pid>/stat (fixed at 100 by the kernel ABI)."""


# Every record names its process, session and invocation; the same few ids recur across a session's
# records, so the hash is computed once per process rather than three times per record.
@functools.lru_cache(maxsize=4096)
def entity_id(boot_id: str, pid: int, start_ticks: int) -> str:
    """Stable ECS process.entity_id: unique per process across pid reuse and reboots, 20 URL-safe chars."""
    digest = hashlib.sha256(f"{boot_id}:{start_ticks}:{pid}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:15]).decode("ascii")


class TrackFlag(IntFlag):
    """Flags the kernel keeps on each tracked process (mirrors TRACK_* in bpf/claude_audit.h)."""

    NONE = 0
    PENDING_ROOT = 1
    """The session root was adopted by the kernel from an exec/rename trigger, not yet confirmed."""


@dataclass(frozen=True, slots=True)
class Denial:
    """A deny rule matched an exec: the kernel killed it ("denied") or only reported it ("would-deny")."""

    decision: str
    generation: int
    """Which of the kernel's two rule sets was active (a reload switches them)."""
    index: int
    """The rule's position in that set (its order in the config)."""
    rule_id: str = ""
    """Filled in by the daemon from the rule set it loaded ("" if unknown)."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ExecEvent:
    """One sched_process_exec of a tracked process, as the kernel saw it."""

    wall_time_ns: int
    """Wall-clock time of the exec, ns since the epoch (kernel boot-time clock plus an offset)."""
    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    session_root: int
    """The pid of the Claude Code session root this process descends from (claude.pid)."""
    root_start_ticks: int
    """Start time of the session root in /proc clock ticks (guards against pid reuse)."""
    invocation: int
    """Pid of the direct child of the session root whose subtree this exec is in (0: the root itself)."""
    invocation_start_ticks: int
    start_ticks: int
    """Start time of this process in /proc clock ticks."""
    cgroup_id: int
    comm: bytes
    filename: bytes
    argv: list[bytes]
    args_truncated: bool
    args_original_len: int
    """Length in bytes of the whole argv area (mm->arg_end - mm->arg_start) in the process."""
    filename_truncated: bool = False
    track_flags: TrackFlag = TrackFlag.NONE
    data_flags: frozenset[str] = field(default_factory=frozenset)
    denial: Denial | None = None
    euid: int | None = None
    """Effective uid the exec committed (None: as uid); uid/gid are the real ids."""
    egid: int | None = None
    suid: int | None = None
    """Saved set-user-id."""
    sgid: int | None = None
    cap_effective: int = 0
    """The effective capability set (bit n: capability n)."""
    parent_start_ticks: int = 0
    """Start time of the real parent (ppid) in /proc clock ticks; 0 if unknown."""


@dataclass(frozen=True, slots=True)
class CandidateEvent:
    """An untracked process that may have become Claude Code (an exec or a comm rename)."""

    wall_time_ns: int
    pid: int
    ppid: int
    reason: str
    """"exec" or "rename"."""
    comm: bytes
    filename: bytes
    start_ticks: int = 0


@dataclass(frozen=True, slots=True)
class ExitEvent:
    """A session root exited (its last thread); the kernel reports no other process's exit."""

    wall_time_ns: int
    pid: int
    session_root: int
    root_start_ticks: int
    exit_code: int
