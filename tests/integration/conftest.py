"""Integration tier: the real BPF program on the running kernel, as root."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sensor_util import Collector
from settings import default_sensor_settings

from claude_audit.sensor import RingQueue, Sensor


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Root is a precondition of this tier, not a reason to skip: CI runs as root on this kernel.
    if os.geteuid() != 0:
        raise pytest.UsageError("tests/integration needs root (CI runs it as root)")


@pytest.fixture(scope="module")
def sensor() -> Iterator[Sensor]:
    """The real BPF program, loaded once per module, with a 32 KiB argv cap."""
    q = RingQueue(1_000_000)
    s = Sensor(default_sensor_settings(argv_max_bytes=32768), q)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def collector(sensor: Sensor) -> Collector:
    """A fresh collector on the module's sensor (earlier tests' events are discarded)."""
    sensor.consume()
    sensor.queue.drain()
    return Collector(sensor, sensor.queue)
