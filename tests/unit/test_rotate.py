"""rotate: rotation boundaries, backups, modes, reopen, recreation, and write errors."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_audit.rotate import RotatingFile


def _line(n: int, c: str = "x") -> bytes:
    """A line of exactly n bytes, newline included."""
    return (c * (n - 1)).encode() + b"\n"


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture(params=[0, 0o077], ids=["umask0", "umask077"])
def umask0(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run with umask 0 and with 077, so only explicit chmods can give the right modes."""
    old = os.umask(request.param)
    try:
        yield
    finally:
        os.umask(old)


class FlakyWrite:
    """os.write that fails with `err` while `failing`, after letting `allow` more bytes through."""

    def __init__(self) -> None:
        self.failing = False
        self.allow = 0
        self.err = errno.ENOSPC

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        if not self.failing:
            return os.write(fd, data)
        if self.allow:
            n = os.write(fd, data[: self.allow])
            self.allow -= n
            return n
        raise OSError(self.err, os.strerror(self.err))


def test_creates_directory_and_file_with_modes(tmp_path: Path, umask0: None) -> None:
    """Missing directories get 0750 and the file 0640 even with umask 0."""
    path = tmp_path / "a" / "b" / "audit.jsonl"
    with RotatingFile(path, 100, 2):
        pass
    assert _mode(tmp_path / "a") == 0o750
    assert _mode(tmp_path / "a" / "b") == 0o750
    assert _mode(path) == 0o640
    assert path.read_bytes() == b""


def test_lines_are_buffered_until_flush(tmp_path: Path) -> None:
    """write_lines queues; flush writes and reports the count; the counters follow."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 100, 2) as f:
        assert f.write_lines([_line(5), _line(6)]) == 11
        assert path.read_bytes() == b""
        assert f.flush(fsync=True) == 2
        assert path.read_bytes() == _line(5) + _line(6)
        assert (f.lines_written, f.bytes_written, f.size) == (2, 11, 11)


def test_buffer_limit_forces_a_write(tmp_path: Path) -> None:
    """Once buffer_bytes are queued, write_lines writes them itself."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 1000, 1, buffer_bytes=20) as f:
        f.write_lines([_line(10)])
        assert path.read_bytes() == b""
        f.write_lines([_line(10)])
        assert path.read_bytes() == _line(10) * 2


def test_rotation_boundary_is_exact(tmp_path: Path) -> None:
    """Lines filling max_bytes exactly stay together; the next line starts a new file."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 30, 3) as f:
        f.write_lines([_line(10, "a"), _line(10, "b"), _line(10, "c"), _line(10, "d")])
    assert path.with_name("audit.jsonl.1").read_bytes() == _line(10, "a") + _line(10, "b") + _line(10, "c")
    assert path.read_bytes() == _line(10, "d")


def test_line_past_the_limit_rotates_first(tmp_path: Path) -> None:
    """A line that would take the file to max_bytes + 1 goes to the next file."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 30, 3) as f:
        f.write_lines([_line(20, "a"), _line(11, "b")])
    assert path.with_name("audit.jsonl.1").read_bytes() == _line(20, "a")
    assert path.read_bytes() == _line(11, "b")


def test_oversized_line_gets_a_file_alone(tmp_path: Path) -> None:
    """A line larger than max_bytes is written whole, in a file of its own."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 30, 3) as f:
        f.write_lines([_line(10, "a"), _line(50, "b"), _line(10, "c")])
    assert path.with_name("audit.jsonl.2").read_bytes() == _line(10, "a")
    assert path.with_name("audit.jsonl.1").read_bytes() == _line(50, "b")
    assert path.read_bytes() == _line(10, "c")


def test_oversized_first_line_in_empty_file_does_not_rotate(tmp_path: Path) -> None:
    """An empty file is never rotated away: the big line goes into it."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 30, 3) as f:
        f.write_lines([_line(50)])
    assert path.read_bytes() == _line(50)
    assert not path.with_name("audit.jsonl.1").exists()


def test_backups_count_is_honoured(tmp_path: Path, umask0: None) -> None:
    """Only path.1..path.N remain, newest first, every one 0640, and no temporary file is left."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 10, 2) as f:
        for c in "abcde":
            f.write_lines([_line(10, c)])
            f.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert path.read_bytes() == _line(10, "e")
    assert path.with_name("audit.jsonl.1").read_bytes() == _line(10, "d")
    assert path.with_name("audit.jsonl.2").read_bytes() == _line(10, "c")
    assert {_mode(p) for p in tmp_path.iterdir()} == {0o640}


def test_path_never_disappears_during_rotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After every rename the rotation makes, the path exists: readers never find it missing."""
    path = tmp_path / "audit.jsonl"
    real_rename = os.rename
    seen: list[bool] = []

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_rename(src, dst)
        seen.append(path.exists())

    with RotatingFile(path, 10, 2) as f:
        monkeypatch.setattr(os, "rename", rename)
        for c in "abc":
            f.write_lines([_line(10, c)])
            f.flush()
    assert seen
    assert all(seen)


def test_zero_backups_replaces_the_file(tmp_path: Path) -> None:
    """backups=0 keeps only the current file."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 10, 0) as f:
        f.write_lines([_line(10, "a"), _line(10, "b")])
    assert [p.name for p in tmp_path.iterdir()] == ["audit.jsonl"]
    assert path.read_bytes() == _line(10, "b")


def test_rotated_file_is_the_old_inode(tmp_path: Path) -> None:
    """path.1 is the file that was being written (a reader holding it open keeps reading it)."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 10, 1) as f:
        f.write_lines([_line(10, "a")])
        f.flush()
        ino = path.stat().st_ino
        f.write_lines([_line(10, "b")])
        f.flush()
    assert path.with_name("audit.jsonl.1").stat().st_ino == ino
    assert path.stat().st_ino != ino


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=40), max_size=40),
    max_bytes=st.integers(min_value=1, max_value=60),
    flush_every=st.integers(min_value=1, max_value=5),
)
@settings(max_examples=60, deadline=None)
def test_rotation_keeps_every_line_whole_and_in_order(
    sizes: list[int], max_bytes: int, flush_every: int
) -> None:
    """For any line sizes: all lines survive in order, files end at line ends, and a file is over
    max_bytes only when it holds a single line."""
    lines = [_line(n, "abcdefghij"[i % 10]) for i, n in enumerate(sizes)]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "audit.jsonl"
        with RotatingFile(path, max_bytes, len(lines) + 1) as f:
            for i, line in enumerate(lines):
                f.write_lines([line])
                if i % flush_every == 0:
                    f.flush()
        files = [path] + [path.with_name(f"audit.jsonl.{n}") for n in range(1, len(lines) + 2)]
        contents = [p.read_bytes() for p in reversed(files) if p.exists()]
    assert b"".join(contents) == b"".join(lines)
    for c in contents:
        assert c == b"" or c.endswith(b"\n")
        assert len(c) <= max_bytes or c.count(b"\n") == 1


def test_existing_file_is_appended_and_counted(tmp_path: Path) -> None:
    """Restarting on an existing file appends and counts its size towards max_bytes."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(_line(25, "o"))
    with RotatingFile(path, 30, 1) as f:
        f.write_lines([_line(10, "n")])
    assert path.with_name("audit.jsonl.1").read_bytes() == _line(25, "o")
    assert path.read_bytes() == _line(10, "n")


def test_existing_unterminated_file_gets_a_newline(tmp_path: Path) -> None:
    """A file left mid-line (crash) is ended before the first new line, so no two lines merge."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"cut')
    with RotatingFile(path, 1000, 1) as f:
        f.write_lines([b"{}\n"])
    assert path.read_bytes() == b'{"cut\n{}\n'


@pytest.mark.parametrize(
    ("file_mode", "dir_mode", "want_file", "want_dir"),
    [(0o666, 0o777, 0o640, 0o750), (0o600, 0o700, 0o600, 0o700)],
    ids=["permissive-is-tightened", "stricter-is-kept"],
)
def test_existing_modes_are_tightened_never_loosened(
    tmp_path: Path, file_mode: int, dir_mode: int, want_file: int, want_dir: int
) -> None:
    """An existing file and a directory holding only the log lose bits beyond 0640 / 0750, gain none."""
    d = tmp_path / "logs"
    d.mkdir()
    d.chmod(dir_mode)
    path = d / "audit.jsonl"
    path.write_bytes(b"")
    path.chmod(file_mode)
    with RotatingFile(path, 100, 1):
        pass
    assert _mode(path) == want_file
    assert _mode(d) == want_dir


def test_directory_with_backups_and_leftovers_is_ours(tmp_path: Path) -> None:
    """The log's backups (.1, .2) and a temporary file left by a crash still make the directory ours.

    A name that only looks numbered (non-ASCII digits) is somebody else's file: then it is left alone.
    """
    for extra, tightened in (
        (("audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.tmp-0a1b"), True),
        (("audit.jsonl.\u00b2",), False),
    ):
        d = tmp_path / ("ours" if tightened else "theirs")
        d.mkdir()
        d.chmod(0o777)
        for name in extra:
            (d / name).write_bytes(b"")
        with RotatingFile(d / "audit.jsonl", 100, 1):
            pass
        assert _mode(d) == (0o750 if tightened else 0o777), extra


def test_shared_directory_is_left_alone(tmp_path: Path) -> None:
    """A directory that holds other files (like /tmp or /var/log) is never chmodded."""
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o755)
    (d / "syslog").write_bytes(b"")
    with RotatingFile(d / "audit.jsonl", 100, 1):
        pass
    assert _mode(d) == 0o755


def test_symlink_at_path_is_refused(tmp_path: Path) -> None:
    """The audit file is never opened through a symlink."""
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    (tmp_path / "audit.jsonl").symlink_to(target)
    with pytest.raises(OSError) as exc:
        RotatingFile(tmp_path / "audit.jsonl", 100, 1)
    assert exc.value.errno == errno.ELOOP


def test_bad_lines_are_refused(tmp_path: Path) -> None:
    """Lines must end in exactly one newline; a bad batch is refused whole."""
    with RotatingFile(tmp_path / "audit.jsonl", 100, 1) as f:
        for bad in (b"no newline", b"two\nlines\n", b""):
            with pytest.raises(ValueError, match="newline"):
                f.write_lines([b"ok\n", bad])
        assert f.flush() == 0


def test_write_after_close_is_an_error(tmp_path: Path) -> None:
    """A closed file takes no more lines; closing again is fine."""
    f = RotatingFile(tmp_path / "audit.jsonl", 100, 1)
    f.close()
    f.close()
    with pytest.raises(ValueError, match="closed"):
        f.write_lines([b"x\n"])


def test_reopen_after_logrotate_rename(tmp_path: Path, umask0: None) -> None:
    """After the file is renamed away, reopen() creates a fresh 0640 file at the path."""
    path = tmp_path / "audit.jsonl"
    moved = tmp_path / "audit.jsonl-20261125"
    with RotatingFile(path, 1000, 1) as f:
        f.write_lines([b"before\n"])
        f.flush()
        path.rename(moved)
        f.write_lines([b"queued\n"])
        assert f.reopen()
        f.write_lines([b"after\n"])
    assert moved.read_bytes() == b"before\n"
    assert path.read_bytes() == b"queued\nafter\n"
    assert _mode(path) == 0o640


def test_reopen_onto_file_created_by_logrotate(tmp_path: Path) -> None:
    """If logrotate already created the new file, reopen() appends to it."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 1000, 1) as f:
        f.write_lines([b"before\n"])
        f.flush()
        path.rename(tmp_path / "old")
        path.write_bytes(b"")
        ino = path.stat().st_ino
        f.reopen()
        f.write_lines([b"after\n"])
    assert path.stat().st_ino == ino
    assert path.read_bytes() == b"after\n"


def test_moved_file_is_noticed_without_reopen(tmp_path: Path) -> None:
    """Even without SIGHUP, the next flush writes to the path, not to the moved-away file."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 1000, 1) as f:
        f.write_lines([b"before\n"])
        f.flush()
        path.rename(tmp_path / "old")
        f.write_lines([b"after\n"])
        f.flush()
    assert path.read_bytes() == b"after\n"


def test_deleted_directory_is_recreated(tmp_path: Path, umask0: None) -> None:
    """If the whole directory is deleted, the next flush recreates it with its mode and loses nothing."""
    d = tmp_path / "logs"
    path = d / "audit.jsonl"
    with RotatingFile(path, 1000, 1) as f:
        f.write_lines([b"one\n"])
        f.flush()
        shutil.rmtree(d)
        f.write_lines([b"two\n"])
        assert f.flush() == 1
        assert (f.dropped_lines, f.last_error) == (0, None)
    assert path.read_bytes() == b"two\n"
    assert _mode(d) == 0o750
    assert _mode(path) == 0o640


def test_enospc_drops_counts_and_reports_gap(tmp_path: Path) -> None:
    """Write errors are counted, not raised; the gap is reported once writing works again."""
    w = FlakyWrite()
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 1000, 1, write=w) as f:
        f.write_lines([b"a\n"])
        f.flush()
        w.failing = True
        f.write_lines([b"bb\n", b"ccc\n"])
        assert f.flush() == 0
        assert f.last_error is not None
        assert f.last_error.errno == errno.ENOSPC
        assert (f.dropped_lines, f.dropped_bytes) == (2, 7)
        assert f.take_gap() is None  # still failing: nowhere to write the gap record
        f.write_lines([b"d\n"])
        f.flush()
        assert (f.dropped_lines, f.dropped_bytes) == (3, 9)
        w.failing = False
        assert f.take_gap() is None  # nothing has been written since
        f.write_lines([b"e\n"])
        assert f.flush() == 1
        assert f.take_gap() == (3, 9)
        assert f.take_gap() is None
    assert path.read_bytes() == b"a\ne\n"


def test_short_write_is_cut_back_to_a_line_end(tmp_path: Path) -> None:
    """A write that stops mid-line keeps the whole lines and truncates the partial one away."""
    w = FlakyWrite()
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 1000, 1, write=w) as f:
        f.write_lines([b"zero\n"])
        f.flush()
        w.failing, w.allow = True, 7  # "one\n" and "tw"
        f.write_lines([b"one\n", b"two\n", b"three\n"])
        assert f.flush() == 1
        assert (f.dropped_lines, f.dropped_bytes) == (2, 10)
        assert path.read_bytes() == b"zero\none\n"
        w.failing = False
        f.write_lines([b"four\n"])
        f.flush()
        assert f.size == len(b"zero\none\nfour\n")
    assert path.read_bytes() == b"zero\none\nfour\n"


def test_open_failure_at_flush_is_counted(tmp_path: Path) -> None:
    """If the directory cannot be recreated (a file is in the way), lines are dropped, then recovery."""
    d = tmp_path / "logs"
    path = d / "audit.jsonl"
    with RotatingFile(path, 1000, 1) as f:
        shutil.rmtree(d)
        d.write_bytes(b"in the way")
        f.write_lines([b"lost\n"])
        assert f.flush() == 0
        assert f.last_error is not None
        assert f.dropped_lines == 1
        d.unlink()
        f.write_lines([b"kept\n"])
        assert f.flush() == 1
        assert f.take_gap() == (1, 5)
    assert path.read_bytes() == b"kept\n"


def test_failed_rotation_keeps_writing(tmp_path: Path) -> None:
    """If rotation fails, lines go on into the current file rather than being lost."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 10, 1) as f:
        f.write_lines([_line(10, "a")])
        f.flush()
        # A directory where path.1 must go makes the rotation fail (EISDIR/ENOTEMPTY/EEXIST).
        (tmp_path / "audit.jsonl.1").mkdir()
        (tmp_path / "audit.jsonl.1" / "x").write_bytes(b"")
        f.write_lines([_line(10, "b")])
        assert f.flush() == 1
        assert f.last_error is not None
        assert f.dropped_lines == 0
    assert path.read_bytes() == _line(10, "a") + _line(10, "b")
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_max_bytes_zero_never_rotates(tmp_path: Path) -> None:
    """max_bytes 0 (logrotate owns rotation): the file only grows, no backup is ever made."""
    path = tmp_path / "audit.jsonl"
    with RotatingFile(path, 0, 5) as f:
        for _ in range(50):
            f.write_lines([b"x" * 100 + b"\n"])
            f.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl"]
    assert path.stat().st_size == 50 * 101
