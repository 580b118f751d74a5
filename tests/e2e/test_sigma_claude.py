"""Sigma detection against the real Claude Code CLI: a tool call that a shipped SigmaHQ rule matches
raises exactly one alert, in the file and in journald at the rule level's priority, with the right rule,
session and `claude.command`; a tool call that matches nothing raises none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from daemon_util import REPO, running_daemon
from fake_api import FakeAnthropicAPI, tag_prompt
from session import start_session

sys.path.insert(0, str(REPO / "tests" / "integration"))
from journald_env import journald_env

HISTORY_RULE = "History File Deletion"  # SigmaHQ, level high: rm of a file whose name ends in _history
MATCHING = "touch notes_history && rm -f notes_history"
NOT_MATCHING = "/bin/echo nothing-to-see-here"


def test_shipped_rule_alerts_for_the_agents_command(
    claude_bin: Path, fake_api: FakeAnthropicAPI, e2e_dir: Path
) -> None:
    """One alert at level warning or above, for the tool call that deletes a history file, none for the
    other; journald's `-p warning` shows it alone with RULE_NAME, the session id and CLAUDE_COMMAND."""
    fake_api.set_script("sigma", [NOT_MATCHING, MATCHING])
    with journald_env() as env:
        with running_daemon(e2e_dir, journal_socket=env.socket_path) as d:
            p = start_session(
                claude_bin, fake_api.url, tag_prompt("sigma"), e2e_dir / "home", e2e_dir / "cwd"
            )
            _, err = p.communicate(timeout=180)
            assert p.returncode == 0, err
            recs = d.wait_for(
                lambda rs: any(
                    r["event"]["action"] == "rule-match" and r["rule"]["name"] == HISTORY_RULE for r in rs
                ),
                timeout=60,
            )
        alerts = [
            r
            for r in recs
            if r["event"]["action"] == "rule-match"
            and r["claude"]["pid"] == p.pid
            and r["claude"].get("origin") == "tool"
        ]
        # Low and informational rules also fire: "File Deletion" on any rm, and with 2.0.x, whose tool
        # shell is a login shell, "Local System Accounts Discovery" on the `id -u` of /etc/profile. At
        # warning level and above only the history deletion is left: the tool call's wrapper shell
        # (bash -c ... >| /tmp/claude-...-cwd) does not fire "script from /tmp", thanks to the shipped filter.
        named = sorted((a["rule"]["name"], a["claude_audit"]["alert"]["level"]) for a in alerts)
        assert ("File Deletion", "informational") in named
        serious = [n for n in named if n[1] in ("medium", "high", "critical")]
        assert serious == [(HISTORY_RULE, "high")], [
            (a["rule"]["name"], a["process"]["args"]) for a in alerts
        ]
        alerts = [a for a in alerts if a["rule"]["name"] == HISTORY_RULE]
        alert = alerts[0]
        assert alert["claude"]["command"] == MATCHING
        assert alert["process"]["args"] == ["rm", "-f", "notes_history"]
        # 2.1.x gives its children the session id; 2.0.x gives none (README: known limits)
        session_id = alert["claude"].get("session_id")
        assert session_id or "/2.0." in str(claude_bin)
        assert alert["claude_audit"]["alert"]["level"] == "high"
        assert alert["claude_audit"]["flags"] == []  # the parent (the tool call's shell) was recorded
        out = subprocess.run(
            [
                "journalctl",
                "--no-pager",
                "-D",
                str(env.journal_dir),
                "-o",
                "json",
                "-p",
                "warning",
                "SYSLOG_IDENTIFIER=claude-audit",
                f"CLAUDE_PID={p.pid}",
            ],
            capture_output=True,
            check=True,
            timeout=30,
            text=True,
        ).stdout
        shown = [json.loads(x) for x in out.splitlines()]
        tool_alerts = [e for e in shown if e.get("CLAUDE_ORIGIN") == "tool"]
        assert [e["RULE_NAME"] for e in tool_alerts] == [HISTORY_RULE]
        assert tool_alerts[0]["CLAUDE_COMMAND"] == MATCHING
        assert tool_alerts[0].get("CLAUDE_SESSION_ID") == session_id
        assert tool_alerts[0]["PRIORITY"] == "3"
        assert {e["AUDIT_ACTION"] for e in shown} == {"rule-match"}
