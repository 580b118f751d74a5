"""The session table: which Claude Code sessions are watched, and what each exec belongs to.

Stage: session/candidate state. A session is keyed by its root's (pid, start ticks), so a reused pid is a
different session. Each direct child of the root starts an invocation (one Bash tool call, or one of
Claude Code's own internal commands); every descendant's exec carries that invocation's id, command and
origin, which the kernel keeps for it across double forks and re-parenting.

The table holds no I/O of its own: the kernel maps and /proc are inputs (`KernelMaps`, `ProcReader`),
time comes from an injected clock, and the answers are values. Memory is bounded the way Tetragon's
process cache is: an ended session, an invocation and a rejected candidate are swept once a grace
period has passed AND the kernel's tracking map no longer holds a process that could still report under
them (the kernel deletes a process's entry when it exits), so a late exec of a still-running orphan keeps
its session's identity.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import bpf_layout as L
from .claude import classify_origin, extract_command
from .events import ExecEvent, entity_id
from .identity import RootId, inherited_claude_pid, may_belong_to
from .procfs import ProcInfo
from .textenc import text_field
from .tracecontext import TraceContext

SessionKey = tuple[int, int]
"""(root pid, root start ticks)."""

EVICT_AFTER_SECONDS = 60.0
"""How long an ended session, an idle invocation or a rejected candidate is kept before it may be swept:
longer than any batch can wait in the ring and queue, so its last records still find it."""

Clock = Callable[[], float]


@dataclass
class Invocation:
    """One direct child of the session root and everything below it."""

    pid: int
    entity_id: str
    origin: str
    command: bytes | None = None
    last_seen: float = 0.0
    command_shown: bool = False
    """A record already carried the command in full."""
    trace: TraceContext | None = None
    """The TRACEPARENT its head was given (W3C trace context), read once at its first exec."""


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
    uid: int | None = None
    """Real uid of the root as /proc showed it when adopted; None if the root was never read."""
    rooted: bool = True
    """The kernel's root map holds it; False while the map refuses it (each scan tries again)."""
    ended: bool = False
    ended_at: float = 0.0
    exit_code: int | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    """Session id, version, cwd and the like, each with its source (identity.py)."""
    invocations: dict[SessionKey, Invocation] = field(default_factory=dict)
    execs: int = 0

    def claude_object(self) -> dict[str, Any]:
        """The session-level `claude` fields: root pid, its entity id, and the identity found so far."""
        return {"pid": self.pid, "session_entity_id": self.entity_id, **self.identity}

    @property
    def key(self) -> SessionKey:
        """(pid, start ticks) of the root."""
        return (self.pid, self.start_ticks)

    @property
    def root_id(self) -> RootId | None:
        """What the identity trust rules compare against, if the root's uid is known."""
        return None if self.uid is None else RootId(self.pid, self.start_ticks, self.uid)

    @property
    def has_file_identity(self) -> bool:
        """The session file was read and matched (nothing better will come)."""
        return self.identity.get("identity_source") == "session_file"


def exit_status(wait_status: int) -> int:
    """A shell-style exit status from the kernel's wait status: the code, or 128 + the killing signal."""
    signo = wait_status & 0x7F
    return 128 + signo if signo else (wait_status >> 8) & 0xFF


def invocation_origin(
    argv: list[bytes], exe: bytes, *, parent_is_root: bool, claude_exe: str
) -> tuple[str, bytes | None]:
    """(origin, the agent's command) of a new invocation from its first exec (rules in claude.py)."""
    claude_bin = os.fsencode(claude_exe) or None
    origin = classify_origin(argv, exe, parent_is_root=parent_is_root, claude_exe=claude_bin)
    return origin, extract_command(argv)


@dataclass(frozen=True, slots=True)
class Swept:
    """What one sweep evicted."""

    sessions: int = 0
    invocations: int = 0
    rejected: int = 0


class SessionTable:
    """Sessions by key, rejected candidates, and the claude.* facts for each exec."""

    def __init__(
        self, boot_id: str, clock: Clock = time.monotonic, evict_after: float = EVICT_AFTER_SECONDS
    ) -> None:
        self.boot_id = boot_id
        self.clock = clock
        self.evict_after = evict_after
        self.sessions: dict[SessionKey, Session] = {}
        self.rejected: dict[SessionKey, float] = {}
        """Roots found not to be Claude Code -> when; their records are filtered out, not lost."""
        self.evicted = Swept()

    # -- membership -----------------------------------------------------------------------------------
    def add(
        self,
        pid: int,
        start_ticks: int,
        how: str,
        reason: str,
        *,
        executable: str = "",
        uid: int | None = None,
    ) -> Session:
        """Register a session root (idempotent: returns the existing session for the same key)."""
        key = (pid, start_ticks)
        existing = self.sessions.get(key)
        if existing is not None:
            return existing
        self.rejected.pop(key, None)
        s = Session(pid, start_ticks, entity_id(self.boot_id, pid, start_ticks), how, reason, executable, uid)
        self.sessions[key] = s
        return s

    def get(self, key: SessionKey) -> Session | None:
        """The session for a root key, if known."""
        return self.sessions.get(key)

    def reject(self, key: SessionKey) -> None:
        """Remember that this root is not Claude Code (until swept)."""
        self.rejected[key] = self.clock()

    def is_rejected(self, key: SessionKey) -> bool:
        """The root was found not to be Claude Code."""
        return key in self.rejected

    def end(self, key: SessionKey, wait_status: int) -> Session | None:
        """Mark the session's root as exited; None if unknown or already ended."""
        s = self.sessions.get(key)
        if s is None or s.ended:
            return None
        s.ended = True
        s.ended_at = self.clock()
        s.exit_code = exit_status(wait_status)
        return s

    def live(self) -> list[Session]:
        """Sessions whose root has not exited."""
        return [s for s in self.sessions.values() if not s.ended]

    # -- invocations ----------------------------------------------------------------------------------
    def seed_invocation(self, s: Session, info: ProcInfo, origin: str, command: bytes | None) -> None:
        """Register an invocation already running when the session was found (its exec was not seen)."""
        key = (info.pid, info.start_ticks)
        if key not in s.invocations:
            s.invocations[key] = Invocation(
                info.pid, entity_id(self.boot_id, *key), origin, command, self.clock()
            )

    def is_new_invocation(self, s: Session, ev: ExecEvent) -> bool:
        """This exec is the first sight of an invocation head (the moment identity is worth re-reading)."""
        return ev.pid == ev.invocation and (ev.invocation, ev.invocation_start_ticks) not in s.invocations

    def set_trace(self, s: Session, ev: ExecEvent, trace: TraceContext) -> None:
        """Remember the trace context of the invocation `ev` belongs to."""
        inv = s.invocations.get((ev.invocation, ev.invocation_start_ticks))
        if inv is not None:
            inv.trace = trace

    def trace_of(self, s: Session, ev: ExecEvent) -> TraceContext | None:
        """The trace context of the invocation `ev` belongs to, if it was given one."""
        inv = s.invocations.get((ev.invocation, ev.invocation_start_ticks))
        return inv.trace if inv is not None else None

    def claude_fields(self, s: Session, ev: ExecEvent) -> dict[str, Any]:
        """The `claude` object of an exec record: session root, invocation, command and origin."""
        fields = s.claude_object()
        if ev.pid == s.pid and ev.invocation == 0:
            fields["origin"] = "session"  # the Claude Code process itself (re-)executing
            return fields
        inv_key = (ev.invocation, ev.invocation_start_ticks)
        inv = s.invocations.get(inv_key)
        now = self.clock()
        if inv is None:
            if ev.invocation == 0:
                # Seeded from /proc after being re-parented away: its invocation cannot be known.
                fields["origin"] = "unknown"
                return fields
            if ev.pid == ev.invocation:
                origin, command = invocation_origin(
                    ev.argv, ev.filename, parent_is_root=ev.ppid == s.pid, claude_exe=s.executable
                )
            else:
                origin, command = "unknown", None
            inv = Invocation(ev.invocation, entity_id(self.boot_id, *inv_key), origin, command)
            s.invocations[inv_key] = inv
        inv.last_seen = now
        fields["invocation"] = inv.entity_id
        fields["invocation_pid"] = inv.pid
        fields["origin"] = inv.origin
        if inv.command is not None:
            fields["command"] = text_field(inv.command)[0]
        return fields

    def command_first_shown(self, s: Session, ev: ExecEvent) -> bool:
        """Whether this exec's record is the first to show its invocation's command (then it shows it
        in full; later ones may carry an excerpt). Call after `claude_fields`."""
        inv = s.invocations.get((ev.invocation, ev.invocation_start_ticks))
        if inv is None or inv.command is None or inv.command_shown:
            return inv is None or inv.command is None
        inv.command_shown = True
        return True

    # -- eviction -------------------------------------------------------------------------------------
    def sweep_due(self) -> bool:
        """Whether anything is old enough to be swept (so the kernel map is read only when it may pay)."""
        cutoff = self.clock() - self.evict_after
        if any(t <= cutoff for t in self.rejected.values()):
            return True
        for s in self.sessions.values():
            if s.ended and s.ended_at <= cutoff:
                return True
            if any(inv.last_seen <= cutoff for inv in s.invocations.values()):
                return True
        return False

    def sweep(self, tracked: Iterable[tuple[int, L.TrackedProc]]) -> Swept:
        """Evict what is past the grace period and has no process left in the kernel's tracking map.

        `tracked` is a snapshot of that map (KernelMaps.tracked_items()): a session or invocation that
        still has a tracked process can still report an exec, so it stays.
        """
        cutoff = self.clock() - self.evict_after
        live_roots: set[SessionKey] = set()
        live_invocations: set[tuple[int, int, int, int]] = set()
        for _pid, e in tracked:
            live_roots.add((e.root, e.root_start_ticks))
            live_invocations.add((e.root, e.root_start_ticks, e.invocation, e.invocation_start_ticks))
        n_rejected = 0
        for key, t in list(self.rejected.items()):
            if t <= cutoff and key not in live_roots:
                del self.rejected[key]
                n_rejected += 1
        n_sessions = n_inv = 0
        for key, s in list(self.sessions.items()):
            if s.ended and s.ended_at <= cutoff and key not in live_roots:
                n_inv += len(s.invocations)
                del self.sessions[key]
                n_sessions += 1
                continue
            for ikey, inv in list(s.invocations.items()):
                if inv.last_seen <= cutoff and (*key, *ikey) not in live_invocations:
                    del s.invocations[ikey]
                    n_inv += 1
        swept = Swept(n_sessions, n_inv, n_rejected)
        self.evicted = Swept(
            self.evicted.sessions + n_sessions,
            self.evicted.invocations + n_inv,
            self.evicted.rejected + n_rejected,
        )
        return swept


# -- kernel side of adoption -----------------------------------------------------------------------------


class KernelMaps(Protocol):
    """What the state stage needs from the sensor's maps (the Sensor implements it; tests pass a fake)."""

    def add_root(self, pid: int, start_ticks: int, pending: bool = False) -> bool:
        """Make pid a session root; False if its map is full."""

    def remove_root(self, pid: int) -> None:
        """Stop treating pid as a session root."""

    def track(self, pid: int, entry: L.TrackedProc) -> bool:
        """Insert a tracked-process entry; False if the map is full."""

    def tracked_entry(self, pid: int) -> L.TrackedProc | None:
        """The tracked entry for pid, if any."""

    def tracked_items(self) -> Iterable[tuple[int, L.TrackedProc]]:
        """Every tracked entry (a snapshot)."""

    def untrack_session(self, root: int, root_start_ticks: int) -> int:
        """Remove every tracked entry of one session; returns how many."""


class ProcReader(Protocol):
    """What seeding needs from /proc (ProcFS implements it)."""

    def read_all(self) -> dict[int, ProcInfo]:
        """Every readable process, by pid."""

    def environ(self, pid: int) -> Mapping[bytes, bytes] | None:
        """A process's initial environment, or None."""


def add_root(maps: KernelMaps, pid: int, start_ticks: int, pending: bool = False) -> str | None:
    """Put pid in the kernel's root map; None on success, else why not (the map is full, say).

    bcc raises a bare Exception ("Argument list too long") when the map is full; a sensor that reports
    False instead is handled the same way. Either way the caller records it: it never ends the daemon.
    """
    try:
        ok = maps.add_root(pid, start_ticks, pending=pending)
    except Exception as exc:  # bcc raises a bare Exception for a full or failing map
        return str(exc) or type(exc).__name__
    return "the kernel's session root map is full" if ok is False else None


@dataclass
class Seeded:
    """What seeding a root found: its existing descendants, and tracked-map inserts that failed."""

    processes: list[ProcInfo] = field(default_factory=list)
    track_failures: int = 0


def seed_descendants(maps: KernelMaps, proc: ProcReader, root: ProcInfo) -> Seeded:
    """Track the existing descendants of `root`, already a root in the kernel map; returns them.

    From the moment the root is in the kernel map the kernel tracks every fork below anything tracked.
    Each level of descendants is then read from a fresh /proc scan taken after its parents were inserted,
    so a child forked before its parent was tracked is seen in the scan and one forked after is caught by
    the kernel: no gap. Processes re-parented away (double fork, setsid, nohup) are found by the
    CLAUDE_PID their environment inherited from Claude Code, trusted only for the root's own user and
    for processes started after it (identity.may_belong_to), so another user cannot attach processes to
    this session and environments of other users' processes are never read.
    """
    seeded = Seeded()
    rid = RootId.of(root)
    # (pid, start) of each tracked process -> (invocation pid, invocation start)
    inv_of: dict[int, tuple[int, int]] = {root.pid: (0, 0)}

    def take(info: ProcInfo, inv: tuple[int, int]) -> None:
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
            if not maps.track(info.pid, entry):
                seeded.track_failures += 1
        seeded.processes.append(info)

    frontier = {root.pid}
    orphans_done = False
    while frontier:
        infos = proc.read_all()
        nxt: set[int] = set()
        for info in infos.values():
            if info.ppid in frontier and info.pid not in inv_of and info.start_ticks >= root.start_ticks:
                take(info, (info.pid, info.start_ticks) if info.ppid == root.pid else inv_of[info.ppid])
                nxt.add(info.pid)
        if not nxt and not orphans_done:
            # The tree is done; now, in the same snapshot (taken after the root was in the map, so any
            # re-parented process that predates it is in it), the processes re-parented away. Looking
            # for them while the tree is still being walked would take a tool call's grandchildren for
            # orphans and lose their invocation. Their own children are then walked like the tree.
            orphans_done = True
            for info in infos.values():
                if (
                    info.pid not in inv_of
                    and may_belong_to(info, rid)
                    and inherited_claude_pid(proc.environ(info.pid)) == root.pid
                ):
                    take(info, (0, 0))  # which tool call started it is lost
                    nxt.add(info.pid)
        frontier = nxt
    return seeded


def tracked_elsewhere(items: Iterable[tuple[int, L.TrackedProc]]) -> Mapping[int, int]:
    """pid -> session root for every process the kernel already tracks."""
    return {pid: e.root for pid, e in items}
