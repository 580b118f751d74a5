"""The shipped JSON Schema (docs/schema/record.schema.json) against every record builder."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from builders import HOST, T0, exec_event
from jsonl import SCHEMA_PATH, check_record

from claude_audit import records

CLAUDE = {"pid": 4000, "session_entity_id": "x" * 20, "session_id": "s", "origin": "agent"}
DIGEST = "sha256:" + "0" * 64


def _every_record_type() -> dict[str, dict[str, Any]]:
    proc = {
        "pid": 4000,
        "executable": "/usr/bin/claude",
        "name": "claude",
        "args": ["claude"],
        "reason": "exe",
    }
    ev = exec_event(euid=0, suid=0, cap_effective=1 << 21, parent_start_ticks=9)
    out = {
        "exec": records.exec_record(ev, HOST, CLAUDE, 1),
        "daemon-started": records.daemon_started(
            T0, HOST, 2, version="1", pid=1, config_path="/c", sessions=0, probes=["p"], config_digest=DIGEST
        ),
        "daemon-stopped": records.daemon_stopped(T0, HOST, 3, records_written=3, events_lost=0, reason="r"),
        "session-found": records.session_found(T0, HOST, 4, claude=CLAUDE, how="scan", process_info=proc),
        "session-ended": records.session_ended(T0, HOST, 5, claude=CLAUDE, exit_code=0),
        "session-not-watched": records.session_not_watched(
            T0, HOST, 6, how="scan", process_info=proc, error="full"
        ),
        "events-lost": records.events_lost(T0, HOST, 7, count=2, where="file", since_ns=T0, lost_bytes=9),
        "config-rejected": records.config_rejected(T0, HOST, 8, error="e", when="start", config_path="/c"),
        "config-reloaded": records.config_reloaded(
            T0, HOST, 9, config_path="/c", digest=DIGEST, previous_digest=DIGEST, changed=[], needs_restart=[]
        ),
        "heartbeat": records.heartbeat(
            T0, HOST, 10, version="1", pid=1, started_ns=T0, interval_seconds=300.0, config_digest=DIGEST,
            config_path=None, counters={"records_written": 10}, losses={}, sessions_watched=0,
            kernel={"state": "attached", "programs_attached": 4, "programs_expected": 4, "attached": []},
        ),
        "unwatched-window": records.unwatched_window(T0, HOST, 11, from_ns=T0, to_ns=T0 + 1, reason="crash"),
    }  # fmt: skip
    return out


def test_schema_covers_every_record_type() -> None:
    """Each event.action the daemon writes has its own rules in the schema, and each builder's record
    (with every optional part present) matches."""
    schema = json.loads(SCHEMA_PATH.read_text())
    covered = {
        rule["if"]["properties"]["event"]["properties"]["action"]["const"] for rule in schema["allOf"][1:]
    }
    built = _every_record_type()
    assert covered == set(built)
    for rec in built.values():
        check_record(json.loads(json.dumps(rec)))


@pytest.mark.parametrize(
    ("action", "path", "value"),
    [
        ("exec", ("process", "user", "id"), 0),  # ids are strings in ECS
        ("exec", ("claude_audit", "flags"), "x"),
        ("heartbeat", ("claude_audit", "kernel", "state"), "gone"),
        ("config-rejected", ("claude_audit", "when"), "later"),
        ("unwatched-window", ("claude_audit", "unwatched", "from"), "yesterday"),
        ("exec", ("@timestamp",), "2026-11-25T02:11:10Z"),
    ],
)
def test_schema_rejects_wrong_fields(action: str, path: tuple[str, ...], value: Any) -> None:
    """A field of the wrong type or outside its values fails, naming where."""
    rec = copy.deepcopy(_every_record_type()[action])
    cur = rec
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    with pytest.raises(AssertionError, match="does not match the schema"):
        check_record(rec)


def test_schema_requires_the_privilege_fields() -> None:
    """An exec record without process.real_user fails."""
    rec = copy.deepcopy(_every_record_type()["exec"])
    del rec["process"]["real_user"]
    with pytest.raises(AssertionError, match="real_user"):
        check_record(rec)
