"""The daemon's record of its own liveness, so the next start can state the window nobody watched.

The state file holds the wall-clock time of the last main-loop tick and whether the run stopped
cleanly. It is written atomically (new file, then rename) about once a second.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "heartbeat.json"


@dataclass(frozen=True)
class PreviousRun:
    """What the last run left behind."""

    last_alive_ns: int
    clean_stop: bool
    pid: int


def read_previous(state_dir: Path) -> PreviousRun | None:
    """The previous run's heartbeat, or None if there was none (or it is unreadable)."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        return PreviousRun(int(data["last_alive_ns"]), bool(data["clean_stop"]), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(state_dir: Path, now_ns: int, *, clean_stop: bool = False) -> None:
    """Record that the daemon is alive at now_ns (or stopped cleanly then). Errors are ignored: the
    heartbeat is a best effort and must never stop the audit itself."""
    with contextlib.suppress(OSError):
        state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        tmp = state_dir / f".{STATE_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps({"last_alive_ns": now_ns, "clean_stop": clean_stop, "pid": os.getpid()}))
        os.replace(tmp, state_dir / STATE_FILE)
