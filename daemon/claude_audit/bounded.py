"""Reading what a non-root user controls, with every size fixed before the read.

Files in users' homes and the numbers in /proc or in files they write are hostile input: a FIFO would
block `open()`, a symlink to /dev/zero would never end, a 5 000-digit "pid" makes `int()` raise. These
helpers are the only way the daemon turns such input into bytes or numbers: they never block, never
follow a symlink at the last component, never read past a cap and never raise for what the input holds.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_UINT_DIGITS = 20
"""Digits of the largest u64 (18446744073709551615); longer digit strings are not numbers we use."""


def parse_uint(value: bytes | str, max_digits: int = MAX_UINT_DIGITS) -> int | None:
    """A non-negative decimal integer of at most `max_digits` ASCII digits, else None (never raises)."""
    if isinstance(value, str):
        if not value.isascii():
            return None
        value = value.encode("ascii")
    if not 0 < len(value) <= max_digits or not value.isdigit():
        return None
    return int(value)


def parse_pid(value: bytes | str) -> int | None:
    """A pid as written in /proc or an environment variable: 1..2**22 (PID_MAX_LIMIT), else None."""
    n = parse_uint(value, 7)
    return n if n is not None and 0 < n <= 4_194_304 else None


@dataclass(frozen=True, slots=True)
class CappedRead:
    """What `read_user_file` found: the bytes (at most the cap), and whether the file held more."""

    data: bytes
    truncated: bool
    uid: int
    """Owner of the file as opened (fstat of the open descriptor, so it cannot be swapped after)."""


def read_user_file(path: Path | str, cap: int) -> CappedRead | None:
    """Read up to `cap` bytes of a regular file a non-root user may control; None if it is not one.

    Opened with O_NONBLOCK (a FIFO cannot block the open) and O_NOFOLLOW (a final symlink fails with
    ELOOP), checked with fstat to be a regular file (not a device, FIFO or socket), then read at most
    cap + 1 bytes so the caller learns that there was more without reading it.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        chunks: list[bytes] = []
        left = cap + 1
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)
    return CappedRead(data[:cap], len(data) > cap, st.st_uid)
