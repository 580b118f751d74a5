"""JournalSink against a real, private systemd-journald."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from journald_env import journald_env

from claude_audit.journal import FieldChoice, JournalSink, journal_fields

# Root, systemd-journald and unshare are preconditions of this tier (make test installs them; CI runs as
# root): a missing one fails the run rather than skipping it.
pytestmark = [pytest.mark.root]


def _record(pid: int, command: str, args: list[str]) -> dict[str, object]:
    return {
        "@timestamp": "2025-01-01T00:00:00.000000Z",
        "event": {"action": "exec", "kind": "event"},
        "process": {
            "pid": pid,
            "parent": {"pid": 100},
            "executable": "/bin/bash",
            "args": args,
            "entity_id": f"e-{pid}",
        },
        "user": {"id": "1000"},
        "claude": {"pid": 100, "session_id": "sess-1", "origin": "tool", "command": command},
    }


def test_entries_arrive_with_fields() -> None:
    """Every field, PROCESS_ARGS included (chosen here), arrives as sent, newlines and 1 MiB values too."""
    every = FieldChoice(process_args=True)
    with journald_env() as env, JournalSink(env.socket_path) as sink:
        rec = _record(201, "git status", ["/bin/bash", "-c", "git status"])
        assert sink.send(journal_fields(rec, choice=every))

        multi = _record(202, "echo a\necho b", ["/bin/bash", "-c", "echo a\necho b"])
        assert sink.send(journal_fields(multi, choice=every))

        big_arg = "x" * (1024 * 1024)
        big = _record(203, "big", ["/bin/echo", big_arg])
        t0 = time.monotonic()
        assert sink.send(journal_fields(big, choice=every))
        big_send_s = time.monotonic() - t0
        assert sink.memfd_sent == 1, "a 1 MiB entry must have gone through the memfd path"
        assert sink.sent == 3 and sink.failed == 0

        got = {e["PROCESS_PID"]: e for e in env.wait_for(3, SYSLOG_IDENTIFIER="claude-audit")}
        assert set(got) == {"201", "202", "203"}, got.keys()

        e = got["201"]
        assert e["MESSAGE"] == "exec pid=201 ppid=100 session=sess-1 origin=tool: git status"
        assert e["PRIORITY"] == "6"
        assert e["CLAUDE_SESSION_ID"] == "sess-1"
        assert e["CLAUDE_PID"] == "100"
        assert e["CLAUDE_ORIGIN"] == "tool"
        assert e["CLAUDE_COMMAND"] == "git status"
        assert e["PROCESS_PPID"] == "100"
        assert e["PROCESS_EXECUTABLE"] == "/bin/bash"
        assert e["PROCESS_ENTITY_ID"] == "e-201"
        assert e["USER_ID"] == "1000"
        assert json.loads(e["PROCESS_ARGS"]) == ["/bin/bash", "-c", "git status"]
        assert json.loads(e["AUDIT_RECORD"]) == _record(201, "git status", ["/bin/bash", "-c", "git status"])

        # Newlines survive in structured fields (binary-safe form); MESSAGE has them escaped.
        e = got["202"]
        assert e["CLAUDE_COMMAND"] == "echo a\necho b"
        assert e["MESSAGE"].endswith(": echo a\\necho b")
        assert json.loads(e["PROCESS_ARGS"])[2] == "echo a\necho b"

        e = got["203"]
        assert json.loads(e["PROCESS_ARGS"])[1] == big_arg
        assert json.loads(e["AUDIT_RECORD"])["process"]["args"][1] == big_arg
        print(f"1 MiB memfd send took {big_send_s * 1000:.1f} ms")


def test_missing_socket_then_journald_appears(tmp_path: Path) -> None:
    now = [0.0]
    with journald_env() as env:
        sink = JournalSink(tmp_path / "nope", retry_interval=10.0, clock=lambda: now[0])
        assert not sink.send({"MESSAGE": "lost"})
        assert not sink.send({"MESSAGE": "lost"})  # skipped: within the retry interval
        assert sink.failed == 2
        # "journald starts later": the socket appears at the configured path.
        (tmp_path / "nope").symlink_to(env.socket_path)
        assert not sink.send({"MESSAGE": "still waiting"})
        now[0] = 11.0
        assert sink.send({"MESSAGE": "late hello", "SYSLOG_IDENTIFIER": "claude-audit"})
        assert sink.sent == 1
        sink.close()
        assert [e["MESSAGE"] for e in env.wait_for(1, SYSLOG_IDENTIFIER="claude-audit")] == ["late hello"]


def test_emsgsize_falls_back_to_memfd() -> None:
    """Force the kernel to refuse the datagram (tiny send buffer): the memfd fallback delivers it."""
    with journald_env() as env, JournalSink(env.socket_path, datagram_max=1 << 30, sndbuf=4096) as sink:
        value = "z" * 300_000
        assert sink.send({"MESSAGE": "fallback", "SYSLOG_IDENTIFIER": "claude-audit", "BIG": value})
        assert sink.memfd_sent == 1
        got = env.wait_for(1, SYSLOG_IDENTIFIER="claude-audit")
        assert got and got[0]["BIG"] == value
