"""The state stage's front: decoded events and /proc scans in, outcomes out.

Stage: session/candidate state. It decides what is a session (discovery rules, the candidate state
machine), what each exec belongs to (the session table), and what a session's identity is (identity.py),
and hands back plain values (`Outcome`s) for the record stage to turn into records. Its inputs are the
kernel maps (`KernelMaps`), a /proc reader and a clock; it never calls the daemon and never writes output.

Slow reads happen only where something is first seen: /proc and the session file when a session is
adopted, /proc and the environment when an invocation's head first execs; never per exec record.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .candidates import Candidates, Confirmed, Rejected, Undecided
from .candidates import Decision as CandidateDecision
from .discovery import Matchers, find_roots, is_claude
from .events import CandidateEvent, ExecEvent, ExitEvent, TrackFlag
from .identity import IdentityReader, RootId
from .procfs import ProcFS, ProcInfo
from .sessions import (
    KernelMaps,
    Session,
    SessionKey,
    SessionTable,
    add_root,
    invocation_origin,
    seed_descendants,
    tracked_elsewhere,
)
from .tracecontext import TraceContext

NOT_WATCHED_MAX = 4096
"""Roots the kernel refused that are remembered (so each is reported once); a bound, not a knob."""


@dataclass(frozen=True)
class SessionFound:
    """A session root is now watched."""

    session: Session
    info: ProcInfo
    seeded: int


@dataclass(frozen=True)
class ExecSeen:
    """An exec attributed to a session: the kernel's event and the record's `claude` object."""

    event: ExecEvent
    claude: dict[str, Any]
    full_command: bool = True
    """This record shows its tool call's command in full (the invocation's first record); the others
    may carry an excerpt (privacy.py)."""
    trace: TraceContext | None = None
    """The W3C trace context the exec's invocation was given (TRACEPARENT), read once per invocation."""


@dataclass(frozen=True)
class SessionEnded:
    """A session root exited."""

    session: Session
    wall_time_ns: int


@dataclass(frozen=True)
class NotWatched:
    """A Claude Code process the kernel could not take as a session root: nothing below it is recorded."""

    info: ProcInfo
    how: str
    reason: str
    error: str


@dataclass(frozen=True)
class Lost:
    """Records lost at a named place (a loss-ledger bucket)."""

    where: str
    count: int


Outcome = SessionFound | ExecSeen | SessionEnded | NotWatched | Lost


@dataclass
class Counts:
    """What the state stage filtered or could not do, for status and the loss ledger."""

    not_session: int = 0
    """Records of roots found not to be Claude Code: correct filtering, not a loss."""
    seed_track_failures: int = 0
    """Existing descendants that could not be put in the kernel's tracking map at seeding (a loss)."""
    not_watched: int = 0
    """Claude Code roots the kernel's root map refused (each also an alert record)."""
    not_watched_keys: dict[SessionKey, float] = field(default_factory=dict)


class Tracker:
    """Sessions, candidates and identity, driven by events; returns outcomes as data."""

    def __init__(
        self,
        boot_id: str,
        maps: KernelMaps,
        proc: ProcFS,
        matchers: Matchers,
        *,
        clock: Callable[[], float] = time.monotonic,
        identity: IdentityReader | None = None,
    ) -> None:
        self.maps = maps
        self.proc = proc
        self._matchers = matchers
        self.clock = clock
        self.sessions = SessionTable(boot_id, clock)
        self.candidates = Candidates(maps, proc, matchers, clock=clock)
        self.identity = identity or IdentityReader(proc)
        self.counts = Counts()

    @property
    def matchers(self) -> Matchers:
        """The discovery patterns in force (replaced on reload)."""
        return self._matchers

    @matchers.setter
    def matchers(self, m: Matchers) -> None:
        self._matchers = m
        self.candidates.matchers = m

    # -- discovery ------------------------------------------------------------------------------------
    def scan(self, how: str) -> tuple[int, list[Outcome]]:
        """Find Claude Code processes in /proc that are not watched yet and adopt them.

        Returns (how many were adopted, outcomes).
        """
        infos = self.proc.read_all()
        known = {s.key for s in self.sessions.live() if s.rooted}
        elsewhere = tracked_elsewhere(self.maps.tracked_items())
        out: list[Outcome] = []
        found = 0
        roots = find_roots(infos, self._matchers, elsewhere)
        for info in roots:
            if (info.pid, info.start_ticks) in known:
                continue
            got = self.adopt(info, how, is_claude(info, self._matchers) or "unknown")
            found += any(isinstance(o, SessionFound) for o in got)
            out += got
        # Forget refused roots that are gone, so the memory of them stays bounded by what runs.
        present = {(i.pid, i.start_ticks) for i in roots}
        for key in [k for k in self.counts.not_watched_keys if k not in present]:
            del self.counts.not_watched_keys[key]
        return found, out

    def adopt(self, info: ProcInfo, how: str, reason: str) -> list[Outcome]:
        """Make `info` a watched session: kernel root, existing descendants, identity; or say why not."""
        key = (info.pid, info.start_ticks)
        error = add_root(self.maps, info.pid, info.start_ticks)
        if error is not None:
            self.counts.not_watched += 1
            if key in self.counts.not_watched_keys or len(self.counts.not_watched_keys) >= NOT_WATCHED_MAX:
                return []  # already reported (it is retried at each scan)
            self.counts.not_watched_keys[key] = self.clock()
            return [NotWatched(info, how, reason, error)]
        self.counts.not_watched_keys.pop(key, None)
        existing = self.sessions.get(key)
        if existing is not None and not existing.rooted:
            # Its execs were recorded since the kernel reported them (see on_exec), but it was never
            # announced: the root map refused it until now.
            existing.rooted = True
            seeded = seed_descendants(self.maps, self.proc, info)
            self.counts.seed_track_failures += seeded.track_failures
            return [SessionFound(existing, info, len(seeded.processes))]
        exe = (info.exe or b"").decode(errors="replace")
        uid = None if info.state == "X" else info.uid  # "X": only the exec was seen, /proc never read
        s = self.sessions.add(info.pid, info.start_ticks, how, reason, executable=exe, uid=uid)
        seeded = seed_descendants(self.maps, self.proc, info)
        self.counts.seed_track_failures += seeded.track_failures
        for child in seeded.processes:
            if child.ppid == info.pid:
                # A tool call already running: its wrapper's argv is still in /proc, so later execs below
                # it get the agent's command as if its exec had been seen.
                argv = child.argv
                exe_path = child.exe or (argv[0] if argv else b"")
                origin, command = invocation_origin(argv, exe_path, parent_is_root=True, claude_exe=exe)
                self.sessions.seed_invocation(s, child, origin, command)
        rid = s.root_id
        if rid is not None:
            s.identity.update(self.identity.session_file(rid))
        return [SessionFound(s, info, len(seeded.processes))]

    def adopt_recorded(self, info: ProcInfo, reason: str) -> list[Outcome]:
        """Adopt a root whose records the kernel already sends (a confirmed candidate, or an exec seen).

        Its session is recorded even if the root map refuses the root (then `rooted` is False and scans
        retry it until the map takes it): the kernel reports its records either way.
        """
        adopted = self.adopt(info, "kernel-trigger", reason)
        if not any(isinstance(o, SessionFound) for o in adopted):
            exe = (info.exe or b"").decode(errors="replace")
            uid = None if info.state == "X" else info.uid
            s = self.sessions.add(
                info.pid, info.start_ticks, "kernel-trigger", reason, executable=exe, uid=uid
            )
            s.rooted = False
        return adopted

    # -- events ---------------------------------------------------------------------------------------
    def on_event(self, ev: ExecEvent | CandidateEvent | ExitEvent) -> list[Outcome]:
        """Handle one decoded kernel event."""
        if isinstance(ev, ExecEvent):
            return self.on_exec(ev)
        if isinstance(ev, CandidateEvent):
            return self.on_candidate(ev)
        return self.on_exit(ev)

    def on_candidate(self, ev: CandidateEvent) -> list[Outcome]:
        """A process the kernel adopted on a hint: decide now or hold its records."""
        key = (ev.pid, ev.start_ticks)
        if self.sessions.get(key) is not None or key in self.candidates:
            return []
        return self._apply(self.candidates.offer(ev))

    def recheck(self) -> list[Outcome]:
        """Re-examine candidates still waiting for a verdict."""
        return self._apply(self.candidates.recheck()) if len(self.candidates) else []

    def settle(self) -> list[Outcome]:
        """At stop: decide every pending candidate; undecided ones' held records are lost."""
        return self._apply(self.candidates.settle())

    def _apply(self, decisions: Iterable[CandidateDecision]) -> list[Outcome]:
        out: list[Outcome] = []
        for d in decisions:
            if isinstance(d, Confirmed):
                out += self.adopt_recorded(d.info, d.reason)
                for held in d.held:
                    out += self.on_exec(held)
            elif isinstance(d, Rejected):
                self.sessions.reject(d.key)
                self.counts.not_session += d.held
            elif isinstance(d, Undecided) and d.held:
                out.append(Lost("held-at-stop", d.held))
        return out

    def on_exec(self, ev: ExecEvent, *, lost_candidate_checked: bool = False) -> list[Outcome]:
        """Attribute one exec to its session (adopting the root if it is new to us)."""
        if self.candidates.hold(ev):
            return []
        key = (ev.session_root, ev.root_start_ticks)
        if self.sessions.is_rejected(key):
            self.counts.not_session += 1
            return []
        out: list[Outcome] = []
        s = self.sessions.get(key)
        if s is None:
            if ev.track_flags & TrackFlag.PENDING_ROOT and not lost_candidate_checked:
                # The kernel adopted this root on a hint but its candidate record was lost (ring full):
                # it gets the same verdict and grace period as any candidate, this record held meanwhile.
                cand = CandidateEvent(
                    ev.wall_time_ns, ev.session_root, 0, "rename", b"", b"", ev.root_start_ticks
                )
                decided = self._apply(self.candidates.offer(cand))
                return decided + self.on_exec(ev, lost_candidate_checked=True)
            # A root seeded just now, or one the kernel tracks that this run does not know.
            info = self.proc.read(ev.session_root)
            reason = (
                is_claude(info, self._matchers) if info and info.start_ticks == ev.root_start_ticks else None
            )
            if info is None or reason is None:
                if ev.track_flags:
                    self.counts.not_session += 1
                    return []
                s = self.sessions.add(
                    ev.session_root, ev.root_start_ticks, "kernel-trigger", "kernel-tracked"
                )
            else:
                out += self.adopt_recorded(info, reason)
                s = self.sessions.get(key)
                assert s is not None
        s.execs += 1
        trace = None
        new_invocation = self.sessions.is_new_invocation(s, ev)
        rid = s.root_id
        if new_invocation and rid is not None:
            # Claude Code writes its session file a moment after it starts; look again at each new
            # invocation until it is there, and meanwhile use what it gave its children. The
            # invocation's environment is read once here, for that and for its trace context.
            if not s.has_file_identity:
                s.identity.update(self.identity.session_file(rid))
            want_identity = "session_id" not in s.identity
            fields, trace = self.identity.invocation_environment(
                ev.pid, ev.start_ticks, rid, want_identity=want_identity
            )
            s.identity.update(fields)
            if "transcript_path" not in s.identity:
                s.identity.update(self._transcript(s, rid))
        claude = self.sessions.claude_fields(s, ev)
        if new_invocation and trace is not None:
            self.sessions.set_trace(s, ev, trace)
        out.append(
            ExecSeen(
                ev,
                claude,
                full_command=self.sessions.command_first_shown(s, ev),
                trace=self.sessions.trace_of(s, ev),
            )
        )
        return out

    def _transcript(self, s: Session, rid: RootId) -> dict[str, Any]:
        """Transcript fields, looked for at each new invocation until found (2.0.x: the session id)."""
        # Claude Code writes below the HOME it runs with: the root's own environment says which. Read
        # before the cwd, whose read checks the root's start time, so a reused pid is caught after both.
        env = self.proc.environ(s.pid) or {}
        home_raw = env.get(b"HOME", b"")
        home = Path(os.fsdecode(home_raw)) if home_raw.startswith(b"/") and len(home_raw) <= 4096 else None
        raw_cwd = self.proc.cwd(s.pid, s.start_ticks)
        if raw_cwd is None:
            return {}
        cwd = s.identity.get("cwd")
        if not isinstance(cwd, str):
            cwd = raw_cwd.decode(errors="replace")
        sid = s.identity.get("session_id")
        return self.identity.transcript(rid, cwd, sid if isinstance(sid, str) else None, home)

    def on_exit(self, ev: ExitEvent) -> list[Outcome]:
        """A session root exited."""
        s = self.sessions.end((ev.session_root, ev.root_start_ticks), ev.exit_code)
        return [] if s is None else [SessionEnded(s, ev.wall_time_ns)]

    # -- memory ---------------------------------------------------------------------------------------
    def sweep(self) -> None:
        """Evict ended sessions, idle invocations and rejected roots past their grace period."""
        if self.sessions.sweep_due():
            self.sessions.sweep(self.maps.tracked_items())
