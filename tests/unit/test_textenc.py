"""textenc: UTF-8 text fields, safe JSON lines, base64."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_audit.textenc import b64, dumps_line, text_field

# Every code point, lone surrogates included: records are built from text_field output, but the line
# encoder must stay safe whatever text reaches it.
any_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(any_text, children, max_size=5),
    max_leaves=30,
)
records = st.dictionaries(any_text, json_values, max_size=8)


def test_valid_utf8_is_exact() -> None:
    """Valid UTF-8, including multi-byte characters and controls, decodes exactly and is flagged valid."""
    assert text_field("caf\u00e9 \U0001f600\x1b[0m".encode()) == ("caf\u00e9 \U0001f600\x1b[0m", True)
    assert text_field(b"") == ("", True)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"a\xffb", "a\ufffdb"),
        # A truncated 3-byte sequence is two invalid bytes, so two replacement characters.
        (b"\xe2\x82x", "\ufffd\ufffdx"),
        # UTF-8-encoded surrogates and overlong forms are invalid byte by byte.
        (b"\xed\xa0\x80", "\ufffd\ufffd\ufffd"),
        (b"\xc0\xaf", "\ufffd\ufffd"),
        (b"\xe2\x82\xac\x80", "\u20ac\ufffd"),
    ],
)
def test_invalid_bytes_each_become_one_replacement(raw: bytes, text: str) -> None:
    """Each invalid byte becomes exactly one U+FFFD and valid parts are kept; the result is flagged."""
    assert text_field(raw) == (text, False)


@given(st.binary())
def test_text_field_properties(raw: bytes) -> None:
    """For any bytes: valid iff strict decoding works, result is encodable, replacements account for bytes."""
    text, valid = text_field(raw)
    text.encode("utf-8")  # raises on a lone surrogate
    if valid:
        assert text.encode("utf-8") == raw
    else:
        assert "\ufffd" in text
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        # Put the invalid bytes back where the (new) replacement characters are: the input returns.
        escaped = raw.decode("utf-8", "surrogateescape")
        assert len(escaped) == len(text)
        bad = [c for c, t in zip(escaped, text, strict=True) if c != t]
        assert all(0xDC80 <= ord(c) <= 0xDCFF for c in bad)


def test_dumps_line_golden() -> None:
    """Compact separators, raw non-ASCII text, escaped controls, one trailing newline."""
    got = dumps_line({"a": [1, "caf\u00e9"], "b": "x\ny\x1b\x7f\x9b\u2028\u2029"})
    assert got == (b'{"a":[1,"caf\xc3\xa9"],"b":"x\\ny\\u001b\\u007f\\u009b\\u2028\\u2029"}\n')


def test_dumps_line_refuses_nan() -> None:
    """NaN is not JSON; a record holding one is a bug to surface, not a line to write."""
    with pytest.raises(ValueError, match="JSON"):
        dumps_line({"x": float("nan")})


@given(records)
def test_dumps_line_is_one_safe_line(record: dict[str, Any]) -> None:
    """For any record: one newline at the end, valid UTF-8, no raw controls, and an exact round trip."""
    line = dumps_line(record)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert all(byte >= 0x20 for byte in line[:-1])
    text = line.decode("utf-8")
    assert not any(0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in text)
    assert json.loads(text) == record


@given(st.binary())
def test_b64_round_trips(raw: bytes) -> None:
    """b64 is standard padded base64 of exactly the given bytes."""
    assert base64.b64decode(b64(raw), validate=True) == raw
