"""identity: the trust rules for CLAUDE_PID, environments and session files, and the per-uid home cache."""

from __future__ import annotations

from pathlib import Path

from kernel_fakes import captured_proc

from claude_audit.identity import IdentityReader, RootId, env_identity, inherited_claude_pid, may_belong_to
from claude_audit.procfs import ProcInfo

ROOT = RootId(pid=100, start_ticks=5000, uid=1000)


def _proc(pid: int, *, uid: int = 1000, start: int = 6000) -> ProcInfo:
    return ProcInfo(pid, 1, b"sh", b"/bin/sh", b"sh\0", start, uid, uid, "S")


def test_claude_pid_needs_claudecode_and_a_real_pid() -> None:
    """CLAUDE_PID counts only beside CLAUDECODE=1 and only as a bounded pid; anything else is None."""
    assert inherited_claude_pid({b"CLAUDECODE": b"1", b"CLAUDE_PID": b"100"}) == 100
    assert inherited_claude_pid({b"CLAUDE_PID": b"100"}) is None
    assert inherited_claude_pid({b"CLAUDECODE": b"1", b"CLAUDE_PID": b"7" * 5000}) is None
    assert inherited_claude_pid({b"CLAUDECODE": b"1", b"CLAUDE_PID": b"-1"}) is None
    assert inherited_claude_pid({b"CLAUDECODE": b"1", b"CLAUDE_PID": "١٢".encode()}) is None
    assert inherited_claude_pid(None) is None


def test_only_same_user_processes_started_after_the_root_may_belong() -> None:
    """Another uid, an earlier start, or the root itself cannot claim the session."""
    assert may_belong_to(_proc(200), ROOT)
    assert not may_belong_to(_proc(200, uid=1001), ROOT)
    assert not may_belong_to(_proc(200, start=4999), ROOT)
    assert not may_belong_to(_proc(100), ROOT)


def test_environment_fields_only_for_this_session() -> None:
    """An environment naming another CLAUDE_PID (an `exec env CLAUDE_CODE_SESSION_ID=...` borrowing
    another session's id) gives nothing; the right one gives labelled fields."""
    env = {
        b"CLAUDECODE": b"1",
        b"CLAUDE_PID": b"100",
        b"CLAUDE_CODE_SESSION_ID": b"abc",
        b"AI_AGENT": b"claude-code_2-1-331_agent",
    }
    assert env_identity(env, 100) == {
        "session_id": "abc",
        "version": "2.1.331",
        "identity_source": "environment",
    }
    assert env_identity(env, 101) == {}


def test_home_is_looked_up_once_per_uid(tmp_path: Path) -> None:
    """The user database is asked once per uid, however many sessions that user runs."""
    asked: list[int] = []

    def home_of(uid: int) -> Path:
        asked.append(uid)
        return tmp_path

    reader = IdentityReader(captured_proc(tmp_path).proc, home_of=home_of)
    for _ in range(3):
        reader.home(1000)
    reader.home(1001)
    assert asked == [1000, 1001]


def test_session_file_of_the_wrong_process_gives_nothing(tmp_path: Path) -> None:
    """A session file whose procStart does not match the root (a reused pid's leftover) is ignored."""
    cap = captured_proc(tmp_path)
    home = tmp_path / "home"
    sessions = cap.proc.host_path(home / ".claude" / "sessions")
    sessions.mkdir(parents=True)
    reader = IdentityReader(cap.proc, home_of=lambda _uid: home)
    import os

    uid = os.getuid()
    (sessions / "100.json").write_text('{"pid": 100, "procStart": "5000", "sessionId": "s"}')
    assert reader.session_file(RootId(100, 5000, uid))["session_id"] == "s"
    assert reader.session_file(RootId(100, 5001, uid)) == {}
    assert reader.session_file(RootId(100, 5000, uid + 1)) == {}
    (sessions / "100.json").write_text('{"pid": 100, "procStart": "' + "5" * 5000 + '"}')
    assert reader.session_file(RootId(100, 5000, uid)) == {}
