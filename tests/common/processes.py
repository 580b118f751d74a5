"""Child processes in tests of every tier (on pytest's path through `pythonpath` in pyproject).

Tests clean up what they start: `terminate` and `kill` are the only ways they end a child process, so
none is left running or unreaped when a test fails half-way; `exec_storm` is the one background load of
unrelated execs.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def terminate(proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Ask `proc` to stop (SIGTERM), SIGKILL it if it has not after `timeout` seconds, and reap it."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL `proc` if it is still running, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@contextmanager
def exec_storm(*argv: str) -> Iterator[None]:
    """Run `argv` again and again, one process after another, from a thread until the block ends."""
    stop = threading.Event()

    def storm() -> None:
        while not stop.is_set():
            subprocess.run(argv, check=True)

    t = threading.Thread(target=storm)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
