"""Enforcement with the real Claude Code CLI: a session's denied command dies in the kernel and the alert
names the tool call; with the PreToolUse hook configured, the agent is told the rule's reason instead."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from daemon_util import REPO, running_daemon
from fake_api import FakeAnthropicAPI, tag_prompt
from marker_program import build_marker
from session import start_session

RULE = """
[enforce]
mode = "enforce"
[[enforce.deny]]
id = "no-marker"
program = "marker"
reason = "markers need a human"
"""


def _marker(base: Path) -> Path:
    """The static program of tests/integration whose first instructions append to its last argument."""
    return build_marker(base / "bin" / "marker")


def _alerts(records: list[dict[str, Any]], pid: int) -> list[dict[str, Any]]:
    return [r for r in records if r["event"]["action"] == "exec-denied" and r["claude"]["pid"] == pid]


def test_denied_command_of_a_real_session_is_killed_and_alerted(
    claude_bin: Path, fake_api: FakeAnthropicAPI, e2e_dir: Path
) -> None:
    """Without a hook: the agent's command runs the denied program, the kernel kills it before its first
    instruction, the tool call fails (status 137 in its output) and exec-denied names that tool call."""
    marker, written = _marker(e2e_dir), e2e_dir / "written"
    command = f"{marker} {written}; echo status=$?"
    fake_api.set_script("deny", [command])
    with running_daemon(e2e_dir, RULE) as d:
        p = start_session(claude_bin, fake_api.url, tag_prompt("deny"), e2e_dir / "home", e2e_dir / "cwd")
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        recs = d.wait_for(lambda rs: bool(_alerts(rs, p.pid)))
    assert not written.exists()
    assert any("status=137" in r for r in fake_api.tool_results("deny"))
    [alert] = _alerts(recs, p.pid)
    assert alert["rule"] == {
        "id": "no-marker",
        "description": "markers need a human",
        "ruleset": "claude-audit enforce",
    }
    assert alert["event"]["outcome"] == "failure"
    assert alert["claude"]["command"] == command
    assert alert["claude"]["origin"] != "internal"


def test_hook_tells_the_agent_the_reason(claude_bin: Path, fake_api: FakeAnthropicAPI, e2e_dir: Path) -> None:
    """With `claude-audit hook pre-tool-use` as PreToolUse hook, Claude Code refuses the call and the next
    request to the API carries the rule's reason; the program never ran."""
    marker, written = _marker(e2e_dir), e2e_dir / "written"
    fake_api.set_script("hook", [f"{marker} {written}"])
    with running_daemon(e2e_dir, RULE) as d:
        cli = f"PYTHONPATH={REPO / 'daemon'} {sys.executable} -m claude_audit"
        hook = f"{cli} hook pre-tool-use --config {d.config}"
        settings = e2e_dir / "home" / ".claude" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(
            json.dumps(
                {
                    "hooks": {
                        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": hook}]}]
                    }
                }
            )
        )
        p = start_session(claude_bin, fake_api.url, tag_prompt("hook"), e2e_dir / "home", e2e_dir / "cwd")
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    assert not written.exists()
    results = fake_api.tool_results("hook")
    assert any("claude-audit deny rule no-marker: markers need a human" in r for r in results), results
