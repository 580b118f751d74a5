"""Session identity from what Claude Code leaves on the host: its session file and its children's environment.

Stage: session/candidate state (it feeds `Session.identity`). Both sources are written by the agent's own
user, so nothing here is a kernel fact: values are labelled with their source and never replace the pid,
start time or executable. They are trusted only when they cannot have been borrowed:

* the session file ``~/.claude/sessions/<pid>.json`` only when it is a regular file owned by the
  session's uid (read with `bounded.read_user_file`: no FIFO, no symlink, capped) whose pid and procStart
  name this very process;
* a process's environment only when the process runs as the session's uid, started no earlier than the
  session root, and its CLAUDE_PID (parsed with `bounded.parse_pid`) names the root.

Every read here is slow (/proc, the user database, a home directory), so the daemon calls these when a
session or an invocation is first seen, never per exec record; user homes are cached per uid.
"""

from __future__ import annotations

import pwd
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .bounded import read_user_file
from .claude import SESSION_FILE_MAX, claude_env_info, claude_pid, parse_session_file, session_file_path
from .events import USER_HZ
from .procfs import ProcInfo
from .tracecontext import TraceContext, trace_of
from .transcript import find_transcript

HOME_CACHE_MAX = 4096
"""Uids whose home directory is remembered (a bound, not a tuning knob)."""


class ProcReader(Protocol):
    """What identity needs from /proc (ProcFS implements it; tests pass one with an injected root)."""

    def read(self, pid: int) -> ProcInfo | None:
        """One process, or None if gone."""

    def environ(self, pid: int) -> Mapping[bytes, bytes] | None:
        """The process's initial environment, or None if unreadable."""

    def host_path(self, path: Path) -> Path:
        """Where a host path is found below this reader's root."""


@dataclass(frozen=True, slots=True)
class RootId:
    """The facts about a session root that the trust rules compare against (all from /proc or the kernel)."""

    pid: int
    start_ticks: int
    uid: int

    @classmethod
    def of(cls, info: ProcInfo) -> RootId:
        """The root identity of a process read from /proc."""
        return cls(info.pid, info.start_ticks, info.uid)


def inherited_claude_pid(env: Mapping[bytes, bytes] | None) -> int | None:
    """The CLAUDE_PID a Claude Code child inherited (CLAUDECODE=1 must be set too), or None."""
    return claude_pid(env) if env else None


def may_belong_to(info: ProcInfo, root: RootId) -> bool:
    """Whether `info` could have inherited its environment from `root`: same user, started after it.

    Checked before any environment is read, so other users' processes (and their CLAUDE_PID) cost nothing.
    """
    return info.uid == root.uid and info.start_ticks >= root.start_ticks and info.pid != root.pid


def env_identity(env: Mapping[bytes, bytes], session_pid: int) -> dict[str, Any]:
    """claude.* fields from a trusted child's environment (CLAUDE_PID must name `session_pid`)."""
    if inherited_claude_pid(env) != session_pid:
        return {}
    info = claude_env_info(env)
    fields: dict[str, Any] = {}
    for key, name in (
        ("CLAUDE_CODE_SESSION_ID", "session_id"),
        ("CLAUDE_CODE_ENTRYPOINT", "entrypoint"),
        ("version", "version"),
    ):
        if key in info:
            fields[name] = info[key]
    if fields:
        fields["identity_source"] = "environment"
    return fields


def _home_of(uid: int) -> Path | None:
    try:
        return Path(pwd.getpwuid(uid).pw_dir)
    except (KeyError, OverflowError):
        return None


class IdentityReader:
    """Reads session files and environments under the trust rules above; caches homes per uid."""

    def __init__(
        self,
        proc: ProcReader,
        home_of: Callable[[int], Path | None] = _home_of,
        boot_wall_ns: int | None = None,
    ) -> None:
        self.proc = proc
        self.boot_wall_ns = (
            boot_wall_ns
            if boot_wall_ns is not None
            else time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        )
        """Wall-clock time of boot: a root's start ticks as the time its transcript must be newer than."""
        self._home_of = home_of
        self._homes: dict[int, Path | None] = {}
        self.untrusted = 0
        """Environments or session files refused by the trust rules (a count for status)."""

    def home(self, uid: int) -> Path | None:
        """The home directory of uid from the user database, looked up once."""
        if uid not in self._homes:
            if len(self._homes) >= HOME_CACHE_MAX:
                self._homes.clear()
            self._homes[uid] = self._home_of(uid)
        return self._homes[uid]

    def session_file(self, root: RootId) -> dict[str, Any]:
        """claude.* fields from the root's session file, or {} if absent, foreign or not this process."""
        home = self.home(root.uid)
        if home is None:
            return {}
        path = self.proc.host_path(session_file_path(home, root.pid))
        got = read_user_file(path, SESSION_FILE_MAX)
        if got is None or got.truncated:
            return {}
        if got.uid != root.uid:
            self.untrusted += 1
            return {}
        sf = parse_session_file(got.data, root.pid, root.start_ticks)
        return sf.claude_fields() if sf is not None else {}

    def transcript(
        self, root: RootId, cwd: str, session_id: str | None, home: Path | None = None
    ) -> dict[str, Any]:
        """claude.transcript_path (and, for a session whose id is not known yet, its id and version from
        the transcript, labelled "transcript"), or {} if no single transcript is found. transcript.py
        says how the user's directory is read. `home` is the HOME the session runs with (Claude Code
        writes below it), else the user database's."""
        home = home or self.home(root.uid)
        if home is None:
            return {}
        projects = home / ".claude" / "projects"
        # One second of slack: the file system's timestamps are coarser than the tick clock.
        since = self.boot_wall_ns + root.start_ticks * (1_000_000_000 // USER_HZ) - 1_000_000_000
        found = find_transcript(
            self.proc.host_path(projects), cwd, uid=root.uid, since_ns=since, session_id=session_id
        )
        if found is None:
            return {}
        path, head = found
        fields: dict[str, Any] = {"transcript_path": str(projects / path.parent.name / path.name)}
        if session_id is None:
            fields |= {"session_id": head.session_id, "identity_source": "transcript"}
            if head.version is not None:
                fields["version"] = head.version
        return fields

    def environment(self, pid: int, start_ticks: int, root: RootId) -> dict[str, Any]:
        """claude.* fields from the environment of (pid, start_ticks) in root's session, if trusted."""
        info = self.proc.read(pid)
        if info is None or info.start_ticks != start_ticks:
            return {}
        if not may_belong_to(info, root):
            self.untrusted += 1
            return {}
        env = self.proc.environ(pid)
        if not env:
            return {}
        fields = env_identity(env, root.pid)
        if not fields and inherited_claude_pid(env) not in (None, root.pid):
            self.untrusted += 1
        return fields

    def invocation_environment(
        self, pid: int, start_ticks: int, root: RootId, *, want_identity: bool
    ) -> tuple[dict[str, Any], TraceContext | None]:
        """One read of an invocation head's environment, if trusted: (identity fields if `want_identity`,
        its W3C trace context). Called once per invocation, never per exec."""
        info = self.proc.read(pid)
        if info is None or info.start_ticks != start_ticks:
            return {}, None
        if not may_belong_to(info, root):
            self.untrusted += 1
            return {}, None
        env = self.proc.environ(pid)
        if not env:
            return {}, None
        fields = env_identity(env, root.pid) if want_identity else {}
        if want_identity and not fields and inherited_claude_pid(env) not in (None, root.pid):
            self.untrusted += 1
        return fields, trace_of(env)

    def claude_pid_of(self, info: ProcInfo, root: RootId) -> int | None:
        """The CLAUDE_PID `info` inherited, read only if it may belong to root's session."""
        if not may_belong_to(info, root):
            return None
        return inherited_claude_pid(self.proc.environ(info.pid))
