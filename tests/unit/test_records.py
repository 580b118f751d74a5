"""records: ECS exec and lifecycle records, invalid-UTF-8 recovery, timestamps, entity ids."""

from __future__ import annotations

import base64
import dataclasses
import json
import shlex
from datetime import UTC, datetime
from typing import Any

import pytest
from builders import HOST, T0, exec_event
from hypothesis import given
from hypothesis import strategies as st

from claude_audit import records
from claude_audit.events import Denial, TrackFlag
from claude_audit.records import (
    command_line,
    config_rejected,
    daemon_started,
    daemon_stopped,
    entity_id,
    events_lost,
    exec_record,
    rfc3339_ns,
    session_ended,
    session_found,
)
from claude_audit.textenc import dumps_line

CLAUDE = {"pid": 4000, "session_id": "02b6cf79-aaaa-bbbb-cccc-000000000000"}


def _decode_raw(rec: dict[str, Any], *path: str) -> Any:
    cur: Any = rec["raw"]
    for p in path:
        cur = cur[p]
    if isinstance(cur, list):
        return [base64.b64decode(x, validate=True) for x in cur]
    return base64.b64decode(cur, validate=True)


def test_rfc3339_ns_golden() -> None:
    """Nanoseconds are kept in full, zero-padded, in UTC with a Z."""
    assert rfc3339_ns(0) == "1970-01-01T00:00:00.000000000Z"
    assert rfc3339_ns(1_795_572_670_000_000_001) == "2026-11-25T02:11:10.000000001Z"
    assert rfc3339_ns(T0) == "2026-11-25T02:11:10.123456789Z"


@given(st.integers(min_value=0, max_value=253_402_300_799_999_999_999))
def test_rfc3339_ns_matches_datetime(ns: int) -> None:
    """Seconds agree with datetime's UTC conversion and the fraction is the exact ns remainder."""
    text = rfc3339_ns(ns)
    sec, frac = divmod(ns, 1_000_000_000)
    assert text.endswith("Z")
    assert text[-11] == "."
    assert int(text[-10:-1]) == frac
    parsed = datetime.strptime(text[:-11], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    assert int(parsed.timestamp()) == sec


def test_entity_id_is_stable_and_distinct() -> None:
    """Same inputs give the same id (golden); a different pid, start or boot gives another."""
    eid = entity_id("boot", 1, 2)
    assert eid == entity_id("boot", 1, 2)
    assert len(eid) == 20
    assert eid == "6mLcJoXYfxLZvloENbqD"
    assert len({eid, entity_id("boot", 2, 1), entity_id("boot", 1, 3), entity_id("boot2", 1, 2)}) == 4


def test_exec_record_golden() -> None:
    """A plain exec maps to the documented ECS structure, field by field."""
    rec = exec_record(exec_event(), HOST, CLAUDE, 7)
    assert rec == {
        "@timestamp": "2026-11-25T02:11:10.123456789Z",
        "ecs": {"version": "8.11.0"},
        "event": {
            "kind": "event",
            "category": ["process"],
            "type": ["start"],
            "action": "exec",
            "dataset": "claude_audit.exec",
            "module": "claude_audit",
            "sequence": 7,
        },
        "host": {"hostname": "box", "boot": {"id": HOST.boot_id}},
        "process": {
            "pid": 4242,
            "thread": {"id": 4242},
            "entity_id": entity_id(HOST.boot_id, 4242, 1_054_600),
            "parent": {"pid": 4100},
            "executable": "/usr/bin/git",
            "name": "git",
            "args": ["git", "commit", "-m", "fix it"],
            "args_count": 4,
            "command_line": "git commit -m 'fix it'",
            "user": {"id": "1000"},
            "group": {"id": "1001"},
            "real_user": {"id": "1000"},
            "real_group": {"id": "1001"},
            "saved_user": {"id": "1000"},
            "saved_group": {"id": "1001"},
        },
        "user": {"id": "1000"},
        "group": {"id": "1001"},
        "claude": CLAUDE,
        "claude_audit": {
            "flags": [],
            "args_original_bytes": 21,
            "cgroup_id": 77,
            "comm": "bash",
            "session_entity_id": entity_id(HOST.boot_id, 4000, 1_054_469),
            "invocation": {"pid": 4100, "entity_id": entity_id(HOST.boot_id, 4100, 1_054_500)},
        },
    }
    assert next(iter(rec)) == "@timestamp"


def test_exec_record_optional_host_fields() -> None:
    """machine_id becomes host.id; boot time makes process.start computable (ticks are 10 ms)."""
    host = dataclasses.replace(HOST, machine_id="m" * 32, boot_time_ns=1_795_000_000_000_000_000)
    rec = exec_record(exec_event(start_ticks=123), host, CLAUDE, 1)
    assert rec["host"]["id"] == "m" * 32
    assert rec["process"]["start"] == rfc3339_ns(1_795_000_000_000_000_000 + 1_230_000_000)


def test_exec_record_of_the_root_has_no_invocation() -> None:
    """invocation 0 means the root itself execs: no invocation object."""
    rec = exec_record(exec_event(invocation=0, invocation_start_ticks=0), HOST, CLAUDE, 1)
    assert "invocation" not in rec["claude_audit"]


def test_flags_are_sorted_and_complete() -> None:
    """Kernel data flags, truncation, pending root and invalid UTF-8 all appear once, sorted."""
    ev = exec_event(
        data_flags=frozenset({"zz_kernel", "args_truncated"}),
        args_truncated=True,
        filename_truncated=True,
        track_flags=TrackFlag.PENDING_ROOT,
        comm=b"\xff",
    )
    assert exec_record(ev, HOST, CLAUDE, 1)["claude_audit"]["flags"] == [
        "args_truncated",
        "filename_truncated",
        "invalid_utf8",
        "pending_root",
        "zz_kernel",
    ]


def test_valid_text_has_no_raw() -> None:
    """Valid UTF-8 (even with controls) gives no raw object and no flag."""
    rec = exec_record(exec_event(argv=[b"printf", b"\x1b[31m\xc3\xa9"]), HOST, CLAUDE, 1)
    assert "raw" not in rec
    assert rec["process"]["args"][1] == "\x1b[31m\u00e9"
    assert rec["claude_audit"]["flags"] == []


def test_invalid_executable_and_comm_are_kept_raw() -> None:
    """Executable and comm: readable text, flag, exact bytes in raw; args valid so no raw args."""
    rec = exec_record(exec_event(filename=b"/tmp/\xffx", comm=b"c\xfe"), HOST, CLAUDE, 1)
    assert rec["process"]["executable"] == "/tmp/\ufffdx"
    assert rec["process"]["name"] == "\ufffdx"
    assert rec["claude_audit"]["comm"] == "c\ufffd"
    assert _decode_raw(rec, "process", "executable") == b"/tmp/\xffx"
    assert _decode_raw(rec, "claude_audit", "comm") == b"c\xfe"
    assert "args" not in rec["raw"]["process"]
    assert "invalid_utf8" in rec["claude_audit"]["flags"]


@given(st.lists(st.binary(max_size=40), max_size=12))
def test_invalid_args_are_recoverable_byte_exactly(argv: list[bytes]) -> None:
    """Any argv: raw args exist iff some arg is invalid, and then hold every arg's exact bytes."""
    rec = exec_record(exec_event(argv=argv), HOST, CLAUDE, 1)
    invalid = any(not _valid(a) for a in argv)
    assert ("invalid_utf8" in rec["claude_audit"]["flags"]) == invalid
    if invalid:
        assert _decode_raw(rec, "process", "args") == argv
    else:
        assert "raw" not in rec
        assert [a.encode() for a in rec["process"]["args"]] == argv
    assert rec["process"]["args_count"] == len(argv)
    assert shlex.split(rec["process"]["command_line"]) == rec["process"]["args"]
    # And the whole record survives the line encoder.
    assert json.loads(dumps_line(rec)) == rec


def _valid(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_command_line_quotes_only_what_needs_it() -> None:
    """Plain words stay bare; whitespace, quotes, backslashes, metacharacters and '' are quoted."""
    assert command_line(["ls", "-la", "/tmp/x"]) == "ls -la /tmp/x"
    assert command_line(["echo", "a b", "it's", "a\\b", "", "x;y"]) == (
        "echo 'a b' 'it'\"'\"'s' 'a\\b' '' 'x;y'"
    )


def test_claude_mapping_cannot_overwrite_kernel_facts() -> None:
    """The claude mapping lands in its own object; process and user stay the kernel's."""
    rec = exec_record(exec_event(), HOST, {"pid": 4000, "process": {"pid": 1}, "user": "x"}, 1)
    assert rec["process"]["pid"] == 4242
    assert rec["user"] == {"id": "1000"}
    assert rec["claude"] == {"pid": 4000, "process": {"pid": 1}, "user": "x"}


def test_claude_mapping_needs_pid() -> None:
    """A record without the session's pid would be unattributable: refused."""
    with pytest.raises(ValueError, match="pid"):
        exec_record(exec_event(), HOST, {"session_id": "x"}, 1)


def _check_envelope(rec: dict[str, Any], action: str, seq: int) -> None:
    assert rec["@timestamp"] == rfc3339_ns(T0)
    assert rec["ecs"] == {"version": "8.11.0"}
    assert rec["event"]["kind"] == "event"
    assert rec["event"]["action"] == action
    assert rec["event"]["dataset"] == "claude_audit.lifecycle"
    assert rec["event"]["module"] == "claude_audit"
    assert rec["event"]["sequence"] == seq
    assert rec["host"] == {"hostname": "box", "boot": {"id": HOST.boot_id}}
    json.loads(dumps_line(rec))


def test_daemon_started() -> None:
    """daemon-started carries version, pid, config, session count and probes."""
    rec = daemon_started(
        T0, HOST, 1, version="0.1.0", pid=99, config_path="/etc/c.toml", sessions=2, probes=["exec", "exit"]
    )
    _check_envelope(rec, "daemon-started", 1)
    assert rec["event"]["type"] == ["start"]
    assert rec["service"] == {"name": "claude-audit", "version": "0.1.0"}
    assert rec["claude_audit"] == {
        "daemon_pid": 99,
        "config_path": "/etc/c.toml",
        "sessions": 2,
        "probes": ["exec", "exit"],
    }


def test_daemon_started_states_the_kernel() -> None:
    """The kernel's release and how its differences were handled go to claude_audit.kernel."""
    kernel = {"release": "6.1.0-56-amd64", "exit_detection": "task->signal->live at sched_process_exit"}
    rec = daemon_started(
        T0, HOST, 1, version="0.1.0", pid=99, config_path=None, sessions=0, probes=[], kernel=kernel
    )
    assert rec["claude_audit"]["kernel"] == kernel


def test_daemon_started_without_config_file() -> None:
    """Running on defaults (no config file) leaves config_path out rather than writing null."""
    rec = daemon_started(T0, HOST, 1, version="0.1.0", pid=99, config_path=None, sessions=0, probes=[])
    assert "config_path" not in rec["claude_audit"]


def test_config_rejected() -> None:
    """config-rejected is a failed configuration change carrying the error text."""
    rec = config_rejected(T0, HOST, 5, error="c.toml: audit_log.max_bytes: Input should be greater than 0")
    _check_envelope(rec, "config-rejected", 5)
    assert rec["event"]["category"] == ["configuration"]
    assert rec["event"]["type"] == ["change"]
    assert rec["event"]["outcome"] == "failure"
    assert rec["claude_audit"] == {
        "error": "c.toml: audit_log.max_bytes: Input should be greater than 0",
        "when": "reload",
    }


def test_daemon_stopped() -> None:
    """daemon-stopped carries the run's totals and the reason."""
    rec = daemon_stopped(T0, HOST, 9, records_written=10, events_lost=3, reason="SIGTERM")
    _check_envelope(rec, "daemon-stopped", 9)
    assert rec["event"]["type"] == ["end"]
    assert rec["claude_audit"] == {"records_written": 10, "events_lost": 3, "reason": "SIGTERM"}


def test_session_found() -> None:
    """session-found carries how it was found, the root's process fields and the claude object."""
    info = {"pid": 4000, "executable": "/usr/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe"}
    rec = session_found(T0, HOST, 2, claude=CLAUDE, how="scan", process_info=info)
    _check_envelope(rec, "session-found", 2)
    assert rec["event"]["type"] == ["info"]
    assert rec["process"] == info
    assert rec["claude"] == CLAUDE
    assert rec["claude_audit"] == {"how": "scan"}
    with pytest.raises(ValueError, match="how must be one of"):
        session_found(T0, HOST, 2, claude=CLAUDE, how="guess", process_info=info)


def test_session_ended() -> None:
    """session-ended carries the root pid and exit code."""
    rec = session_ended(T0, HOST, 3, claude=CLAUDE, exit_code=256)
    _check_envelope(rec, "session-ended", 3)
    assert rec["event"]["type"] == ["end"]
    assert rec["process"] == {"pid": 4000, "exit_code": 256}
    assert rec["claude"] == CLAUDE


def test_events_lost() -> None:
    """events-lost carries count, place, start of the gap and (for the file) bytes."""
    rec = events_lost(T0, HOST, 4, count=5, where="file", since_ns=0, lost_bytes=500)
    _check_envelope(rec, "events-lost", 4)
    assert rec["event"]["type"] == ["info"]
    assert rec["claude_audit"] == {
        "lost": {"count": 5, "where": "file", "since": "1970-01-01T00:00:00.000000000Z", "bytes": 500}
    }
    rec = events_lost(T0, HOST, 4, count=5, where="kernel-ring", since_ns=None)
    assert rec["claude_audit"] == {"lost": {"count": 5, "where": "kernel-ring"}}
    with pytest.raises(ValueError, match="where must be one of"):
        events_lost(T0, HOST, 4, count=5, where="disk", since_ns=None)


def test_accepted_values_are_the_documented_ones() -> None:
    """session-found's `how` and events-lost's `where` accept exactly the documented kebab-case values."""
    assert {"scan", "kernel-trigger", "startup"} == records.SESSION_FOUND_HOW
    assert {
        "kernel-ring",
        "kernel-ring-decision",
        "kernel-tracking",
        "kernel-candidates",
        "journal",
        "queue",
        "decode",
        "file",
        "held-overflow",
        "held-at-stop",
        "crash",
    } == records.LOST_WHERE


def test_exec_record_carries_trace_context() -> None:
    """A trace context becomes ECS trace.id and span.id; without one neither field exists."""
    from builders import exec_event

    ev = exec_event()
    rec = records.exec_record(
        ev, HOST, {"pid": 1}, 1, trace=("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    )
    assert rec["trace"] == {"id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    assert rec["span"] == {"id": "00f067aa0ba902b7"}
    plain = records.exec_record(ev, HOST, {"pid": 1}, 1)
    assert "trace" not in plain and "span" not in plain


def test_denied_exec_is_an_alert_naming_the_rule() -> None:
    """A killed exec: action exec-denied, alert, outcome failure, rule id and reason, argv and claude kept."""
    denial = Denial("denied", 0, 2, rule_id="no-force-push", reason="needs a human")
    rec = exec_record(exec_event(denial=denial), HOST, CLAUDE, 7)
    assert rec["event"]["action"] == "exec-denied"
    assert rec["event"]["kind"] == "alert"
    assert rec["event"]["outcome"] == "failure"
    assert rec["event"]["type"] == ["start", "denied"]
    assert rec["event"]["reason"] == "needs a human"
    assert rec["rule"] == {
        "id": "no-force-push",
        "description": "needs a human",
        "ruleset": "claude-audit enforce",
    }
    assert rec["claude_audit"]["enforce"] == {"decision": "denied", "rule_generation": 0, "rule_index": 2}
    assert rec["claude"] == CLAUDE and rec["process"]["args"]


def test_would_deny_is_an_alert_that_ran() -> None:
    """Dry-run: action exec-would-deny, still an alert, outcome success (the program ran)."""
    rec = exec_record(exec_event(denial=Denial("would-deny", 1, 0, "r", "why")), HOST, CLAUDE, 7)
    assert (rec["event"]["action"], rec["event"]["kind"], rec["event"]["outcome"]) == (
        "exec-would-deny",
        "alert",
        "success",
    )
    assert exec_record(exec_event(), HOST, CLAUDE, 7)["event"]["action"] == "exec"


def test_heartbeat_record() -> None:
    """A heartbeat is a state event with version, config digest, counters, sessions and kernel state."""
    rec = records.heartbeat(
        T0 + 2_000_000_000,
        HOST,
        9,
        version="0.1.0",
        pid=77,
        started_ns=T0,
        interval_seconds=300.0,
        config_digest="sha256:00",
        config_path="/etc/claude-audit/config.toml",
        counters={"records_written": 9},
        losses={},
        sessions_watched=1,
        kernel={"state": "attached", "programs_attached": 4},
    )
    assert rec["event"]["action"] == "heartbeat" and rec["event"]["sequence"] == 9
    assert rec["event"]["kind"] == "state" and rec["event"]["dataset"] == "claude_audit.lifecycle"
    assert rec["service"] == {"name": "claude-audit", "version": "0.1.0"}
    a = rec["claude_audit"]
    assert a["uptime_seconds"] == 2.0 and a["interval_seconds"] == 300.0
    assert a["config"] == {"digest": "sha256:00", "path": "/etc/claude-audit/config.toml"}
    assert a["sessions_watched"] == 1 and a["kernel"]["state"] == "attached"


def test_config_reloaded_and_rejected_at_start() -> None:
    """config-reloaded lists changed keys; a start-up rejection is an alert, a reload's is not."""
    rec = records.config_reloaded(
        T0,
        HOST,
        3,
        config_path="/c.toml",
        digest="sha256:2",
        previous_digest="sha256:1",
        changed=["capture.argv_max_bytes"],
        needs_restart=["capture.argv_max_bytes"],
    )
    _check_envelope(rec, "config-reloaded", 3)
    assert rec["event"]["outcome"] == "success"
    assert rec["claude_audit"]["config"]["needs_restart"] == ["capture.argv_max_bytes"]
    start = config_rejected(T0, HOST, 1, error="bad", when="start", config_path="/c.toml")
    assert start["event"]["kind"] == "alert" and start["claude_audit"]["when"] == "start"
    assert config_rejected(T0, HOST, 1, error="bad")["event"]["kind"] == "event"
    with pytest.raises(ValueError, match="when"):
        config_rejected(T0, HOST, 1, error="bad", when="later")


def test_setuid_exec_records_effective_real_and_saved_ids() -> None:
    """A setuid-root program run by uid 1000: process.user is the effective root, real_user the caller,
    the exec is flagged privilege_changed, and the capabilities it gained are named."""
    ev = exec_event(euid=0, egid=1001, suid=0, sgid=1001, cap_effective=(1 << 0) | (1 << 21) | (1 << 45))
    rec = exec_record(ev, HOST, CLAUDE, 1)
    p = rec["process"]
    assert p["user"] == {"id": "0"} and p["real_user"] == {"id": "1000"} and p["saved_user"] == {"id": "0"}
    assert p["group"] == p["real_group"] == p["saved_group"] == {"id": "1001"}
    assert p["thread"] == {
        "id": 4242,
        "capabilities": {"effective": ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_45"]},
    }
    assert "privilege_changed" in rec["claude_audit"]["flags"]
    plain = exec_record(exec_event(euid=1000, egid=1001, suid=1000, sgid=1001), HOST, CLAUDE, 1)
    assert "privilege_changed" not in plain["claude_audit"]["flags"]
    root = exec_record(exec_event(uid=0, gid=0, euid=0, egid=0, cap_effective=(1 << 41) - 1), HOST, CLAUDE, 1)
    assert "capabilities" not in root["process"]["thread"]
    assert "privilege_changed" not in root["claude_audit"]["flags"]


def test_parent_entity_id_from_the_parents_start() -> None:
    """With the parent's start time the record names the parent's entity id, as its own exec did."""
    rec = exec_record(exec_event(parent_start_ticks=1_054_500), HOST, CLAUDE, 1)
    assert rec["process"]["parent"] == {"pid": 4100, "entity_id": entity_id(HOST.boot_id, 4100, 1_054_500)}
