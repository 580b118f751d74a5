"""`claude-audit tail`: the human view of the audit log, one short line per record.

    [14:30:01] 3f2a9c1e TOOL       4121 | make test
    [14:30:01] 3f2a9c1e TOOL       4130 |   ↳ make -j2   (from: make test)
    [14:30:02] 3f2a9c1e INTERNAL   4133 | /bin/zsh -c -l 'SNAPSHOT_FILE=...'

Pure parts: `format_record` (one line per record) and `matches` (the --session/--origin filters). I/O
parts: `follow` (tail -F over the rotating log) and `tail_main` (the command).

Everything taken from a record is neutralised (`textenc.neutralise`) before it is printed: C0 and C1
controls, DEL, line and paragraph separators, bidi overrides and other invisible format characters and
lone surrogates become visible escapes (``\\x1b``, ``\\n``, ``\\u202e``), so an agent that runs
``printf '\\033[2J'`` cannot drive the reader's terminal. Backslashes are left as they are: the JSON
record, not this view, is the exact form.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from .textenc import neutralise

if TYPE_CHECKING:
    from .config import Config

EX_OK: Final = 0
EX_NOINPUT: Final = 66
EX_IOERR: Final = 74
EX_NOPERM: Final = 77

UNPARSEABLE: Final = "[unparseable line]"
UNRECOGNISED: Final = "[unrecognised record]"

MAX_LINE_BYTES: Final = 32 << 20
"""Longest line `follow` holds while waiting for its newline (a maximal record is well below this)."""

_READ_CHUNK: Final = 1 << 16
_FROM_MAX: Final = 60
"""How much of the causing command a descendant's line repeats after "(from: ...)"."""

# -- neutralising text ------------------------------------------------------------------------------


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


_LIFECYCLE: Final[dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], _Styled]]] = {
    "session-found": _session_found,
    "session-ended": _session_ended,
    "events-lost": _events_lost,
    "daemon-started": _daemon_started,
    "daemon-stopped": _daemon_stopped,
    "config-rejected": _config_rejected,
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


# -- following the file -----------------------------------------------------------------------------


class _Source:
    """One open file read line by line: the bytes after the last newline wait for the rest."""

    def __init__(self, fd: int, skip_partial: bool = False) -> None:
        self.fd = fd
        st = os.fstat(fd)
        self.ident = (st.st_dev, st.st_ino)
        self.pos = os.lseek(fd, 0, os.SEEK_CUR)
        self.buf = b""
        self.skipping = skip_partial
        """Drop everything up to the next newline (started mid-line, or after an over-long line)."""

    def lines(self) -> Iterator[bytes]:
        """Read to end of file now, yielding each complete line without its newline."""
        while True:
            chunk = os.read(self.fd, _READ_CHUNK)
            if not chunk:
                return
            self.pos += len(chunk)
            data = self.buf + chunk if self.buf else chunk
            if self.skipping:
                nl = data.find(b"\n")
                if nl < 0:
                    self.buf = b""
                    continue
                self.skipping = False
                data = data[nl + 1 :]
            *complete, self.buf = data.split(b"\n")
            yield from complete
            if len(self.buf) > MAX_LINE_BYTES:
                over, self.buf, self.skipping = self.buf, b"", True
                yield over

    def seek_end(self) -> None:
        """Go to the end of the file, skipping the rest of a line the file ends in the middle of."""
        size = os.fstat(self.fd).st_size
        if size:
            os.lseek(self.fd, size - 1, os.SEEK_SET)
            self.skipping = os.read(self.fd, 1) != b"\n"
            self.pos = size

    def rest(self) -> Iterator[bytes]:
        """The bytes held after the last newline, as a final line: this file will not be written again."""
        if self.buf and not self.skipping:
            yield self.buf
        self.buf = b""
        self.skipping = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _open(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _rotated(path: Path) -> list[Path]:
    """path.1, path.2, ... that exist, newest (.1) first; gaps are skipped, not an end."""
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        suffix = name.removeprefix(path.name + ".")
        if suffix != name and suffix.isascii() and suffix.isdigit():
            found.append((int(suffix), path.parent / name))
    return [p for _, p in sorted(found)]


def _open_rotated(
    path: Path, skip: set[tuple[int, int]], newer_than: tuple[int, int] | None = None
) -> list[_Source]:
    """Open the rotated files path.N ... path.1, oldest first, leaving out `skip` and duplicates.

    With `newer_than`, only the files rotated after that one (numbered below it), and none at all if it is
    not among them (then which files are newer cannot be known).

    Callers open the current file first: if a rotation runs meanwhile, it shows up again as path.1 (same
    inode, in `skip`) and nothing older is missed.
    """
    seen = set(skip)
    sources: list[_Source] = []
    found = newer_than is None
    try:
        for p in _rotated(path):
            try:
                fd = _open(p)
            except FileNotFoundError:
                continue  # moved by a rotation running now; it reappears under the next number
            src = _Source(fd)
            if src.ident == newer_than:
                src.close()
                found = True
                break
            if src.ident in seen:
                src.close()
                continue
            seen.add(src.ident)
            sources.append(src)
    except BaseException:
        for src in sources:
            src.close()
        raise
    if not found:
        for src in sources:
            src.close()
        return []
    sources.reverse()
    return sources


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def follow(
    path: Path,
    from_start: bool,
    include_rotated: bool,
    stop: Callable[[], bool],
    poll_interval: float = 0.2,
) -> Generator[bytes, None, None]:
    """Yield each complete line of the audit log at `path` (without its newline), following it like tail -F.

    Starts at the end of the file (the first partial line, if the file ends mid-line, is skipped) unless
    `from_start`. With `include_rotated`, first yields every line of path.N ... path.1 (oldest first), then
    `path` from its start. Whenever the file is at its end, a rotation is looked for: if `path` now names
    another file, the old one is read to its end, then any files rotated after it (path.k ... path.1, if
    several rotations happened between two looks), then the new one from its start; if `path` was
    truncated in place (copytruncate), reading restarts at its start. So with rotate.py's rotation no
    line is lost or repeated (unless more rotations happen between two looks than there are backups).
    A partial last line is held until its newline arrives; one left in a file that was rotated away is
    yielded as it is (rotate.py never leaves one, so it is a broken line).

    `stop` is called each time the file is at its end and nothing has changed: True ends the iteration
    (so `stop=lambda: True` reads what is there and returns). Opening the file at the start raises
    OSError (FileNotFoundError, PermissionError); later, a path that is missing or cannot be opened just
    keeps the current file.
    """
    current = _Source(_open(path))
    queue: list[_Source] = []
    """Files to read whole before `current`: rotated ones (oldest first) and the current one's elders."""
    try:
        if include_rotated:
            queue = _open_rotated(path, {current.ident})
        elif not from_start:
            current.seek_end()
        while True:
            while queue:
                yield from queue[0].lines()
                yield from queue[0].rest()
                queue.pop(0).close()
            # Look at the path before reading to the end: whatever the writer put in the old file before
            # it rotated is then read from the old file before the switch.
            now = _identity(path)
            yield from current.lines()
            if now is not None and now != current.ident:
                try:
                    new = _Source(_open(path))
                except OSError:
                    new = None  # gone again, or not readable: keep the old file and look again
                if new is not None:
                    yield from current.rest()
                    try:
                        # More than one rotation since the last look: the files between come first.
                        queue = _open_rotated(path, {new.ident}, newer_than=current.ident)
                    except OSError:
                        queue = []
                    current.close()
                    current = new
                    continue
            elif os.fstat(current.fd).st_size < current.pos:
                yield from current.rest()
                os.lseek(current.fd, 0, os.SEEK_SET)
                current.pos = 0
                continue
            if stop():
                return
            time.sleep(poll_interval)
    finally:
        current.close()
        for src in queue:
            src.close()


# -- the command ------------------------------------------------------------------------------------


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


def _origin_set(values: list[str] | None) -> set[str] | None:
    if not values:
        return None
    found = {o.strip().lower() for v in values for o in v.split(",") if o.strip()}
    return found or None


def _permission_message(path: Path) -> str:
    group = ""
    try:
        gid = os.stat(path).st_gid
        group = f" ({grp.getgrgid(gid).gr_name})"
    except (OSError, KeyError):
        pass
    return (
        f"claude-audit: permission denied reading {path}: "
        f"run as root or as a member of the log's group{group}"
    )


def _use_color(choice: str, out: TextIO) -> bool:
    if choice == "always":
        return True
    if choice == "never":
        return False
    isatty = getattr(out, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def tail_main(args: argparse.Namespace, config: Config, *, out: TextIO | None = None) -> int:
    """Run `claude-audit tail`: print the audit log one line per record until ^C (or its end, --no-follow).

    Reads args.file (default config.audit_log.path), args.session, args.origin (repeatable, also
    comma-separated, case-insensitive), args.no_follow, args.all and args.color. --no-follow prints the
    whole current file (with --all, the rotated ones first) and returns. Returns 0, 66 if the log does
    not exist, 77 if it cannot be read for lack of permission (with a hint), 74 on another read error.
    """
    stream = out if out is not None else sys.stdout
    path: Path = args.file if args.file is not None else config.audit_log.path
    color = _use_color(args.color, stream)
    origins = _origin_set(args.origin)
    session = args.session or None
    encoding = getattr(stream, "encoding", None) or "utf-8"
    no_follow = bool(args.no_follow)
    lines = follow(
        path,
        from_start=no_follow or bool(args.all),
        include_rotated=bool(args.all),
        stop=lambda: no_follow,
    )
    try:
        for line in lines:
            text = render_line(line, session, origins, color)
            if text is None:
                continue
            # A terminal that cannot show a character gets its \\uXXXX spelling instead of an error.
            stream.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")
            if not no_follow:
                stream.flush()  # a follower wants each line as it comes
        stream.flush()
    except KeyboardInterrupt:
        return EX_OK
    except BrokenPipeError:
        # The reader went away (tail | head): not an error. Keep the interpreter's final flush quiet.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
        return EX_OK
    except PermissionError:
        print(_permission_message(path), file=sys.stderr)
        return EX_NOPERM
    except FileNotFoundError:
        print(f"claude-audit: no audit log at {path} (is the daemon running?)", file=sys.stderr)
        return EX_NOINPUT
    except OSError as exc:
        print(f"claude-audit: cannot read {path}: {exc}", file=sys.stderr)
        return EX_IOERR
    finally:
        lines.close()
    return EX_OK


__all__ = [
    "MAX_LINE_BYTES",
    "UNPARSEABLE",
    "UNRECOGNISED",
    "clock",
    "follow",
    "format_record",
    "matches",
    "render_line",
    "session_label",
    "tail_main",
]
