"""The pending-candidate state machine: processes the kernel adopted on a hint, awaiting the daemon's verdict.

Stage: session/candidate state. The kernel adopts a process as a *pending* session root when it execs or
renames itself to a trigger name (bpf candidate logic), and sends a candidate event. A process can look
like Claude Code only a moment after that (node renames itself once its script runs), so:

    offered --(verdict: Claude Code)-------------------------> Confirmed (held records released)
       |  \\--(verdict: not Claude, and gone or past grace)---> Rejected  (held records filtered out)
       |   \\-(no verdict yet, alive, within grace)-----------> stays pending, re-checked each loop
       \\--(daemon stops while pending)-----------------------> settled: confirmed, rejected, or its held
                                                                 records counted as lost ("held-at-stop")

Records of a pending root are held (up to HELD_PER_CANDIDATE each; beyond that they are counted in
`held_overflow`, a loss of its own, never the ring queue's). The verdict reads /proc and resolves the
exec'd path: both are inputs (a `ProcReader`, a `resolve` function), as is the clock. The only side
effects are on the kernel maps handed in: a confirmed root is made permanent, a rejected one and its
tracked subtree are removed. Decisions come back as values; nothing here calls the daemon.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .discovery import Matchers, exec_path_is_claude, is_claude
from .events import CandidateEvent, ExecEvent
from .procfs import ProcInfo
from .sessions import KernelMaps, SessionKey

CANDIDATE_GRACE_SECONDS = 2.0
"""How long a kernel-flagged process may take to show it is Claude Code."""
HELD_PER_CANDIDATE = 10_000
"""Records held per unconfirmed candidate; beyond this they are counted as lost."""
MAX_PENDING = 4096
"""Candidates awaiting a verdict at once; more are decided at once (a flood cannot grow memory)."""


class ProcReader(Protocol):
    """What the verdict reads from /proc (ProcFS implements it)."""

    def read(self, pid: int) -> ProcInfo | None:
        """One process, or None if gone."""


def _realpath(path: bytes) -> bytes:
    return os.fsencode(os.path.realpath(os.fsdecode(path)))


@dataclass
class Pending:
    """A kernel-adopted process awaiting the daemon's verdict, and its records held meanwhile."""

    event: CandidateEvent
    deadline: float
    held: list[ExecEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Confirmed:
    """The candidate is Claude Code: adopt it (how="kernel-trigger") and release its held records."""

    key: SessionKey
    info: ProcInfo
    reason: str
    held: list[ExecEvent]


@dataclass(frozen=True)
class Rejected:
    """The candidate is not Claude Code; its held records are filtered out (not a loss)."""

    key: SessionKey
    comm: bytes
    held: int


@dataclass(frozen=True)
class Undecided:
    """The daemon stopped before a verdict: the held records are lost."""

    key: SessionKey
    held: int


Decision = Confirmed | Rejected | Undecided


class Candidates:
    """Pending candidates by root key; every method returns the decisions it reached."""

    def __init__(
        self,
        maps: KernelMaps,
        proc: ProcReader,
        matchers: Matchers,
        *,
        clock: Callable[[], float] = time.monotonic,
        resolve: Callable[[bytes], bytes] = _realpath,
        grace: float = CANDIDATE_GRACE_SECONDS,
        held_max: int = HELD_PER_CANDIDATE,
    ) -> None:
        self.maps = maps
        self.proc = proc
        self.matchers = matchers
        self.clock = clock
        self.resolve = resolve
        self.grace = grace
        self.held_max = held_max
        self.pending: dict[SessionKey, Pending] = {}
        self.held_overflow = 0
        """Records of pending candidates dropped because their hold was full (a loss)."""

    def __contains__(self, key: object) -> bool:
        return key in self.pending

    def __len__(self) -> int:
        return len(self.pending)

    def offer(self, ev: CandidateEvent) -> list[Decision]:
        """A new candidate from the kernel (the caller has checked it is not a known session)."""
        key = (ev.pid, ev.start_ticks)
        if key in self.pending:
            return []
        self.pending[key] = Pending(ev, self.clock() + self.grace)
        if len(self.pending) > MAX_PENDING:
            # Decide the oldest now rather than hold an unbounded number of candidates.
            oldest = next(iter(self.pending))
            return [*self._decide(oldest, final=True), *self._decide(key)]
        return self._decide(key)

    def hold(self, ev: ExecEvent) -> bool:
        """Hold an exec of a pending root's subtree; False if its root is not pending."""
        pc = self.pending.get((ev.session_root, ev.root_start_ticks))
        if pc is None:
            return False
        if len(pc.held) < self.held_max:
            pc.held.append(ev)
        else:
            self.held_overflow += 1
        return True

    def recheck(self) -> list[Decision]:
        """Re-examine every candidate still waiting for a verdict."""
        out: list[Decision] = []
        for key in list(self.pending):
            out += self._decide(key)
        return out

    def settle(self) -> list[Decision]:
        """At stop: decide every candidate now; what cannot be decided is Undecided (its records lost)."""
        out: list[Decision] = []
        for key in list(self.pending):
            out += self._decide(key, final=True)
        return out

    def verdict(self, ev: CandidateEvent) -> tuple[ProcInfo | None, str | None]:
        """(what /proc shows of the candidate, why it is Claude Code or None)."""
        info = self.proc.read(ev.pid)
        if info is not None and info.start_ticks != ev.start_ticks:
            info = None  # the pid was already reused
        if ev.reason == "exec" and ev.filename:
            resolved = self.resolve(ev.filename)
            why = exec_path_is_claude(resolved, self.matchers)
            if why is not None:
                if info is None:  # gone already (a quick `claude --version`)
                    info = ProcInfo(
                        pid=ev.pid,
                        ppid=ev.ppid,
                        comm=ev.comm,
                        exe=resolved,
                        cmdline=ev.filename,
                        start_ticks=ev.start_ticks,
                        uid=0,
                        gid=0,
                        state="X",
                    )
                return info, why
        if info is None:
            return None, None
        return info, is_claude(info, self.matchers)

    def _decide(self, key: SessionKey, final: bool = False) -> list[Decision]:
        pc = self.pending[key]
        info, reason = self.verdict(pc.event)
        if info is not None and reason is not None:
            del self.pending[key]
            # Already in the kernel map as pending: making it permanent rewrites an existing slot, which
            # a full map does not refuse; the adoption itself is the caller's (it records failures).
            return [Confirmed(key, info, reason, pc.held)]
        alive = info is not None and info.state not in ("Z", "X")
        if alive and self.clock() < pc.deadline:
            if not final:
                return []
            del self.pending[key]
            self._forget(key)
            return [Undecided(key, len(pc.held))]
        # Not Claude Code (a process that only named itself so): forget it and everything it started.
        del self.pending[key]
        self._forget(key)
        return [Rejected(key, pc.event.comm, len(pc.held))]

    def _forget(self, key: SessionKey) -> None:
        self.maps.remove_root(key[0])
        self.maps.untrack_session(key[0], key[1])
