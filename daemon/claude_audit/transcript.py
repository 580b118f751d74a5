"""Claude Code's session transcript, ~/.claude/projects/<project>/<session id>.jsonl: where it is, and
what its first lines say. The way to a 2.0.x session's id, which it gives neither its children's
environment nor a session registry file. State stage.

The file and its directory belong to the agent's user: the directory is opened without following a
final symlink, at most `MAX_ENTRIES` names are looked at, only regular files of the session's uid
modified since the session started are candidates, and only the first `HEAD_BYTES` of each are read
(`bounded.read_user_file`: no FIFO, no symlink). A transcript counts only if its own lines name it
(`sessionId` equal to the file name) and the session's cwd; when two or more could be this session's
(two sessions started in one directory), none is taken: a wrong id is worse than none.

Pure: `project_dir_name`, `session_id_of_name`, `parse_head`. I/O: `find_transcript`.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .bounded import read_user_file

MAX_ENTRIES: Final = 4096
"""Names looked at in one project directory (a user can create millions)."""
HEAD_BYTES: Final = 65536
"""Bytes read from the start of a transcript; its first records are a few hundred bytes each."""
MAX_CANDIDATES: Final = 16
"""Transcripts modified since the session started that are opened at all."""
_UUID_NAME: Final = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jsonl\Z")
_NON_ALNUM: Final = re.compile(r"[^A-Za-z0-9]")


def project_dir_name(cwd: str) -> str:
    """The directory Claude Code keeps a working directory's transcripts in: every character that is not
    an ASCII letter or digit becomes "-" (/srv/my.app -> -srv-my-app), as both 2.0.x and 2.1.x do."""
    return _NON_ALNUM.sub("-", cwd)


def session_id_of_name(name: str) -> str | None:
    """The session id a transcript's file name carries (a lower-case UUID), else None (agent-*.jsonl)."""
    m = _UUID_NAME.fullmatch(name)
    return m.group(1) if m else None


@dataclass(frozen=True, slots=True)
class TranscriptHead:
    """What the first lines of a transcript say about its session."""

    session_id: str
    cwd: str | None
    version: str | None


def parse_head(data: bytes, session_id: str) -> TranscriptHead | None:
    """The first complete lines of a transcript; None unless one names `session_id` and none another.

    Lines that are not JSON objects are skipped; a sidechain (sub-agent) line names the parent's session
    too, so it counts the same.
    """
    lines = data.split(b"\n")
    if len(data) >= HEAD_BYTES:
        lines.pop()  # cut by the read
    cwd = version = None
    named = False
    for raw in lines:
        try:
            rec = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if not isinstance(rec, dict):
            continue
        sid = rec.get("sessionId")
        if sid is not None and sid != session_id:
            return None
        named = named or sid == session_id
        c, v = rec.get("cwd"), rec.get("version")
        if cwd is None and isinstance(c, str) and len(c) <= 4096:
            cwd = c
        if version is None and isinstance(v, str) and len(v) <= 64:
            version = v
    return TranscriptHead(session_id, cwd, version) if named else None


def _candidates(directory: Path, uid: int, since_ns: int) -> list[str] | None:
    """Names of transcripts in `directory` of `uid` modified at or after `since_ns`, newest first."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(directory, flags)
    except (OSError, ValueError):
        return None
    found: list[tuple[int, str]] = []
    try:
        with os.scandir(fd) as it:
            for n, entry in enumerate(it):
                if n >= MAX_ENTRIES:
                    break
                if session_id_of_name(entry.name) is None:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_uid == uid and st.st_mtime_ns >= since_ns:
                    found.append((st.st_mtime_ns, entry.name))
    except OSError:
        return None
    finally:
        os.close(fd)
    return [name for _, name in sorted(found, reverse=True)]


def find_transcript(
    projects: Path, cwd: str, *, uid: int, since_ns: int, session_id: str | None = None
) -> tuple[Path, TranscriptHead] | None:
    """The transcript of the session of `uid` working in `cwd` that started at `since_ns` (wall clock).

    `projects` is ~/.claude/projects as seen from here. With `session_id` known (2.1.x), only that file
    is looked at; without it, exactly one candidate must qualify. I/O, bounded as the module says.
    """
    directory = projects / project_dir_name(cwd)
    if session_id is not None:
        names = [f"{session_id}.jsonl"]
    else:
        listed = _candidates(directory, uid, since_ns)
        if not listed:
            return None
        names = listed[:MAX_CANDIDATES]
    matches: list[tuple[Path, TranscriptHead]] = []
    for name in names:
        sid = session_id_of_name(name)
        if sid is None:
            continue
        path = directory / name
        got = read_user_file(path, HEAD_BYTES)
        if got is None or got.uid != uid:
            continue
        head = parse_head(got.data, sid)
        if head is not None and head.cwd == cwd:
            matches.append((path, head))
    return matches[0] if len(matches) == 1 else None
