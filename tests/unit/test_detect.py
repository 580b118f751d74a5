"""detect.py: the Sigma fields of exec records (parent, depth, user) and the alert records built from
matches."""

from __future__ import annotations

from typing import Any

from claude_audit import records
from claude_audit.detect import SEVERITY, Detector, UserNames, alert_record
from claude_audit.events import ExecEvent
from claude_audit.journal import journal_fields
from claude_audit.rules import RuleSet, load_text

HOST = records.HostInfo("h", "11111111-2222-3333-4444-555555555555", boot_time_ns=0)

RULE = """\
title: Curl piped to a shell by the agent
id: 7f0c0c6e-0000-4000-8000-00000000c0de
description: the agent fetched and ran a script
author: Tester One, Tester Two
references:
    - https://example.invalid/curl-sh
tags:
    - attack.execution
logsource:
    category: process_creation
    product: linux
level: {level}
detection:
    sel:
        Image|endswith: /sh
        ParentImage|endswith: /bash
        ClaudeCommand|contains: '| sh'
    condition: sel
"""


def _exec(
    pid: int, ppid: int, argv: list[bytes], *, seq: int, uid: int = 0, session: int = 50
) -> dict[str, Any]:
    ev = ExecEvent(
        wall_time_ns=1_800_000_000_000_000_000 + seq,
        pid=pid,
        tid=pid,
        ppid=ppid,
        uid=uid,
        gid=0,
        session_root=session,
        root_start_ticks=1,
        invocation=60,
        invocation_start_ticks=2,
        start_ticks=3,
        cgroup_id=1,
        comm=argv[0][:15],
        filename=b"/usr/bin/" + argv[0],
        argv=argv,
        args_truncated=False,
        args_original_len=10,
    )
    claude = {"pid": session, "invocation_pid": 60, "origin": "tool", "command": "curl -s x | sh"}
    return records.exec_record(ev, HOST, claude, seq)


def _detector(level: str = "high") -> Detector:
    got, refused, _ = load_text(RULE.format(level=level), "agent.yml")
    assert refused == []
    return Detector(RuleSet(got), UserNames({0: "root"}.get))


ALL_FIELDS_RULE = RULE.replace(
    "        ClaudeCommand|contains: '| sh'\n",
    "        ClaudeCommand|contains: '| sh'\n        ClaudeOrigin: tool\n        ProcessId: 1\n"
    "        ParentProcessId: 1\n        User: root\n",
)


def test_fields_map_the_record() -> None:
    """Image, CommandLine (argv joined by spaces), ids, user name and the claude fields."""
    got, _, _ = load_text(ALL_FIELDS_RULE.format(level="low"), "all.yml")
    d = Detector(RuleSet(got), UserNames({0: "root"}.get))
    values, parent_known = d.fields(_exec(61, 60, [b"ls", b"-la", b"my dir"], seq=1))
    assert values["Image"] == "/usr/bin/ls"
    assert values["CommandLine"] == "ls -la my dir"
    assert (values["ProcessId"], values["ParentProcessId"]) == ("61", "60")
    assert values["User"] == "root"
    assert values["ClaudeCommand"] == "curl -s x | sh"
    assert values["ClaudeOrigin"] == "tool"
    assert not parent_known
    assert "ParentImage" not in values


def test_only_fields_the_rules_use_are_computed() -> None:
    """Fields no loaded rule names are not computed (Image and CommandLine always are: parents)."""
    values, _ = _detector().fields(_exec(61, 60, [b"ls"], seq=1))
    assert set(values) == {"Image", "CommandLine", "ClaudeCommand"}


def test_parent_and_depth_come_from_the_parents_exec() -> None:
    """The invocation's shell is depth 0; its child gets the shell as parent and depth 1, a grandchild 2."""
    d = _detector()
    shell, _ = d.fields(_exec(60, 50, [b"bash", b"-c", b"curl -s x | sh"], seq=1))
    assert shell["ClaudeInvocationDepth"] == "0"
    child, known = d.fields(_exec(62, 60, [b"sh"], seq=2))
    assert known
    assert (child["ParentImage"], child["ParentCommandLine"]) == ("/usr/bin/bash", "bash -c curl -s x | sh")
    assert child["ClaudeInvocationDepth"] == "1"
    grandchild, _ = d.fields(_exec(63, 62, [b"id"], seq=3))
    assert grandchild["ClaudeInvocationDepth"] == "2"


def test_parent_of_another_session_is_not_used() -> None:
    """A pid seen in another session is not taken as this exec's parent."""
    d = _detector()
    d.fields(_exec(60, 50, [b"bash"], seq=1, session=99))
    values, known = d.fields(_exec(62, 60, [b"sh"], seq=2, session=50))
    assert not known and "ParentImage" not in values


def test_user_names_are_cached_and_fall_back_to_the_uid() -> None:
    """A uid without a name is matched as its number; lookups are cached."""
    calls: list[int] = []

    def lookup(uid: int) -> str | None:
        calls.append(uid)
        return "root" if uid == 0 else None

    users = UserNames(lookup)
    assert (users("0"), users("0"), users("4242"), users("x")) == ("root", "root", "4242", "x")
    assert calls == [0, 4242]


def test_match_and_alert_record() -> None:
    """The shell a tool call pipes into fires the rule; the alert carries the rule, the exec's ids and
    context, and a journald priority from the level."""
    d = _detector()
    shell = _exec(60, 50, [b"bash", b"-c", b"curl -s x | sh"], seq=1)
    assert d.check(shell)[0] == []
    sh = _exec(62, 60, [b"sh"], seq=2)
    hits, parent_known = d.check(sh)
    assert [h.title for h in hits] == ["Curl piped to a shell by the agent"]
    alert = alert_record(sh, hits[0], HOST, 3, 1_800_000_000_000_000_099, parent_known=parent_known)
    assert alert["event"]["kind"] == "alert"
    assert alert["event"]["action"] == "rule-match"
    assert alert["event"]["severity"] == SEVERITY["high"]
    assert alert["rule"] == {
        "id": "7f0c0c6e-0000-4000-8000-00000000c0de",
        "name": "Curl piped to a shell by the agent",
        "description": "the agent fetched and ran a script",
        "ruleset": "sigma",
        "category": "process_creation",
        "reference": "https://example.invalid/curl-sh",
        "author": ["Tester One", "Tester Two"],
    }
    assert alert["tags"] == ["attack.execution"]
    assert alert["process"]["entity_id"] == sh["process"]["entity_id"]
    assert alert["claude"] == sh["claude"]
    assert alert["claude_audit"]["alert"]["exec_sequence"] == 2
    assert alert["claude_audit"]["flags"] == []
    assert journal_fields(alert)["PRIORITY"] == "3"
    assert (d.evaluated, d.matched) == (2, 1)


def test_levels_set_journald_priority() -> None:
    """critical 2, high 3, medium 4, low 5, informational 6."""
    for level, prio in (
        ("critical", "2"),
        ("high", "3"),
        ("medium", "4"),
        ("low", "5"),
        ("informational", "6"),
    ):
        rule = _detector(level).rules.rules[0]
        alert = alert_record(_exec(62, 60, [b"sh"], seq=2), rule, HOST, 3, 1, parent_known=False)
        assert journal_fields(alert)["PRIORITY"] == prio, level
        assert alert["claude_audit"]["flags"] == ["parent_unknown"]


def test_parent_table_is_bounded() -> None:
    """However many processes exec, the parent table keeps at most PARENTS_MAX entries."""
    d = Detector(_detector().rules, parents_max=100)
    for pid in range(1000, 1500):
        d.fields(_exec(pid, 60, [b"true"], seq=pid))
    assert len(d._seen) == 100
    # The newest are kept: the last exec is still known as a parent.
    assert d.fields(_exec(2000, 1499, [b"true"], seq=1))[1]


def test_journald_fields_name_the_rule() -> None:
    """An alert's journald entry has RULE_ID, RULE_NAME, RULE_LEVEL and the rule first in MESSAGE."""
    d = _detector()
    d.check(_exec(60, 50, [b"bash", b"-c", b"curl -s x | sh"], seq=1))
    sh = _exec(62, 60, [b"sh"], seq=2)
    hits, known = d.check(sh)
    fields = journal_fields(alert_record(sh, hits[0], HOST, 3, 1, parent_known=known))
    assert fields["RULE_ID"] == "7f0c0c6e-0000-4000-8000-00000000c0de"
    assert fields["RULE_NAME"] == "Curl piped to a shell by the agent"
    assert fields["RULE_LEVEL"] == "high"
    assert fields["MESSAGE"].startswith("rule-match [high] Curl piped to a shell by the agent: pid=62")
    assert fields["AUDIT_ACTION"] == "rule-match"


def test_tail_shows_an_alert_with_its_rule() -> None:
    """`claude-audit tail` prints an alert as ALERT, the level, the rule's name, the pid and the argv."""
    from claude_audit.tailformat import format_record

    d = _detector()
    d.check(_exec(60, 50, [b"bash", b"-c", b"curl -s x | sh"], seq=1))
    sh = _exec(62, 60, [b"sh", b"-s"], seq=2)
    hits, known = d.check(sh)
    line = format_record(alert_record(sh, hits[0], HOST, 3, 1, parent_known=known), False)
    assert line is not None
    assert line.endswith("ALERT high Curl piped to a shell by the agent (pid 62) | sh -s")
