"""Sizes of exec records as JSON lines, for the shippers' line limits in docs/SIEM.md.

A shipper with a line limit below a record's size cuts it, drops it, or (Fluent Bit's tail by default)
stops following the file. docs/SIEM.md configures every recipe for 1 MiB lines; these tests build the
largest records the default capture caps allow and check they fit, and print the sizes the table in
docs/SIEM.md gives (`pytest -s`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builders import HOST, SESSION, TOOL_INV, exec_event

from claude_audit.config import CaptureConfig
from claude_audit.records import exec_record
from claude_audit.textenc import dumps_line

SIEM_MD = Path(__file__).resolve().parents[2] / "docs" / "SIEM.md"
LINE_LIMIT = 1_048_576
ARGV_CAP = CaptureConfig().argv_max_bytes
Claude = dict[str, Any] | None
FILENAME_CAP = CaptureConfig().filename_max_bytes


def line_bytes(argv: list[bytes], filename: bytes = b"/usr/bin/x", claude: Claude = None) -> int:
    """Bytes of the JSON line of an exec of `argv` (truncated at the cap) in a tool call."""
    ev = exec_event(argv=argv, filename=filename, args_truncated=True, args_original_len=10 * ARGV_CAP)
    in_tool_call = claude if claude is not None else {**SESSION, **TOOL_INV}
    return len(dumps_line(exec_record(ev, HOST, in_tool_call, 1)))


def worst_case(argv_cap: int) -> int:
    """Control bytes (six-byte JSON escapes) everywhere the record repeats what the exec carried."""
    ctl = b"\x01"
    command = {**SESSION, **TOOL_INV, "command": (ctl * argv_cap).decode()}
    return line_bytes([ctl * (argv_cap - 1)], ctl * (FILENAME_CAP - 1), command)


def test_typical_record_is_about_a_kilobyte() -> None:
    """A short command in a tool call makes a record of about 1 KB."""
    size = line_bytes([b"git", b"commit", b"-m", b"fix it"], b"/usr/bin/git")
    print(f"typical: {size} B")
    assert 500 < size < 4096


def test_records_at_the_argv_cap_fit_the_documented_line_limit() -> None:
    """Printable, invalid UTF-8 and control-byte arguments at the default cap all fit in 1 MiB lines."""
    ascii_cap = line_bytes([b"a" * (ARGV_CAP - 1)])
    invalid_cap = line_bytes([b"\xff" * (ARGV_CAP - 1)])
    many_args = line_bytes([b"\x01"] * (ARGV_CAP // 2))
    worst = worst_case(ARGV_CAP)
    print(f"ascii cap: {ascii_cap} B, invalid UTF-8 cap: {invalid_cap} B, many args: {many_args} B")
    print(f"worst: {worst} B")
    assert ascii_cap < invalid_cap < worst
    assert many_args < worst
    assert worst < LINE_LIMIT


def test_worst_case_grows_linearly_with_the_cap() -> None:
    """The per-byte factor docs/SIEM.md gives for sizing a larger argv_max_bytes."""
    small, large = worst_case(ARGV_CAP), worst_case(4 * ARGV_CAP)
    per_byte = (large - small) / (3 * ARGV_CAP)
    fixed = small - per_byte * ARGV_CAP
    print(f"worst case: {per_byte:.1f} B per argv byte + {fixed / 1000:.0f} KB")
    assert 10 < per_byte < 20


def test_siem_recipes_configure_the_line_limit() -> None:
    """Each recipe in docs/SIEM.md sets its shipper's line limit to the 1 MiB these records need."""
    text = SIEM_MD.read_text()
    for setting in (
        "Buffer_Max_Size   1M",  # Fluent Bit tail (default 32k)
        "max_line_bytes = 1048576",  # Vector file (default 102400)
        "max_log_size: 1MiB",  # OpenTelemetry filelog
        "message_max_bytes: 1048576",  # Filebeat filestream
        "TRUNCATE = 1048576",  # Splunk (default 10000)
    ):
        assert setting in text, setting
