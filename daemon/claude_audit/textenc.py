"""Text and JSON-line encoding for audit records. Pure.

Kernel-sourced strings are bytes of unknown encoding. `text_field` turns them into readable text and
says whether that text is exact; `dumps_line` turns a record into one JSON line that no value can
break or use to send raw control sequences to a terminal that displays the log.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any, Final

REPLACEMENT: Final = "\ufffd"

# surrogateescape maps each undecodable byte to one lone surrogate U+DC80..U+DCFF, which gives the
# "one U+FFFD per invalid byte" rule directly (the "replace" handler merges a truncated multi-byte
# sequence into a single U+FFFD, which would hide how many bytes were bad).
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")

# json.dumps(ensure_ascii=False) already escapes C0 controls. These it leaves raw: DEL, the C1 controls
# (U+009B is a one-character CSI for many terminals), the line/paragraph separators that some JSON-line
# readers treat as line ends, and lone surrogates, which cannot be encoded as UTF-8 at all.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def text_field(b: bytes) -> tuple[str, bool]:
    """Decode kernel bytes as UTF-8: (exact text, True), or (text with U+FFFD per invalid byte, False)."""
    try:
        return b.decode("utf-8"), True
    except UnicodeDecodeError:
        escaped = b.decode("utf-8", "surrogateescape")
        return _ESCAPED_BYTE.sub(REPLACEMENT, escaped), False


def _escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group(0)):04x}"


def dumps_line(record: Mapping[str, Any]) -> bytes:
    """Serialise `record` as one compact JSON line: UTF-8 bytes ending in exactly one b"\\n".

    Every C0 control, DEL, C1 control, U+2028, U+2029 and lone surrogate is written as a \\uXXXX escape,
    so the only byte below 0x20 in the result is the final newline and no raw ESC or C1 control can
    reach a terminal. NaN and infinities are refused (ValueError): they are not JSON.
    """
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # Those characters can occur only inside JSON strings (the compact syntax around them is ASCII), and
    # inside a string \uXXXX denotes the same character, so escaping them here keeps the value intact.
    if not text.isascii() or "\x7f" in text:
        text = _UNSAFE.sub(_escape, text)
    return text.encode("utf-8") + b"\n"


def b64(b: bytes) -> str:
    """Standard base64 (RFC 4648 section 4, padded) of `b`, as ECS binary fields expect."""
    return base64.b64encode(b).decode("ascii")
