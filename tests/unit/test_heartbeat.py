"""Tests for the liveness file that lets a start state the window nobody watched."""

from __future__ import annotations

from pathlib import Path

from claude_audit import heartbeat, records


def test_roundtrip_and_clean_stop(tmp_path: Path) -> None:
    """The last tick and the clean-stop mark are read back by the next run."""
    heartbeat.write(tmp_path, 123)
    prev = heartbeat.read_previous(tmp_path)
    assert prev is not None and prev.last_alive_ns == 123 and not prev.clean_stop
    heartbeat.write(tmp_path, 456, clean_stop=True)
    prev = heartbeat.read_previous(tmp_path)
    assert prev is not None and prev.last_alive_ns == 456 and prev.clean_stop


def test_missing_or_garbage_is_no_previous_run(tmp_path: Path) -> None:
    """No file, or a corrupt one, means no claim about a previous run (never a crash of the daemon)."""
    assert heartbeat.read_previous(tmp_path) is None
    (tmp_path / heartbeat.STATE_FILE).write_text("{not json")
    assert heartbeat.read_previous(tmp_path) is None


def test_unwritable_state_dir_is_ignored(tmp_path: Path) -> None:
    """A state dir that cannot be created does not raise: the audit goes on without a heartbeat."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    heartbeat.write(blocker / "sub", 1)
    assert heartbeat.read_previous(blocker / "sub") is None


def test_unwatched_window_record() -> None:
    """A crash window is an alert with both ends and its length; a clean stop is a plain event."""
    host = records.HostInfo(hostname="h", boot_id="b")
    rec = records.unwatched_window(
        10_000_000_000, host, 1, from_ns=1_000_000_000, to_ns=3_500_000_000, reason="crash"
    )
    assert rec["event"]["action"] == "unwatched-window" and rec["event"]["kind"] == "alert"
    w = rec["claude_audit"]["unwatched"]
    assert w["seconds"] == 2.5 and w["reason"] == "crash"
    assert w["from"].startswith("1970-01-01T00:00:01") and w["to"].startswith("1970-01-01T00:00:03.5")
    clean = records.unwatched_window(0, host, 2, from_ns=0, to_ns=1, reason="stopped")
    assert clean["event"]["kind"] == "event"
