"""The session table: which Claude Code sessions are watched, and what each exec belongs to.

A session is keyed by its root's (pid, start ticks), so a reused pid is a different session. Each direct
child of the root starts an invocation (one Bash tool call, or one of Claude Code's own internal
commands); every descendant's exec carries that invocation's id, command and origin, which the kernel
keeps for it across double forks and re-parenting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import bpf_layout as L
from .events import ExecEvent
from .procfs import ProcFS, ProcInfo
from .records import entity_id
from .textenc import text_field

SessionKey = tuple[int, int]
"""(root pid, root start ticks)."""


@dataclass
class Invocation:
    """One direct child of the session root and everything below it."""

    pid: int
    entity_id: str
    origin: str
    command: bytes | None = None


@dataclass
class Session:
    """One watched Claude Code process (the session root)."""

    pid: int
    start_ticks: int
    entity_id: str
    how: str
    """How it was found: "startup", "scan" or "kernel-trigger"."""
    reason: str
    """Why it counts as Claude Code (discovery.is_claude's answer)."""
    executable: str = ""
    ended: bool = False
    exit_code: int | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    """Session id, version, cwd and the like, each with its source (claude.py)."""
    invocations: dict[SessionKey, Invocation] = field(default_factory=dict)
    execs: int = 0

    def claude_object(self) -> dict[str, Any]:
        """The session-level `claude` fields: root pid, its entity id, and the identity found so far."""
        return {"pid": self.pid, "session_entity_id": self.entity_id, **self.identity}

    @property
    def key(self) -> SessionKey:
        """(pid, start ticks) of the root."""
        return (self.pid, self.start_ticks)


OriginFn = Callable[[ExecEvent, "Session"], tuple[str, bytes | None]]
"""Decides (origin, agent command) for the first exec of a new invocation."""


def _default_origin(_ev: ExecEvent, _s: Session) -> tuple[str, bytes | None]:
    return ("unknown", None)


class SessionTable:
    """Sessions by key, and the claude.* facts for each exec."""

    def __init__(self, boot_id: str, origin_of: OriginFn = _default_origin) -> None:
        self.boot_id = boot_id
        self.origin_of = origin_of
        self.sessions: dict[SessionKey, Session] = {}
        self.rejected: set[SessionKey] = set()

    def add(self, pid: int, start_ticks: int, how: str, reason: str, executable: str = "") -> Session:
        """Register a session root (idempotent: returns the existing session for the same key)."""
        key = (pid, start_ticks)
        existing = self.sessions.get(key)
        if existing is not None:
            return existing
        self.rejected.discard(key)
        s = Session(pid, start_ticks, entity_id(self.boot_id, pid, start_ticks), how, reason, executable)
        self.sessions[key] = s
        return s

    def get(self, key: SessionKey) -> Session | None:
        """The session for a root key, if known."""
        return self.sessions.get(key)

    def seed_invocation(self, s: Session, info: ProcInfo, origin: str, command: bytes | None) -> None:
        """Register an invocation already running when the session was found (its exec was not seen)."""
        key = (info.pid, info.start_ticks)
        if key not in s.invocations:
            s.invocations[key] = Invocation(info.pid, entity_id(self.boot_id, *key), origin, command)

    def live(self) -> list[Session]:
        """Sessions whose root has not exited."""
        return [s for s in self.sessions.values() if not s.ended]

    def claude_fields(self, s: Session, ev: ExecEvent) -> dict[str, Any]:
        """The `claude` object of an exec record: session root, invocation, command and origin."""
        fields = s.claude_object()
        if ev.pid == s.pid and ev.invocation == 0:
            fields["origin"] = "session"  # the Claude Code process itself (re-)executing
            return fields
        inv_key = (ev.invocation, ev.invocation_start_ticks)
        inv = s.invocations.get(inv_key)
        if inv is None:
            if ev.invocation == 0:
                # Seeded from /proc after being re-parented away: its invocation cannot be known.
                fields["origin"] = "unknown"
                return fields
            origin, command = self.origin_of(ev, s) if ev.pid == ev.invocation else ("unknown", None)
            inv = Invocation(ev.invocation, entity_id(self.boot_id, *inv_key), origin, command)
            s.invocations[inv_key] = inv
        fields["invocation"] = inv.entity_id
        fields["invocation_pid"] = inv.pid
        fields["origin"] = inv.origin
        if inv.command is not None:
            fields["command"] = text_field(inv.command)[0]
        return fields


class KernelMaps(Protocol):
    """What seeding needs from the sensor (the Sensor implements it; tests pass a fake)."""

    def add_root(self, pid: int, start_ticks: int, pending: bool = False) -> bool:
        """Make pid a session root."""

    def track(self, pid: int, entry: L.TrackedProc) -> bool:
        """Insert a tracked-process entry."""

    def tracked_entry(self, pid: int) -> L.TrackedProc | None:
        """The tracked entry for pid, if any."""


def seed_descendants(
    maps: KernelMaps,
    proc: ProcFS,
    root: ProcInfo,
    claude_pid_of: Callable[[int], int | None],
) -> list[ProcInfo]:
    """Make `root` a session root in the kernel, then track its existing descendants; returns them.

    The root goes into the kernel map first: from then on the kernel tracks every fork below anything
    tracked. Each level of descendants is then read from a fresh /proc scan taken after its parents were
    inserted, so a child forked before its parent was tracked is seen in the scan and one forked after
    is caught by the kernel: no gap. Processes re-parented away (double fork, setsid, nohup) are found
    by the CLAUDE_PID their environment inherited from Claude Code (`claude_pid_of`).
    """
    maps.add_root(root.pid, root.start_ticks)
    seeded: list[ProcInfo] = []
    # (pid, start) of each tracked process -> (invocation pid, invocation start)
    inv_of: dict[int, tuple[int, int]] = {root.pid: (0, 0)}
    frontier = {root.pid}
    orphans_done = False
    while frontier:
        infos = proc.read_all()
        nxt: set[int] = set()
        for info in infos.values():
            if info.pid in inv_of or info.start_ticks < root.start_ticks:
                continue
            if info.ppid in frontier:
                inv = (info.pid, info.start_ticks) if info.ppid == root.pid else inv_of[info.ppid]
            elif not orphans_done and claude_pid_of(info.pid) == root.pid:
                inv = (0, 0)  # re-parented away: which tool call started it is lost
            else:
                continue
            inv_of[info.pid] = inv
            if maps.tracked_entry(info.pid) is None:
                entry = L.TrackedProc(
                    start_ticks=info.start_ticks,
                    root_start_ticks=root.start_ticks,
                    invocation_start_ticks=inv[1],
                    root=root.pid,
                    invocation=inv[0],
                    flags=L.TRACK_SEEDED,
                )
                maps.track(info.pid, entry)
            seeded.append(info)
            nxt.add(info.pid)
        orphans_done = True
        frontier = nxt
    return seeded


def tracked_elsewhere(items: Iterable[tuple[int, L.TrackedProc]]) -> Mapping[int, int]:
    """pid -> session root for every process the kernel already tracks."""
    return {pid: e.root for pid, e in items}
