"""bench/procstats.py: CPU time and RSS of another process, finding processes by name."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import kill

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from procstats import cpu_seconds, pids_named, rss_kb

BURN = (
    "import time\n"
    "t = time.process_time()\n"
    "while time.process_time() - t < 0.3: pass\n"
    "print(flush=True)\n"
    "input()\n"
)


def test_cpu_seconds_of_a_child() -> None:
    """A child that burned 0.3 s of CPU shows at least that much, and no more than it could have used."""
    t0 = time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        child.stdout.readline()  # it has burned its 0.3 s
        used = cpu_seconds(child.pid)
        assert 0.3 <= used <= time.monotonic() - t0 + 0.1  # one thread: CPU time cannot exceed wall time
        assert rss_kb(child.pid) > 1000  # a python interpreter holds megabytes
    finally:
        assert child.stdin is not None
        child.stdin.close()
        kill(child)
        assert child.stdout is not None
        child.stdout.close()
    with pytest.raises(OSError):
        cpu_seconds(child.pid)  # reaped: no such process (pids are not reused this fast)


def test_cpu_seconds_of_this_process_matches_process_time() -> None:
    """For this process the clock agrees with time.process_time (the same kernel counter)."""
    before = time.process_time()
    mine = cpu_seconds(os.getpid())
    after = time.process_time()
    assert before - 0.01 <= mine <= after + 0.01


def test_pids_named() -> None:
    """A process is found by its comm."""
    child = subprocess.Popen(["/bin/sleep", "30"])
    try:
        # Popen returns once the child forked; its comm becomes "sleep" only at the exec.
        deadline = time.monotonic() + 30
        while child.pid not in pids_named("sleep") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child.pid in pids_named("sleep")
        assert child.pid not in pids_named("no-such-comm")
    finally:
        kill(child)
