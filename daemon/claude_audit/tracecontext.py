"""W3C Trace Context (https://www.w3.org/TR/trace-context/): the `TRACEPARENT` that Claude Code gives
the commands it runs when its OpenTelemetry tracing is on. Pure.

The value comes from an environment the agent's user controls, so it is only ever parsed, bounded and
validated to the letter of the spec; what passes becomes ECS `trace.id` and `span.id` (the id of Claude
Code's span that ran the command), which join an exec to Claude Code's own traces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

MAX_TRACEPARENT: Final = 512
"""Longer values are refused unread: a version-00 header is 55 characters, later versions may add fields."""
_TRACEPARENT: Final = re.compile(
    rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\x00-\x20\x7f]*)?\Z"
)


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The ids a traceparent carries."""

    trace_id: str
    span_id: str
    sampled: bool


def parse_traceparent(value: bytes) -> TraceContext | None:
    """A traceparent header value, or None unless it is valid.

    Rules from the spec: version ff is invalid; version 00 has exactly four fields; a higher version
    may append fields after a dash; trace-id and parent-id are lower-case hex and not all zeros.
    Surrounding spaces and tabs are allowed (HTTP header habit) and stripped.
    """
    if len(value) > MAX_TRACEPARENT:
        return None
    m = _TRACEPARENT.match(value.strip(b" \t"))
    if m is None:
        return None
    version, trace_id, span_id, flags, rest = m.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    if trace_id == b"0" * 32 or span_id == b"0" * 16:
        return None
    return TraceContext(trace_id.decode(), span_id.decode(), bool(int(flags, 16) & 1))


def trace_of(environ: Mapping[bytes, bytes]) -> TraceContext | None:
    """The trace context of a process's environment (TRACEPARENT), if it holds a valid one."""
    value = environ.get(b"TRACEPARENT")
    return parse_traceparent(value) if value is not None else None
