"""bench/report.py: the statistics behind the exec-storm benchmark's table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from report import linreg_slope, min_median_max, percentile, summary


def test_percentile_is_a_sample_by_nearest_rank() -> None:
    """p50 and p99 are samples of the list, picked by nearest rank over the sorted values."""
    xs = [float(x) for x in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(xs, 50) == 51.0  # index round(0.5 * 99) = 50 (round half to even) of the sorted list
    assert percentile(xs, 99) == 99.0
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 100.0
    assert percentile([7.0], 99) == 7.0


def test_summary() -> None:
    """n, p50, p99, min and max; an empty list gives n = 0 only (a phase that saw no samples)."""
    assert summary([]) == {"n": 0}
    assert summary([3.0, 1.0, 2.0]) == {"n": 3, "p50": 2.0, "p99": 3.0, "max": 3.0, "min": 1.0}


def test_linreg_slope() -> None:
    """The slope of points on a line is exact; equal xs give 0 instead of dividing by zero."""
    assert linreg_slope([0.0, 1.0, 2.0, 3.0], [5.0, 7.0, 9.0, 11.0]) == pytest.approx(2.0)
    assert linreg_slope([1.0, 1.0], [3.0, 4.0]) == 0.0


def test_min_median_max() -> None:
    """The spread of per-repetition values."""
    assert min_median_max([3.0, 1.0, 2.0, 10.0]) == {"min": 1.0, "median": 2.5, "max": 10.0}
