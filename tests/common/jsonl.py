"""Reading the audit log while the daemon writes it, as a shipper does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
    return [json.loads(line) for line in complete_lines(data, writer_stopped=writer_stopped)]
