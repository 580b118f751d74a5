"""The human view of one audit record: `claude-audit tail`'s line format and filters. Pure.

    [14:30:01] 3f2a9c1e TOOL       4121 | make test
    [14:30:01] 3f2a9c1e TOOL       4130 |   ↳ make -j2   (from: make test)
    [14:30:02] 3f2a9c1e INTERNAL   4133 | /bin/zsh -c -l 'SNAPSHOT_FILE=...'

`format_record` (one line per record), `matches` (the --session/--origin filters) and `render_line`
(one log line to the text to print, or None).

Everything taken from a record is neutralised (`textenc.neutralise`) before it is printed: C0 and C1
controls, DEL, line and paragraph separators, bidi overrides and other invisible format characters and
lone surrogates become visible escapes (``\\x1b``, ``\\n``, ``\\u202e``), so an agent that runs
``printf '\\033[2J'`` cannot drive the reader's terminal. Backslashes are left as they are: the JSON
record, not this view, is the exact form.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

from .textenc import neutralise

UNPARSEABLE: Final = "[unparseable line]"
UNRECOGNISED: Final = "[unrecognised record]"

_FROM_MAX: Final = 60
"""How much of the causing command a descendant's line repeats after "(from: ...)"."""


# -- safe text ------------------------------------------------------------------------------------


def _show(value: object) -> str:
    """Any JSON value as safe text: strings as they are, anything else by its JSON spelling."""
    if isinstance(value, str):
        return neutralise(value)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return neutralise(text)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- colours ----------------------------------------------------------------------------------------

_RESET: Final = "\x1b[0m"
_DIM: Final = "2"
_BOLD: Final = "1"
_RED: Final = "1;31"
_YELLOW: Final = "33"
_ORIGIN_COLOURS: Final = {"tool": "32", "internal": "34", "unknown": "33", "session": "35"}
_SESSION_COLOUR: Final = "1;35"
_DAEMON_COLOUR: Final = "36"


class _Paint:
    """Wraps text in an SGR sequence when colour is on; the text itself is already neutralised."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def __call__(self, sgr: str, text: str) -> str:
        return f"\x1b[{sgr}m{text}{_RESET}" if self.on and text else text


# -- record access (the log is read back from disk: any field may be missing or of the wrong type) ---


def _obj(rec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = rec.get(key)
    return value if isinstance(value, Mapping) else {}


def _str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _has(obj: Mapping[str, Any], key: str) -> bool:
    return key in obj and obj[key] is not None


_TIMESTAMP: Final = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(?:(Z|z)|([+-])(\d\d):(\d\d))\Z", re.ASCII
)


def clock(timestamp: object) -> str:
    """HH:MM:SS in local time for an RFC 3339 @timestamp; "??:??:??" if it is not one."""
    m = _TIMESTAMP.match(timestamp) if isinstance(timestamp, str) else None
    if m is None:
        return "??:??:??"
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    try:
        if m.group(7):
            tz = UTC
        else:
            offset = timedelta(hours=int(m.group(9)), minutes=int(m.group(10)))
            tz = timezone(-offset if m.group(8) == "-" else offset)
        when = datetime(y, mo, d, h, mi, min(s, 59), tzinfo=tz)
        return when.astimezone().strftime("%H:%M:%S")
    except (ValueError, OverflowError, OSError):
        return "??:??:??"


def session_label(claude: Mapping[str, Any]) -> str:
    """First 8 characters of claude.session_id, else "pid:<claude.pid>" (neutralised)."""
    sid = _str(claude, "session_id")
    if sid:
        return neutralise(sid[:8])
    return "pid:" + (_show(claude["pid"]) if _has(claude, "pid") else "?")


def _argv_text(process: Mapping[str, Any]) -> str:
    args = process.get("args")
    if isinstance(args, list) and args and all(isinstance(a, str) for a in args):
        return neutralise(shlex.join(args))
    for key in ("command_line", "executable", "name"):
        text = _str(process, key)
        if text:
            return neutralise(text)
    return "?"


# -- formatting -------------------------------------------------------------------------------------


def format_record(rec: Mapping[str, Any], color: bool) -> str | None:
    """One human-readable line for an audit record (no newline), or None if it is not an audit record.

    Exec records: ``[HH:MM:SS] <session> <ORIGIN> <pid> | <text>``. The text is the agent's command
    (claude.command) for the invocation's own exec (process.pid == claude.invocation_pid), the argv
    otherwise; an exec below an invocation is marked ``↳ <argv>   (from: <command>)`` (or ``(from: pid
    N)`` when the invocation has no extracted command). Lifecycle records get their own short lines.
    With `color` the line carries ANSI colours; without it, it holds no character below U+0020, no DEL
    and no C1 control. Any action this module does not know is shown by name, never dropped.
    """
    event = _obj(rec, "event")
    action = _str(event, "action")
    if action is None:
        return None
    paint = _Paint(color)
    head = paint(_DIM, f"[{clock(rec.get('@timestamp'))}]")
    claude = _obj(rec, "claude")
    label = paint(_BOLD, session_label(claude)) if claude else ""
    prefix = f"{head} {label}" if label else head
    audit = _obj(rec, "claude_audit")
    if action == "exec":
        return f"{prefix} {_exec_text(rec, claude, audit, paint)}"
    return f"{prefix} {_lifecycle_text(action, rec, claude, audit, paint)}"


def _exec_text(
    rec: Mapping[str, Any], claude: Mapping[str, Any], audit: Mapping[str, Any], paint: _Paint
) -> str:
    process = _obj(rec, "process")
    origin = _str(claude, "origin")
    origin_text = neutralise(origin.upper()) if origin else "?"
    colour = _ORIGIN_COLOURS.get(origin or "", _YELLOW)
    pid = _show(process["pid"]) if _has(process, "pid") else "?"
    command = _str(claude, "command")
    argv = _argv_text(process)
    if not _has(claude, "invocation_pid"):
        text = argv  # the session root itself, or a process whose invocation is unknown
    elif process.get("pid") == claude["invocation_pid"]:
        text = neutralise(command) if command is not None else argv
    else:
        cause = (
            _clip(neutralise(command), _FROM_MAX)
            if command is not None
            else "pid " + _show(claude["invocation_pid"])
        )
        text = f"  {paint(_DIM, '↳')} {argv}   " + paint(_DIM, f"(from: {cause})")
    line = f"{paint(colour, f'{origin_text:<8}')} {pid:>7} | {text}"
    flags = audit.get("flags")
    if isinstance(flags, list) and flags:
        line += "  " + paint(_YELLOW, "[" + ",".join(_show(f) for f in flags) + "]")
    return line


_Styled = tuple[str, str]
"""(SGR colour, neutralised text)."""


def _field(obj: Mapping[str, Any], key: str, default: str = "?") -> str:
    return _show(obj[key]) if _has(obj, key) else default


def _session_found(rec: Mapping[str, Any], claude: Mapping[str, Any], audit: Mapping[str, Any]) -> _Styled:
    parts = ["SESSION FOUND", "pid " + _field(_obj(rec, "process"), "pid")]
    if _has(claude, "version"):
        parts.append("v" + _show(claude["version"]))
    if _has(claude, "cwd"):
        parts.append("cwd " + _show(claude["cwd"]))
    if _has(audit, "how"):
        parts.append(f"({_show(audit['how'])})")
    return _SESSION_COLOUR, " ".join(parts)


def _session_ended(rec: Mapping[str, Any], _claude: Mapping[str, Any], _audit: Mapping[str, Any]) -> _Styled:
    process = _obj(rec, "process")
    return (
        _SESSION_COLOUR,
        f"SESSION ENDED pid {_field(process, 'pid')} exit code {_field(process, 'exit_code')}",
    )


def _events_lost(_rec: Mapping[str, Any], _claude: Mapping[str, Any], audit: Mapping[str, Any]) -> _Styled:
    lost = _obj(audit, "lost")
    return _RED, f"LOST {_field(lost, 'count')} events ({_field(lost, 'where')})"


def _daemon_started(rec: Mapping[str, Any], _claude: Mapping[str, Any], audit: Mapping[str, Any]) -> _Styled:
    parts = ["DAEMON START"]
    service = _obj(rec, "service")
    if _has(service, "version"):
        parts.append(_show(service["version"]))
    if _has(audit, "daemon_pid"):
        parts.append("pid " + _show(audit["daemon_pid"]))
    if _has(audit, "sessions"):
        parts.append(_show(audit["sessions"]) + " sessions")
    return _DAEMON_COLOUR, " ".join(parts)


def _daemon_stopped(_rec: Mapping[str, Any], _claude: Mapping[str, Any], audit: Mapping[str, Any]) -> _Styled:
    parts = ["DAEMON STOP"]
    if _has(audit, "reason"):
        parts.append(f"({_show(audit['reason'])})")
    if _has(audit, "records_written"):
        parts.append(_show(audit["records_written"]) + " records")
    lost = audit.get("events_lost")
    if _has(audit, "events_lost"):
        parts.append(_show(lost) + " lost")
    alert = isinstance(lost, int) and lost > 0
    return (_RED if alert else _DAEMON_COLOUR), " ".join(parts)


def _config_rejected(
    _rec: Mapping[str, Any], _claude: Mapping[str, Any], audit: Mapping[str, Any]
) -> _Styled:
    return _RED, "CONFIG REJECTED " + _field(audit, "error")


def _rule_match(rec: Mapping[str, Any], _claude: Mapping[str, Any], audit: Mapping[str, Any]) -> _Styled:
    rule = _obj(rec, "rule")
    process = _obj(rec, "process")
    level = _field(_obj(audit, "alert"), "level")
    return (
        _RED,
        f"ALERT {level} {_field(rule, 'name')} (pid {_field(process, 'pid')}) | {_argv_text(process)}",
    )


def _heartbeat(_rec: Mapping[str, Any], _claude: Mapping[str, Any], audit: Mapping[str, Any]) -> _Styled:
    kernel = _obj(audit, "kernel")
    state = kernel.get("state")
    text = f"HEARTBEAT {_field(audit, 'sessions_watched')} sessions, kernel {_field(kernel, 'state')}"
    return (_DAEMON_COLOUR if state == "attached" else _RED), text


def _config_reloaded(
    _rec: Mapping[str, Any], _claude: Mapping[str, Any], audit: Mapping[str, Any]
) -> _Styled:
    changed = _obj(audit, "config").get("changed")
    keys = ", ".join(_show(k) for k in changed) if isinstance(changed, list) and changed else "no change"
    return _DAEMON_COLOUR, f"CONFIG RELOADED ({keys})"


_LIFECYCLE: Final[dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], _Styled]]] = {
    "session-found": _session_found,
    "session-ended": _session_ended,
    "events-lost": _events_lost,
    "daemon-started": _daemon_started,
    "daemon-stopped": _daemon_stopped,
    "config-rejected": _config_rejected,
    "rule-match": _rule_match,
    "config-reloaded": _config_reloaded,
    "heartbeat": _heartbeat,
}


def _lifecycle_text(
    action: str, rec: Mapping[str, Any], claude: Mapping[str, Any], audit: Mapping[str, Any], paint: _Paint
) -> str:
    fmt = _LIFECYCLE.get(action)
    colour, text = fmt(rec, claude, audit) if fmt is not None else (_YELLOW, neutralise(action.upper()))
    return paint(colour, text)


# -- filters ----------------------------------------------------------------------------------------


def matches(rec: Mapping[str, Any], session: str | None, origins: set[str] | None) -> bool:
    """Whether `rec` passes the --session and --origin filters (None or empty: no filter).

    `session` matches a prefix of claude.session_id, or exactly claude.pid (as a string) or
    claude.session_entity_id. `origins` are claude.origin values ("tool", "internal", "unknown",
    "session"). Exec records need a matching claude.*; lifecycle records always pass the origin filter,
    and pass the session filter unless they carry claude.* for another session.
    """
    claude = _obj(rec, "claude")
    is_exec = _str(_obj(rec, "event"), "action") == "exec"
    if session and (claude or is_exec) and not _session_matches(claude, session):
        return False
    return not (origins and is_exec and _str(claude, "origin") not in origins)


def _session_matches(claude: Mapping[str, Any], session: str) -> bool:
    sid = _str(claude, "session_id")
    if sid is not None and sid.startswith(session):
        return True
    pid = claude.get("pid")
    if isinstance(pid, int) and not isinstance(pid, bool) and str(pid) == session:
        return True
    return _str(claude, "session_entity_id") == session


# -- one log line ----------------------------------------------------------------------------------


def render_line(line: bytes, session: str | None, origins: set[str] | None, color: bool) -> str | None:
    """The text to print for one log line, or None if the filters leave it out.

    A line that is not a JSON object in UTF-8 is shown as "[unparseable line]" whatever the filters: it
    cannot be attributed, and a damaged audit log must not go unnoticed.
    """
    try:
        rec = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        rec = None
    if not isinstance(rec, dict):
        return _Paint(color)(_RED, UNPARSEABLE)
    if not matches(rec, session, origins):
        return None
    text = format_record(rec, color)
    return text if text is not None else _Paint(color)(_RED, UNRECOGNISED)


__all__ = [
    "UNPARSEABLE",
    "UNRECOGNISED",
    "clock",
    "format_record",
    "matches",
    "render_line",
    "session_label",
]
