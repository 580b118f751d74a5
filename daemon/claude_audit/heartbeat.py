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


# -- Prometheus textfile (node_exporter's textfile collector) ----------------------------------------


@dataclass(frozen=True)
class Liveness:
    """What the heartbeat record and the metrics file say, taken at one moment."""

    now_ns: int
    started_ns: int
    version: str
    config_digest: str
    records_written: int
    losses: dict[str, int]
    sessions_watched: int
    execs_seen: int
    programs_attached: int
    programs_expected: int


def _label(value: str) -> str:
    # The exposition format's label escaping: backslash, double quote, newline.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(live: Liveness) -> str:
    """The metrics in Prometheus' text exposition format. Pure.

    `claude_audit_last_update_timestamp_seconds` is what an alert watches (`time() - ... > N`): a file
    that stops changing means a daemon that stopped; node_exporter keeps serving the stale file.
    """
    lines = [
        "# HELP claude_audit_info Version and config digest of the running daemon.",
        "# TYPE claude_audit_info gauge",
        f'claude_audit_info{{version="{_label(live.version)}",'
        f'config_digest="{_label(live.config_digest)}"}} 1',
        "# HELP claude_audit_last_update_timestamp_seconds When the daemon last wrote this file.",
        "# TYPE claude_audit_last_update_timestamp_seconds gauge",
        f"claude_audit_last_update_timestamp_seconds {live.now_ns / 1e9:.3f}",
        "# HELP claude_audit_start_time_seconds When the running daemon started.",
        "# TYPE claude_audit_start_time_seconds gauge",
        f"claude_audit_start_time_seconds {live.started_ns / 1e9:.3f}",
        "# HELP claude_audit_records_written_total Audit records written since start.",
        "# TYPE claude_audit_records_written_total counter",
        f"claude_audit_records_written_total {live.records_written}",
        "# HELP claude_audit_events_lost_total Events lost since start, by where they were lost.",
        "# TYPE claude_audit_events_lost_total counter",
        *(
            f'claude_audit_events_lost_total{{where="{_label(where)}"}} {n}'
            for where, n in sorted(live.losses.items())
        ),
        "# HELP claude_audit_sessions_watched Claude Code sessions watched now.",
        "# TYPE claude_audit_sessions_watched gauge",
        f"claude_audit_sessions_watched {live.sessions_watched}",
        "# HELP claude_audit_kernel_execs_seen_total Execs the BPF program saw since start.",
        "# TYPE claude_audit_kernel_execs_seen_total counter",
        f"claude_audit_kernel_execs_seen_total {live.execs_seen}",
        "# HELP claude_audit_kernel_programs_attached BPF programs attached now (of those the daemon loads).",
        "# TYPE claude_audit_kernel_programs_attached gauge",
        f"claude_audit_kernel_programs_attached {live.programs_attached}",
        "# HELP claude_audit_kernel_programs_expected BPF programs the daemon loads.",
        "# TYPE claude_audit_kernel_programs_expected gauge",
        f"claude_audit_kernel_programs_expected {live.programs_expected}",
    ]
    return "\n".join(lines) + "\n"


def write_textfile(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically (a temporary file in the same directory, then rename), so the
    collector never reads half a file. Mode 0644: metrics hold no audit content. False on error."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True
