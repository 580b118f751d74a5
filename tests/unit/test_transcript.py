"""transcript: finding a session's transcript in the user's (hostile) project directory, bounded."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from claude_audit.transcript import (
    find_transcript,
    parse_head,
    project_dir_name,
    session_id_of_name,
)

SID = "b345009a-d5f4-471b-9a10-46d6086ecf03"
OTHER = "940fd0ae-f5a6-4135-8c57-1154fa9ddba9"
CWD = "/srv/my.app/work"


def _head(sid: str, cwd: str = CWD) -> bytes:
    """The first lines as 2.0.77 writes them (queue operation, then the first user message)."""
    lines = [
        {
            "type": "queue-operation",
            "operation": "dequeue",
            "timestamp": "2026-11-26T14:05:05.284Z",
            "sessionId": sid,
        },
        {"parentUuid": None, "cwd": cwd, "sessionId": sid, "version": "2.0.77", "type": "user"},
    ]
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def _project(tmp_path: Path) -> Path:
    d = tmp_path / "projects" / project_dir_name(CWD)
    d.mkdir(parents=True)
    return d


def test_names() -> None:
    """Claude Code's directory naming, and only UUID-named files are session transcripts."""
    assert project_dir_name("/tmp/evidence-exp/x_y/work") == "-tmp-evidence-exp-x-y-work"
    assert session_id_of_name(f"{SID}.jsonl") == SID
    assert session_id_of_name("agent-af572f6.jsonl") is None
    assert session_id_of_name(f"{SID.upper()}.jsonl") is None


def test_parse_head() -> None:
    """The head must name the file's session and no other; garbage lines are skipped."""
    head = parse_head(b"not json\n[1]\n" + _head(SID), SID)
    assert head is not None and (head.cwd, head.version) == (CWD, "2.0.77")
    assert parse_head(_head(OTHER), SID) is None
    assert parse_head(_head(SID) + _head(OTHER), SID) is None
    assert parse_head(b"", SID) is None


def test_finds_the_one_transcript(tmp_path: Path) -> None:
    """One transcript newer than the session's start, naming itself and the cwd: found."""
    d = _project(tmp_path)
    (d / f"{SID}.jsonl").write_bytes(_head(SID))
    (d / "agent-af572f6.jsonl").write_bytes(_head(SID))
    got = find_transcript(tmp_path / "projects", CWD, uid=os.getuid(), since_ns=time.time_ns() - 10**9)
    assert got is not None and got[0] == d / f"{SID}.jsonl" and got[1].session_id == SID


def test_ambiguity_old_files_and_other_owners_give_nothing(tmp_path: Path) -> None:
    """Two candidates: none taken. A transcript older than the session, or another user's: ignored."""
    d = _project(tmp_path)
    (d / f"{SID}.jsonl").write_bytes(_head(SID))
    since = time.time_ns() - 10**9
    assert find_transcript(tmp_path / "projects", CWD, uid=os.getuid() + 1, since_ns=since) is None
    (d / f"{OTHER}.jsonl").write_bytes(_head(OTHER))
    assert find_transcript(tmp_path / "projects", CWD, uid=os.getuid(), since_ns=since) is None
    os.utime(d / f"{OTHER}.jsonl", ns=(since - 10**10, since - 10**10))
    assert find_transcript(tmp_path / "projects", CWD, uid=os.getuid(), since_ns=since) is not None


def test_a_transcript_of_another_directory_does_not_count(tmp_path: Path) -> None:
    """A file placed in this project directory whose lines name another cwd is not this session's."""
    d = _project(tmp_path)
    (d / f"{SID}.jsonl").write_bytes(_head(SID, cwd="/elsewhere"))
    assert find_transcript(tmp_path / "projects", CWD, uid=os.getuid(), since_ns=0) is None


def test_fifo_symlink_and_symlinked_directory_never_block_or_follow(tmp_path: Path) -> None:
    """A FIFO named like a transcript, a symlink to a real transcript, and a project directory that is a
    symlink: nothing blocks, nothing is followed, nothing is found; a known id is looked up directly."""
    d = _project(tmp_path)
    os.mkfifo(d / f"{SID}.jsonl")
    real = tmp_path / "real.jsonl"
    real.write_bytes(_head(OTHER))
    (d / f"{OTHER}.jsonl").symlink_to(real)
    result: list[object] = []
    t = threading.Thread(
        target=lambda: result.append(find_transcript(tmp_path / "projects", CWD, uid=os.getuid(), since_ns=0))
    )
    t.start()
    t.join(10)
    assert not t.is_alive() and result == [None]
    assert find_transcript(tmp_path / "projects", CWD, uid=os.getuid(), since_ns=0, session_id=SID) is None
    good = tmp_path / "good"
    good.mkdir()
    (good / f"{OTHER}.jsonl").write_bytes(_head(OTHER))
    assert find_transcript(good.parent, CWD, uid=os.getuid(), since_ns=0) is None  # not its project dir
    other = tmp_path / "other-projects"
    other.mkdir()
    (other / project_dir_name(CWD)).symlink_to(good)
    assert find_transcript(other, CWD, uid=os.getuid(), since_ns=0) is None


def test_bounded_number_of_names(tmp_path: Path) -> None:
    """Thousands of files: at most MAX_ENTRIES names are looked at, at most MAX_CANDIDATES opened."""
    d = _project(tmp_path)
    for i in range(5000):
        (d / f"junk-{i}").touch()
    t0 = time.monotonic()
    assert find_transcript(tmp_path / "projects", CWD, uid=os.getuid(), since_ns=0) is None
    assert time.monotonic() - t0 < 10
