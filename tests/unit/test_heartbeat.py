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


def _live(**kw: object) -> heartbeat.Liveness:
    base: dict[str, object] = {
        "now_ns": 1_800_000_000_500_000_000,
        "started_ns": 1_800_000_000_000_000_000,
        "version": "0.1.0",
        "config_digest": "sha256:ab",
        "records_written": 12,
        "losses": {"kernel-ring": 3, "queue": 0},
        "sessions_watched": 2,
        "execs_seen": 40,
        "programs_attached": 4,
        "programs_expected": 4,
    }
    base.update(kw)
    return heartbeat.Liveness(**base)  # type: ignore[arg-type]


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_prometheus_text_has_every_metric_with_help_and_type() -> None:
    """Each sample line belongs to a metric declared with HELP and TYPE; values are the snapshot's."""
    text = heartbeat.prometheus_text(_live())
    samples = _samples(text)
    assert samples["claude_audit_last_update_timestamp_seconds"] == 1_800_000_000.5
    assert samples["claude_audit_records_written_total"] == 12
    assert samples['claude_audit_events_lost_total{where="kernel-ring"}'] == 3
    assert samples["claude_audit_kernel_programs_attached"] == 4
    assert samples['claude_audit_info{version="0.1.0",config_digest="sha256:ab"}'] == 1
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert {name.split("{")[0] for name in samples} == declared
    assert text.endswith("\n")


def test_prometheus_labels_are_escaped() -> None:
    """A quote, backslash or newline in a label value cannot break the exposition format."""
    text = heartbeat.prometheus_text(_live(version='1"\\\n'))
    assert 'version="1\\"\\\\\\n"' in text
    assert [line for line in text.splitlines() if line.startswith("claude_audit_info")] == [
        'claude_audit_info{version="1\\"\\\\\\n",config_digest="sha256:ab"} 1'
    ]


def test_write_textfile_replaces_atomically(tmp_path: Path) -> None:
    """The file is replaced whole (a new inode), left 0644, and no temporary file remains."""
    target = tmp_path / "claude_audit.prom"
    assert heartbeat.write_textfile(target, "a 1\n")
    first = target.stat().st_ino
    assert heartbeat.write_textfile(target, "a 2\n")
    assert target.read_text() == "a 2\n" and target.stat().st_ino != first
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claude_audit.prom"]


def test_write_textfile_into_missing_directory_fails_quietly(tmp_path: Path) -> None:
    """A metrics directory that does not exist is a False, never an exception."""
    assert not heartbeat.write_textfile(tmp_path / "nope" / "x.prom", "a 1\n")
