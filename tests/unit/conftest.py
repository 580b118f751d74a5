"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import settings

# Hypothesis' per-example deadline is a timing assertion: on a loaded 2-core machine (the kernel tier's
# QEMU guests run beside other work) a correct example can take longer than 200 ms. Correctness is what
# these properties test, so no deadline; the suite's own timeout still bounds a run.
settings.register_profile("claude-audit", deadline=None)
settings.load_profile("claude-audit")


@pytest.fixture
def utc_tz() -> Iterator[None]:
    """Show times in UTC (tail prints local time), restoring the real zone afterwards."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()
