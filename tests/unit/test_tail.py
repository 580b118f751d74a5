"""tail: the human view of the audit log (formatting, neutralisation, filters, following, the command)."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_audit import cli, tail
from claude_audit.config import load_config
from claude_audit.events import ExecEvent
from claude_audit.records import (
    HostInfo,
    config_rejected,
    daemon_started,
    daemon_stopped,
    events_lost,
    exec_record,
    session_ended,
    session_found,
)
from claude_audit.rotate import RotatingFile
from claude_audit.tail import follow, format_record, matches, render_line, tail_main
from claude_audit.textenc import dumps_line

HOST = HostInfo(hostname="box", boot_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
T0 = 1_795_572_670_123_456_789  # 2026-11-25T02:11:10.123456789Z
SID = "3f2a9c1e-aaaa-bbbb-cccc-000000000000"
SESSION = {"pid": 4000, "session_entity_id": "ENTITY-OF-ROOT-4000xx", "session_id": SID, "version": "2.1.3"}
TOOL_INV = {"invocation": "INV-4100", "invocation_pid": 4100, "origin": "tool", "command": "make test"}
SGR = re.compile("\x1b\\[[0-9;]*m")


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Show times in UTC (tail prints local time), restoring the real zone afterwards."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def _exec(pid: int, argv: list[bytes], claude: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """An exec record as the daemon writes it, read back from its JSON line."""
    base: dict[str, Any] = {
        "wall_time_ns": T0,
        "pid": pid,
        "tid": pid,
        "ppid": 4000,
        "uid": 1000,
        "gid": 1000,
        "session_root": 4000,
        "root_start_ticks": 100,
        "invocation": claude.get("invocation_pid", 0),
        "invocation_start_ticks": 200,
        "start_ticks": 300,
        "cgroup_id": 1,
        "comm": argv[0][-15:] if argv else b"?",
        "filename": b"/usr/bin/" + (argv[0] if argv else b"x"),
        "argv": argv,
        "args_truncated": False,
        "args_original_len": sum(len(a) + 1 for a in argv),
    }
    base.update(kw)
    rec = exec_record(ExecEvent(**base), HOST, claude, 7)
    parsed: dict[str, Any] = json.loads(dumps_line(rec))
    return parsed


def _roundtrip(rec: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(dumps_line(rec))
    return parsed


# -- formatting ---------------------------------------------------------------------------------------


def test_tool_wrapper_exec_shows_the_agent_command() -> None:
    """The invocation's own exec (the bash -c wrapper) is shown as the command the agent asked for."""
    rec = _exec(
        4100, [b"bash", b"-c", b"source snap && eval 'make test' && pwd -P >| /tmp/x"], SESSION | TOOL_INV
    )
    assert format_record(rec, color=False) == "[02:11:10] 3f2a9c1e TOOL        4100 | make test"


def test_descendant_exec_is_marked_with_its_cause() -> None:
    """A program below a tool call shows its own argv, marked as caused by the agent's command."""
    rec = _exec(4130, [b"make", b"-j2", b"all"], SESSION | TOOL_INV, ppid=4100)
    assert format_record(rec, color=False) == (
        "[02:11:10] 3f2a9c1e TOOL        4130 |   ↳ make -j2 all   (from: make test)"
    )


def test_descendant_argv_is_shell_quoted() -> None:
    """Arguments with spaces or quotes are shown as a shell would need them (shlex.join)."""
    rec = _exec(4131, [b"git", b"commit", b"-m", b"it's done"], SESSION | TOOL_INV)
    assert format_record(rec, color=False) == (
        "[02:11:10] 3f2a9c1e TOOL        4131 |   ↳ git commit -m 'it'\"'\"'s done'   (from: make test)"
    )


def test_long_cause_is_clipped() -> None:
    """A long agent command is repeated after descendants only in part; the wrapper line has it whole."""
    long_cmd = "python -c " + "x" * 200
    claude = SESSION | TOOL_INV | {"command": long_cmd}
    child = format_record(_exec(4130, [b"python"], claude), color=False)
    wrapper = format_record(_exec(4100, [b"bash", b"-c", b"..."], claude), color=False)
    assert child is not None and wrapper is not None
    assert child.endswith("(from: python -c " + "x" * 49 + "…)")
    assert wrapper.endswith("| " + long_cmd)


def test_invocation_without_command_uses_argv() -> None:
    """Internal and unknown invocations have no extracted command: argv, and descendants cite the pid."""
    internal = SESSION | {"invocation": "INV-4200", "invocation_pid": 4200, "origin": "internal"}
    own = _exec(4200, [b"/bin/zsh", b"-c", b"-l", b"SNAPSHOT_FILE=/x"], internal)
    child = _exec(4201, [b"uname", b"-a"], internal)
    assert format_record(own, color=False) == (
        "[02:11:10] 3f2a9c1e INTERNAL    4200 | /bin/zsh -c -l SNAPSHOT_FILE=/x"
    )
    assert format_record(child, color=False) == (
        "[02:11:10] 3f2a9c1e INTERNAL    4201 |   ↳ uname -a   (from: pid 4200)"
    )


def test_unknown_origin_and_pid_label() -> None:
    """Without a session id the session is labelled by its root pid; origin unknown is shown as such."""
    claude = {"pid": 4000, "session_entity_id": "E", "invocation": "I", "invocation_pid": 4300}
    rec = _exec(4300, [b"/bin/sh", b"-c", b"~/.claude/hook.sh"], claude | {"origin": "unknown"})
    assert format_record(rec, color=False) == (
        "[02:11:10] pid:4000 UNKNOWN     4300 | /bin/sh -c '~/.claude/hook.sh'"
    )


def test_session_root_exec_and_seeded_process() -> None:
    """Execs with no invocation (the root itself, a process seeded from /proc) show argv, not indented."""
    root = _exec(4000, [b"claude", b"--resume"], SESSION | {"origin": "session"})
    seeded = _exec(4500, [b"sleep", b"60"], SESSION | {"origin": "unknown"})
    assert format_record(root, color=False) == "[02:11:10] 3f2a9c1e SESSION     4000 | claude --resume"
    assert format_record(seeded, color=False) == "[02:11:10] 3f2a9c1e UNKNOWN     4500 | sleep 60"


def test_flags_are_shown() -> None:
    """claude_audit.flags (truncation, invalid UTF-8) follow the line in brackets."""
    rec = _exec(4130, [b"cat", b"caf\xe9"], SESSION | TOOL_INV, args_truncated=True)
    assert format_record(rec, color=False) == (
        "[02:11:10] 3f2a9c1e TOOL        4130 |   ↳ cat 'caf\ufffd'   (from: make test)"
        "  [args_truncated,invalid_utf8]"
    )


def test_local_time_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """@timestamp (UTC) is shown in the local zone; offsets in the timestamp are honoured."""
    monkeypatch.setenv("TZ", "XYZ-02")  # POSIX spelling of UTC+2, no tz database needed
    time.tzset()
    assert tail.clock("2026-11-25T02:11:10.123456789Z") == "04:11:10"
    assert tail.clock("2026-11-25T02:11:10+01:30") == "02:41:10"
    rec = _exec(4100, [b"bash"], SESSION | TOOL_INV)
    assert (format_record(rec, color=False) or "").startswith("[04:11:10] ")


@pytest.mark.parametrize("ts", [None, 17, "", "yesterday", "2026-13-45T99:00:00Z", "2026-11-25T02:11:10"])
def test_bad_timestamp(ts: object) -> None:
    """A missing or malformed @timestamp gives ??:??:?? rather than an error."""
    assert tail.clock(ts) == "??:??:??"


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
        format_record(_roundtrip(r), color=False)
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
    tool = _exec(4100, [b"bash"], SESSION | TOOL_INV)
    internal = _exec(
        4200, [b"env"], SESSION | {"invocation": "I", "invocation_pid": 4200, "origin": "internal"}
    )
    unknown = _exec(4300, [b"sh"], SESSION | {"invocation": "I", "invocation_pid": 4300, "origin": "unknown"})
    lost = _roundtrip(events_lost(T0, HOST, 3, count=1, where="queue", since_ns=None))
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
    own = format_record(_exec(4100, [b"bash", b"-c", b"x"], claude), color=True) or ""
    child = format_record(_exec(4101, [b"printf", b"\x1b[2J\x9b"], claude), color=True) or ""
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
    rec = _exec(4100, [b"bash"], SESSION | TOOL_INV)
    for good in ("3f2a9c1e", "3f", SID, "4000", "ENTITY-OF-ROOT-4000xx", None, ""):
        assert matches(rec, good, None), good
    for bad in ("3f2b", "400", "40000", "ENTITY", "pid:4000"):
        assert not matches(rec, bad, None), bad
    no_sid = _exec(4100, [b"bash"], {"pid": 4000, "session_entity_id": "E"} | TOOL_INV)
    assert matches(no_sid, "4000", None)
    assert not matches(no_sid, "3f", None)


def test_origin_filter() -> None:
    """--origin keeps execs whose claude.origin is listed."""
    tool = _exec(4100, [b"bash"], SESSION | TOOL_INV)
    internal = _exec(
        4200, [b"env"], SESSION | {"invocation": "I", "invocation_pid": 4200, "origin": "internal"}
    )
    assert matches(tool, None, {"tool"})
    assert not matches(internal, None, {"tool"})
    assert matches(internal, None, {"tool", "internal"})
    assert matches(internal, None, set())


def test_lifecycle_records_and_filters() -> None:
    """Lifecycle records pass --origin; they pass --session unless they carry another session's claude.*."""
    lost = _roundtrip(events_lost(T0, HOST, 3, count=1, where="queue", since_ns=None))
    stop = _roundtrip(daemon_stopped(T0, HOST, 5, records_written=1, events_lost=0, reason="x"))
    ours = _roundtrip(session_ended(T0, HOST, 2, claude=SESSION, exit_code=0))
    other = _roundtrip(
        session_ended(T0, HOST, 2, claude={"pid": 5000, "session_entity_id": "F"}, exit_code=0)
    )
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


# -- following ----------------------------------------------------------------------------------------


class Script:
    """A stop callback for `follow`: each time follow is idle it runs the next step; then it says stop.

    `step` counts the steps run, so a test can see when each line came out.
    """

    def __init__(self, *steps: Callable[[], object]) -> None:
        self.steps = list(steps)
        self.step = 0

    def __call__(self) -> bool:
        if self.step >= len(self.steps):
            return True
        self.steps[self.step]()
        self.step += 1
        return False


def _collect(
    path: Path, script: Script, *, from_start: bool = True, rotated: bool = False
) -> list[tuple[int, bytes]]:
    """Every line `follow` yields, with the number of scripted steps run before it came out."""
    return [
        (script.step, line)
        for line in follow(path, from_start=from_start, include_rotated=rotated, stop=script, poll_interval=0)
    ]


def _append(path: Path, data: bytes) -> Callable[[], None]:
    def step() -> None:
        with path.open("ab") as f:
            f.write(data)

    return step


def _rotate_like_rotate_py(path: Path) -> None:
    """rotate.py's steps: shift backups, hard-link the file to .1, rename a new empty file over the path."""
    for n in range(4, 0, -1):
        src = path.with_name(f"{path.name}.{n}")
        if src.exists():
            os.rename(src, path.with_name(f"{path.name}.{n + 1}"))
    os.link(path, path.with_name(path.name + ".1"))
    tmp = path.with_name(path.name + ".tmp-1234")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.close(fd)
    os.rename(tmp, path)


def test_follow_starts_at_the_end(tmp_path: Path) -> None:
    """Without from_start only lines written after the start are yielded, like tail -f."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"old 1\nold 2\n")
    got = _collect(log, Script(_append(log, b"new 1\n"), _append(log, b"new 2\nnew 3\n")), from_start=False)
    assert got == [(1, b"new 1"), (2, b"new 2"), (2, b"new 3")]


def test_follow_from_the_end_skips_a_partial_line(tmp_path: Path) -> None:
    """Started while the file ends mid-line, follow does not yield the tail of that line as a line."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b'old 1\n{"half":')
    got = _collect(log, Script(_append(log, b'"line"}\nnew\n')), from_start=False)
    assert got == [(1, b"new")]


def test_follow_from_start_and_stop(tmp_path: Path) -> None:
    """from_start yields what is there; a stop callback that says True ends at the end of the file."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"a\nb\n\nc\n")
    assert _collect(log, Script()) == [(0, b"a"), (0, b"b"), (0, b""), (0, b"c")]


def test_partial_lines_are_held_until_complete(tmp_path: Path) -> None:
    """A line written in pieces comes out once, whole, after its newline; a final fragment is not yielded."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"")
    script = Script(
        _append(log, b'{"a":'),
        _append(log, b"1"),
        _append(log, b'}\n{"b":2}\n{"c"'),
        _append(log, b':3}\n{"d"'),
    )
    assert _collect(log, script) == [(3, b'{"a":1}'), (3, b'{"b":2}'), (4, b'{"c":3}')]


def test_follow_across_rotate_py_rotation(tmp_path: Path) -> None:
    """Lines written before and after rotations done by RotatingFile itself all come out once, in order."""
    log = tmp_path / "audit.jsonl"
    rf = RotatingFile(log, max_bytes=16, backups=2)

    def write(*names: str) -> Callable[[], None]:
        def step() -> None:
            rf.write_lines([f"{n:<7}\n".encode() for n in names])
            rf.flush()

        return step

    write("l0", "l1")()
    script = Script(write("l2"), write("l3", "l4"), write("l5"), write("l6", "l7"))
    got = _collect(log, script)
    rf.close()
    assert [line.decode().strip() for _, line in got] == [f"l{i}" for i in range(8)]
    assert log.with_name("audit.jsonl.2").exists()  # it really did rotate more than once


def test_rotation_racing_the_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line added to the old file just before a rotation that follow notices at once is still read.

    The writer appends "late" and rotates while follow is looking at the path; follow must read the old
    file to its end before it switches to the new one.
    """
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"first\n")
    real = tail._identity
    pending: list[Callable[[], None]] = []

    def racing_identity(path: Path) -> tuple[int, int] | None:
        while pending:
            pending.pop(0)()
        return real(path)

    monkeypatch.setattr(tail, "_identity", racing_identity)

    def race() -> None:
        pending.extend(
            [_append(log, b"late\n"), lambda: _rotate_like_rotate_py(log), _append(log, b"next\n")]
        )

    got = _collect(log, Script(race))
    assert [line for _, line in got] == [b"first", b"late", b"next"]


def test_rotation_between_link_and_rename_is_not_duplicated(tmp_path: Path) -> None:
    """While path and path.1 are one file (rotate.py mid-rotation), --all does not read it twice."""
    log = tmp_path / "audit.jsonl"
    log.with_name("audit.jsonl.1").write_bytes(b"r1\n")
    os.rename(log.with_name("audit.jsonl.1"), log.with_name("audit.jsonl.2"))
    log.write_bytes(b"c1\nc2\n")
    os.link(log, log.with_name("audit.jsonl.1"))
    got = _collect(log, Script(), rotated=True)
    assert [line for _, line in got] == [b"r1", b"c1", b"c2"]


def test_broken_last_line_of_a_rotated_file(tmp_path: Path) -> None:
    """A fragment left at the end of a file that is rotated away is yielded as it is, not glued on."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"a\n")
    script = Script(_append(log, b"brok"), lambda: _rotate_like_rotate_py(log), _append(log, b"b\n"))
    assert [line for _, line in _collect(log, script)] == [b"a", b"brok", b"b"]


def test_copytruncate(tmp_path: Path) -> None:
    """A file truncated in place (logrotate copytruncate) is read again from its start."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"line one\nline two\n")

    def copytruncate() -> None:
        shutil.copyfile(log, log.with_name("audit.jsonl.1"))
        with log.open("r+b") as f:
            f.truncate(0)

    script = Script(_append(log, b"line three\n"), copytruncate, _append(log, b"new\n"))
    got = _collect(log, script)
    assert got == [(0, b"line one"), (0, b"line two"), (1, b"line three"), (3, b"new")]


def test_path_missing_for_a_while(tmp_path: Path) -> None:
    """If the path disappears (rename-style rotation without create), follow keeps waiting for it."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"a\n")
    script = Script(
        lambda: os.rename(log, log.with_name("audit.jsonl.1")),
        lambda: None,
        lambda: log.write_bytes(b"b\n"),
    )
    assert [line for _, line in _collect(log, script)] == [b"a", b"b"]


def test_all_reads_rotated_files_oldest_first(tmp_path: Path) -> None:
    """include_rotated yields path.N ... path.1 then path, oldest first, then follows path."""
    log = tmp_path / "audit.jsonl"
    with RotatingFile(log, max_bytes=14, backups=3) as rf:  # two 7-byte lines a file
        for i in range(9):
            rf.write_lines([f"line {i}\n".encode()])
            rf.flush()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3"]
    got = _collect(log, Script(_append(log, b"line 9\n")), from_start=False, rotated=True)
    assert [line for _, line in got] == [f"line {i}".encode() for i in range(2, 10)]


def test_all_skips_gaps_in_backup_numbers(tmp_path: Path) -> None:
    """A missing path.1 (caught mid-rotation) does not hide path.2 and older."""
    log = tmp_path / "audit.jsonl"
    log.with_name("audit.jsonl.3").write_bytes(b"oldest\n")
    log.with_name("audit.jsonl.2").write_bytes(b"older\n")
    log.with_name("audit.jsonl.10").write_bytes(b"ancient\n")
    log.with_name("audit.jsonl.tmp-1234").write_bytes(b"not ours\n")
    log.write_bytes(b"current\n")
    got = _collect(log, Script(), rotated=True)
    assert [line for _, line in got] == [b"ancient", b"oldest", b"older", b"current"]


def test_overlong_line_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line longer than MAX_LINE_BYTES is yielded as it is, and its rest up to the newline is dropped."""
    monkeypatch.setattr(tail, "MAX_LINE_BYTES", 10)
    monkeypatch.setattr(tail, "_READ_CHUNK", 16)
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"ok\n" + b"x" * 100 + b"\nafter\n")
    got = [line for _, line in _collect(log, Script())]
    assert got[0] == b"ok"
    assert got[1].startswith(b"x") and len(got[1]) > 10
    assert got[2:] == [b"after"]


def test_missing_file_raises(tmp_path: Path) -> None:
    """follow reports a missing log at the start rather than waiting silently."""
    with pytest.raises(FileNotFoundError):
        next(follow(tmp_path / "nope.jsonl", True, False, lambda: True, 0))


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=4), min_size=1, max_size=12),
    max_bytes=st.integers(20, 60),
)
def test_every_line_once_across_random_rotations(batches: list[list[int]], max_bytes: int) -> None:
    """With RotatingFile rotating at random points between looks, follow yields each line once, in order.

    A batch can rotate the file up to four times before follow looks again (lines of at most 17 bytes,
    max_bytes at least 20); with five backups the files rotated in between are read from path.k ... path.1.
    """
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "audit.jsonl"
        rf = RotatingFile(log, max_bytes=max_bytes, backups=5)
        expected: list[bytes] = []
        steps = []
        for batch in batches:
            lines = []
            for width in batch:
                text = f"{len(expected):04d}" + "." * width
                expected.append(text.encode())
                lines.append(text.encode() + b"\n")
            steps.append(lambda lines=lines: (rf.write_lines(lines), rf.flush()))
        got = [line for _, line in _collect(log, Script(*steps))]
        rf.close()
        assert got == expected


def test_several_rotations_between_looks(tmp_path: Path) -> None:
    """Two rotations before follow looks again: the file in between (now path.1) is read, in order."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"a\n")

    def two_rotations() -> None:
        _append(log, b"b\n")()
        _rotate_like_rotate_py(log)
        _append(log, b"c\n")()
        _rotate_like_rotate_py(log)
        _append(log, b"d\n")()

    assert [line for _, line in _collect(log, Script(two_rotations))] == [b"a", b"b", b"c", b"d"]


# -- the command --------------------------------------------------------------------------------------


def _args(path: Path | None, **kw: Any) -> argparse.Namespace:
    base: dict[str, Any] = {
        "file": path,
        "session": None,
        "origin": None,
        "no_follow": True,
        "all": False,
        "color": "never",
        "config": None,
    }
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """An audit log with a session, a tool call with a descendant, an internal command and a bad line."""
    internal = SESSION | {"invocation": "I", "invocation_pid": 4200, "origin": "internal"}
    recs = [
        session_found(T0, HOST, 1, claude=SESSION, how="startup", process_info={"pid": 4000}),
        _exec(4100, [b"bash", b"-c", b"..."], SESSION | TOOL_INV),
        _exec(4101, [b"make", b"-j2"], SESSION | TOOL_INV),
        _exec(4200, [b"env"], internal),
        _exec(
            5100, [b"ls"], {"pid": 5000, "session_entity_id": "F", "origin": "tool", "invocation_pid": 5100}
        ),
    ]
    p = tmp_path / "audit.jsonl"
    p.write_bytes(
        b"".join(dumps_line(r) for r in recs[:3])
        + b"{broken\n\xff\xfe\n[1,2]\n"
        + b"".join(dumps_line(r) for r in recs[3:])
    )
    return p


def test_tail_main_no_follow(log: Path) -> None:
    """--no-follow prints the whole current file, one line per record, bad lines marked, and returns 0."""
    out = io.StringIO()
    assert tail_main(_args(log), load_config(None), out=out) == 0
    assert out.getvalue().splitlines() == [
        "[02:11:10] 3f2a9c1e SESSION FOUND pid 4000 v2.1.3 (startup)",
        "[02:11:10] 3f2a9c1e TOOL        4100 | make test",
        "[02:11:10] 3f2a9c1e TOOL        4101 |   ↳ make -j2   (from: make test)",
        "[unparseable line]",
        "[unparseable line]",
        "[unparseable line]",
        "[02:11:10] 3f2a9c1e INTERNAL    4200 | env",
        "[02:11:10] pid:5000 TOOL        5100 | ls",
    ]


def test_tail_main_filters(log: Path) -> None:
    """--session and --origin (repeatable, comma-separated, any case) select records; bad lines still show."""
    out = io.StringIO()
    assert tail_main(_args(log, session="3f2a", origin=["TOOL"]), load_config(None), out=out) == 0
    lines = out.getvalue().splitlines()
    assert [line for line in lines if "|" in line] == [
        "[02:11:10] 3f2a9c1e TOOL        4100 | make test",
        "[02:11:10] 3f2a9c1e TOOL        4101 |   ↳ make -j2   (from: make test)",
    ]
    assert lines.count("[unparseable line]") == 3
    assert "SESSION FOUND" in lines[0]
    out = io.StringIO()
    tail_main(_args(log, origin=["tool,internal"]), load_config(None), out=out)
    assert sum("|" in line for line in out.getvalue().splitlines()) == 4


def test_tail_main_uses_config_path(log: Path) -> None:
    """Without --file the config's audit_log.path is read."""
    config = load_config(None)
    config = config.model_copy(update={"audit_log": config.audit_log.model_copy(update={"path": log})})
    out = io.StringIO()
    assert tail_main(_args(None), config, out=out) == 0
    assert "make test" in out.getvalue()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_tail_main_colour_choice(log: Path) -> None:
    """--color auto colours a terminal only; always and never force it."""
    for choice, stream, coloured in [
        ("auto", io.StringIO(), False),
        ("auto", _Tty(), True),
        ("always", io.StringIO(), True),
        ("never", _Tty(), False),
    ]:
        tail_main(_args(log, color=choice), load_config(None), out=stream)
        assert ("\x1b[" in stream.getvalue()) is coloured, choice


def test_tail_main_permission_denied(
    log: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreadable log gives a clear hint and exit status 77."""

    def denied(path: Path) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(tail, "_open", denied)
    assert tail_main(_args(log), load_config(None), out=io.StringIO()) == 77
    err = capsys.readouterr().err
    assert "run as root or as a member of the log's group" in err
    assert str(log) in err


def test_tail_main_missing_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log that does not exist is reported (exit 66), not waited for."""
    assert tail_main(_args(tmp_path / "none.jsonl"), load_config(None), out=io.StringIO()) == 66
    assert "no audit log" in capsys.readouterr().err


def test_tail_main_interrupt(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """^C while following ends quietly with status 0; the lines before it were printed."""

    def interrupted(*_a: Any, **_k: Any) -> Iterator[bytes]:
        yield log.read_bytes().splitlines()[1]
        raise KeyboardInterrupt

    monkeypatch.setattr(tail, "follow", interrupted)
    out = io.StringIO()
    assert tail_main(_args(log, no_follow=False), load_config(None), out=out) == 0
    assert out.getvalue() == "[02:11:10] 3f2a9c1e TOOL        4100 | make test\n"


def test_tail_main_follows(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --no-follow, tail starts at the end and prints what is appended (here, until ^C)."""
    real = tail.follow
    appended = dumps_line(_exec(4102, [b"cc", b"-c", b"x.c"], SESSION | TOOL_INV))
    calls = {"n": 0}

    def scripted(
        path: Path, from_start: bool, include_rotated: bool, stop: Callable[[], bool]
    ) -> Iterator[bytes]:
        assert (from_start, include_rotated) == (False, False)

        def step() -> bool:
            calls["n"] += 1
            if calls["n"] == 1:
                _append(path, appended)()
                return stop()
            raise KeyboardInterrupt

        return real(path, from_start, include_rotated, step, poll_interval=0)

    monkeypatch.setattr(tail, "follow", scripted)
    out = io.StringIO()
    assert tail_main(_args(log, no_follow=False), load_config(None), out=out) == 0
    assert out.getvalue() == "[02:11:10] 3f2a9c1e TOOL        4102 |   ↳ cc -c x.c   (from: make test)\n"


def test_render_line_on_ascii_terminal(log: Path) -> None:
    """A terminal that cannot show a character gets its backslash spelling, not an exception."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    tail_main(_args(log), load_config(None), out=stream)
    stream.flush()
    assert b"\\u21b3 make -j2" in raw.getvalue()
    assert render_line(b"\xff", None, None, False) == "[unparseable line]"


def test_cli_tail(log: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`claude-audit tail --file F --no-follow` runs tail_main through the real argument parser."""
    monkeypatch.setattr(cli, "DEFAULT_CONFIG_PATH", log.with_name("no-such-config.toml"))
    assert (
        cli.main(["tail", "--file", str(log), "--no-follow", "--color", "never", "--origin", "internal"]) == 0
    )
    assert "[02:11:10] 3f2a9c1e INTERNAL    4200 | env" in capsys.readouterr().out
