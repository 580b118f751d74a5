"""Text and JSON-line encoding for audit records. Pure.

Kernel-sourced strings are bytes of unknown encoding. `text_field` turns them into readable text and
says whether that text is exact; `dumps_line` turns a record into one JSON line that no value can
break or use to send raw control sequences to a terminal that displays the log; `neutralise` makes any
text safe to print on one terminal line (the tail view, journald's MESSAGE, `claude-audit status`).

Both rest on one table of characters a terminal must never receive raw (`_UNSAFE_BMP` and
`_UNSAFE_ASTRAL`): `dumps_line` spells them as JSON escapes (the value is unchanged), `neutralise` as
visible backslash escapes.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

REPLACEMENT: Final = "\ufffd"

# surrogateescape maps each undecodable byte to one lone surrogate U+DC80..U+DCFF, which gives the
# "one U+FFFD per invalid byte" rule directly (the "replace" handler merges a truncated multi-byte
# sequence into a single U+FFFD, which would hide how many bytes were bad).
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")

# Characters that must not reach a terminal raw, because they act on it or hide what it shows:
# - C0 controls, DEL and C1 controls (ESC starts escape sequences; U+009B is a one-character CSI);
# - U+2028/U+2029, which some JSON-line readers and editors treat as line ends;
# - every format character (Unicode category Cf): bidi embeddings, overrides, isolates and marks
#   reorder what the reader sees ("Trojan Source"); zero-width spaces/joiners, the soft hyphen, the BOM,
#   invisible operators and the tag characters U+E0000-E007F hide text or smuggle it unseen; the list
#   is Unicode 15's (a unit test checks it against the running Python's Unicode database);
# - other characters that render as nothing: the combining grapheme joiner, Hangul fillers and the
#   variation selectors (which can also carry hidden data);
# - lone surrogates, which are not text and cannot be encoded as UTF-8 at all.
# Two expressions, because one class holding the ranges above U+FFFF makes re test every character
# against a range list: 54 us instead of 6 us for a 500-character non-ASCII record (timeit, this
# machine). The second runs only on text that has a character above U+FFFF at all.
_UNSAFE_BMP: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u115f\u1160\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164"
    "\ud800-\udfff\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb]"
)
_UNSAFE_ASTRAL: Final = re.compile(
    "[\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)
_NAMED: Final = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def text_field(b: bytes) -> tuple[str, bool]:
    """Decode kernel bytes as UTF-8: (exact text, True), or (text with U+FFFD per invalid byte, False)."""
    try:
        return b.decode("utf-8"), True
    except UnicodeDecodeError:
        escaped = b.decode("utf-8", "surrogateescape")
        return _ESCAPED_BYTE.sub(REPLACEMENT, escaped), False


def _sub_unsafe(text: str, escape: Callable[[re.Match[str]], str]) -> str:
    text = _UNSAFE_BMP.sub(escape, text)
    # UTF-16 spends 4 bytes on a character above U+FFFF and 2 on any other (surrogatepass: a lone
    # surrogate is 2 bytes too), which tells cheaply whether there is one.
    if len(text.encode("utf-16-le", "surrogatepass")) != 2 * len(text):
        text = _UNSAFE_ASTRAL.sub(escape, text)
    return text


def _json_escape(m: re.Match[str]) -> str:
    code = ord(m.group(0))
    if code < 0x10000:
        return f"\\u{code:04x}"
    # JSON has no escape above U+FFFF: a UTF-16 surrogate pair denotes the character.
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _visible_escape(m: re.Match[str]) -> str:
    c = m.group(0)
    named = _NAMED.get(c)
    if named is not None:
        return named
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def neutralise(text: str) -> str:
    """`text` safe to print on one terminal line: every character of the unsafe table made visible.

    Newline, tab and carriage return become ``\\n``, ``\\t``, ``\\r``; other characters below U+0100
    ``\\xNN``, the rest ``\\uNNNN`` or ``\\UNNNNNNNN``. The result holds no C0 or C1 control, no DEL,
    no line or paragraph separator, no format character (bidi controls, zero-width characters, tags)
    and no lone surrogate, so it encodes as UTF-8 and cannot move the cursor, recolour the terminal or
    reorder what the reader sees. Backslashes are kept as they are: this is a view, not an encoding.
    """
    return _sub_unsafe(text, _visible_escape)


def dumps_line(record: Mapping[str, Any]) -> bytes:
    """Serialise `record` as one compact JSON line: UTF-8 bytes ending in exactly one b"\\n".

    Every character of the unsafe table (C0, DEL and C1 controls, U+2028, U+2029, format characters
    such as bidi overrides, lone surrogates; see `neutralise`) is written as a \\uXXXX escape, so the
    only byte below 0x20 in the result is the final newline and no raw ESC, C1 control or bidi override
    can reach a terminal. NaN and infinities are refused (ValueError): they are not JSON.
    """
    try:
        # orjson writes what json.dumps(ensure_ascii=False, compact) writes, C0 escapes included, about
        # ten times faster. It refuses what it cannot write exactly (lone surrogates, integers beyond
        # 64 bits, non-string keys), and writes NaN and infinities as null: those records take the
        # standard library's path, which escapes or refuses them as before. So do floats that orjson
        # writes with a one-digit exponent (5e-8, where Python writes 5e-08): the same number, other bytes.
        data = orjson.dumps(record)
    except TypeError:
        data = b"null"
    if b"null" in data or _has_short_exponent(data):
        return _dumps_line_stdlib(record)
    # The unsafe characters can occur only inside JSON strings (the compact syntax around them is ASCII)
    # and inside a string \\uXXXX denotes the same character, so escaping them afterwards keeps the value.
    # orjson has escaped the C0 controls already, so every one left is DEL or above.
    if not data.isascii() or b"\x7f" in data:
        return _sub_unsafe(data.decode("utf-8"), _json_escape).encode("utf-8") + b"\n"
    return data + b"\n"


def _is_digit_at(data: bytes, i: int) -> bool:
    return 0 <= i < len(data) and 0x30 <= data[i] <= 0x39


def _has_short_exponent(data: bytes) -> bool:
    # A digit, e, a sign, one digit and no more: how orjson writes 5e-8. Found with bytes.find, which is
    # ten times faster than a regular expression here; "e-" is common in text, a float rare.
    for sign in (b"e-", b"e+"):
        i = data.find(sign)
        while i != -1:
            if _is_digit_at(data, i - 1) and _is_digit_at(data, i + 2) and not _is_digit_at(data, i + 3):
                return True
            i = data.find(sign, i + 2)
    return False


def _dumps_line_stdlib(record: Mapping[str, Any]) -> bytes:
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if not text.isascii() or "\x7f" in text:
        text = _sub_unsafe(text, _json_escape)
    return text.encode("utf-8") + b"\n"


def b64(b: bytes) -> str:
    """Standard base64 (RFC 4648 section 4, padded) of `b`, as ECS binary fields expect."""
    return base64.b64encode(b).decode("ascii")
