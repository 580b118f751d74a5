"""The daemon as shipped with [enforce]: a session's denied exec dies, the alert is in the file and in
journald (priority 3) with rule id and reason; SIGHUP switches to dry-run; daemon-started states the mode."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from daemon_faults_util import actions, config_text, daemon, fake_claude, session, session_found
from journald_env import journald_env
from marker_program import build_marker

pytestmark = [pytest.mark.root]

ENFORCE = """
[enforce]
mode = "{mode}"
[[enforce.deny]]
id = "no-marker"
program = "marker"
reason = "markers need a human"
"""


def _marker(base: Path) -> Path:
    return build_marker(base / "marker")


def test_denied_exec_is_killed_and_alerted_then_reload_to_dry_run(tmp_path: Path) -> None:
    """enforce: the marker never runs, exec-denied (alert, failure, rule id, reason, argv, claude) is in the
    file and in journald at priority 3; after SIGHUP to dry-run it runs and exec-would-deny is recorded."""
    exe, marker_program = fake_claude(tmp_path), _marker(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    m1, m2, status = tmp_path / "m1", tmp_path / "m2", tmp_path / "status"
    with journald_env() as jenv:
        cfg = config_text(tmp_path, log, journal_socket=jenv.socket_path, only_fake=True)
        base_cfg = cfg.read_text()
        cfg.write_text(base_cfg + ENFORCE.format(mode="enforce"))
        with (
            daemon(tmp_path, cfg, log) as d,
            session(
                exe,
                f"exec 2>/dev/null; {marker_program} {m1}; echo $? > {status}",
                f"{marker_program} {m2}",
            ) as s,
        ):
            session_found(d, s.pid)
            started = actions(d.records(), "daemon-started")[-1]["claude_audit"]["enforce"]
            assert started == {"mode": "enforce", "effective_mode": "enforce", "rules": ["no-marker"]}
            s.go()
            recs = d.wait_for(lambda rs: len(actions(rs, "exec-denied")) >= 1)
            assert not m1.exists()
            assert status.read_text().strip() == "137"
            rec = actions(recs, "exec-denied")[0]
            assert rec["event"]["kind"] == "alert" and rec["event"]["outcome"] == "failure"
            assert rec["rule"]["id"] == "no-marker" and rec["event"]["reason"] == "markers need a human"
            assert rec["process"]["args"] == [str(marker_program), str(m1)]
            assert rec["claude"]["pid"] == s.pid
            [entry] = jenv.wait_for(1, AUDIT_ACTION="exec-denied")
            assert entry["PRIORITY"] == "3" and entry["RULE_ID"] == "no-marker"
            assert json.loads(entry["AUDIT_RECORD"])["event"]["reason"] == "markers need a human"

            cfg.write_text(base_cfg + ENFORCE.format(mode="dry-run"))
            d.proc.send_signal(signal.SIGHUP)
            recs = d.wait_for(lambda rs: len(actions(rs, "enforce-changed")) >= 1)
            assert (
                actions(recs, "enforce-changed")[0]["claude_audit"]["enforce"]["effective_mode"] == "dry-run"
            )
            s.go()
            recs = d.wait_for(lambda rs: len(actions(rs, "exec-would-deny")) >= 1)
            rec = actions(recs, "exec-would-deny")[0]
            assert rec["event"]["outcome"] == "success" and rec["rule"]["id"] == "no-marker"
            assert m2.read_bytes() == b"x"
