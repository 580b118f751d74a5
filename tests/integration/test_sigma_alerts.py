"""Sigma rules in the real daemon: a fake Claude Code session runs a command that a shipped SigmaHQ rule
matches and one that matches nothing; the alert follows its exec record in the file and reaches a
private journald at the level's priority. A rule file added to rules.d is loaded by SIGHUP, and a
broken one is refused with its reason while the rest keep working."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from daemon_faults_util import actions, args_of, config_text, daemon, fake_claude, session, session_found
from journald_env import journald_env

pytestmark = [pytest.mark.root]

AGENT_RULE = """\
title: Marker command run by a session
id: 3d4b0c1e-5a7e-4f00-9d2b-0000000000a1
description: test rule added at run time
author: claude-audit tests
logsource:
    category: process_creation
    product: linux
level: critical
detection:
    sel:
        Image|endswith: /true
        CommandLine|contains: sigma-marker
    condition: sel
"""


def test_shipped_rule_alerts_in_file_and_journald(tmp_path: Path) -> None:
    """`base64 -d` (SigmaHQ's "Decode Base64 Encoded Text", level low) raises exactly one alert, right
    after its exec record, linked by process.entity_id; `/bin/true` raises none; journald has the alert at
    PRIORITY 5 with the rule's id, and `-p notice` shows alerts alone."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    rules_d = tmp_path / "rules.d"
    rules_d.mkdir()
    with journald_env() as env:
        cfg = config_text(tmp_path, log, journal_socket=env.socket_path, only_fake=True)
        cfg.write_text(cfg.read_text() + f'[rules]\npaths = ["{rules_d}/*.yml"]\n')
        with (
            daemon(tmp_path, cfg, log) as d,
            session(exe, "echo aGkK | /usr/bin/base64 -d", "/bin/true no-rule-matches-this") as s,
        ):
            started = actions(d.records(), "daemon-started")[-1]["claude_audit"]["rules"]
            assert (started["loaded"], started["refused"]) == (120, 2)
            assert {r["id"] for r in started["refusals"]} == {
                "6eea1bf6-f8d2-488a-a742-e6ef6c1b67db",
                "21541900-27a9-4454-9c4c-3f0a4240344a",
            }
            session_found(d, s.pid)
            s.go()
            s.go()
            recs = d.wait_for(lambda rs: ["/bin/true", "no-rule-matches-this"] in args_of(rs, s.pid))
            recs = d.wait_for(lambda rs: len(actions(rs, "rule-match")) >= 1)
        # The fake Claude Code itself runs from pytest's /tmp directory, which SigmaHQ's "Potentially
        # Suspicious Execution From Tmp Folder" rightly flags: only the session's commands are looked at.
        alerts = [a for a in actions(recs, "rule-match") if a["process"]["pid"] != s.pid]
        assert [a["rule"]["name"] for a in alerts] == ["Decode Base64 Encoded Text"]
        alert = alerts[0]
        exec_rec = next(r for r in recs if r["event"]["sequence"] == alert["event"]["sequence"] - 1)
        assert exec_rec["event"]["action"] == "exec"
        assert exec_rec["process"]["args"] == ["/usr/bin/base64", "-d"]
        assert alert["process"]["entity_id"] == exec_rec["process"]["entity_id"]
        assert alert["claude"]["pid"] == s.pid
        assert alert["event"]["kind"] == "alert"
        assert alert["claude_audit"]["alert"]["level"] == "low"
        assert alert["rule"]["author"]
        journal = env.wait_for(1, timeout=30, SYSLOG_IDENTIFIER="claude-audit", RULE_ID=alert["rule"]["id"])
        assert len(journal) == 1
        assert journal[0]["PRIORITY"] == "5"
        assert json.loads(journal[0]["AUDIT_RECORD"])["rule"]["name"] == "Decode Base64 Encoded Text"
        out = subprocess.run(
            [
                "journalctl",
                "--no-pager",
                "-D",
                str(env.journal_dir),
                "-o",
                "json",
                "-p",
                "notice",
                "SYSLOG_IDENTIFIER=claude-audit",
            ],
            capture_output=True,
            check=True,
            timeout=30,
            text=True,
        ).stdout
        shown = [json.loads(x) for x in out.splitlines()]
        assert {e["AUDIT_ACTION"] for e in shown} == {"rule-match"}
        assert alert["rule"]["id"] in {e["RULE_ID"] for e in shown}


def test_reload_loads_new_rule_files_and_refuses_broken_ones(tmp_path: Path) -> None:
    """SIGHUP reads rules.d again: a new rule fires from then on; a broken file next to it is refused
    (stated in status) without stopping the others."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    rules_d = tmp_path / "rules.d"
    rules_d.mkdir()
    cfg = config_text(tmp_path, log, only_fake=True)
    cfg.write_text(cfg.read_text() + f'[rules]\nshipped_pack = false\npaths = ["{rules_d}/*.yml"]\n')
    with (
        daemon(tmp_path, cfg, log) as d,
        session(exe, "/bin/true sigma-marker before", "/bin/true sigma-marker after") as s,
    ):
        session_found(d, s.pid)
        s.go()
        d.wait_for(lambda rs: ["/bin/true", "sigma-marker", "before"] in args_of(rs, s.pid))
        (rules_d / "agent.yml").write_text(AGENT_RULE)
        (rules_d / "broken.yml").write_text("title: [unclosed\n")
        d.proc.send_signal(signal.SIGHUP)
        st = d.wait_status(lambda st: st.get("rules", {}).get("loaded") == 1)
        assert st["rules"]["refused"] == 1
        s.go()
        d.wait_for(lambda rs: ["/bin/true", "sigma-marker", "after"] in args_of(rs, s.pid))
        d.wait_for(lambda rs: len(actions(rs, "rule-match")) >= 1)
    alerts = [a for a in actions(d.records(), "rule-match") if a["process"]["pid"] != s.pid]
    assert len(alerts) == 1
    assert alerts[0]["process"]["args"] == ["/bin/true", "sigma-marker", "after"]
    assert alerts[0]["rule"]["id"] == "3d4b0c1e-5a7e-4f00-9d2b-0000000000a1"
    assert alerts[0]["event"]["severity"] == 99
    assert "sigma rule refused" in d.stderr() and "broken.yml" in d.stderr()
