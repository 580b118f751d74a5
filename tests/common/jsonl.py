"""Reading the audit log while the daemon writes it, as a shipper does; every record read is checked
against the shipped JSON Schema (docs/schema/record.schema.json), so each test that reads the log also
proves its records match what the documentation promises."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "schema" / "record.schema.json"


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def check_record(record: dict[str, Any]) -> None:
    """Fail (AssertionError naming the field) unless `record` matches the shipped schema."""
    errors = sorted(_validator().iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path)
        action = record.get("event", {}).get("action") if isinstance(record.get("event"), dict) else None
        raise AssertionError(f"{action} record does not match the schema at /{where}: {e.message}")


def complete_lines(data: bytes, *, writer_stopped: bool = False) -> list[bytes]:
    """The newline-terminated lines of `data`.

    A reader racing the daemon's write() can see a batch half written (a read of a regular file does
    not wait for a write in progress; under emulation it happens often), so while the writer runs an
    unterminated tail is a line still being written and is left for the next read. Once the writer has
    stopped, an unterminated tail is a torn record, and that is a failure."""
    if writer_stopped:
        assert not data or data.endswith(b"\n"), "log ends mid-line after the daemon stopped"
    return data[: data.rfind(b"\n") + 1].splitlines()


def read_records(path: Path, *, writer_stopped: bool = False) -> list[dict[str, Any]]:
    """Every complete record of the JSON-lines file at `path` (none if it does not exist yet); the test
    fails on a complete line that is not JSON."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    records = [json.loads(line) for line in complete_lines(data, writer_stopped=writer_stopped)]
    for rec in records:
        check_record(rec)
    return records


def stopped_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The daemon-stopped record that ends a cleanly stopped run, checking that the run ends as the daemon
    ends it: daemon-stopped, then the final chain-checkpoint that covers it (a record cannot name its own
    hash, so the chain's last word comes after the daemon's)."""
    actions = [r["event"]["action"] for r in records]
    assert actions[-2:] == ["daemon-stopped", "chain-checkpoint"], actions[-5:]
    assert records[-1]["claude_audit"]["checkpoint"]["final"] is True, records[-1]
    return records[-2]
