"""hook: the PreToolUse courtesy that tells the agent a Bash command would be denied, and why."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from claude_audit.config import EnforceConfig, parse_config
from claude_audit.hook import HOOK_INPUT_MAX_BYTES, decide, read_payload, simple_commands


def _enforce(mode: str = "enforce") -> EnforceConfig:
    deny = [
        {"id": "no-force-push", "program": "git", "args": ["push", "--force"], "reason": "needs a human"},
        {"id": "no-npm", "path": "/usr/bin/npm", "reason": "npm is off limits"},
        {"id": "no-tools", "path_prefix": "/opt/tools/", "reason": "tools are off limits"},
    ]
    return parse_config({"enforce": {"mode": mode, "deny": deny}}).enforce


def _which(name: str) -> str | None:
    return {"npm": "/usr/bin/npm", "tool": "/opt/tools/tool"}.get(name)


def _bash(command: str) -> dict[str, Any]:
    return {"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": command}}


@pytest.mark.parametrize(
    ("command", "rule"),
    [
        ("git push --force origin main", "no-force-push"),
        ("cd /repo && git push --force", "no-force-push"),
        ("GIT_TRACE=1 git push --force 2>/dev/null", "no-force-push"),
        ("echo hi; 'git' \"push\" --force", "no-force-push"),
        ("npm publish", "no-npm"),
        ("/opt/tools/x --y | cat", "no-tools"),
        ("tool", "no-tools"),
        ("git push", None),
        ("git push --force-with-lease", None),
        ("echo git push --force", None),
        ("$GIT push --force", None),
        ("ls 'unterminated", None),
    ],
)
def test_denied_commands_get_the_rules_reason(command: str, rule: str | None) -> None:
    """A command the kernel would kill gets a deny naming the rule and its reason; others get nothing."""
    answer = decide(_bash(command), _enforce(), _which)
    if rule is None:
        assert answer is None
        return
    assert answer is not None
    out = answer["hookSpecificOutput"]
    assert out["hookEventName"] == "PreToolUse" and out["permissionDecision"] == "deny"
    assert out["permissionDecisionReason"].startswith(f"claude-audit deny rule {rule}: ")


def test_only_enforce_mode_and_only_bash_are_answered() -> None:
    """Dry-run stops nothing, so the hook does not either; other tools and odd payloads are let through."""
    assert decide(_bash("git push --force"), _enforce("dry-run"), _which) is None
    assert (
        decide({"tool_name": "Read", "tool_input": {"command": "git push --force"}}, _enforce(), _which)
        is None
    )
    assert decide(["not", "a", "dict"], _enforce(), _which) is None
    assert decide({"tool_name": "Bash", "tool_input": {"command": 5}}, _enforce(), _which) is None


def test_simple_commands_drop_redirections_assignments_and_prefixes() -> None:
    """Each simple command's words, as the exec would get them."""
    script = b"A=1 exec git status > out; env ls -l 2>&1 && (cd x || true)"
    assert simple_commands(script) == [[b"git", b"status"], [b"ls", b"-l"], [b"cd", b"x"], [b"true"]]


def test_payload_is_bounded_and_junk_is_ignored() -> None:
    """More than HOOK_INPUT_MAX_BYTES or non-JSON input reads as nothing (allow; the kernel decides)."""
    for data in (b"{" + b" " * (HOOK_INPUT_MAX_BYTES + 10) + b"}", b"\xff not json"):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the writer child
            os.close(r)
            try:
                os.write(w, data)
            finally:
                os._exit(0)
        os.close(w)
        try:
            assert read_payload(r) is None
        finally:
            os.close(r)
            os.waitpid(pid, 0)
    r, w = os.pipe()
    os.write(w, json.dumps(_bash("ls")).encode())
    os.close(w)
    assert read_payload(r) == _bash("ls")
    os.close(r)


def test_hook_command_prints_the_deny_and_exits_zero(tmp_path: Any) -> None:
    """`claude-audit hook pre-tool-use` as Claude Code runs it: JSON in on stdin, the deny JSON out, status 0;
    with an unreadable config it says nothing and still exits 0 (the kernel enforces regardless)."""
    import subprocess
    import sys

    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[enforce]\nmode = "enforce"\n[[enforce.deny]]\nid = "no-force-push"\nprogram = "git"\n'
        'args = ["push", "--force"]\nreason = "needs a human"\n'
    )
    cfg.chmod(0o600)
    run = [sys.executable, "-m", "claude_audit", "hook", "pre-tool-use", "--config"]
    p = subprocess.run(
        [*run, str(cfg)],
        input=json.dumps(_bash("git push --force")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"
    p = subprocess.run(
        [*run, str(tmp_path / "absent.toml")], input="{}", capture_output=True, text=True, check=False
    )
    assert (p.returncode, p.stdout) == (0, "")
