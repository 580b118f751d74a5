"""tests/common/processes.py: how tests end the processes they start."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from processes import exec_storm, kill, terminate

IGNORES_TERM = (
    "import signal, sys\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint(flush=True)\nsys.stdin.read()\n"
)


def test_terminate_asks_first() -> None:
    """A process that honours SIGTERM ends by it, and is reaped."""
    child = subprocess.Popen(["/bin/sleep", "30"])
    terminate(child)
    assert child.returncode == -15


def test_terminate_kills_what_ignores_sigterm() -> None:
    """A process that ignores SIGTERM is SIGKILLed once the timeout has passed, and is reaped."""
    child = subprocess.Popen(
        [sys.executable, "-c", IGNORES_TERM], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdout is not None and child.stdin is not None
    child.stdout.readline()  # the handler is set
    terminate(child, timeout=0.5)
    assert child.returncode == -9
    child.stdin.close()
    child.stdout.close()


def test_kill_and_already_ended() -> None:
    """kill ends and reaps a running process; both helpers accept one that has already ended."""
    child = subprocess.Popen(["/bin/sleep", "30"])
    kill(child)
    assert child.returncode == -9
    kill(child)
    terminate(child)
    assert child.returncode == -9


def test_exec_storm_runs_until_the_block_ends(tmp_path: Path) -> None:
    """The storm runs its command repeatedly while the block lasts and not after it."""
    marker = tmp_path / "count"
    script = f"echo x >> {marker}"
    with exec_storm("/bin/sh", "-c", script):
        deadline = time.monotonic() + 30
        while (marker.read_text().count("x") if marker.exists() else 0) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    done = marker.read_text().count("x")
    time.sleep(0.2)
    assert marker.read_text().count("x") == done
