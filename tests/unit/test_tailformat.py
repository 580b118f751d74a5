"""tailformat: one audit record as one human line (formatting, neutralisation, filters)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from builders import HOST, SESSION, SID, T0, TOOL_INV, exec_line_record, roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_audit import tailformat
from claude_audit.records import (
    config_rejected,
    daemon_started,
    daemon_stopped,
    events_lost,
    session_ended,
    session_found,
)
from claude_audit.tailformat import format_record, matches

pytestmark = pytest.mark.usefixtures("utc_tz")

SGR = re.compile("\x1b\\[[0-9;]*m")


# -- formatting ---------------------------------------------------------------------------------------


def test_tool_wrapper_exec_shows_the_agent_command() -> None:
    """The invocation's own exec (the bash -c wrapper) is shown as the command the agent asked for."""
    rec = exec_line_record(
        4100, [b"bash", b"-c", b"source snap && eval 'make test' && pwd -P >| /tmp/x"], SESSION | TOOL_INV
    )
    assert format_record(rec, color=False) == "[02:11:10] 3f2a9c1e TOOL        4100 | make test"


def test_descendant_exec_is_marked_with_its_cause() -> None:
    """A program below a tool call shows its own argv, marked as caused by the agent's command."""
    rec = exec_line_record(4130, [b"make", b"-j2", b"all"], SESSION | TOOL_INV, ppid=4100)
    assert format_record(rec, color=False) == (
        "[02:11:10] 3f2a9c1e TOOL        4130 |   ↳ make -j2 all   (from: make test)"
    )


def test_descendant_argv_is_shell_quoted() -> None:
    """Arguments with spaces or quotes are shown as a shell would need them (shlex.join)."""
    rec = exec_line_record(4131, [b"git", b"commit", b"-m", b"it's done"], SESSION | TOOL_INV)
    assert format_record(rec, color=False) == (
        "[02:11:10] 3f2a9c1e TOOL        4131 |   ↳ git commit -m 'it'\"'\"'s done'   (from: make test)"
    )


def test_long_cause_is_clipped() -> None:
    """A long agent command is repeated after descendants only in part; the wrapper line has it whole."""
    long_cmd = "python -c " + "x" * 200
    claude = SESSION | TOOL_INV | {"command": long_cmd}
    child = format_record(exec_line_record(4130, [b"python"], claude), color=False)
    wrapper = format_record(exec_line_record(4100, [b"bash", b"-c", b"..."], claude), color=False)
    assert child is not None and wrapper is not None
    assert child.endswith("(from: python -c " + "x" * 49 + "…)")
    assert wrapper.endswith("| " + long_cmd)


def test_invocation_without_command_uses_argv() -> None:
    """Internal and unknown invocations have no extracted command: argv, and descendants cite the pid."""
    internal = SESSION | {"invocation": "INV-4200", "invocation_pid": 4200, "origin": "internal"}
    own = exec_line_record(4200, [b"/bin/zsh", b"-c", b"-l", b"SNAPSHOT_FILE=/x"], internal)
    child = exec_line_record(4201, [b"uname", b"-a"], internal)
    assert format_record(own, color=False) == (
        "[02:11:10] 3f2a9c1e INTERNAL    4200 | /bin/zsh -c -l SNAPSHOT_FILE=/x"
    )
    assert format_record(child, color=False) == (
        "[02:11:10] 3f2a9c1e INTERNAL    4201 |   ↳ uname -a   (from: pid 4200)"
    )


def test_unknown_origin_and_pid_label() -> None:
    """Without a session id the session is labelled by its root pid; origin unknown is shown as such."""
    claude = {"pid": 4000, "session_entity_id": "E", "invocation": "I", "invocation_pid": 4300}
    rec = exec_line_record(4300, [b"/bin/sh", b"-c", b"~/.claude/hook.sh"], claude | {"origin": "unknown"})
    assert format_record(rec, color=False) == (
        "[02:11:10] pid:4000 UNKNOWN     4300 | /bin/sh -c '~/.claude/hook.sh'"
    )


def test_session_root_exec_and_seeded_process() -> None:
    """Execs with no invocation (the root itself, a process seeded from /proc) show argv, not indented."""
    root = exec_line_record(4000, [b"claude", b"--resume"], SESSION | {"origin": "session"})
    seeded = exec_line_record(4500, [b"sleep", b"60"], SESSION | {"origin": "unknown"})
    assert format_record(root, color=False) == "[02:11:10] 3f2a9c1e SESSION     4000 | claude --resume"
    assert format_record(seeded, color=False) == "[02:11:10] 3f2a9c1e UNKNOWN     4500 | sleep 60"


def test_flags_are_shown() -> None:
    """claude_audit.flags (truncation, invalid UTF-8) follow the line in brackets."""
    rec = exec_line_record(4130, [b"cat", b"caf\xe9"], SESSION | TOOL_INV, args_truncated=True)
    assert format_record(rec, color=False) == (
        "[02:11:10] 3f2a9c1e TOOL        4130 |   ↳ cat 'caf\ufffd'   (from: make test)"
        "  [args_truncated,invalid_utf8]"
    )


def test_local_time_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """@timestamp (UTC) is shown in the local zone; offsets in the timestamp are honoured."""
    monkeypatch.setenv("TZ", "XYZ-02")  # POSIX spelling of UTC+2, no tz database needed
    time.tzset()
    assert tailformat.clock("2026-11-25T02:11:10.123456789Z") == "04:11:10"
    assert tailformat.clock("2026-11-25T02:11:10+01:30") == "02:41:10"
    rec = exec_line_record(4100, [b"bash"], SESSION | TOOL_INV)
    assert (format_record(rec, color=False) or "").startswith("[04:11:10] ")


@pytest.mark.parametrize("ts", [None, 17, "", "yesterday", "2026-13-45T99:00:00Z", "2026-11-25T02:11:10"])
def test_bad_timestamp(ts: object) -> None:
    """A missing or malformed @timestamp gives ??:??:?? rather than an error."""
    assert tailformat.clock(ts) == "??:??:??"


def test_lifecycle_lines_golden() -> None:
    """Each lifecycle record has its own short line."""
    found = session_found(
        T0,
        HOST,
        1,
        claude=SESSION | {"cwd": "/home/u/proj"},
        how="scan",
        process_info={"pid": 4000, "executable": "/usr/bin/claude", "args": ["claude"]},
    )
    ended = session_ended(T0, HOST, 2, claude={"pid": 4001, "session_entity_id": "E"}, exit_code=0)
    lost = events_lost(T0, HOST, 3, count=12, where="kernel-ring", since_ns=T0)
    start = daemon_started(
        T0, HOST, 4, version="0.1.0", pid=99, config_path=None, sessions=2, probes=["sched_process_exec"]
    )
    stop = daemon_stopped(T0, HOST, 5, records_written=1234, events_lost=0, reason="SIGTERM")
    stop_lossy = daemon_stopped(T0, HOST, 6, records_written=10, events_lost=3, reason="SIGTERM")
    rejected = config_rejected(T0, HOST, 7, error="capture.argv_max_bytes: not a power of two")
    got = [
        format_record(roundtrip(r), color=False)
        for r in (found, ended, lost, start, stop, stop_lossy, rejected)
    ]
    assert got == [
        "[02:11:10] 3f2a9c1e SESSION FOUND pid 4000 v2.1.3 cwd /home/u/proj (scan)",
        "[02:11:10] pid:4001 SESSION ENDED pid 4001 exit code 0",
        "[02:11:10] LOST 12 events (kernel-ring)",
        "[02:11:10] DAEMON START 0.1.0 pid 99 2 sessions",
        "[02:11:10] DAEMON STOP (SIGTERM) 1234 records 0 lost",
        "[02:11:10] DAEMON STOP (SIGTERM) 10 records 3 lost",
        "[02:11:10] CONFIG REJECTED capture.argv_max_bytes: not a power of two",
    ]


def test_unknown_action_is_shown_and_non_records_are_none() -> None:
    """An action this version does not know is still shown; a mapping with no event.action is None."""
    rec = {"@timestamp": "2026-11-25T02:11:10Z", "event": {"action": "future-thing"}}
    assert format_record(rec, color=False) == "[02:11:10] FUTURE-THING"
    assert format_record({"hello": "world"}, color=False) is None
    assert format_record({"event": "exec"}, color=False) is None


def test_colours_only_when_asked() -> None:
    """Colour adds SGR sequences only; tool, internal and unknown differ, and losses are red."""
    tool = exec_line_record(4100, [b"bash"], SESSION | TOOL_INV)
    internal = exec_line_record(
        4200, [b"env"], SESSION | {"invocation": "I", "invocation_pid": 4200, "origin": "internal"}
    )
    unknown = exec_line_record(
        4300, [b"sh"], SESSION | {"invocation": "I", "invocation_pid": 4300, "origin": "unknown"}
    )
    lost = roundtrip(events_lost(T0, HOST, 3, count=1, where="queue", since_ns=None))
    for rec in (tool, internal, unknown, lost):
        plain = format_record(rec, color=False)
        coloured = format_record(rec, color=True)
        assert plain is not None and coloured is not None
        assert "\x1b" not in plain
        assert "\x1b[" in coloured
        assert SGR.sub("", coloured) == plain

    def origin_sgr(rec: dict[str, Any]) -> str:
        m = re.search("\x1b\\[([0-9;]*)m(?:TOOL|INTERNAL|UNKNOWN)", format_record(rec, color=True) or "")
        assert m is not None
        return m.group(1)

    assert len({origin_sgr(tool), origin_sgr(internal), origin_sgr(unknown)}) == 3
    assert (format_record(lost, color=True) or "").count("\x1b[1;31m") == 1


# -- neutralisation -----------------------------------------------------------------------------------


def test_escape_in_argv_and_command_end_to_end() -> None:
    """An agent's ESC [2J in argv or command reaches the screen as text, not as a terminal command."""
    claude = SESSION | TOOL_INV | {"command": "printf '\x1b[2J'\necho hi"}
    own = format_record(exec_line_record(4100, [b"bash", b"-c", b"x"], claude), color=True) or ""
    child = format_record(exec_line_record(4101, [b"printf", b"\x1b[2J\x9b"], claude), color=True) or ""
    assert SGR.sub("", own).endswith("| printf '\\x1b[2J'\\necho hi")
    assert "↳ printf '\\x1b[2J\ufffd'" in SGR.sub("", child)  # \x9b alone is invalid UTF-8: U+FFFD
    for line in (own, child):
        assert "\x1b" not in SGR.sub("", line)


def _assert_inert(line: str) -> None:
    for c in line:
        assert ord(c) >= 0x20, repr(line)
        assert not 0x7F <= ord(c) <= 0x9F, repr(line)
    line.encode("utf-8")  # no lone surrogate survives


_any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@settings(max_examples=300)
@given(args=st.lists(_any_text, min_size=1, max_size=5), command=_any_text, sid=_any_text, origin=_any_text)
def test_no_control_characters_reach_the_terminal(
    args: list[str], command: str, sid: str, origin: str
) -> None:
    """For arbitrary text in args, command, session id and origin, no byte < 0x20, DEL or C1 is printed."""
    claude = {
        "pid": 1,
        "session_entity_id": "E",
        "session_id": sid,
        "origin": origin,
        "invocation_pid": 2,
        "command": command,
    }
    for pid in (2, 3):
        rec = {
            "@timestamp": "2026-11-25T02:11:10Z",
            "event": {"action": "exec"},
            "process": {"pid": pid, "args": args},
            "claude": claude,
            "claude_audit": {"flags": [command]},
        }
        line = format_record(rec, color=False)
        assert line is not None
        _assert_inert(line)
        coloured = format_record(rec, color=True)
        assert coloured is not None
        _assert_inert(SGR.sub("", coloured))


@settings(max_examples=200)
@given(
    value=_any_text,
    action=st.sampled_from(
        [
            "session-found",
            "session-ended",
            "events-lost",
            "daemon-started",
            "daemon-stopped",
            "config-rejected",
        ]
    ),
)
def test_lifecycle_values_are_neutralised(value: str, action: str) -> None:
    """Text in lifecycle records (cwd, version, reason, error, where, action names) is neutralised too."""
    rec = {
        "@timestamp": value,
        "event": {"action": action},
        "process": {"pid": value, "exit_code": value},
        "claude": {"pid": value, "session_id": value, "version": value, "cwd": value},
        "service": {"version": value},
        "claude_audit": {
            "how": value,
            "lost": {"count": value, "where": value},
            "reason": value,
            "error": value,
            "daemon_pid": value,
            "sessions": value,
        },
    }
    _assert_inert(format_record(rec, color=False) or "")
    _assert_inert(format_record({"event": {"action": value}}, color=False) or "")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_any_text, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300)
@given(
    action=st.sampled_from(["exec", "session-found", "session-ended", "events-lost", "daemon-stopped", "x"]),
    fields=st.dictionaries(
        st.sampled_from(["@timestamp", "process", "claude", "claude_audit", "service"]), _json, max_size=5
    ),
)
def test_records_of_the_wrong_shape_never_raise(action: str, fields: dict[str, Any]) -> None:
    """Any JSON value in any field gives a line (or None), never an exception, and filters cope too."""
    rec = {"event": {"action": action}, **fields}
    line = format_record(rec, color=False)
    assert line is not None
    _assert_inert(line)
    matches(rec, "3f2a", {"tool"})


# -- filters ------------------------------------------------------------------------------------------


def test_session_filter() -> None:
    """--session matches a session-id prefix, the root pid, or the session entity id exactly."""
    rec = exec_line_record(4100, [b"bash"], SESSION | TOOL_INV)
    for good in ("3f2a9c1e", "3f", SID, "4000", "ENTITY-OF-ROOT-4000xx", None, ""):
        assert matches(rec, good, None), good
    for bad in ("3f2b", "400", "40000", "ENTITY", "pid:4000"):
        assert not matches(rec, bad, None), bad
    no_sid = exec_line_record(4100, [b"bash"], {"pid": 4000, "session_entity_id": "E"} | TOOL_INV)
    assert matches(no_sid, "4000", None)
    assert not matches(no_sid, "3f", None)


def test_origin_filter() -> None:
    """--origin keeps execs whose claude.origin is listed."""
    tool = exec_line_record(4100, [b"bash"], SESSION | TOOL_INV)
    internal = exec_line_record(
        4200, [b"env"], SESSION | {"invocation": "I", "invocation_pid": 4200, "origin": "internal"}
    )
    assert matches(tool, None, {"tool"})
    assert not matches(internal, None, {"tool"})
    assert matches(internal, None, {"tool", "internal"})
    assert matches(internal, None, set())


def test_lifecycle_records_and_filters() -> None:
    """Lifecycle records pass --origin; they pass --session unless they carry another session's claude.*."""
    lost = roundtrip(events_lost(T0, HOST, 3, count=1, where="queue", since_ns=None))
    stop = roundtrip(daemon_stopped(T0, HOST, 5, records_written=1, events_lost=0, reason="x"))
    ours = roundtrip(session_ended(T0, HOST, 2, claude=SESSION, exit_code=0))
    other = roundtrip(session_ended(T0, HOST, 2, claude={"pid": 5000, "session_entity_id": "F"}, exit_code=0))
    for rec in (lost, stop, ours):
        assert matches(rec, "3f2a", {"tool"})
    assert not matches(other, "3f2a", None)
    assert matches(other, "5000", {"internal"})


def test_exec_without_claude_fails_filters() -> None:
    """An exec record with no claude object cannot be attributed, so a filter leaves it out."""
    rec = {"event": {"action": "exec"}, "process": {"pid": 1}}
    assert matches(rec, None, None)
    assert not matches(rec, "1", None)
    assert not matches(rec, None, {"unknown"})


def test_heartbeat_and_reload_lines() -> None:
    """A heartbeat shows sessions and kernel state (red when degraded); a reload lists the changed keys."""
    from claude_audit import records

    def beat(state: str) -> dict[str, Any]:
        return records.heartbeat(
            T0, HOST, 1, version="1", pid=1, started_ns=T0, interval_seconds=300.0, config_digest="d",
            config_path=None, counters={}, losses={}, sessions_watched=2, kernel={"state": state},
        )  # fmt: skip

    assert format_record(roundtrip(beat("attached")), color=False) == (
        "[02:11:10] HEARTBEAT 2 sessions, kernel attached"
    )
    assert "\x1b[1;31mHEARTBEAT" in format_record(roundtrip(beat("degraded")), color=True)
    reloaded = records.config_reloaded(
        T0, HOST, 2, config_path="/c", digest="d2", previous_digest="d1", changed=["a.b"], needs_restart=[]
    )
    assert format_record(roundtrip(reloaded), color=False) == "[02:11:10] CONFIG RELOADED (a.b)"
