"""claude_identity: Claude Code's session file and the environment of its children, read bounded."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from claude_audit.claude_identity import (
    SESSION_FILE_MAX,
    SessionFileInfo,
    claude_env_info,
    claude_pid,
    parse_session_file,
    read_session_file,
    session_file_path,
)
from claude_audit.procfs import parse_environ, parse_stat

CAPTURES = Path(__file__).parent / "data" / "claude_captures"


def capture(version: str) -> dict[str, Any]:
    """tree.json of one captured session."""
    data: dict[str, Any] = json.loads((CAPTURES / version / "tree.json").read_text())
    return data


def proc_file(version: str, pid: int | str, name: str) -> bytes:
    """One captured /proc file."""
    return (CAPTURES / version / "proc" / str(pid) / name).read_bytes()


# -- session file -------------------------------------------------------------------------------------

SESSION = {
    "pid": 17982,
    "sessionId": "02b6cf79-4f1e-4c53-9d1e-0a8c7f0f1d2e",
    "cwd": "/srv/app",
    "startedAt": 1795572670068,
    "procStart": "1054469",
    "version": "2.1.331",
    "kind": "interactive",
    "entrypoint": "sdk-cli",
    "name": "cc-2a",
    "status": "busy",
    "extra": {"ignored": True},
}


def test_session_file_fields() -> None:
    """The FIELD_NOTES example parses into every field, and claude_fields labels its source."""
    got = parse_session_file(json.dumps(SESSION).encode(), 17982, 1054469)
    assert got == SessionFileInfo(
        pid=17982,
        proc_start=1054469,
        session_id="02b6cf79-4f1e-4c53-9d1e-0a8c7f0f1d2e",
        cwd="/srv/app",
        started_at_ms=1795572670068,
        version="2.1.331",
        kind="interactive",
        entrypoint="sdk-cli",
        name="cc-2a",
        status="busy",
    )
    fields = got.claude_fields()
    assert fields["identity_source"] == "session_file"
    assert fields["session_id"] == SESSION["sessionId"]
    assert "status" not in fields  # changes all the time: not an identity fact


@pytest.mark.parametrize(("pid", "start"), [(17983, 1054469), (17982, 1054470)])
def test_session_file_pid_reuse_guard(pid: int, start: int) -> None:
    """A file whose pid or procStart differs from the live process is ignored."""
    assert parse_session_file(json.dumps(SESSION).encode(), pid, start) is None


def test_session_file_minimal_and_wrong_types() -> None:
    """Only pid and procStart are required; optional keys of the wrong type are dropped."""
    data = json.dumps({"pid": 5, "procStart": "77", "sessionId": 12, "cwd": None, "startedAt": True})
    got = parse_session_file(data.encode(), 5, 77)
    assert got == SessionFileInfo(pid=5, proc_start=77)
    assert got.claude_fields() == {"identity_source": "session_file"}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[1,2]",
        b"null",
        b"\xff\xfe",
        b'{"pid": "5", "procStart": "77x"}',
        b'{"pid": true, "procStart": "77"}',
        b'{"procStart": "77"}',
        b"[" * 100_000,
        b'{"pid": 5, "procStart": "77", "pad": "' + b"x" * (1 << 20) + b'"}',
    ],
)
def test_session_file_garbage(data: bytes) -> None:
    """Malformed, mistyped, deeply nested or huge input gives None and never raises."""
    assert parse_session_file(data, 5, 77) is None


# -- environment ----------------------------------------------------------------------------------------


def test_claude_env_info() -> None:
    """The Claude Code variables are picked, decoded, and the version parsed from AI_AGENT."""
    env = {
        b"CLAUDECODE": b"1",
        b"CLAUDE_PID": b"17982",
        b"CLAUDE_CODE_SESSION_ID": b"02b6cf79-4f1e-4c53-9d1e-0a8c7f0f1d2e",
        b"CLAUDE_CODE_ENTRYPOINT": b"sdk-cli",
        b"AI_AGENT": b"claude-code_2.1.331_agent",
        b"CLAUDE_CODE_EXECPATH": b"/srv/\xff/claude.exe",
        b"PATH": b"/usr/bin",
    }
    assert claude_env_info(env) == {
        "CLAUDECODE": "1",
        "CLAUDE_PID": "17982",
        "CLAUDE_CODE_SESSION_ID": "02b6cf79-4f1e-4c53-9d1e-0a8c7f0f1d2e",
        "CLAUDE_CODE_ENTRYPOINT": "sdk-cli",
        "AI_AGENT": "claude-code_2.1.331_agent",
        "CLAUDE_CODE_EXECPATH": "/srv/\ufffd/claude.exe",
        "version": "2.1.331",
    }


def test_claude_env_info_absent_and_odd_agent() -> None:
    """No variables gives {}; an AI_AGENT of another shape is kept but yields no version."""
    assert claude_env_info({b"PATH": b"/bin"}) == {}
    assert claude_env_info({b"AI_AGENT": b"other-agent"}) == {"AI_AGENT": "other-agent"}
    beta = claude_env_info({b"AI_AGENT": b"claude-code_2.2.0-beta_agent"})
    assert beta["version"] == "2.2.0-beta"


def test_captured_session_file() -> None:
    """The real sessions/<pid>.json matches its root's start time and yields the session identity."""
    tree = capture("2.1.331")
    root = tree["claude_pid"]
    start = parse_stat(proc_file("2.1.331", root, "stat")).start_ticks
    data = (CAPTURES / "2.1.331" / "sessions" / f"{root}.json").read_bytes()
    got = parse_session_file(data, root, start)
    assert got is not None
    assert got.version == "2.1.331"
    assert got.session_id is not None
    assert parse_session_file(data, root, start + 1) is None


def test_captured_environment() -> None:
    """A real 2.1.331 tool shell's environment names its Claude process and session; 2.0.77's does not."""
    tree = capture("2.1.331")
    wrapper = tree["bash_tool_wrappers"][0]
    info = claude_env_info(parse_environ(proc_file("2.1.331", wrapper, "environ")))
    assert info["CLAUDE_PID"] == str(tree["claude_pid"])
    assert info["AI_AGENT"] == "claude-code_2-1-331_agent"
    assert info["version"] == "2.1.331"
    root_json = json.loads((CAPTURES / "2.1.331" / "sessions" / f"{tree['claude_pid']}.json").read_bytes())
    assert info["CLAUDE_CODE_SESSION_ID"] == root_json["sessionId"]
    old = capture("2.0.77")
    info20 = claude_env_info(parse_environ(proc_file("2.0.77", old["bash_tool_wrappers"][0], "environ")))
    assert info20 == {"CLAUDE_CODE_ENTRYPOINT": "sdk-cli", "CLAUDECODE": "1"}


# -- hostile files and values -----------------------------------------------------------------------

ME = os.getuid()


def _session_dir(tmp_path: Path) -> Path:
    d = tmp_path / ".claude" / "sessions"
    d.mkdir(parents=True)
    return d


def test_read_session_file_regular_owned_and_matching(tmp_path: Path) -> None:
    """A regular file owned by the session's uid, naming the process, is read."""
    path = session_file_path(tmp_path, 17982)
    _session_dir(tmp_path)
    path.write_text(json.dumps(SESSION))
    got = read_session_file(path, pid=17982, start_ticks=1054469, owner_uid=ME)
    assert got is not None
    assert got.session_id == SESSION["sessionId"]


def test_read_session_file_other_owner_is_ignored(tmp_path: Path) -> None:
    """A file owned by another uid than the session's says nothing about the session."""
    path = session_file_path(tmp_path, 17982)
    _session_dir(tmp_path)
    path.write_text(json.dumps(SESSION))
    assert read_session_file(path, pid=17982, start_ticks=1054469, owner_uid=ME + 1) is None


def test_read_session_file_fifo_does_not_block(tmp_path: Path) -> None:
    """A FIFO in place of the file (no writer) returns None at once instead of blocking in open()."""
    path = session_file_path(tmp_path, 17982)
    _session_dir(tmp_path)
    os.mkfifo(path)
    result: list[object] = []
    t = threading.Thread(
        target=lambda: result.append(read_session_file(path, pid=1, start_ticks=1, owner_uid=ME))
    )
    t.start()
    t.join(5)
    assert not t.is_alive()
    assert result == [None]


def test_read_session_file_dev_zero_symlink_is_refused(tmp_path: Path) -> None:
    """A symlink to /dev/zero (which would never end) is refused without reading."""
    path = session_file_path(tmp_path, 17982)
    _session_dir(tmp_path)
    os.symlink("/dev/zero", path)
    assert read_session_file(path, pid=1, start_ticks=1, owner_uid=ME) is None


def test_read_session_file_too_big_is_ignored(tmp_path: Path) -> None:
    """A file larger than SESSION_FILE_MAX is ignored rather than parsed from a cut."""
    path = session_file_path(tmp_path, 5)
    _session_dir(tmp_path)
    path.write_bytes(b'{"pid": 5, "procStart": "77", "pad": "' + b"x" * SESSION_FILE_MAX + b'"}')
    assert read_session_file(path, pid=5, start_ticks=77, owner_uid=ME) is None


def test_session_file_huge_numbers_never_raise() -> None:
    """5000-digit pid/procStart, as a string or a JSON number, give None instead of raising."""
    big = "7" * 5000
    assert parse_session_file(json.dumps({"pid": big, "procStart": big}).encode(), 5, 77) is None
    assert parse_session_file(b'{"pid": ' + big.encode() + b', "procStart": "77"}', 5, 77) is None
    ok = {"pid": 5, "procStart": "77", "startedAt": big}
    got = parse_session_file(json.dumps(ok).encode(), 5, 77)
    assert got is not None
    assert got.started_at_ms is None


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({b"CLAUDECODE": b"1", b"CLAUDE_PID": b"4242"}, 4242),
        ({b"CLAUDECODE": b"1", b"CLAUDE_PID": b"7" * 5000}, None),
        ({b"CLAUDECODE": b"1", b"CLAUDE_PID": b"-1"}, None),
        ({b"CLAUDECODE": b"1", b"CLAUDE_PID": b"0"}, None),
        ({b"CLAUDECODE": b"1", b"CLAUDE_PID": "\u0661".encode()}, None),
        ({b"CLAUDECODE": b"1"}, None),
        ({b"CLAUDE_PID": b"4242"}, None),
    ],
)
def test_claude_pid_is_bounded(env: dict[bytes, bytes], want: int | None) -> None:
    """CLAUDE_PID counts only as a pid (1..4194304, ASCII digits) with CLAUDECODE=1; never raises."""
    assert claude_pid(env) == want


def test_claude_env_info_drops_oversized_values() -> None:
    """A 100 000-byte CLAUDE_CODE_SESSION_ID is left out rather than copied into every record."""
    env = {b"CLAUDE_CODE_SESSION_ID": b"x" * 100_000, b"CLAUDE_PID": b"1"}
    assert claude_env_info(env) == {"CLAUDE_PID": "1"}
