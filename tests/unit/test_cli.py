"""Tests for the claude-audit command line: exit statuses and messages for expected failures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from claude_audit.cli import EX_CONFIG, main


def _cfg(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    p.chmod(mode)
    return p


def test_check_config_ok_prints_effective_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid file is accepted and the effective settings are printed as JSON."""
    cfg = _cfg(tmp_path, '[audit_log]\npath = "/var/tmp/x.jsonl"\nbackups = 2\n')
    assert main(["check-config", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"config OK: {cfg}")
    assert json.loads(out.split("\n", 1)[1])["audit_log"]["backups"] == 2


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[audit_log]\nmax_bytes = 0\n", "audit_log.max_bytes"),
        ("[audit_log]\nnope = 1\n", "audit_log.nope"),
        ("[capture]\nargv_max_bytes = 3000\n", "capture.argv_max_bytes"),
    ],
)
def test_bad_config_exits_78_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    """check-config and run both exit 78 with one line that names the offending key; no traceback."""
    cfg = _cfg(tmp_path, text)
    for cmd in ("check-config", "run", "status"):
        assert main([cmd, "--config", str(cfg)]) == EX_CONFIG
        err = capsys.readouterr().err
        assert key in err and "Traceback" not in err


def test_config_writable_by_others_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config anyone can write could redirect the audit: it is refused with exit 78."""
    cfg = _cfg(tmp_path, "")
    os.chmod(cfg, 0o666)  # noqa: S103 (the point of the test: a world-writable config)
    assert main(["check-config", "--config", str(cfg)]) == EX_CONFIG
    assert "writable" in capsys.readouterr().err


def test_missing_explicit_config_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --config path that does not exist is an error, not a silent fall-back to defaults."""
    assert main(["check-config", "--config", str(tmp_path / "absent.toml")]) == EX_CONFIG
    assert "absent.toml" in capsys.readouterr().err


def test_status_when_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status says the daemon is not running (exit 3, as LSB status does) when there is no status file."""
    cfg = _cfg(tmp_path, f'[daemon]\nruntime_dir = "{tmp_path}/run"\n')
    assert main(["status", "--config", str(cfg)]) == 3
    assert "not running" in capsys.readouterr().err


def test_status_reads_the_daemons_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status prints sessions and counters from a live daemon's status file."""
    run = tmp_path / "run"
    run.mkdir()
    status = {
        "pid": os.getpid(),
        "version": "0.1.0",
        "log_path": "/var/log/claude-audit/audit.jsonl",
        "records_written": 12,
        "events_lost": 0,
        "kernel_counters": {"ring_lost": 0},
        "sessions": [{"pid": 42, "how": "scan", "execs": 7, "session_id": "abc"}],
        "rules": {
            "loaded": 120,
            "refused": 1,
            "alerts": 3,
            "execs_checked": 12,
            "refusals": [{"id": "r-1", "file": "/etc/x.yml", "title": "t", "reason": "field LogonId: no"}],
        },
    }
    (run / "status.json").write_text(json.dumps(status))
    cfg = _cfg(tmp_path, f'[daemon]\nruntime_dir = "{run}"\n')
    assert main(["status", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "records written: 12" in out and "pid 42 found by scan, 7 execs session_id=abc" in out
    assert "sigma rules: 120 loaded, 1 refused, 3 alerts in 12 execs" in out
    assert "refused r-1 (/etc/x.yml): field LogonId: no" in out


def test_status_neutralises_session_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Session fields written by the audited user (cwd with ESC sequences, a bidi override, a newline)
    reach the terminal escaped: no raw ESC, C1, bidi control or line break from a value."""
    run = tmp_path / "run"
    run.mkdir()
    evil = "/srv/\x1b]0;owned\x07\x1b[2J\u202egnp.exe\nfake: line\x9b31m"
    status = {
        "pid": os.getpid(),
        "version": "0.1.0\x1b[5m",
        "log_path": "/var/log/claude-audit/audit.jsonl",
        "records_written": 1,
        "events_lost": 0,
        "kernel_counters": {"ring_lost": 0},
        "sessions": [{"pid": 42, "how": "scan", "execs": 7, "cwd": evil, "session_id": "\u2066x\u2069"}],
    }
    (run / "status.json").write_text(json.dumps(status))
    cfg = _cfg(tmp_path, f'[daemon]\nruntime_dir = "{run}"\n')
    assert main(["status", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    for bad in ("\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\u2069"):
        assert bad not in out
    assert len(out.splitlines()) == 6  # the value's newline did not make a line of its own
    assert "\\x1b[2J" in out


def test_rules_check_prints_each_rule_and_fails_on_a_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rules check FILE...` prints ok or refused with the reason per rule; any refusal exits 65."""
    good = tmp_path / "good.yml"
    good.write_text(
        "title: Good\nid: 00000000-0000-4000-8000-0000000000a1\nlevel: high\n"
        "logsource: {category: process_creation, product: linux}\n"
        "detection:\n  sel:\n    Image|endswith: /nc\n  condition: sel\n"
    )
    bad = tmp_path / "bad.yml"
    bad.write_text(good.read_text().replace("a1", "a2").replace("Image|endswith", "CurrentDirectory"))
    assert main(["rules", "check", str(good)]) == 0
    assert "ok       00000000-0000-4000-8000-0000000000a1  high  Good" in capsys.readouterr().out
    assert main(["rules", "check", str(good), str(bad)]) == 65
    out = capsys.readouterr().out
    assert "refused  00000000-0000-4000-8000-0000000000a2" in out
    assert "CurrentDirectory: the exec's working directory is not captured" in out
    assert out.rstrip().endswith("1 loaded, 1 refused, 2 files")
