"""Hostile bytes through decode -> records -> JSON line: always one valid line, every byte recoverable.

Whatever a process puts in its argv, executable path or comm (invalid UTF-8, newlines, terminal escapes,
quotes and backslashes, C1 controls, U+2028), the record the daemon writes must be exactly one JSON line
with no raw control byte, and the original bytes must come back from the record: from the text itself
when it was valid UTF-8, else from `raw.*` (base64).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
from typing import Any

from builders import raw_exec
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_audit import bpf_layout
from claude_audit.decode import DecodeError, decode_event, split_argv
from claude_audit.events import ExecEvent
from claude_audit.records import HostInfo, exec_record
from claude_audit.textenc import dumps_line, text_field

HOST = HostInfo(hostname="h", boot_id="b", boot_time_ns=1_700_000_000_000_000_000)

# Bytes that break naive loggers: newline, CR, NUL, ESC (terminal sequences), C1 CSI, quote, backslash,
# DEL, U+2028 in UTF-8, a lone UTF-8 lead byte, an overlong encoding, a UTF-16 surrogate in UTF-8.
NASTY = [b"\n", b"\r", b"\x1b[31m", b"\x1b]0;title\x07", b"\xc2\x9b", b'"', b"\\", b"\x7f", b"\xe2\x80\xa8"]
NASTY += [b"\xc3", b"\xc0\x80", b"\xed\xa0\x80", b"\xff", b"}", b"]", b'","x":"', b"\t"]

hostile_bytes = st.lists(st.one_of(st.sampled_from(NASTY), st.binary(max_size=8)), max_size=8).map(b"".join)
arg = hostile_bytes.map(lambda b: b.replace(b"\0", b""))  # a single argv element never holds a NUL


def _check_line(line: bytes) -> dict[str, Any]:
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    body = line[:-1]
    assert all(b >= 0x20 for b in body), "a raw control byte reached the line"
    assert b"\x7f" not in body
    text = body.decode("utf-8")  # strict: the line itself is always valid UTF-8
    assert not any(0x80 <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in text)
    rec = json.loads(text)
    assert isinstance(rec, dict)
    return rec


def _recovered_args(rec: dict[str, Any]) -> list[bytes]:
    raw = rec.get("raw", {}).get("process", {}).get("args")
    if raw is not None:
        return [base64.b64decode(a, validate=True) for a in raw]
    return [a.encode("utf-8") for a in rec["process"]["args"]]


def _recovered_exe(rec: dict[str, Any]) -> bytes:
    raw = rec.get("raw", {}).get("process", {}).get("executable")
    return base64.b64decode(raw, validate=True) if raw is not None else rec["process"]["executable"].encode()


def _recovered_comm(rec: dict[str, Any]) -> bytes:
    raw = rec.get("raw", {}).get("claude_audit", {}).get("comm")
    return base64.b64decode(raw, validate=True) if raw is not None else rec["claude_audit"]["comm"].encode()


@settings(max_examples=400)
@given(
    filename=hostile_bytes.filter(lambda b: b"\0" not in b),
    area=hostile_bytes,
    comm=hostile_bytes.map(lambda b: b.replace(b"\0", b"")[:15]),
)
def test_any_exec_bytes_give_one_line(filename: bytes, area: bytes, comm: bytes) -> None:
    """Kernel bytes -> decode -> record -> line: one valid JSON line, argv/exe/comm recovered exactly."""
    ev = decode_event(raw_exec(filename, area, comm=comm), 0)
    assert isinstance(ev, ExecEvent)
    rec = _check_line(dumps_line(exec_record(ev, HOST, {"pid": 5}, 1)))
    assert _recovered_args(rec) == split_argv(area)
    assert _recovered_exe(rec) == filename
    assert _recovered_comm(rec) == comm
    flagged = "invalid_utf8" in rec["claude_audit"]["flags"]
    all_utf8 = all(text_field(b)[1] for b in [filename, comm, *split_argv(area)])
    assert flagged == (not all_utf8)
    assert rec["process"]["args_count"] == len(split_argv(area))


@given(st.lists(arg, max_size=12))
def test_argv_area_round_trips(argv: list[bytes]) -> None:
    """The NUL-separated argv area the kernel copies splits back into exactly the original arguments."""
    area = b"".join(a + b"\0" for a in argv)
    assert split_argv(area) == argv


@given(st.binary(max_size=300))
def test_decoder_rejects_garbage_only_with_decode_error(raw: bytes) -> None:
    """Random ring-buffer bytes either decode or raise DecodeError: never another exception."""
    with contextlib.suppress(DecodeError):
        decode_event(raw, 0)


@given(
    header=st.binary(
        min_size=ctypes.sizeof(bpf_layout.ExecEventHeader), max_size=ctypes.sizeof(bpf_layout.ExecEventHeader)
    ),
    tail=st.binary(max_size=64),
)
def test_exec_header_lengths_are_checked(header: bytes, tail: bytes) -> None:
    """An exec record whose lengths claim more than its bytes is refused, not read past its end."""
    raw = bpf_layout.EVENT_EXEC.to_bytes(4, "little") + header[4:] + tail
    try:
        ev = decode_event(raw, 0)
    except DecodeError:
        return
    assert isinstance(ev, ExecEvent)
    assert len(ev.filename) + sum(len(a) + 1 for a in ev.argv) <= len(tail) + 1


json_value = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(), hostile_bytes.map(lambda b: text_field(b)[0])
    ),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=10), json_value, max_size=6))
def test_dumps_line_is_one_safe_line_and_lossless(record: dict[str, Any]) -> None:
    """Any JSON-able record (with any text, lone surrogates aside) is one safe line equal to the input."""
    assert _check_line(dumps_line(record)) == record


@given(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), st.text(max_size=3))
def test_lone_surrogates_cannot_break_the_line(surrogate: str, around: str) -> None:
    """A lone surrogate (not encodable as UTF-8) is escaped, so the line still encodes and parses.

    (Records never carry one: text_field turns undecodable bytes into U+FFFD. A high+low pair written
    as two escapes would read back as one astral character, which is JSON's rule, so pairs are not used.)
    """
    s = around + surrogate + around
    assert _check_line(dumps_line({"s": s}))["s"] == s
