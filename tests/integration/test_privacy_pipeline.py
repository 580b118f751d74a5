"""Redaction through the real pipeline: kernel (BPF) -> daemon -> audit file and a real journald.

A fake Claude Code session runs, the way the Bash tool does (a `bash -c` wrapper around `eval '<cmd>'`),
one command per shipped secret shape and the same command without the secret. The secret must be in no
sink: not in the file, not in `journalctl -o json`, not in journald's own files; the redacted records
carry the flag, the rule and the hash; and each clean twin is recorded byte for byte (argv and
claude.command), so redaction touched nothing else.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from daemon_faults_util import actions, config_text, daemon, execs_of, fake_claude, session, session_found
from journald_env import journald_env

pytestmark = [pytest.mark.root]

KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7xSecretBody\n-----END RSA PRIVATE KEY-----"
# (rule id, secret, command with it, clean twin): the twin is the same command with the secret's
# text replaced by harmless words of the same role.
SHAPES: list[tuple[str, str, str, str]] = [
    (
        "auth-header",
        "abcDEF123456tokAH",
        '/bin/echo -H "Authorization: Bearer abcDEF123456tokAH" https://api.example.com',
        '/bin/echo -H "Accept: text/plain" https://api.example.com',
    ),
    (
        "basic-auth-user",
        "s3cretPWbasic",
        "/bin/echo curl -u alice:s3cretPWbasic https://example.com",
        "/bin/echo curl -u alice https://example.com",
    ),
    (
        "url-userinfo",
        "tok3nValueURL",
        "/bin/echo https://alice:tok3nValueURL@example.com/r.git",
        "/bin/echo https://example.com/r.git",
    ),
    ("mysql-password", "Hunter2pwMY", "/bin/echo mysql -uroot -pHunter2pwMY db", "/bin/echo mysql -uroot db"),
    ("secret-option", "hunter22opt", "/bin/echo --password=hunter22opt", "/bin/echo --verbose"),
    (
        "secret-assignment",
        "wJalrXUtnFEMIK7MDENGas",
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGas /usr/bin/env"
        " AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGas /bin/true",
        "AWS_REGION=eu-west-1 /usr/bin/env AWS_REGION=eu-west-1 /bin/true",
    ),
    ("aws-access-key", "AKIAIOSFODNN7EXAMPLE", "/bin/echo AKIAIOSFODNN7EXAMPLE", "/bin/echo AWS-EXAMPLE"),
    ("github-token", "ghp_" + "A1b2" * 9, "/bin/echo ghp_" + "A1b2" * 9, "/bin/echo github"),
    ("gitlab-token", "glpat-" + "Ab1x" * 5, "/bin/echo glpat-" + "Ab1x" * 5, "/bin/echo gitlab"),
    (
        "slack-token",
        "xoxb-123456789012-abcdefABCDEF",
        "/bin/echo xoxb-123456789012-abcdefABCDEF",
        "/bin/echo slack",
    ),
    ("openai-key", "sk-proj-" + "Zz9" * 10, "/bin/echo sk-proj-" + "Zz9" * 10, "/bin/echo openai"),
    (
        "anthropic-key",
        "sk-ant-api03-" + "Qq8" * 10,
        "/bin/echo sk-ant-api03-" + "Qq8" * 10,
        "/bin/echo claude",
    ),
    ("private-key", "MIIEowIBAAKCAQEA7xSecretBody", f'/bin/echo "{KEY}"', '/bin/echo "no key here"'),
]


def tool_call(base: Path, command: str) -> str:
    """A shell line running `command` inside Claude Code 2.1's Bash tool wrapper."""
    word = "'" + command.replace("'", "'\\''") + "'"
    script = (
        f"source {base}/.claude/shell-snapshots/snapshot-bash-1-abc.sh 2>/dev/null || true && "
        f"eval {word} < /dev/null && pwd -P >| {base}/claude-1-cwd"
    )
    return "/bin/bash -c " + shlex.quote(script)


def _cmd_is(r: dict[str, Any], prefix: str) -> bool:
    cmd = r["claude"].get("command", "")
    return isinstance(cmd, str) and cmd.startswith(prefix)


def test_each_default_shape_reaches_no_sink_and_clean_twins_are_exact(tmp_path: Path) -> None:
    """Each shipped shape, in argv and claude.command, is in neither the file nor journald; its records
    say redacted (rule, hash); each twin without a secret is recorded exactly as it ran."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    steps = []
    for _, _, with_secret, clean in SHAPES:
        steps += [tool_call(tmp_path, with_secret), tool_call(tmp_path, clean)]
    with journald_env() as jd:
        cfg = config_text(tmp_path, log, journal_socket=jd.socket_path)
        with daemon(tmp_path, cfg, log) as d, session(exe, *steps) as s:
            session_found(d, s.pid)
            for i, _ in enumerate(steps):
                s.go()
                d.wait_for(lambda rs, n=i + 1: _tool_heads(rs, s.pid) >= n, 120)
            # every tool call's last program has run and been recorded
            recs = d.wait_for(lambda rs: _done(rs, s.pid), 120)
            n_exec = len(actions(recs, "exec"))
            jd.wait_for(n_exec, 60.0, SYSLOG_IDENTIFIER="claude-audit", AUDIT_ACTION="exec")
            journal = jd.entries(SYSLOG_IDENTIFIER="claude-audit")
            journal_files = b"".join(p.read_bytes() for p in jd.journal_dir.rglob("*") if p.is_file())
    file_bytes = log.read_bytes()
    journal_text = json.dumps(journal)
    for rule_id, secret, with_secret, clean in SHAPES:
        assert secret.encode() not in file_bytes, rule_id
        assert secret not in journal_text, rule_id
        assert secret.encode() not in journal_files, rule_id
        before = with_secret[: with_secret.index(secret)].rstrip("\n")  # a key's body starts at the newline
        red = [
            r
            for r in execs_of(recs, s.pid)
            if "redacted" in r["claude_audit"]["flags"] and _cmd_is(r, before)
        ]
        assert any(rule_id in r["claude_audit"]["redacted"]["rules"] for r in red), rule_id
        assert all(len(r["claude_audit"]["redacted"]["hashes"][0]) == 16 for r in red)
        twin = [r for r in execs_of(recs, s.pid) if r["claude"].get("command") == clean]
        assert twin, f"{rule_id}: clean twin not recorded exactly: {clean!r}"
        assert all("redacted" not in r["claude_audit"]["flags"] for r in twin)
        program_argv = shlex.split(clean.replace("AWS_REGION=eu-west-1 /usr/bin/env", "/usr/bin/env"))
        assert any(r["process"]["args"] == program_argv for r in twin), (rule_id, program_argv)
    # journald carries the same (redacted) records: each entry's AUDIT_RECORD is a line of the file
    lines = {json.dumps(json.loads(x), sort_keys=True) for x in file_bytes.splitlines()}
    for e in journal:
        if "AUDIT_RECORD" in e:
            assert json.dumps(json.loads(e["AUDIT_RECORD"]), sort_keys=True) in lines
        assert "PROCESS_ARGS" not in e


def _tool_heads(recs: list[dict[str, Any]], root: int) -> int:
    return len(
        {r["claude"]["invocation"] for r in execs_of(recs, root) if r["claude"].get("origin") == "tool"}
    )


def _done(recs: list[dict[str, Any]], root: int) -> list[dict[str, Any]] | None:
    progs = [r["process"]["executable"] for r in execs_of(recs, root)]
    # each tool call ends in /bin/echo or /bin/true
    ends = sum(p in {"/bin/echo", "/bin/true"} for p in progs)
    return recs if ends >= 2 * len(SHAPES) else None


def test_command_excerpt_on_descendants_and_hashed_prompt(tmp_path: Path) -> None:
    """A tool call's first record carries its command in full, the programs it starts an excerpt (with
    the full length and the invocation id); the session root's argument text is hashed when configured."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    command = "/bin/true one; /bin/true two; /bin/true three # " + "padding " * 40
    cfg = config_text(tmp_path, log)
    cfg.write_text(cfg.read_text() + '[privacy]\nroot_prompt = "hash"\ncommand_excerpt_chars = 32\n')
    with daemon(tmp_path, cfg, log) as d, session(exe, tool_call(tmp_path, command)) as s:
        found = session_found(d, s.pid)
        s.go()
        recs = d.wait_for(
            lambda rs: len([r for r in execs_of(rs, s.pid) if r["process"]["name"] == "true"]) >= 3
        )
    tool = [r for r in execs_of(recs, s.pid) if r["claude"].get("origin") == "tool"]
    first, rest = tool[0], tool[1:]
    assert first["process"]["name"] == "bash" and first["claude"]["command"] == command
    assert [r["process"]["args"] for r in rest] == [["/bin/true", w] for w in ("one", "two", "three")]
    for r in rest:
        assert r["claude"]["command"] == command[:32] + "\u2026"
        assert r["claude"]["command_chars"] == len(command)
        assert r["claude"]["invocation"] == first["claude"]["invocation"]
        assert "command_excerpt" in r["claude_audit"]["flags"]
    root = next(r for r in actions(found, "session-found") if r["claude"]["pid"] == s.pid)
    assert root["process"]["args"][:2] == [str(exe), "-c"]
    assert root["process"]["args"][2].startswith("[PROMPT:") and "read -r _" not in log.read_text()
    assert "prompt_hashed" in root["claude_audit"]["flags"]
