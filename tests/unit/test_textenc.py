"""textenc: UTF-8 text fields, safe JSON lines, base64."""

from __future__ import annotations

import base64
import json
import sys
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_audit.textenc import _dumps_line_stdlib, b64, dumps_line, neutralise, text_field

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


@given(records)
def test_dumps_line_fast_path_writes_the_standard_librarys_bytes(record: dict[str, Any]) -> None:
    """The fast encoder (orjson) and the standard library's give the same bytes for every record: the
    speed-up changes nothing a reader of the log can see (escapes, separators, numbers, key order)."""
    assert dumps_line(record) == _dumps_line_stdlib(record)


def test_dumps_line_refuses_infinity_and_takes_big_integers_and_surrogates() -> None:
    """What the fast encoder cannot write exactly is written (or refused) as the standard library does."""
    with pytest.raises(ValueError, match="JSON"):
        dumps_line({"x": [1, {"y": float("inf")}]})
    assert dumps_line({"n": 2**70}) == b'{"n":1180591620717411303424}\n'
    assert dumps_line({"s": "a\ud800"}) == b'{"s":"a\\ud800"}\n'
    assert dumps_line({"s": "nullable", "v": None}) == b'{"s":"nullable","v":null}\n'
    # orjson would write 6e-8 and 1e+16 with one exponent digit where Python writes two
    for f in (5.960464477539063e-08, 1e16, 1.5e-300, 2e22):
        assert dumps_line({"f": f, "s": "pre-commit 1e-5 e+"}) == _dumps_line_stdlib(
            {"f": f, "s": "pre-commit 1e-5 e+"}
        )


@given(st.binary())
def test_b64_round_trips(raw: bytes) -> None:
    """b64 is standard padded base64 of exactly the given bytes."""
    assert base64.b64decode(b64(raw), validate=True) == raw


# -- the unsafe-character table, and neutralise ------------------------------------------------------

# Categories a terminal line must never carry raw: controls, format characters (bidi, zero-width,
# tags), line/paragraph separators, surrogates.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Further characters in the table, each for a stated reason (see textenc._UNSAFE_BMP): invisible
# fillers and joiners, variation selectors, and code points of the Cf blocks that Unicode 15 assigns (or may
# assign) but this Python's database may not know yet.
UNSAFE_EXTRA = frozenset(
    {0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, 0x180B, 0x180C, 0x180D, 0x180F, 0x2065}.union(
        range(0xFE00, 0xFE10), range(0x13430, 0x13440), range(0xE0000, 0xE0080), range(0xE0100, 0xE01F0)
    )
)


def is_unsafe(c: str) -> bool:
    """The table's definition, stated independently of the regular expression that implements it."""
    return unicodedata.category(c) in UNSAFE_CATEGORIES or ord(c) in UNSAFE_EXTRA


def test_neutralise_golden() -> None:
    """ESC, CSI (7-bit and C1), newlines, DEL, bidi overrides and lone surrogates are shown escaped."""
    assert neutralise("\x1b[2J\x1b]0;pwned\x07") == "\\x1b[2J\\x1b]0;pwned\\x07"
    assert neutralise("a\nb\tc\rd\x7f\x9b31m") == "a\\nb\\tc\\rd\\x7f\\x9b31m"
    assert neutralise("safe\u202eexe.txt\u2028\udc80") == "safe\\u202eexe.txt\\u2028\\udc80"
    plain = "h\u00e9llo w\u00f6rld \u21b3 \u65e5\u672c \\x1b"
    assert neutralise(plain) == plain


def test_neutralise_invisible_characters() -> None:
    """Isolates, zero-width characters, the BOM, soft hyphen and tag characters become visible too.

    Tag characters (U+E0000 block) spell hidden ASCII that a terminal does not draw; above U+FFFF the
    escape is \\UXXXXXXXX so it is not mistaken for a 4-digit one followed by text.
    """
    assert neutralise("a\u2066b\u2069c\u200bd\u200de\ufeff\u00adf") == (
        "a\\u2066b\\u2069c\\u200bd\\u200de\\ufeff\\xadf"
    )
    assert neutralise("ok\U000e0072\U000e006d") == "ok\\U000e0072\\U000e006d"


def test_table_covers_the_unicode_database() -> None:
    """Every code point is escaped by neutralise exactly when the stated definition calls it unsafe.

    Run over all of Unicode, so a character the running Python's database adds to a dangerous
    category (a new format character) fails here until the table names it.
    """
    every = [chr(cp) for cp in range(sys.maxunicode + 1)]
    unsafe = [c for c in every if is_unsafe(c)]
    safe = "".join(c for c in every if not is_unsafe(c))
    assert neutralise(safe) == safe  # unchanged, backslashes included
    assert [c for c in unsafe if neutralise(c) == c] == []


@given(any_text)
def test_neutralise_output_is_safe(text: str) -> None:
    """For any text: no unsafe character survives, the result is UTF-8, and safe text is unchanged."""
    out = neutralise(text)
    assert not any(is_unsafe(c) for c in out)
    out.encode("utf-8")
    if not any(is_unsafe(c) for c in text):
        assert out == text


@given(any_text)
def test_dumps_line_escapes_the_same_table(text: str) -> None:
    """The JSON line carries no unsafe character raw either (as \\uXXXX, so the value is unchanged)."""
    line = dumps_line({"s": text}).decode("utf-8")
    assert not any(is_unsafe(c) for c in line[:-1])
    assert json.loads(line) == {"s": text}


def test_dumps_line_escapes_astral_format_characters_as_pairs() -> None:
    """A tag character above U+FFFF is written as a UTF-16 surrogate-pair escape, the only JSON form."""
    assert dumps_line({"s": "a\U000e0041"}) == b'{"s":"a\\udb40\\udc41"}\n'
