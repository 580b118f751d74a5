"""Tests for the test suite's own log reader (tests/common/jsonl.py)."""

from __future__ import annotations

import pytest
from jsonl import complete_lines


def test_partial_tail_is_left_while_writer_runs() -> None:
    """A half-written last line is not returned (nor parsed) while the daemon still writes."""
    assert complete_lines(b'{"a":1}\n{"b":') == [b'{"a":1}']


def test_partial_tail_fails_once_writer_stopped() -> None:
    """After the daemon stopped, a torn last line is a failure, not something to skip."""
    with pytest.raises(AssertionError, match="mid-line"):
        complete_lines(b'{"a":1}\n{"b":', writer_stopped=True)


def test_whole_lines_returned() -> None:
    """Terminated lines come back in order, without their newlines."""
    assert complete_lines(b"x\ny\n", writer_stopped=True) == [b"x", b"y"]
    assert complete_lines(b"") == []
