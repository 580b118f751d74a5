"""Who a session is: Claude Code's session registry file and the environment it gives its children.

Both are written by the session's own user, that is by the adversary, so they only ever add `claude.*`
fields (labelled with `identity_source`) and never replace a kernel fact, and they are read bounded:

* ``~/.claude/sessions/<pid>.json`` is read with `bounded.read_user_file` (never blocks on a FIFO, never
  follows a final symlink, regular files only, at most `SESSION_FILE_MAX` bytes), and used only when the
  file's owner is the session's uid and its pid and procStart are the session root's;
* environment values are taken up to `MAX_TEXT` bytes, and CLAUDE_PID only as a pid (`parse_pid`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bounded import parse_pid, parse_uint, read_user_file

SESSION_FILE_MAX = 65536
"""Bytes of a session file read; real ones are a few hundred bytes. A larger file is ignored."""
MAX_TEXT = 4096
"""Longest text value (session id, cwd, version, ...) taken from a session file or an environment."""
_AI_AGENT = re.compile(r"claude-code_([^_\s]+)_agent\Z")


def session_file_path(home: Path, pid: int) -> Path:
    """Where Claude Code registers the session whose root is `pid`, for a user whose home is `home`."""
    return home / ".claude" / "sessions" / f"{pid}.json"


@dataclass(frozen=True, slots=True)
class SessionFileInfo:
    """What Claude Code's session registry file says about a running session (user-written: enrichment)."""

    pid: int
    proc_start: int
    session_id: str | None = None
    cwd: str | None = None
    started_at_ms: int | None = None
    version: str | None = None
    kind: str | None = None
    entrypoint: str | None = None
    name: str | None = None
    status: str | None = None

    def claude_fields(self) -> dict[str, Any]:
        """The `claude.*` fields this file provides, labelled with their source."""
        fields: dict[str, Any] = {
            k: v
            for k, v in (
                ("session_id", self.session_id),
                ("cwd", self.cwd),
                ("started_at_ms", self.started_at_ms),
                ("version", self.version),
                ("kind", self.kind),
                ("entrypoint", self.entrypoint),
                ("name", self.name),
            )
            if v is not None
        }
        fields["identity_source"] = "session_file"
        return fields


def _text(obj: Mapping[str, Any], key: str) -> str | None:
    v = obj.get(key)
    return v if isinstance(v, str) and len(v) <= MAX_TEXT else None


def _int(v: object) -> int | None:
    # bool is an int in Python but never a pid or a time in this file; nothing here exceeds a u64.
    if isinstance(v, int) and not isinstance(v, bool):
        return v if 0 <= v < 1 << 64 else None
    if isinstance(v, str):
        return parse_uint(v)
    return None


def _json_object(data: bytes) -> dict[str, Any] | None:
    """A JSON object from bytes, or None for anything else (too big, malformed, another JSON type)."""
    if len(data) > SESSION_FILE_MAX:
        return None
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return obj if isinstance(obj, dict) else None


def parse_session_file(data: bytes, expected_pid: int, expected_start_ticks: int) -> SessionFileInfo | None:
    """Parse ~/.claude/sessions/<pid>.json; None unless it is well-formed and names this very process.

    pid must equal expected_pid and procStart (stat field 22, a string in the file) expected_start_ticks,
    so a file left over from an earlier process with a reused pid is ignored. Optional keys may be
    missing or of the wrong type (then they are left out); garbage never raises.
    """
    obj = _json_object(data)
    if (
        obj is None
        or _int(obj.get("pid")) != expected_pid
        or _int(obj.get("procStart")) != expected_start_ticks
    ):
        return None
    return SessionFileInfo(
        pid=expected_pid,
        proc_start=expected_start_ticks,
        session_id=_text(obj, "sessionId"),
        cwd=_text(obj, "cwd"),
        started_at_ms=_int(obj.get("startedAt")),
        version=_text(obj, "version"),
        kind=_text(obj, "kind"),
        entrypoint=_text(obj, "entrypoint"),
        name=_text(obj, "name"),
        status=_text(obj, "status"),
    )


def read_session_file(
    path: Path, *, pid: int, start_ticks: int, owner_uid: int
) -> SessionFileInfo | None:
    """Read and parse a session file, bounded; None unless it is a regular file of at most
    SESSION_FILE_MAX bytes, owned by `owner_uid` (the session's user), naming this very process."""
    got = read_user_file(path, SESSION_FILE_MAX)
    if got is None or got.truncated or got.uid != owner_uid:
        return None
    return parse_session_file(got.data, pid, start_ticks)


# -- environment --------------------------------------------------------------------------------------

ENV_KEYS = (
    "CLAUDE_CODE_SESSION_ID",
    "CLAUDE_PID",
    "CLAUDE_CODE_ENTRYPOINT",
    "AI_AGENT",
    "CLAUDE_CODE_EXECPATH",
    "CLAUDECODE",
)


def claude_env_info(environ: Mapping[bytes, bytes]) -> dict[str, str]:
    """The Claude Code variables present in an environment, decoded (invalid UTF-8 as U+FFFD).

    Adds "version", parsed from AI_AGENT=claude-code_<version>_agent when it has that shape. The real
    2.1.331 writes the version with dashes (``claude-code_2-1-331_agent``); an all-numeric dashed
    version is given back dotted ("2.1.331"), anything else as written. A value longer than MAX_TEXT
    bytes is left out.
    """
    info = {
        k: environ[k.encode()].decode("utf-8", "replace")
        for k in ENV_KEYS
        if k.encode() in environ and len(environ[k.encode()]) <= MAX_TEXT
    }
    m = _AI_AGENT.match(info.get("AI_AGENT", ""))
    if m:
        version = m.group(1)
        info["version"] = version.replace("-", ".") if re.fullmatch(r"\d+(?:-\d+)+", version) else version
    return info


def claude_pid(environ: Mapping[bytes, bytes]) -> int | None:
    """The session root's pid an environment claims (CLAUDECODE=1 and CLAUDE_PID a pid), else None.

    A claim only: anyone can set these variables, so the caller checks the process's uid and start
    time against the session's before believing it. Never raises, whatever the value holds.
    """
    if environ.get(b"CLAUDECODE") != b"1":
        return None
    return parse_pid(environ.get(b"CLAUDE_PID", b""))
