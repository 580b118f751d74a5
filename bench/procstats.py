"""Process statistics for the benchmarks: CPU time, RSS, host load, finding and ending processes.

CPU time comes from the kernel's per-process CPU clock (clock_getcpuclockid(3)), the precise sum over all
threads that utime + stime in /proc/PID/stat are scaled to, so no benchmark parses /proc/PID/stat
(claude_audit.procfs.parse_stat is the only parser of it, and it has no CPU fields).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
import time
from pathlib import Path

# One way to end a child process for tests and benchmarks alike (tests/common/processes.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "common"))
from processes import kill, terminate

_libc = ctypes.CDLL(None, use_errno=True)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a live process has used so far, in seconds.

    Raises OSError if `pid` does not exist (or has exited).
    """
    clock = ctypes.c_int()
    err = _libc.clock_getcpuclockid(pid, ctypes.byref(clock))
    if err:
        raise OSError(err, os.strerror(err), f"clock_getcpuclockid({pid})")
    return time.clock_gettime(clock.value)


def rss_kb(pid: int) -> int:
    """VmRSS of a process in KiB."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """Samples a process's CPU time and RSS every `interval` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float, int]] = []  # (monotonic, cpu s, rss KiB)
        self._stop_ev = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self._stop_ev.is_set():
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic() - t0, cpu_seconds(self.pid), rss_kb(self.pid)))
            self._stop_ev.wait(self.interval)

    def stop(self) -> list[tuple[float, float, int]]:
        self._stop_ev.set()
        self.join()
        return self.samples


def pids_named(comm: str) -> list[int]:
    """Pids of the processes whose comm is `comm` (kernel threads included)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if (d / "comm").read_text().strip() == comm:
                    pids.append(int(d.name))
    return pids


def kauditd_pid() -> int | None:
    """The kernel audit thread, whose CPU time belongs to auditd's cost."""
    found = pids_named("kauditd")
    return found[0] if found else None


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole host, from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


__all__ = ["Sampler", "cpu_seconds", "host_cpu", "kauditd_pid", "kill", "pids_named", "rss_kb", "terminate"]
