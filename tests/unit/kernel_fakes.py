"""Test doubles for the state stage's inputs: the kernel maps, a /proc built from captures, a clock.

`FakeMaps` is the kernel side of `sessions.KernelMaps` as dictionaries with the kernel's capacity rule (a
full map refuses a new key but accepts rewriting an existing one); it can refuse the way bcc does
(raising) or the way a sensor returning False does. `captured_proc` builds a fake /proc from
tests/unit/data/claude_captures with the processes' uid rewritten to the test's own, so the
owner checks on session files can be exercised without root.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from test_procfs import build_proc_root

from claude_audit import bpf_layout as L
from claude_audit.events import CandidateEvent, ExecEvent
from claude_audit.procfs import ProcFS

CAPTURES = Path(__file__).parent / "data" / "claude_captures"


class MapFull(Exception):
    """What bcc raises when a hash map has no room (its message, as seen on this kernel)."""


@dataclass
class FakeMaps:
    """target_pid_map and tracked_map as dicts, with capacities."""

    roots_max: int = 4096
    tracked_max: int = 65536
    refuse_by_raising: bool = True
    roots: dict[int, tuple[int, bool]] = field(default_factory=dict)
    tracked: dict[int, L.TrackedProc] = field(default_factory=dict)

    def add_root(self, pid: int, start_ticks: int, pending: bool = False) -> bool:
        """Insert or rewrite a root; refuses a new key when full (raising like bcc, or returning False)."""
        if pid not in self.roots and len(self.roots) >= self.roots_max:
            if self.refuse_by_raising:
                raise MapFull("Could not update table: Argument list too long")
            return False
        self.roots[pid] = (start_ticks, pending)
        return True

    def remove_root(self, pid: int) -> None:
        """Forget a root."""
        self.roots.pop(pid, None)

    def track(self, pid: int, entry: L.TrackedProc) -> bool:
        """Insert a tracked entry; False when full."""
        if pid not in self.tracked and len(self.tracked) >= self.tracked_max:
            return False
        self.tracked[pid] = entry
        return True

    def tracked_entry(self, pid: int) -> L.TrackedProc | None:
        """The entry for pid."""
        return self.tracked.get(pid)

    def tracked_items(self) -> Iterable[tuple[int, L.TrackedProc]]:
        """A snapshot of the map."""
        return list(self.tracked.items())

    def untrack_session(self, root: int, root_start_ticks: int) -> int:
        """Remove one session's entries."""
        gone = [
            p for p, e in self.tracked.items() if (e.root, e.root_start_ticks) == (root, root_start_ticks)
        ]
        for p in gone:
            del self.tracked[p]
        return len(gone)

    def exit(self, pid: int) -> None:
        """What the kernel does when a process exits: its entries go."""
        self.tracked.pop(pid, None)
        self.roots.pop(pid, None)


@dataclass
class Clock:
    """A monotonic clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Let time pass."""
        self.now += seconds


@dataclass
class Capture:
    """A captured Claude Code session as a fake /proc, with its tree.json."""

    proc: ProcFS
    root: Path
    tree: dict[str, Any]

    @property
    def claude_pid(self) -> int:
        """The session root's pid."""
        return int(self.tree["claude_pid"])

    def start_ticks(self, pid: int) -> int:
        """Field 22 of the captured stat."""
        info = self.proc.read(pid)
        assert info is not None
        return info.start_ticks

    def set_uid(self, pid: int, uid: int) -> None:
        """Make a captured process run as uid."""
        status = self.root / str(pid) / "status"
        status.write_bytes(
            re.sub(rb"(?m)^Uid:.*$", f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}".encode(), status.read_bytes())
        )

    def set_environ(self, pid: int, env: dict[bytes, bytes]) -> None:
        """Replace a captured process's environment."""
        (self.root / str(pid) / "environ").write_bytes(b"".join(k + b"=" + v + b"\0" for k, v in env.items()))

    def add_process(self, pid: int, ppid: int, *, like: int, start_ticks: int | None = None) -> None:
        """A new process in the fake /proc: a copy of `like` with another pid, parent and start time."""
        src = self.root / str(like)
        dst = self.root / str(pid)
        dst.mkdir()
        for f in src.iterdir():
            if f.is_symlink():
                os.symlink(os.readlink(f), dst / f.name)
            else:
                (dst / f.name).write_bytes(f.read_bytes())
        stat = (dst / "stat").read_bytes()
        close = stat.rfind(b")")
        fields = stat[close + 2 :].split(b" ")
        fields[1] = str(ppid).encode()
        if start_ticks is not None:
            fields[19] = str(start_ticks).encode()
        (dst / "stat").write_bytes(f"{pid} ".encode() + stat[stat.find(b"(") : close + 2] + b" ".join(fields))

    def remove(self, pid: int) -> None:
        """The process exits (its /proc directory goes)."""
        d = self.root / str(pid)
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


def captured_proc(tmp_path: Path, version: str = "2.1.331", uid: int | None = None) -> Capture:
    """A fake /proc holding one captured session; every process's uid set to `uid` (default: ours)."""
    root = build_proc_root(tmp_path / "proc", (CAPTURES / version / "proc").iterdir())
    (root / "sys" / "kernel" / "random").mkdir(parents=True)
    (root / "sys" / "kernel" / "random" / "boot_id").write_text("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n")
    cap = Capture(ProcFS(root), root, json.loads((CAPTURES / version / "tree.json").read_text()))
    for d in root.iterdir():
        if d.name.isdigit():
            cap.set_uid(int(d.name), os.getuid() if uid is None else uid)
    return cap


def exec_event(
    pid: int,
    *,
    root: int,
    root_start: int,
    invocation: int = 0,
    invocation_start: int = 0,
    ppid: int = 1,
    argv: list[bytes] | None = None,
    filename: bytes = b"/bin/true",
    start_ticks: int = 0,
    uid: int = 0,
    pending: bool = False,
) -> ExecEvent:
    """An ExecEvent as the kernel would report it for a process of a session."""
    from claude_audit.events import TrackFlag

    args = argv if argv is not None else [filename]
    return ExecEvent(
        wall_time_ns=1_795_572_670_000_000_000,
        pid=pid,
        tid=pid,
        ppid=ppid,
        uid=uid,
        gid=uid,
        session_root=root,
        root_start_ticks=root_start,
        invocation=invocation,
        invocation_start_ticks=invocation_start,
        start_ticks=start_ticks,
        cgroup_id=1,
        comm=os.path.basename(filename)[:15],
        filename=filename,
        argv=args,
        args_truncated=False,
        args_original_len=sum(len(a) + 1 for a in args),
        track_flags=TrackFlag.PENDING_ROOT if pending else TrackFlag.NONE,
    )


def candidate_event(
    pid: int, start_ticks: int, *, reason: str = "exec", filename: bytes = b"", comm: bytes = b"claude"
) -> CandidateEvent:
    """A CandidateEvent: the kernel adopted pid as a pending root."""
    return CandidateEvent(
        wall_time_ns=1_795_572_670_000_000_000,
        pid=pid,
        ppid=1,
        reason=reason,
        comm=comm,
        filename=filename,
        start_ticks=start_ticks,
    )
