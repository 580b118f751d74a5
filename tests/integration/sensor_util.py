"""Helpers for integration tests that load the real BPF program: start watched roots, collect events."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from processes import kill

from claude_audit.decode import Event, decode_event
from claude_audit.events import ExecEvent
from claude_audit.procfs import parse_stat
from claude_audit.sensor import RingQueue, Sensor, boot_to_wall_offset_ns


def start_ticks(pid: int) -> int:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return parse_stat(f.read()).start_ticks


@dataclass
class Collector:
    """Drains a sensor's queue into decoded events."""

    sensor: Sensor
    queue: RingQueue
    events: list[Event] = field(default_factory=list)

    def pump(self, timeout_ms: int = 50) -> None:
        self.sensor.poll(timeout_ms)
        off = boot_to_wall_offset_ns()
        self.events.extend(decode_event(raw, off) for raw in self.queue.drain())

    def execs(self, root: int | None = None) -> list[ExecEvent]:
        return [
            e for e in self.events if isinstance(e, ExecEvent) and (root is None or e.session_root == root)
        ]

    def wait_for(self, pred: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if pred():
                return
        raise AssertionError("timed out waiting for events")

    def settle(self, quiet: float = 0.3) -> None:
        """Pump until nothing new arrives for `quiet` seconds."""
        n = -1
        while n != len(self.events):
            n = len(self.events)
            end = time.monotonic() + quiet
            while time.monotonic() < end:
                self.pump(20)


def wait_sleeping(pid: int, timeout: float = 60.0) -> None:
    """Wait until pid sleeps (S), which a new program does only once its exec is complete.

    Popen returns when exec closes the child's close-on-exec pipe, before the kernel's
    sched_process_exec tracepoint fires: a root added in that window would see its own exec.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"S":
                return
        time.sleep(0.002)
    raise AssertionError(f"process {pid} never went to sleep waiting for its go")


@contextmanager
def watched_root(sensor: Sensor, script: str | list[str], env: dict[str, str] | None = None) -> Iterator[int]:
    """A bash process made a session root before it runs `script` (it waits on stdin for the go)."""
    argv = ["/bin/bash", "-c", f"read -r _go; {script}"] if isinstance(script, str) else script
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, env=env or dict(os.environ))
    try:
        wait_sleeping(p.pid)
        sensor.add_root(p.pid, start_ticks(p.pid))
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.close()
        yield p.pid
        p.wait(timeout=60)
    finally:
        kill(p)
        sensor.remove_root(p.pid)
