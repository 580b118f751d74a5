"""The kernel side under pressure: full maps, candidate floods and rejected candidates, on the real BPF
program. Each test loads its own sensor, with the sizes it needs, and a trigger comm of its own so other
processes on the machine cannot interfere."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from sensor_util import Collector, start_ticks, watched_root
from settings import default_sensor_settings

from claude_audit import bpf_layout as L
from claude_audit.events import CandidateEvent
from claude_audit.sensor import RingQueue, Sensor

pytestmark = [pytest.mark.root]

TRIGGER = "advtrigger"
RENAME = (
    "import ctypes, sys, time; ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0); "
    "time.sleep(float(sys.argv[2]))"
)


def _sensor(**overrides: object) -> Iterator[tuple[Sensor, Collector]]:
    q = RingQueue(1_000_000)
    s = Sensor(default_sensor_settings(candidate_comms=(TRIGGER,), **overrides), q)
    try:
        yield s, Collector(s, q)
    finally:
        s.close()


@pytest.fixture
def small_tracking() -> Iterator[tuple[Sensor, Collector]]:
    """A sensor whose tracked_map holds 1024 entries."""
    yield from _sensor(max_tracked_processes=1024)


@pytest.fixture
def budget_sensor() -> Iterator[tuple[Sensor, Collector]]:
    """A sensor allowing 5 candidates per uid and second, with room for 64 pending roots."""
    yield from _sensor(candidates_per_uid_per_second=5, max_pending_roots=64)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _fill_tracked(sensor: Sensor) -> int:
    """Fill tracked_map with entries for pids that cannot exist; returns how many went in."""
    n = 0
    for i in range(2048):
        entry = L.TrackedProc(start_ticks=1, root_start_ticks=1, root=4_000_000, invocation=0)
        if not sensor.track(4_100_000 + i, entry):
            break
        n += 1
    return n


def test_full_tracked_map_fails_towards_recording_more(small_tracking: tuple[Sensor, Collector]) -> None:
    """With tracked_map full, a root's child whose fork could not be tracked is still recorded at its
    exec, for its parent's session, flagged TRACK_RECOVERED; the failed inserts are counted; track()
    returns False instead of raising."""
    sensor, col = small_tracking
    filled = _fill_tracked(sensor)
    assert filled == 1024
    assert sensor.track(4_200_000, L.TrackedProc(start_ticks=1)) is False
    assert sensor.track_full >= 1
    before = sensor.counter_totals()[L.COUNTER_TRACK_FULL]
    with watched_root(sensor, "/bin/echo escaped-child-marker; true") as root:
        col.wait_for(lambda: any(e.argv[-1:] == [b"escaped-child-marker"] for e in col.execs(root)))
    (ev,) = [e for e in col.execs(root) if e.argv[-1:] == [b"escaped-child-marker"]]
    assert ev.session_root == root
    assert ev.invocation == ev.pid  # a direct child of the root starts its invocation
    assert "tracking_recovered" in ev.data_flags
    assert sensor.counter_totals()[L.COUNTER_TRACK_FULL] > before


def test_candidate_budget_per_uid(budget_sensor: tuple[Sensor, Collector]) -> None:
    """40 processes renaming to the trigger: 5 per second are adopted as candidates (the budget); the
    others are counted as throttled. Python's start-up spreads them over a few seconds, so the bound is
    5 per window passed, and candidates + throttled = 40."""
    sensor, col = budget_sensor
    procs = [subprocess.Popen([sys.executable, "-c", RENAME, TRIGGER, "30"]) for _ in range(40)]
    try:
        deadline = time.monotonic() + 60
        while not all(_comm(p.pid) == TRIGGER for p in procs):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        col.settle()
    finally:
        for p in procs:
            p.kill()
            p.wait()
    pids = {p.pid for p in procs}
    cands = [e for e in col.events if isinstance(e, CandidateEvent) and e.pid in pids]
    throttled = sensor.counter_totals()[L.COUNTER_CANDIDATE_THROTTLED]
    assert 1 <= len(cands) < 40
    assert len(cands) + throttled == 40
    by_second: dict[int, int] = {}
    for c in cands:
        by_second[c.wall_time_ns // 1_000_000_000] = by_second.get(c.wall_time_ns // 1_000_000_000, 0) + 1
    assert max(by_second.values()) <= 10  # 5 per window; a window can straddle two wall-clock seconds


def test_rejected_candidate_not_readopted_until_it_execs(budget_sensor: tuple[Sensor, Collector]) -> None:
    """A candidate the daemon rejected renames itself again: no new candidate (counted as rejected-again).
    After it execs a new program, a rename makes it a candidate once more."""
    sensor, col = budget_sensor
    again = (
        "import ctypes, os, sys, time\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.prctl(15, sys.argv[1].encode(), 0, 0, 0)\n"
        "sys.stdin.readline()\n"
        "libc.prctl(15, sys.argv[1].encode(), 0, 0, 0)\n"
        "sys.stdin.readline()\n"
        "os.execv(sys.executable, [sys.executable, '-c', "
        "'import ctypes, sys, time; ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0); "
        "time.sleep(2)', sys.argv[1]])\n"
    )
    p = subprocess.Popen([sys.executable, "-c", again, TRIGGER], stdin=subprocess.PIPE)
    assert p.stdin is not None
    try:

        def candidates() -> list[CandidateEvent]:
            return [e for e in col.events if isinstance(e, CandidateEvent) and e.pid == p.pid]

        col.wait_for(lambda: len(candidates()) == 1)
        assert p.pid in sensor.root_pids()  # adopted as pending
        sensor.reject_root(p.pid, start_ticks(p.pid))
        assert p.pid not in sensor.root_pids()
        before = sensor.counter_totals()[L.COUNTER_CANDIDATE_REJECTED_AGAIN]
        time.sleep(1.1)  # a fresh budget window: only the rejection can keep it out
        p.stdin.write(b"\n")
        p.stdin.flush()
        deadline = time.monotonic() + 10
        while sensor.counter_totals()[L.COUNTER_CANDIDATE_REJECTED_AGAIN] == before:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        col.settle()
        assert len(candidates()) == 1
        p.stdin.write(b"\n")
        p.stdin.flush()
        col.wait_for(lambda: len(candidates()) == 2)
    finally:
        p.kill()
        p.wait()
        p.stdin.close()


def test_full_pending_map_is_counted_and_confirmed_roots_still_fit(
    budget_sensor: tuple[Sensor, Collector],
) -> None:
    """64 pending roots fill pending_root_map: the next trigger is counted (ROOTS_FULL) and not adopted,
    while confirmed roots go to target_pid_map, which the flood cannot fill."""
    sensor, _col = budget_sensor
    for i in range(64):
        assert sensor.add_root(4_000_000 + i, 1, pending=True)
    assert sensor.add_root(4_100_000, 1, pending=True) is False
    assert sensor.roots_full == 1
    before = sensor.counter_totals()[L.COUNTER_ROOTS_FULL]
    p = subprocess.Popen([sys.executable, "-c", RENAME, TRIGGER, "2"])
    try:
        deadline = time.monotonic() + 10
        while sensor.counter_totals()[L.COUNTER_ROOTS_FULL] == before:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert p.pid not in sensor.root_pids()
        assert sensor.add_root(p.pid, start_ticks(p.pid))  # a confirmed root still fits
        assert sensor.root_pids()[p.pid] == (start_ticks(p.pid), 0)
    finally:
        p.kill()
        p.wait()
