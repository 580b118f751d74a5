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
    settings, _end = json.JSONDecoder().raw_decode(out.split("\n", 1)[1])
    assert settings["audit_log"]["backups"] == 2


def test_check_config_shows_the_effective_deny_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config lists each deny rule as the kernel will apply it, user names resolved to uids."""
    cfg = _cfg(
        tmp_path,
        '[enforce]\nmode = "dry-run"\n[[enforce.deny]]\nid = "no-force-push"\nprogram = "git"\n'
        'args = ["push", "--force"]\nusers = ["root", 1000]\nreason = "needs a human"\n',
    )
    assert main(["check-config", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "enforce: mode dry-run, 1 deny rule(s)" in out
    assert (
        "  no-force-push: program 'git' args starting ['push', '--force'] for uids [0, 1000]: needs a human"
        in out
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[audit_log]\nmax_bytes = -1\n", "audit_log.max_bytes"),
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


def _redact_cfg(tmp_path: Path, extra: str = "") -> Path:
    return _cfg(tmp_path, f'[daemon]\nstate_dir = "{tmp_path}/state"\n{extra}')


def test_redact_check_sample_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A command line after -- and a command text: the redacted forms and rules are printed, the secrets
    are not, and the exit status says something would be redacted."""
    cfg = _redact_cfg(tmp_path)
    argv = ["curl", "-H", "Authorization: Bearer abcdefgh12345678", "https://x"]
    rc = main(["redact-check", "--config", str(cfg), "--command", "mysql -pS3cretpw db", "--", *argv])
    out = capsys.readouterr().out
    assert rc == 1
    assert "abcdefgh12345678" not in out and "S3cretpw" not in out
    assert "argv: auth-header,bearer-token: curl -H 'Authorization: Bearer [REDACTED:auth-header:" in out
    assert "command: mysql-password: mysql -p[REDACTED:mysql-password:" in out
    assert main(["redact-check", "--config", str(cfg), "--", "git", "status"]) == 0


def test_redact_check_over_a_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Over a log: a record with a secret is named by line; clean, cut and already-redacted lines are not;
    a site rule from [[redact]] is used."""
    log = tmp_path / "audit.jsonl"
    records = [
        {"process": {"args": ["git", "status"]}, "claude": {"command": "git status"}},
        {"process": {"args": ["deploy", "tkt_123456"]}},
        {"process": {"args": ["env", "TOKEN=[REDACTED:secret-assignment:0123456789abcdef]"]}},
        {"process": {"args": ["echo"]}, "claude": {"command": "export GITHUB_TOKEN=ghp_x1 && make"}},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"cut": ')
    cfg = _redact_cfg(tmp_path, '[[redact]]\nid = "ticket"\npattern = "tkt_[0-9]{6}"\n')
    assert main(["redact-check", "--config", str(cfg), "--file", str(log)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 2)[:2] for line in out] == [
        [f"{log}:2", "ticket"],
        [f"{log}:4", "secret-assignment"],
    ]
    assert "ghp_x1" not in "\n".join(out)


def test_redact_check_without_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the shipped rules off and none of the site's, it says so and finds nothing."""
    cfg = _redact_cfg(tmp_path, "[privacy]\ndefault_rules = false\n")
    assert main(["redact-check", "--config", str(cfg), "--", "curl", "-u", "a:b"]) == 0
    assert "no redaction rules" in capsys.readouterr().out


def test_verify_exit_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """verify exits 0 for an untouched log, 1 naming the first break for an edited one, 2 for an open
    tail, 66 for a file it cannot read; --all takes the config's log and its rotated files."""
    from chained_logs import write_run

    log = tmp_path / "audit.jsonl"
    write_run(log, tmp_path / "state", 20, max_bytes=3000)
    cfg = _cfg(tmp_path, f'[audit_log]\npath = "{log}"\n')
    assert main(["verify", "--all", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.startswith("verified: ")
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:2] + lines[3:]))
    assert main(["verify", "--all", "--config", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert f"FIRST BREAK: {log}:3: break: deleted:" in out
    log.write_bytes(b"".join(lines[:2]))
    assert main(["verify", str(log)]) == 2
    assert main(["verify", str(tmp_path / "nope")]) == 66


def test_integrity_setup_prints_the_verification_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """setup prints key_0 once (and a sealed log verifies with it); a second setup is refused."""
    from chained_logs import write_run

    kf = tmp_path / "seal.key"
    assert main(["integrity", "setup", "--key-file", str(kf)]) == 0
    key = next(
        ln.split(": ")[1] for ln in capsys.readouterr().out.splitlines() if ln.startswith("verification key")
    )
    log = tmp_path / "audit.jsonl"
    write_run(log, tmp_path / "state", 6, key_file=kf)
    assert main(["verify", "--key", key, str(log)]) == 0
    assert main(["verify", "--key", "00" * 32, str(log)]) == 1
    assert main(["verify", "--key", "xyz", str(log)]) == 64
    assert main(["integrity", "setup", "--key-file", str(kf)]) == 73


def test_bad_start_up_config_reaches_journald(tmp_path: Path) -> None:
    """A config the daemon cannot start on is sent to journald's socket as a config-rejected alert."""
    import socket

    from claude_audit.cli import announce_rejected_config

    sock_path = tmp_path / "journal.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(sock_path))
        receiver.settimeout(10)
        assert announce_rejected_config("c.toml: daemon.log_level: bad", tmp_path / "c.toml", sock_path, "b")
        entry = receiver.recv(1 << 20)
    assert b"AUDIT_ACTION=config-rejected\n" in entry
    assert b"daemon.log_level: bad" in entry
    record_line = entry.split(b"AUDIT_RECORD=", 1)[1].split(b"\n", 1)[0]
    rec = json.loads(record_line)
    assert rec["event"]["kind"] == "alert" and rec["claude_audit"]["when"] == "start"


def test_announce_without_journald_is_false(tmp_path: Path) -> None:
    """No journald socket: the announcement reports failure and does not raise."""
    from claude_audit.cli import announce_rejected_config

    assert not announce_rejected_config("x", tmp_path / "c.toml", tmp_path / "no-socket", "b")


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
