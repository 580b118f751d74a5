"""privacy.py and its wiring: the prompt of the Claude Code process, identity fields, command excerpts
on descendants, redaction before the excerpt, and the config that builds the policy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from builders import HOST, SESSION, T0, TOOL_INV, exec_event

from claude_audit import records
from claude_audit.config import Config, ConfigError, parse_config, privacy_policy
from claude_audit.privacy import PROMPT_DROPPED, Privacy, prompt_positions
from claude_audit.redact import DEFAULT_RULES, Redactor
from claude_audit.render import render
from claude_audit.textenc import dumps_line
from claude_audit.tracker import ExecSeen

KEY = b"p" * 32
R = Redactor(DEFAULT_RULES, KEY)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["claude", "-p", "fix the bug", "--allowedTools", "Bash"], [2]),
        (["claude", "--print", "--model", "opus", "hello"], [4]),
        (["claude", "hi there"], [1]),
        (["claude"], []),
        (["claude", "--append-system-prompt", "be terse", "-p", "x"], [2, 4]),
        (["claude", "--system-prompt=secret plan", "-p", "x"], [1, 3]),
        (["claude", "-p", "--", "-starts with dash"], [3]),
        (["claude", "mcp", "list"], []),
        (["node", "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js", "-p", "q"], [3]),
        (["claude", "--unknown-flag", "value"], [2]),
    ],
)
def test_prompt_positions(args: list[str], expected: list[int]) -> None:
    """Positional arguments and system-prompt values are the prompt; option values and subcommands are not."""
    assert prompt_positions(args) == expected


def _found(args: list[str]) -> dict[str, Any]:
    return records.session_found(
        T0, HOST, 1, claude={"pid": 4000}, how="scan", process_info={"pid": 4000, "args": list(args)}
    )


def test_prompt_hash_and_drop() -> None:
    """hash: the prompt becomes [PROMPT:<keyed hash>], equal prompts equal hashes; drop: [PROMPT]."""
    args = ["claude", "-p", "summarise /etc/shadow", "--allowedTools", "Bash"]
    rec = _found(args)
    Privacy(None, root_prompt="hash", prompt_hasher=R).apply(rec, root_args=True)
    assert rec["process"]["args"] == [
        "claude",
        "-p",
        f"[PROMPT:{R.keyed_hash('summarise /etc/shadow')}]",
        *args[3:],
    ]
    assert rec["claude_audit"]["flags"] == ["prompt_hashed"]
    rec = _found(args)
    Privacy(None, root_prompt="drop").apply(rec, root_args=True)
    assert rec["process"]["args"][2] == PROMPT_DROPPED and rec["claude_audit"]["flags"] == ["prompt_dropped"]
    rec = _found(args)
    Privacy(None, root_prompt="drop").apply(rec, root_args=False)
    assert rec["process"]["args"] == args


def test_identity_fields_can_be_dropped() -> None:
    """record_cwd / record_session_name false remove claude.cwd / claude.name from any record."""
    rec = records.session_ended(
        T0, HOST, 1, claude={"pid": 4000, "cwd": "/home/ann/p", "name": "ann"}, exit_code=0
    )
    Privacy(None, record_cwd=False, record_session_name=False).apply(rec)
    assert rec["claude"] == {"pid": 4000}


def _exec(command: str, argv: list[bytes] | None = None) -> ExecSeen:
    claude = dict(SESSION) | dict(TOOL_INV) | {"command": command}
    return ExecSeen(exec_event(argv=argv or [b"cc", b"-c", b"x.c"]), claude)


def test_full_command_on_the_first_record_excerpt_on_the_others() -> None:
    """The first record shows claude.command in full; a descendant's has an excerpt, its length and flag."""
    cmd = "make -j4 all && " + "echo step; " * 100
    priv = Privacy(R, command_excerpt_chars=64)
    first = render(_exec(cmd), HOST, 1, T0, privacy=priv)
    later = render(
        ExecSeen(_exec(cmd).event, _exec(cmd).claude, full_command=False), HOST, 2, T0, privacy=priv
    )
    assert first is not None and later is not None
    assert first["claude"]["command"] == cmd and "command_excerpt" not in first["claude_audit"]["flags"]
    assert later["claude"]["command"] == cmd[:64] + "\u2026"
    assert later["claude"]["command_chars"] == len(cmd)
    assert "command_excerpt" in later["claude_audit"]["flags"]
    assert later["claude"]["invocation"] == first["claude"]["invocation"]


def test_excerpt_zero_drops_the_command_on_descendants() -> None:
    """command_excerpt_chars 0: descendants carry no command, only the invocation id."""
    later = render(
        ExecSeen(_exec("ls -la").event, _exec("ls -la").claude, False),
        HOST,
        2,
        T0,
        privacy=Privacy(None, command_excerpt_chars=0),
    )
    assert later is not None and "command" not in later["claude"] and later["claude"]["invocation"]


def test_redaction_comes_before_the_excerpt() -> None:
    """A secret cut in two by the excerpt's end is still gone: the full text was redacted first."""
    secret = "ghp_" + "Zx9" * 12
    cmd = "echo " + "x" * 55 + " " + secret + " && make"
    later = render(
        ExecSeen(_exec(cmd).event, _exec(cmd).claude, False),
        HOST,
        2,
        T0,
        privacy=Privacy(R, command_excerpt_chars=70),
    )
    assert later is not None
    assert "ghp_Zx9" not in dumps_line(later).decode()


def test_root_exec_record_gets_the_prompt_policy() -> None:
    """The Claude Code process's own exec record (origin session) is treated as its argv."""
    ev = exec_event(pid=4000, invocation=0, argv=[b"claude", b"-p", b"my private question"])
    rec = render(
        ExecSeen(ev, {"pid": 4000, "origin": "session"}),
        HOST,
        1,
        T0,
        privacy=Privacy(None, root_prompt="drop"),
    )
    assert rec is not None
    assert rec["process"]["args"] == ["claude", "-p", PROMPT_DROPPED]
    assert "my private" not in rec["process"]["command_line"]


def test_config_builds_the_policy() -> None:
    """[privacy] and [[redact]] become a Privacy; default_rules false with no rules means no redactor."""
    cfg = parse_config(
        {
            "privacy": {"root_prompt": "hash", "command_excerpt_chars": 10},
            "redact": [{"id": "ticket", "pattern": "tkt_(?P<secret>[0-9]{6})", "fields": ["command"]}],
        }
    )
    p = privacy_policy(cfg, KEY)
    assert p.redactor is not None and p.redactor.rules[-1].id == "ticket"
    assert p.redactor.redact_text("deploy tkt_123456", "command")[0].startswith(
        "deploy tkt_[REDACTED:ticket:"
    )
    off = privacy_policy(parse_config({"privacy": {"default_rules": False}}), KEY)
    assert off.redactor is None
    assert privacy_policy(Config(), KEY).redactor is not None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"redact": [{"id": "t", "pattern": "("}]}, "redact.0: rule 't': invalid regular expression"),
        ({"redact": [{"id": "t", "pattern": "a*"}]}, "redact.0: rule 't': pattern matches the empty string"),
        ({"redact": [{"id": "T!", "pattern": "a"}]}, "redact.0.id: must be 1 to 64 of a-z"),
        ({"redact": [{"id": "t", "pattern": "a", "fields": ["cwd"]}]}, "redact.0.fields.0: Input should be"),
        (
            {"redact": [{"id": "t", "pattern": "a", "programs": ["/bin/x"]}]},
            "redact.0.programs.0: must be a file",
        ),
        (
            {"redact": [{"id": "t", "pattern": "a"}, {"id": "t", "pattern": "b"}]},
            "redact: Value error, rule ids",
        ),
        (
            {"redact": [{"id": "bearer-token", "pattern": "b"}]},
            "redact: Value error, rule ids must be unique",
        ),
        (
            {"privacy": {"root_prompt": "hide"}},
            "privacy.root_prompt: Input should be 'keep', 'hash' or 'drop'",
        ),
        (
            {"privacy": {"command_excerpt_chars": -1}},
            "privacy.command_excerpt_chars: Input should be greater",
        ),
        ({"journal": {"message_text_chars": 5000}}, "journal.message_text_chars: Input should be less"),
    ],
)
def test_config_errors_name_the_key_and_rule(data: dict[str, Any], expected: str) -> None:
    """A bad rule stops the load with the rule's position, id and the problem."""
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert expected.replace("Value error, ", "") in str(exc.value), str(exc.value)


def test_default_policy_keeps_a_clean_record_byte_for_byte() -> None:
    """The default policy on a record without a secret (first of its tool call) changes nothing."""
    seen = _exec("git status")
    plain = render(seen, HOST, 1, T0)
    policed = render(seen, HOST, 1, T0, privacy=privacy_policy(Config(), KEY))
    assert plain is not None and policed is not None
    assert dumps_line(plain) == dumps_line(policed)
    assert json.loads(dumps_line(policed))["claude"]["command"] == "git status"
