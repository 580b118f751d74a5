"""tracecontext: TRACEPARENT parsed to the letter of W3C Trace Context, anything else refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_audit.tracecontext import MAX_TRACEPARENT, TraceContext, parse_traceparent, trace_of

VALID = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_valid_version_00() -> None:
    """The spec's example: trace id, parent (span) id, sampled flag."""
    assert parse_traceparent(VALID) == TraceContext(
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", sampled=True
    )
    assert parse_traceparent(b" " + VALID[:-2] + b"00\t") == TraceContext(
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", sampled=False
    )


def test_future_version_may_append_fields() -> None:
    """A higher version with extra fields is read for the first four; version 00 with extras is not."""
    assert parse_traceparent(b"01" + VALID[2:] + b"-what-ever") is not None
    assert parse_traceparent(VALID + b"-extra") is None


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"ff" + VALID[2:],
        VALID.upper(),
        b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-" + b"0" * 16 + b"-01",
        VALID[:-1],
        VALID + b"\n",
        VALID.replace(b"-", b"_"),
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\x1b[31m",
        b"01" + VALID[2:] + b"-" + b"x" * MAX_TRACEPARENT,
    ],
)
def test_invalid_values_are_refused(value: bytes) -> None:
    """Upper case, all-zero ids, version ff, wrong lengths, controls, oversized: None."""
    assert parse_traceparent(value) is None


@given(st.binary(max_size=700))
def test_never_raises(value: bytes) -> None:
    """Any bytes at all: a TraceContext of lower-case hex ids, or None."""
    got = parse_traceparent(value)
    assert got is None or (len(got.trace_id), len(got.span_id)) == (32, 16)


def test_trace_of_environment() -> None:
    """Only TRACEPARENT counts."""
    assert trace_of({b"TRACEPARENT": VALID}) is not None
    assert trace_of({b"traceparent": VALID}) is None
