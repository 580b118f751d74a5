"""Following the audit log like ``tail -F``: complete lines across rotation and truncation. I/O.

`follow` reads the file the path names and, whenever it is at its end, looks whether the path now
names another file (rotate.py's rotation: link to path.1, rename a new file over the path) or the file
shrank (copytruncate). Backup names and their order come from `lognames`.
"""

from __future__ import annotations

import contextlib
import os
import time
import zlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Final

from .lognames import GZ_SUFFIX, rotated

MAX_LINE_BYTES: Final = 32 << 20
"""Longest line `follow` holds while waiting for its newline (a maximal record is well below this)."""

_READ_CHUNK: Final = 1 << 16


class _Source:
    """One open file read line by line: the bytes after the last newline wait for the rest."""

    def __init__(self, fd: int, skip_partial: bool = False) -> None:
        self.fd = fd
        st = os.fstat(fd)
        self.ident = (st.st_dev, st.st_ino)
        self.pos = os.lseek(fd, 0, os.SEEK_CUR)
        self.buf = b""
        self.skipping = skip_partial
        """Drop everything up to the next newline (started mid-line, or after an over-long line)."""

    def _read(self) -> bytes:
        chunk = os.read(self.fd, _READ_CHUNK)
        self.pos += len(chunk)
        return chunk

    def lines(self) -> Iterator[bytes]:
        """Read to end of file now, yielding each complete line without its newline."""
        while True:
            chunk = self._read()
            if not chunk:
                return
            data = self.buf + chunk if self.buf else chunk
            if self.skipping:
                nl = data.find(b"\n")
                if nl < 0:
                    self.buf = b""
                    continue
                self.skipping = False
                data = data[nl + 1 :]
            *complete, self.buf = data.split(b"\n")
            yield from complete
            if len(self.buf) > MAX_LINE_BYTES:
                over, self.buf, self.skipping = self.buf, b"", True
                yield over

    def seek_end(self) -> None:
        """Go to the end of the file, skipping the rest of a line the file ends in the middle of."""
        size = os.fstat(self.fd).st_size
        if size:
            os.lseek(self.fd, size - 1, os.SEEK_SET)
            self.skipping = os.read(self.fd, 1) != b"\n"
            self.pos = size

    def rest(self) -> Iterator[bytes]:
        """The bytes held after the last newline, as a final line: this file will not be written again."""
        if self.buf and not self.skipping:
            yield self.buf
        self.buf = b""
        self.skipping = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class _GzSource(_Source):
    """A compressed backup (logrotate's path.N.gz): whole and never written again, read decompressed.

    Decompression is bounded per read (a chunk of output at a time), and a corrupt or cut file ends at
    its last good byte instead of raising.
    """

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._pending = b""
        self._done = False

    def _read(self) -> bytes:
        while not self._done:
            if not self._pending:
                self._pending = os.read(self.fd, _READ_CHUNK)
                if not self._pending:
                    self._done = True
                    return self._inflate.flush()
            try:
                out = self._inflate.decompress(self._pending, _READ_CHUNK)
            except zlib.error:
                self._done = True
                return b""
            self._pending = self._inflate.unconsumed_tail
            if self._inflate.eof:
                self._done = True  # one gzip member per file, as logrotate writes
            if out:
                return out
        return b""


def _source(path: Path) -> _Source:
    fd = _open(path)
    return _GzSource(fd) if path.name.endswith(GZ_SUFFIX) else _Source(fd)


def _open(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _open_rotated(
    path: Path, skip: set[tuple[int, int]], newer_than: tuple[int, int] | None = None
) -> list[_Source]:
    """Open the rotated files path.N ... path.1, oldest first, leaving out `skip` and duplicates.

    With `newer_than`, only the files rotated after that one (numbered below it), and none at all if it is
    not among them (then which files are newer cannot be known).

    Callers open the current file first: if a rotation runs meanwhile, it shows up again as path.1 (same
    inode, in `skip`) and nothing older is missed.
    """
    seen = set(skip)
    sources: list[_Source] = []
    found = newer_than is None
    try:
        for p in rotated(path):
            try:
                src = _source(p)
            except FileNotFoundError:
                continue  # moved by a rotation running now; it reappears under the next number
            if src.ident == newer_than:
                src.close()
                found = True
                break
            if src.ident in seen:
                src.close()
                continue
            seen.add(src.ident)
            sources.append(src)
    except BaseException:
        for src in sources:
            src.close()
        raise
    if not found:
        for src in sources:
            src.close()
        return []
    sources.reverse()
    return sources


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def follow(
    path: Path,
    from_start: bool,
    include_rotated: bool,
    stop: Callable[[], bool],
    poll_interval: float = 0.2,
) -> Generator[bytes, None, None]:
    """Yield each complete line of the audit log at `path` (without its newline), following it like tail -F.

    Starts at the end of the file (the first partial line, if the file ends mid-line, is skipped) unless
    `from_start`. With `include_rotated`, first yields every line of path.N ... path.1 (oldest first), then
    `path` from its start. Whenever the file is at its end, a rotation is looked for: if `path` now names
    another file, the old one is read to its end, then any files rotated after it (path.k ... path.1, if
    several rotations happened between two looks), then the new one from its start; if `path` was
    truncated in place (copytruncate), reading restarts at its start. So with rotate.py's rotation no
    line is lost or repeated (unless more rotations happen between two looks than there are backups).
    A partial last line is held until its newline arrives; one left in a file that was rotated away is
    yielded as it is (rotate.py never leaves one, so it is a broken line).

    `stop` is called each time the file is at its end and nothing has changed: True ends the iteration
    (so `stop=lambda: True` reads what is there and returns). Opening the file at the start raises
    OSError (FileNotFoundError, PermissionError); later, a path that is missing or cannot be opened just
    keeps the current file.
    """
    current = _Source(_open(path))
    queue: list[_Source] = []
    """Files to read whole before `current`: rotated ones (oldest first) and the current one's elders."""
    try:
        if include_rotated:
            queue = _open_rotated(path, {current.ident})
        elif not from_start:
            current.seek_end()
        while True:
            while queue:
                yield from queue[0].lines()
                yield from queue[0].rest()
                queue.pop(0).close()
            # Look at the path before reading to the end: whatever the writer put in the old file before
            # it rotated is then read from the old file before the switch.
            now = _identity(path)
            yield from current.lines()
            if now is not None and now != current.ident:
                try:
                    new = _Source(_open(path))
                except OSError:
                    new = None  # gone again, or not readable: keep the old file and look again
                if new is not None:
                    yield from current.rest()
                    try:
                        # More than one rotation since the last look: the files between come first.
                        queue = _open_rotated(path, {new.ident}, newer_than=current.ident)
                    except OSError:
                        queue = []
                    current.close()
                    current = new
                    continue
            elif os.fstat(current.fd).st_size < current.pos:
                yield from current.rest()
                os.lseek(current.fd, 0, os.SEEK_SET)
                current.pos = 0
                continue
            if stop():
                return
            time.sleep(poll_interval)
    finally:
        current.close()
        for src in queue:
            src.close()


__all__ = ["MAX_LINE_BYTES", "follow"]
