"""Tests for claude_audit.bounded: hostile files and numbers never block, grow or raise."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from claude_audit.bounded import parse_pid, parse_uint, read_user_file


def test_parse_uint_accepts_plain_digits() -> None:
    """Plain ASCII digits within the limit are numbers."""
    assert parse_uint(b"12345") == 12345
    assert parse_uint("0") == 0


def test_parse_uint_refuses_huge_and_odd_values() -> None:
    """5 000 digits, signs, spaces, non-ASCII digits and empty input are not numbers, and never raise."""
    assert parse_uint(b"7" * 5000) is None
    assert parse_uint("7" * 5000) is None
    for bad in (b"", b"-1", b"+1", b" 1", b"1 ", b"1_000", b"0x10"):
        assert parse_uint(bad) is None
    assert parse_uint("\u0661\u0662") is None  # Arabic-Indic digits: str.isdigit() says yes, we say no


def test_parse_pid_range() -> None:
    """A pid is 1..PID_MAX_LIMIT; 0 and anything larger are refused."""
    assert parse_pid(b"1") == 1
    assert parse_pid(b"4194304") == 4194304
    assert parse_pid(b"0") is None
    assert parse_pid(b"4194305") is None
    assert parse_pid(b"99999999") is None


def test_read_user_file_caps_and_flags(tmp_path: Path) -> None:
    """A file larger than the cap gives exactly the cap's bytes and says it was truncated."""
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    r = read_user_file(p, 10)
    assert r is not None
    assert (r.data, r.truncated, r.uid) == (b"x" * 10, True, os.getuid())
    r = read_user_file(p, 100)
    assert r is not None
    assert (r.data, r.truncated) == (b"x" * 100, False)


def test_read_user_file_refuses_fifo_without_blocking(tmp_path: Path) -> None:
    """A FIFO with no writer is refused at once (the open would block forever without O_NONBLOCK)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(read_user_file(fifo, 10)), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive()
    assert result == [None]


def test_read_user_file_refuses_symlinks_and_devices(tmp_path: Path) -> None:
    """A symlink (even to a regular file) and a character device (/dev/zero) are refused."""
    target = tmp_path / "t"
    target.write_bytes(b"{}")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_user_file(link, 10) is None
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    assert read_user_file(zero, 10) is None
    assert read_user_file("/dev/zero", 10) is None


def test_read_user_file_missing_and_bad_paths(tmp_path: Path) -> None:
    """A missing file, a directory and a path with a NUL byte are None, not exceptions."""
    assert read_user_file(tmp_path / "nope", 10) is None
    assert read_user_file(tmp_path, 10) is None
    assert read_user_file(str(tmp_path) + "/a\0b", 10) is None
