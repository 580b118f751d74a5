"""The audit file: append-only JSON lines, rotated by size, never split, never raising on write. I/O.

Durability rules:
- Lines are only ever written whole. A short write (disk full mid-line) is cut back to the last full
  line with ftruncate, or, if that fails, the next write starts with a newline, so a broken line never
  merges with a good one.
- Rotation happens between lines. The new file is created under a temporary name with its final mode
  and renamed over the path, and the old file is hard-linked to path.1 before that, so a reader that
  opens the path always finds a complete file with the right mode.
- Write-time errors (ENOSPC, EIO, a deleted directory) are counted, not raised: the daemon must keep
  draining the kernel. Lines that cannot be written are dropped at once (bounded memory) and reported
  through `take_gap()` once writing works again.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import secrets
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

import structlog

from .lognames import backup_number, backup_path

log = structlog.get_logger(__name__)

WriteFn = Callable[[int, bytes | memoryview], int]
"""The signature of os.write, which tests replace to simulate a full or failing disk."""

_OPEN_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
_NO_HARDLINKS: Final = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK})


def _drop_bits(mode: int, allowed: int) -> int:
    """Permission bits of `mode` outside `allowed` (rwx bits only; setgid/sticky are left alone)."""
    return stat.S_IMODE(mode) & 0o777 & ~allowed


class RotatingFile:
    """An append-only line file at `path`, rotated to path.1 ... path.`backups` past `max_bytes`
    (`max_bytes` 0: never rotated here; logrotate renames it and the writer follows the path).

    The constructor opens (creating if needed) the directory and file and raises OSError if it cannot:
    at start-up that is a fatal set-up problem. After that, nothing raises OSError: see `last_error`,
    `dropped_lines`, `dropped_bytes` and `take_gap()`.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        backups: int,
        file_mode: int = 0o640,
        dir_mode: int = 0o750,
        *,
        write: WriteFn = os.write,
        buffer_bytes: int = 1 << 20,
        group_id: int | None = None,
    ) -> None:
        if max_bytes < 0 or backups < 0 or buffer_bytes <= 0:
            raise ValueError("buffer_bytes must be > 0, max_bytes and backups >= 0")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.buffer_bytes = buffer_bytes
        self.group_id = group_id
        """Group given to the directory and files this writer creates or owns (the log's readers)."""
        self._group_warned = False
        self._write = write
        self._fd: int | None = None
        self._ident: tuple[int, int] = (0, 0)
        self._size = 0
        self._buffered: list[bytes] = []
        self._buffered_bytes = 0
        self._needs_newline = False
        self._healthy = True
        self._gap_lines = 0
        self._gap_bytes = 0
        self._closed = False
        self.lines_written = 0
        self.bytes_written = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.last_error: OSError | None = None
        self._open()

    # -- public API --------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes in the current file, as far as this writer knows."""
        return self._size

    def write_lines(self, lines: Sequence[bytes]) -> int:
        """Queue whole lines (each must end in its only b"\\n"); returns the number of bytes queued.

        The queue is written by `flush()`, or here once it holds `buffer_bytes`. Raises ValueError for a
        malformed line (none of the batch is queued then) and after `close()`.
        """
        if self._closed:
            raise ValueError("write to a closed RotatingFile")
        for line in lines:
            if not line.endswith(b"\n") or line.count(b"\n") != 1:
                raise ValueError("each line must end in b'\\n' and contain no other newline")
        queued = sum(len(line) for line in lines)
        self._buffered.extend(lines)
        self._buffered_bytes += queued
        if self._buffered_bytes >= self.buffer_bytes:
            self.flush()
        return queued

    def flush(self, fsync: bool = False) -> int:
        """Write the queued lines, rotating between lines as needed; returns how many lines were written.

        If the file or its directory was deleted or the path now names another file (moved by
        logrotate), the path is opened again first, creating what is missing.
        """
        lines, self._buffered, self._buffered_bytes = self._buffered, [], 0
        if self._fd is not None and self._path_changed():
            self._close_fd()
        if self._fd is None:
            try:
                self._open()
            except OSError as e:
                self._drop(lines, e)
                return 0
        written = self._write_rotating(lines)
        if fsync and self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError as e:
                self._note_error(e, "fsync failed")
        return written

    def reopen(self) -> bool:
        """Close the file and open the path again (SIGHUP after logrotate); False if that failed.

        Queued lines go to the newly opened file. On failure the next flush tries again.
        """
        self._close_fd()
        try:
            self._open()
        except OSError as e:
            self._note_error(e, "cannot reopen audit file")
            return False
        return True

    def take_gap(self) -> tuple[int, int] | None:
        """(lines, bytes) dropped since the last call, once writing has succeeded again; else None."""
        if not self._healthy or not self._gap_lines:
            return None
        gap = (self._gap_lines, self._gap_bytes)
        self._gap_lines = self._gap_bytes = 0
        return gap

    def close(self) -> None:
        """Flush what is queued and close the file. Closing twice is harmless."""
        if self._closed:
            return
        self.flush()
        self._close_fd()
        self._closed = True

    def __enter__(self) -> RotatingFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------------

    def _write_rotating(self, lines: list[bytes]) -> int:
        written = 0
        start = 0
        batch_bytes = 0
        may_rotate = self.max_bytes > 0
        for i, line in enumerate(lines):
            used = self._size + batch_bytes
            if may_rotate and used > 0 and used + len(line) > self.max_bytes:
                ok = self._write_batch(lines, start, i)
                written += ok
                if start + ok < i:
                    return written
                start, batch_bytes = i, 0
                try:
                    self._rotate()
                except OSError as e:
                    # Keep appending past max_bytes rather than lose audit records; retry next flush.
                    self._note_error(e, "rotation failed, writing on to the current file")
                    may_rotate = False
            batch_bytes += len(line)
        return written + self._write_batch(lines, start, len(lines))

    def _write_batch(self, lines: list[bytes], start: int, end: int) -> int:
        """Write lines[start:end]; on failure drop them and everything after. Returns lines written."""
        if start == end:
            return 0
        assert self._fd is not None
        batch = lines[start:end]
        prefix = b"\n" if self._needs_newline else b""
        data = memoryview(prefix + b"".join(batch))
        done = 0
        try:
            while done < len(data):
                n = self._write(self._fd, data[done:])
                if n <= 0:
                    raise OSError(errno.EIO, "write made no progress")
                done += n
        except OSError as e:
            kept = self._end_at_line(batch, len(prefix), done)
            self._count_written(batch[:kept])
            self._drop(lines[start + kept :], e)
            return kept
        self._needs_newline = False
        self._size += len(data)
        self._count_written(batch)
        return len(batch)

    def _end_at_line(self, batch: list[bytes], prefix_len: int, done: int) -> int:
        """After a short write of `done` bytes (repair prefix included), cut the file back to a line end.

        Returns how many lines of `batch` are in the file whole.
        """
        assert self._fd is not None
        if done < prefix_len:
            return 0  # nothing reached the file; it still ends mid-line
        self._needs_newline = False
        self._size += prefix_len
        body = done - prefix_len
        whole = kept = 0
        for line in batch:
            if whole + len(line) > body:
                break
            whole += len(line)
            kept += 1
        self._size += whole
        if whole < body:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                self._size += body - whole
                self._needs_newline = True
        return kept

    def _count_written(self, batch: Sequence[bytes]) -> None:
        if not batch:
            return
        self.lines_written += len(batch)
        self.bytes_written += sum(len(line) for line in batch)
        if not self._healthy:
            log.info("audit file writable again", path=str(self.path), lost_lines=self._gap_lines)
        self._healthy = True

    def _drop(self, lines: Sequence[bytes], err: OSError) -> None:
        n = sum(len(line) for line in lines)
        self.dropped_lines += len(lines)
        self.dropped_bytes += n
        self._gap_lines += len(lines)
        self._gap_bytes += n
        self._healthy = False
        self._note_error(err, "audit lines dropped", lines=len(lines))

    def _note_error(self, err: OSError, what: str, **kw: object) -> None:
        # Log the first of a run of identical errors only: a full disk would otherwise log every flush.
        repeated = (
            self.last_error is not None
            and self.last_error.errno == err.errno
            and type(self.last_error) is type(err)
        )
        self.last_error = err
        (log.debug if repeated else log.error)(what, path=str(self.path), error=str(err), **kw)

    # -- files and directories ---------------------------------------------------------------------

    def _backup(self, n: int) -> Path:
        return backup_path(self.path, n)

    def _is_ours(self, name: str) -> bool:
        base = self.path.name
        return name == base or backup_number(base, name) is not None or name.startswith(base + ".tmp-")

    def _set_group(self, chown: Callable[[int], None], st_gid: int, what: str) -> None:
        """Give `what` the readers' group; a failure (no CAP_CHOWN, not a member) is warned about once."""
        if self.group_id is None or st_gid == self.group_id:
            return
        try:
            chown(self.group_id)
        except OSError as e:
            if not self._group_warned:
                self._group_warned = True
                log.warning("cannot give the audit log its group", path=what, gid=self.group_id, error=str(e))

    def _ensure_dir(self) -> None:
        d = self.path.parent
        missing = []
        while not d.exists():
            missing.append(d)
            d = d.parent
        for m in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(m, self.dir_mode)
                os.chmod(m, self.dir_mode)  # mkdir's mode is reduced by the umask
                self._set_group(functools.partial(os.chown, m, -1), -1, str(m))
        if not missing:
            self._tighten_dir(self.path.parent)

    def _tighten_dir(self, d: Path) -> None:
        st = os.stat(d)
        extra = _drop_bits(st.st_mode, self.dir_mode)
        wrong_group = self.group_id is not None and st.st_gid != self.group_id
        if not (extra or wrong_group) or st.st_uid != os.geteuid():
            return
        # Only a directory holding nothing but this log is ours to change: pointing the log at /tmp or
        # /var/log must not chmod or chgrp those.
        if all(self._is_ours(name) for name in os.listdir(d)):
            if extra:
                os.chmod(d, stat.S_IMODE(st.st_mode) & ~extra)
            self._set_group(functools.partial(os.chown, d, -1), st.st_gid, str(d))
        elif extra:
            log.warning("audit directory is more permissive than intended", path=str(d), mode=oct(st.st_mode))

    def _create_tmp(self) -> tuple[int, Path]:
        tmp = self.path.with_name(f"{self.path.name}.tmp-{secrets.token_hex(4)}")
        fd = os.open(tmp, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, self.file_mode)  # explicit, so the umask cannot change it
        except OSError:
            os.close(fd)
            os.unlink(tmp)
            raise
        self._set_group(functools.partial(os.fchown, fd, -1), -1, str(tmp))
        return fd, tmp

    def _open(self) -> None:
        self._ensure_dir()
        try:
            fd = os.open(self.path, _OPEN_FLAGS)
        except FileNotFoundError:
            fd, tmp = self._create_tmp()
            try:
                os.rename(tmp, self.path)
            except OSError:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "audit log path is not a regular file", str(self.path))
            extra = _drop_bits(st.st_mode, self.file_mode)
            if extra and st.st_uid == os.geteuid():
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~extra)
            if st.st_uid == os.geteuid():
                self._set_group(functools.partial(os.fchown, fd, -1), st.st_gid, str(self.path))
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._ident = (st.st_dev, st.st_ino)
        self._size = st.st_size
        # A file that does not end in a newline (a crash mid-write) must not glue our first line to it.
        self._needs_newline = st.st_size > 0 and self._last_byte() != b"\n"

    def _last_byte(self) -> bytes:
        try:
            with self.path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                return f.read(1)
        except OSError:
            return b"\n"

    def _path_changed(self) -> bool:
        try:
            st = os.lstat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._ident

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _rotate(self) -> None:
        fd, tmp = self._create_tmp()
        linked = False
        try:
            if self.backups:
                for n in range(self.backups - 1, 0, -1):
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(self._backup(n), self._backup(n + 1))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._backup(1))
                try:
                    # A link, not a rename, so the path never disappears; the rename below replaces it.
                    os.link(self.path, self._backup(1), follow_symlinks=False)
                    linked = True
                except FileNotFoundError:
                    pass
                except OSError as e:
                    if e.errno not in _NO_HARDLINKS:
                        raise
                    os.rename(self.path, self._backup(1))
            os.rename(tmp, self.path)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if linked:
                with contextlib.suppress(OSError):
                    os.unlink(self._backup(1))
            raise
        self._close_fd()
        self._fd = fd
        st = os.fstat(fd)
        self._ident = (st.st_dev, st.st_ino)
        self._size = 0
        self._needs_newline = False
