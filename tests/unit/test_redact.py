"""redact.py: each shipped secret shape is replaced (argv, claude.command, executable), look-alikes are not,
hashes are keyed and stable, argv keeps its elements, records stay within the encoding rules, and
hostile inputs cost time linear in their size."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from builders import HOST, SESSION, TOOL_INV, exec_event
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_audit.records import command_line, exec_record
from claude_audit.redact import (
    DEFAULT_RULES,
    KEY_BYTES,
    Redactor,
    load_or_create_key,
    rule,
)
from claude_audit.textenc import dumps_line

KEY = b"k" * 32
R = Redactor(DEFAULT_RULES, KEY)

# (rule id, secret, argv carrying it): each shape the issue names, as it appears on a command line.
SHAPES: list[tuple[str, str, list[str]]] = [
    ("auth-header", "abcDEF123456tok", ["curl", "-H", "Authorization: Bearer abcDEF123456tok", "https://x"]),
    ("auth-header", "dXNlcjpwYXNzd29yZA==", ["curl", "-H", "Authorization: Basic dXNlcjpwYXNzd29yZA==", "u"]),
    (
        "bearer-token",
        "abcDEF123456tok",
        ["http", "--auth-type=bearer", "--auth", "x", "Bearer abcDEF123456tok"],
    ),
    ("basic-auth-user", "s3cretPW", ["curl", "-u", "alice:s3cretPW", "https://example.com"]),
    ("url-userinfo", "tok3nValue", ["git", "clone", "https://alice:tok3nValue@github.com/o/r.git"]),
    ("mysql-password", "Hunter2pw", ["mysql", "-uroot", "-pHunter2pw", "db"]),
    ("secret-option", "hunter22", ["tool", "--password=hunter22"]),
    ("secret-option", "hunter22", ["tool", "--password", "hunter22"]),
    ("secret-option", "abc123xyz", ["gh", "auth", "login", "--with-token", "--token", "abc123xyz"]),
    (
        "secret-assignment",
        "wJalrXUtnFEMI/K7MDENG",
        ["env", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", "aws"],
    ),
    ("secret-assignment", "gho9token9value", ["env", "GITHUB_TOKEN=gho9token9value", "gh"]),
    ("secret-assignment", "stripeK3y", ["env", "STRIPE_API_KEY=stripeK3y", "node", "x.js"]),
    (
        "aws-access-key",
        "AKIAIOSFODNN7EXAMPLE",
        ["aws", "configure", "set", "aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"],
    ),
    ("github-token", "ghp_" + "A1b2" * 9, ["echo", "ghp_" + "A1b2" * 9]),
    ("github-token", "github_pat_" + "x1Y2" * 6, ["echo", "github_pat_" + "x1Y2" * 6]),
    ("gitlab-token", "glpat-" + "Ab1_" * 5, ["echo", "glpat-" + "Ab1_" * 5]),
    ("slack-token", "xoxb-123456789012-abcdefABCDEF", ["echo", "xoxb-123456789012-abcdefABCDEF"]),
    (
        "slack-webhook",
        "T000/B000/XXXXXXXXXXXXXXXX",
        ["curl", "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"],
    ),
    ("openai-key", "sk-proj-" + "Zz9" * 10, ["echo", "sk-proj-" + "Zz9" * 10]),
    ("anthropic-key", "sk-ant-api03-" + "Qq8" * 10, ["echo", "sk-ant-api03-" + "Qq8" * 10]),
    (
        "private-key",
        "MIIEowIBAAKCAQEA7x",
        ["printf", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7x\n-----END RSA PRIVATE KEY-----\n"],
    ),
    (
        "private-key",
        "b3BlbnNzaC1rZXktdjE",
        [
            "echo",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE\n-----END OPENSSH PRIVATE KEY-----",
        ],
    ),
]

# Command lines that look a little like secrets and are not: nothing may change.
CLEAN: list[list[str]] = [
    ["mkdir", "-p", "/tmp/x"],
    ["docker", "run", "-u", "1000:1000", "img"],
    ["/bin/bash", "-c", "cd /home/u && PWD=/x make"],
    ["git", "push", "-u", "origin", "main"],
    ["curl", "-sS", "https://example.com/path?q=1"],
    ["grep", "-r", "token", "src/"],
    ["ssh-keygen", "-t", "ed25519", "-f", "/home/u/.ssh/id"],
    ["cat", "/home/u/.ssh/id_ed25519.pub"],
    ["echo", "basic usage of the bearer of news"],
    ["python3", "-c", "print('sk-')"],
    ["git", "log", "--format=%H"],
]


@pytest.mark.parametrize(
    ("rule_id", "secret", "argv"), SHAPES, ids=[f"{s[0]}-{i}" for i, s in enumerate(SHAPES)]
)
def test_each_default_shape_is_redacted_in_argv(rule_id: str, secret: str, argv: list[str]) -> None:
    """The secret leaves no trace in the argv, the element count is kept, and the rule is named."""
    new, hits = R.redact_args(argv, None)
    assert secret not in "\0".join(new)
    assert len(new) == len(argv)
    assert any(rule_id in h.rules for h in hits)


@pytest.mark.parametrize(
    ("rule_id", "secret", "argv"), SHAPES, ids=[f"{s[0]}-{i}" for i, s in enumerate(SHAPES)]
)
def test_each_default_shape_is_redacted_in_a_command(rule_id: str, secret: str, argv: list[str]) -> None:
    """The same shapes inside a shell command line (claude.command) are redacted too."""
    cmd = command_line(argv) + " && echo done"
    new, hits = R.redact_text(cmd, "command")
    assert secret not in new
    assert new.endswith(" && echo done")
    assert any(rule_id in h.rules for h in hits)


@pytest.mark.parametrize("argv", CLEAN, ids=[" ".join(a)[:30] for a in CLEAN])
def test_look_alikes_are_left_alone(argv: list[str]) -> None:
    """Commands that merely resemble a secret shape are recorded exactly."""
    assert R.redact_args(argv, None) == (argv, [])
    assert R.redact_text(command_line(argv), "command") == (command_line(argv), [])


def test_replacement_keeps_the_context_and_names_rule_and_hash() -> None:
    """Only the secret goes: `Authorization: Bearer ` stays, the replacement names the rule and hash."""
    new, hits = R.redact_args(["curl", "-H", "Authorization: Bearer abcDEF123456tok"], None)
    assert new[2] == f"Authorization: Bearer [REDACTED:auth-header:{hits[0].hash}]"
    assert re.fullmatch(r"[0-9a-f]{16}", hits[0].hash)


def test_equal_secrets_hash_equally_and_the_key_matters() -> None:
    """Same secret, same key: same hash (in two fields and two shapes); another key gives another hash."""
    _, a = R.redact_args(["curl", "-H", "Authorization: Bearer abcDEF123456tok"], None)
    _, b = R.redact_text("TOKEN=abcDEF123456tok ./run", "command")
    assert a[0].hash == b[0].hash
    _, c = Redactor(DEFAULT_RULES, b"x" * 32).redact_args(
        ["curl", "-H", "Authorization: Bearer abcDEF123456tok"], None
    )
    assert c[0].hash != a[0].hash
    _, d = R.redact_text("TOKEN=otherSecretValue ./run", "command")
    assert d[0].hash != a[0].hash


def test_secret_in_the_next_argv_element_is_found() -> None:
    """`--password` `x` spans two elements: both are seen together, the count of elements is kept."""
    new, _ = R.redact_args(["psql", "--password", "pw1234", "-d", "db"], None)
    assert new[:2] == ["psql", "--password"] and new[3:] == ["-d", "db"] and "pw1234" not in new[2]


def test_a_span_over_an_element_boundary_keeps_the_element_count() -> None:
    """A user rule that matches across NULs (element boundaries) empties elements, never merges them."""
    r = Redactor([rule("pair", r"a\x00b")], KEY)
    new, hits = r.redact_args(["x", "a", "b", "y"], None)
    assert len(new) == 4 and new[0] == "x" and new[3] == "y" and len(hits) == 1
    assert "a" not in new[1] + new[2] or new[1].startswith("[REDACTED")


def test_overlapping_rules_merge_and_nothing_is_matched_twice() -> None:
    """auth-header and bearer-token overlap on one token: one replacement, both rules named."""
    new, hits = R.redact_text('curl -H "Authorization: Bearer abcDEF123456tok"', "command")
    assert new.count("[REDACTED") == 1 and hits[0].rules == ("auth-header", "bearer-token")


def test_program_and_field_scope() -> None:
    """A rule scoped to a program applies only to its records; one scoped to a field only to that field."""
    r = Redactor([rule("acct", r"acct-\d+", programs=["billing"], fields=["argv"])], KEY)
    assert r.redact_args(["billing", "acct-42"], {"billing"})[0] == [
        "billing",
        "[REDACTED:acct:" + r.keyed_hash("acct-42") + "]",
    ]
    assert r.redact_args(["other", "acct-42"], {"other"})[1] == []
    assert r.redact_text("billing acct-42", "command", {"billing"})[1] == []


def test_rule_validation() -> None:
    """Bad regexes, unknown fields and patterns matching the empty string are refused."""
    with pytest.raises(re.error):
        rule("x", "(")
    with pytest.raises(ValueError, match="unknown field"):
        rule("x", "a", fields=["cwd"])
    with pytest.raises(ValueError, match="empty string"):
        rule("x", "a*")


def _record(
    argv: list[bytes], command: str | None = None, filename: bytes = b"/usr/bin/curl"
) -> dict[str, Any]:
    claude = dict(SESSION) | dict(TOOL_INV)
    if command is not None:
        claude["command"] = command
    return exec_record(exec_event(argv=argv, filename=filename), HOST, claude, 7)


def test_record_is_redacted_everywhere_and_flagged() -> None:
    """args, command_line, claude.command and raw copies lose the secret; flag, rules, fields, hashes set."""
    argv = [b"curl", b"-H", b"Authorization: Bearer abcDEF123456tok", b"\xff"]
    rec = _record(argv, command="curl -H 'Authorization: Bearer abcDEF123456tok' $'\\xff'")
    R.redact_record(rec)
    line = dumps_line(rec)
    assert b"abcDEF123456tok" not in line
    for b64 in rec["raw"]["process"]["args"]:
        assert b"abcDEF123456tok" not in base64.b64decode(b64)
    assert rec["raw"]["process"]["args"][3] == base64.b64encode(b"\xff").decode()
    audit = rec["claude_audit"]
    assert "redacted" in audit["flags"] and "invalid_utf8" in audit["flags"]
    assert audit["redacted"]["rules"] == ["auth-header", "bearer-token"]
    assert audit["redacted"]["fields"] == ["argv", "command"]
    assert audit["redacted"]["hashes"] == [R.keyed_hash("abcDEF123456tok")]
    assert rec["process"]["command_line"] == command_line(rec["process"]["args"])


def test_secret_in_the_executable_path_is_redacted() -> None:
    """A path holding a token (a tool unpacked under a token-named directory) is redacted, name follows."""
    tok = "ghp_" + "A1b2" * 9
    rec = _record([b"run"], filename=f"/tmp/{tok}/run".encode())
    R.redact_record(rec)
    assert tok not in json.dumps(rec)
    assert rec["process"]["name"] == "run" and rec["claude_audit"]["redacted"]["fields"] == ["executable"]


def test_clean_record_is_untouched() -> None:
    """A record without a secret is byte for byte what it was."""
    rec = _record([b"git", b"status"], command="git status")
    before = dumps_line(rec)
    assert not R.redact_record(rec).hits
    assert dumps_line(rec) == before


secretish = st.sampled_from([s[2] for s in SHAPES])
texty = st.lists(st.text(max_size=20).map(lambda s: s.replace("\0", "")), max_size=6)


@settings(max_examples=300)
@given(pre=texty, shape=secretish, post=texty, cmd=st.text(max_size=60))
def test_redacted_records_keep_the_encoding_rules(
    pre: list[str], shape: list[str], post: list[str], cmd: str
) -> None:
    """Any argv around a secret, any command: the line is one JSON line, args_count and command_line
    agree with args, and the secret's shape is gone."""
    argv = [a.encode("utf-8", "surrogatepass") for a in [*shape, *pre, *post]]
    argv = [a.replace(b"\0", b"") for a in argv]
    rec = _record(argv, command=cmd + " " + command_line(shape))
    R.redact_record(rec)
    line = dumps_line(rec)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert all(b >= 0x20 for b in line[:-1])
    back = json.loads(line)
    assert back["process"]["args_count"] == len(back["process"]["args"]) == len(argv)
    assert back["process"]["command_line"] == command_line(back["process"]["args"])
    assert "redacted" in back["claude_audit"]["flags"]


@settings(max_examples=200)
@given(st.lists(st.text(max_size=30).map(lambda s: s.replace("\0", "")), max_size=8))
def test_redaction_never_changes_the_number_of_args(argv: list[str]) -> None:
    """Whatever the text, redacted argv has as many elements as the original."""
    assert len(R.redact_args(argv, None)[0]) == len(argv)


PATHOLOGICAL = [
    "a-" * 32768,
    "a://" * 16384,
    "token" * 13107,
    "TOKEN=" * 10922,
    "-----BEGIN PRIVATE KEY-----" * 2427,
    "mysql " * 10922,
    "curl -u " * 8192,
    "Authorization: " * 4369,
    "https://" + "a:" * 32760,
    "--password-" * 5957,
    "sk-" * 21845,
    "ghp_" * 16384,
]


@pytest.mark.parametrize("text", PATHOLOGICAL, ids=[p[:12] for p in PATHOLOGICAL])
def test_hostile_input_costs_linear_time(text: str) -> None:
    """64 KiB built to make backtracking regexes blow up is handled in well under a second (measured
    at tens of ms on this machine; quadratic behaviour would take minutes), in both argv and command."""
    t = time.perf_counter()
    R.redact_text(text, "argv")
    R.redact_text(text, "command")
    assert time.perf_counter() - t < 5.0


def test_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    """The key file is made 0600 with 32 bytes and read back unchanged on the next start."""
    k1 = load_or_create_key(tmp_path / "state")
    path = tmp_path / "state" / "redact.key"
    assert len(k1) == KEY_BYTES and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path / "state") == k1


def test_unsafe_key_file_is_replaced(tmp_path: Path) -> None:
    """A key file readable by others, of the wrong size, or a symlink is not trusted: a new key is made."""
    path = tmp_path / "redact.key"
    path.write_bytes(b"x" * KEY_BYTES)
    path.chmod(0o644)
    k = load_or_create_key(tmp_path)
    assert k != b"x" * KEY_BYTES and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()
    (tmp_path / "elsewhere").write_bytes(b"y" * KEY_BYTES)
    os.symlink(tmp_path / "elsewhere", path)
    k2 = load_or_create_key(tmp_path)
    assert k2 != b"y" * KEY_BYTES and not path.is_symlink()


NASTY = [
    b"\n",
    b"\r",
    b"\x1b[31m",
    b"\xc2\x9b",
    b'"',
    b"\\",
    b"\x7f",
    b"\xe2\x80\xa8",
    b"\xc3",
    b"\xff",
    b"\t",
]
hostile_arg = st.lists(st.one_of(st.sampled_from(NASTY), st.binary(max_size=6)), max_size=6).map(
    lambda parts: b"".join(parts).replace(b"\0", b"")
)


@settings(max_examples=300)
@given(pre=st.lists(hostile_arg, max_size=4), shape=secretish, glue=hostile_arg)
def test_hostile_bytes_around_secrets_keep_line_and_raw_rules(
    pre: list[bytes], shape: list[str], glue: bytes
) -> None:
    """Invalid UTF-8, controls and escapes next to a secret: still one line with no raw control byte, the
    raw copies decode, the untouched arguments come back exactly, and no secret survives in raw."""
    argv = [*pre, *(a.encode() for a in shape), glue]
    rec = _record(argv)
    R.redact_record(rec)
    line = dumps_line(rec)
    assert line.count(b"\n") == 1 and all(b >= 0x20 for b in line[:-1])
    back = json.loads(line)
    args = back["process"]["args"]
    assert len(args) == len(argv)
    raw = back.get("raw", {}).get("process", {}).get("args")
    recovered = [base64.b64decode(a) for a in raw] if raw is not None else [a.encode() for a in args]
    for i, (orig, got) in enumerate(zip(argv, recovered, strict=True)):
        if "[REDACTED:" not in args[i]:
            assert got == orig
    for s in [x[1] for x in SHAPES if x[2] == shape]:
        assert s.encode() not in b"".join(recovered)
