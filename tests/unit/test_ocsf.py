"""ocsf: records validated against the OCSF 1.8.0 schema's own JSON definitions (vendored in
tests/unit/data/ocsf-1.8.0 with their licence): every attribute known to its class or object, every
required one present, types and enum values as the dictionary says; and an OCSF log still verifies."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from builders import HOST, exec_event
from chained_logs import write_run

from claude_audit import ocsf, records
from claude_audit.verify import EXIT_OK, load_files, verify_lines

SCHEMA = Path(__file__).parent / "data" / "ocsf-1.8.0"
T = 1_795_572_670_123_456_789
UID_KEYS = frozenset({"category_uid", "class_uid", "type_uid"})
SCALARS = {
    "string_t": str,
    "hostname_t": str,
    "file_name_t": str,
    "file_path_t": str,
    "process_name_t": str,
    "username_t": str,
    "uuid_t": str,
    "datetime_t": str,
    "integer_t": int,
    "long_t": int,
    "port_t": int,
    "timestamp_t": int,
    "boolean_t": bool,
    "float_t": (int, float),
}


@cache
def _dictionary() -> dict[str, Any]:
    return json.loads((SCHEMA / "dictionary.json").read_text())["attributes"]  # type: ignore[no-any-return]


@cache
def _definition(kind: str, name: str) -> dict[str, Any]:
    """Attributes of a class or object with everything it extends merged in (the child wins)."""
    path = {
        "base_event": SCHEMA / "events" / "base_event.json",
        "system": SCHEMA / "events" / "system" / "system.json",
        "process_activity": SCHEMA / "events" / "system" / "process_activity.json",
    }.get(name, SCHEMA / "objects" / f"{name}.json")
    d = json.loads(path.read_text())
    attrs: dict[str, Any] = {}
    if d.get("extends"):
        attrs |= _definition(kind, d["extends"])
    for key, spec in d.get("attributes", {}).items():
        if key != "$include":
            attrs[key] = {**attrs.get(key, {}), **spec}
    return attrs


def _validate(value: dict[str, Any], name: str, where: str) -> list[str]:
    errors = []
    attrs = _definition("x", name)
    for key, spec in attrs.items():
        if spec.get("requirement") == "required" and key not in value:
            errors.append(f"{where}.{key}: required")
    for key, v in value.items():
        if key not in attrs:
            errors.append(f"{where}.{key}: not an attribute of {name}")
            continue
        dict_spec = _dictionary()[key]
        # The dictionary's enums of category_uid and class_uid are placeholders the schema server fills
        # from categories.json and the classes: _check_uids checks those.
        # An attribute's enum adds to the dictionary's (which holds 0 Unknown and 99 Other for every *_id).
        enum = (
            None if key in UID_KEYS else {**dict_spec.get("enum", {}), **attrs[key].get("enum", {})} or None
        )
        typ = dict_spec["type"]
        items = v if dict_spec.get("is_array") else [v]
        for item in items:
            if typ in {"object", "json_t"}:
                continue  # unmapped: free form
            if typ in SCALARS:
                if not isinstance(item, SCALARS[typ]) or isinstance(item, bool) != (typ == "boolean_t"):
                    errors.append(f"{where}.{key}: {item!r} is not {typ}")
                elif enum is not None and str(item) not in enum:
                    errors.append(f"{where}.{key}: {item!r} not in its enum")
            elif isinstance(item, dict):
                errors += _validate(item, typ, f"{where}.{key}")
            else:
                errors.append(f"{where}.{key}: not a {typ} object")
    return errors


def _check_uids(rec: dict[str, Any]) -> None:
    categories = json.loads((SCHEMA / "categories.json").read_text())["attributes"]
    if rec["class_uid"]:
        assert rec["category_uid"] == categories["system"]["uid"]
        assert rec["class_uid"] == rec["category_uid"] * 1000 + 7
    assert rec["type_uid"] == rec["class_uid"] * 100 + rec["activity_id"]


def test_exec_is_process_activity_launch() -> None:
    """An exec (with invalid UTF-8 and a trace context) maps to a valid 1007 Launch with the process,
    its parent, actor, device, metadata (product, version, sequence), the agent's fields in unmapped."""
    ev = exec_event(argv=[b"/bin/ls", b"\xff-bad"])
    ecs = records.exec_record(ev, HOST, {"pid": 7, "session_id": "s"}, 42, trace=("a" * 32, "b" * 16))
    rec = ocsf.from_ecs(ecs)
    assert _validate(rec, "process_activity", "rec") == []
    _check_uids(rec)
    assert (rec["class_uid"], rec["activity_id"], rec["type_uid"]) == (1007, 1, 100701)
    assert rec["metadata"]["sequence"] == 42 and rec["metadata"]["version"] == "1.8.0"
    assert rec["process"]["pid"] == ev.pid and rec["process"]["parent_process"]["pid"] == ev.ppid
    assert rec["unmapped"]["claude"]["session_id"] == "s"
    assert rec["unmapped"]["process"]["args"] == ecs["process"]["args"]
    assert rec["unmapped"]["raw"] == ecs["raw"] and rec["unmapped"]["trace"] == {"id": "a" * 32}
    assert rec["time"] == ev.wall_time_ns // 1_000_000


@pytest.mark.parametrize(
    "ecs",
    [
        records.daemon_started(T, HOST, 1, version="1", pid=2, config_path=None, sessions=0, probes=["p"]),
        records.daemon_stopped(T, HOST, 2, records_written=3, events_lost=0, reason="stopped"),
        records.events_lost(T, HOST, 3, count=1, where="queue", since_ns=T),
        records.unwatched_window(T, HOST, 4, from_ns=T - 10**9, to_ns=T, reason="crash"),
        records.config_rejected(T, HOST, 5, error="bad"),
        records.chain_checkpoint(T, HOST, 6, segment="s", chain_seq=1, head="h" * 64, final=True),
    ],
)
def test_other_records_are_base_events(ecs: dict[str, Any]) -> None:
    """Lifecycle, loss, alert and checkpoint records are valid Base Events named by their action;
    alerts are severity High, losses Medium."""
    rec = ocsf.from_ecs(ecs)
    assert _validate(rec, "base_event", "rec") == []
    _check_uids(rec)
    assert rec["activity_name"] == ecs["event"]["action"]
    if ecs["event"]["kind"] == "alert":
        assert rec["severity_id"] == 4


def test_validator_catches_a_bad_record() -> None:
    """The validator above is not a rubber stamp: a missing required attribute, a wrong type, an
    unknown attribute and a value outside its enum are each reported."""
    rec = ocsf.from_ecs(records.exec_record(exec_event(), HOST, {"pid": 7}, 1))
    del rec["device"]
    rec["process"]["pid"] = "12"
    rec["bogus"] = 1
    rec["severity_id"] = 7
    rec["process"]["file"].pop("type_id")
    errors = _validate(rec, "process_activity", "rec")
    assert len(errors) == 5, errors


def test_an_ocsf_log_is_chained_and_verifies(tmp_path: Path) -> None:
    """With schema "ocsf" the chain lives in unmapped.claude_audit, and verify checks it the same way."""
    log = tmp_path / "audit.jsonl"
    out = write_run(log, tmp_path / "state", 6, schema="ocsf")
    assert out.schema == "ocsf"
    lines = [json.loads(x) for x in log.read_bytes().splitlines()]
    assert all("class_uid" in r and "chain" in r["unmapped"]["claude_audit"] for r in lines)
    report = verify_lines(load_files([log]))
    assert report.exit_code == EXIT_OK and report.checkpoints == 2, report.findings
