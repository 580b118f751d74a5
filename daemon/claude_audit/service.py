"""Service glue: sd_notify, signals, the status document and its file. Nothing here touches records.

Signal handlers only set flags; the main loop reads them. The status document is what `claude-audit
status` shows; it is written atomically to the runtime directory at each tick.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

log = structlog.get_logger("claude_audit")


@dataclass
class StopRequest:
    """Set by signal handlers, read by the main loop."""

    stop: bool = False
    reload: bool = False
    stop_reason: str = ""

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stop = True
        self.stop_reason = signal.Signals(signum).name

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload = True

    def install(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP asks for a reload."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)


class Notifier:
    """sd_notify, quiet when not run by systemd (no NOTIFY_SOCKET)."""

    def __init__(self) -> None:
        self._n: Any = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify

            self._n = sdnotify.SystemdNotifier()

    def notify(self, state: str) -> None:
        """Send one notification (READY=1, STATUS=..., WATCHDOG=1, STOPPING=1, ...)."""
        if self._n is not None:
            self._n.notify(state)

    def watchdog_interval(self) -> float | None:
        """Half the watchdog timeout systemd set for us, in seconds, or None."""
        usec = os.environ.get("WATCHDOG_USEC")
        if not usec or not usec.isdigit() or len(usec) > 18:
            return None
        return int(usec) / 2e6


def write_status(runtime_dir: Path, doc: dict[str, Any]) -> None:
    """Write status.json atomically in the runtime directory (0640: it names sessions)."""
    try:
        runtime_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        tmp = runtime_dir / f".status.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, runtime_dir / "status.json")
    except OSError as exc:
        log.debug("cannot write status", error=str(exc))


def remove_status(runtime_dir: Path) -> None:
    """Remove status.json (the daemon is no longer running)."""
    with contextlib.suppress(OSError):
        (runtime_dir / "status.json").unlink()
