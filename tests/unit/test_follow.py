"""follow: reading the audit log like tail -F across rotation and truncation."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from builders import appender
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_audit import follow as follow_module
from claude_audit.follow import follow
from claude_audit.lognames import backup_path
from claude_audit.rotate import RotatingFile

# -- following ----------------------------------------------------------------------------------------


class Script:
    """A stop callback for `follow`: each time follow is idle it runs the next step; then it says stop.

    `step` counts the steps run, so a test can see when each line came out.
    """

    def __init__(self, *steps: Callable[[], object]) -> None:
        self.steps = list(steps)
        self.step = 0

    def __call__(self) -> bool:
        if self.step >= len(self.steps):
            return True
        self.steps[self.step]()
        self.step += 1
        return False


def _collect(
    path: Path, script: Script, *, from_start: bool = True, rotated: bool = False
) -> list[tuple[int, bytes]]:
    """Every line `follow` yields, with the number of scripted steps run before it came out."""
    return [
        (script.step, line)
        for line in follow(path, from_start=from_start, include_rotated=rotated, stop=script, poll_interval=0)
    ]


def _rotate_like_rotate_py(path: Path) -> None:
    """rotate.py's steps: shift backups, hard-link the file to .1, rename a new empty file over the path."""
    for n in range(4, 0, -1):
        src = backup_path(path, n)
        if src.exists():
            os.rename(src, backup_path(path, n + 1))
    os.link(path, backup_path(path, 1))
    tmp = path.with_name(path.name + ".tmp-1234")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.close(fd)
    os.rename(tmp, path)


def test_follow_starts_at_the_end(tmp_path: Path) -> None:
    """Without from_start only lines written after the start are yielded, like tail -f."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"old 1\nold 2\n")
    got = _collect(log, Script(appender(log, b"new 1\n"), appender(log, b"new 2\nnew 3\n")), from_start=False)
    assert got == [(1, b"new 1"), (2, b"new 2"), (2, b"new 3")]


def test_follow_from_the_end_skips_a_partial_line(tmp_path: Path) -> None:
    """Started while the file ends mid-line, follow does not yield the tail of that line as a line."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b'old 1\n{"half":')
    got = _collect(log, Script(appender(log, b'"line"}\nnew\n')), from_start=False)
    assert got == [(1, b"new")]


def test_follow_from_start_and_stop(tmp_path: Path) -> None:
    """from_start yields what is there; a stop callback that says True ends at the end of the file."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"a\nb\n\nc\n")
    assert _collect(log, Script()) == [(0, b"a"), (0, b"b"), (0, b""), (0, b"c")]


def test_partial_lines_are_held_until_complete(tmp_path: Path) -> None:
    """A line written in pieces comes out once, whole, after its newline; a final fragment is not yielded."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"")
    script = Script(
        appender(log, b'{"a":'),
        appender(log, b"1"),
        appender(log, b'}\n{"b":2}\n{"c"'),
        appender(log, b':3}\n{"d"'),
    )
    assert _collect(log, script) == [(3, b'{"a":1}'), (3, b'{"b":2}'), (4, b'{"c":3}')]


def test_follow_across_rotate_py_rotation(tmp_path: Path) -> None:
    """Lines written before and after rotations done by RotatingFile itself all come out once, in order."""
    log = tmp_path / "audit.jsonl"
    rf = RotatingFile(log, max_bytes=16, backups=2)

    def write(*names: str) -> Callable[[], None]:
        def step() -> None:
            rf.write_lines([f"{n:<7}\n".encode() for n in names])
            rf.flush()

        return step

    write("l0", "l1")()
    script = Script(write("l2"), write("l3", "l4"), write("l5"), write("l6", "l7"))
    got = _collect(log, script)
    rf.close()
    assert [line.decode().strip() for _, line in got] == [f"l{i}" for i in range(8)]
    assert log.with_name("audit.jsonl.2").exists()  # it really did rotate more than once


def test_rotation_racing_the_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line added to the old file just before a rotation that follow notices at once is still read.

    The writer appends "late" and rotates while follow is looking at the path; follow must read the old
    file to its end before it switches to the new one.
    """
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"first\n")
    real = follow_module._identity
    at_next_look: list[Callable[[], None]] = []

    def racing_identity(path: Path) -> tuple[int, int] | None:
        while at_next_look:
            at_next_look.pop(0)()
        return real(path)

    monkeypatch.setattr(follow_module, "_identity", racing_identity)

    def race() -> None:
        at_next_look.extend(
            [appender(log, b"late\n"), lambda: _rotate_like_rotate_py(log), appender(log, b"next\n")]
        )

    got = _collect(log, Script(race))
    assert [line for _, line in got] == [b"first", b"late", b"next"]


def test_rotation_between_link_and_rename_is_not_duplicated(tmp_path: Path) -> None:
    """While path and path.1 are one file (rotate.py mid-rotation), --all does not read it twice."""
    log = tmp_path / "audit.jsonl"
    log.with_name("audit.jsonl.1").write_bytes(b"r1\n")
    os.rename(log.with_name("audit.jsonl.1"), log.with_name("audit.jsonl.2"))
    log.write_bytes(b"c1\nc2\n")
    os.link(log, log.with_name("audit.jsonl.1"))
    got = _collect(log, Script(), rotated=True)
    assert [line for _, line in got] == [b"r1", b"c1", b"c2"]


def test_broken_last_line_of_a_rotated_file(tmp_path: Path) -> None:
    """A fragment left at the end of a file that is rotated away is yielded as it is, not glued on."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"a\n")
    script = Script(appender(log, b"brok"), lambda: _rotate_like_rotate_py(log), appender(log, b"b\n"))
    assert [line for _, line in _collect(log, script)] == [b"a", b"brok", b"b"]


def test_copytruncate(tmp_path: Path) -> None:
    """A file truncated in place (logrotate copytruncate) is read again from its start."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"line one\nline two\n")

    def copytruncate() -> None:
        shutil.copyfile(log, log.with_name("audit.jsonl.1"))
        with log.open("r+b") as f:
            f.truncate(0)

    script = Script(appender(log, b"line three\n"), copytruncate, appender(log, b"new\n"))
    got = _collect(log, script)
    assert got == [(0, b"line one"), (0, b"line two"), (1, b"line three"), (3, b"new")]


def test_path_missing_for_a_while(tmp_path: Path) -> None:
    """If the path disappears (rename-style rotation without create), follow keeps waiting for it."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"a\n")
    script = Script(
        lambda: os.rename(log, log.with_name("audit.jsonl.1")),
        lambda: None,
        lambda: log.write_bytes(b"b\n"),
    )
    assert [line for _, line in _collect(log, script)] == [b"a", b"b"]


def test_all_reads_rotated_files_oldest_first(tmp_path: Path) -> None:
    """include_rotated yields path.N ... path.1 then path, oldest first, then follows path."""
    log = tmp_path / "audit.jsonl"
    with RotatingFile(log, max_bytes=14, backups=3) as rf:  # two 7-byte lines a file
        for i in range(9):
            rf.write_lines([f"line {i}\n".encode()])
            rf.flush()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3"]
    got = _collect(log, Script(appender(log, b"line 9\n")), from_start=False, rotated=True)
    assert [line for _, line in got] == [f"line {i}".encode() for i in range(2, 10)]


def test_all_skips_gaps_in_backup_numbers(tmp_path: Path) -> None:
    """A missing path.1 (caught mid-rotation) does not hide path.2 and older."""
    log = tmp_path / "audit.jsonl"
    log.with_name("audit.jsonl.3").write_bytes(b"oldest\n")
    log.with_name("audit.jsonl.2").write_bytes(b"older\n")
    log.with_name("audit.jsonl.10").write_bytes(b"ancient\n")
    log.with_name("audit.jsonl.tmp-1234").write_bytes(b"not ours\n")
    log.write_bytes(b"current\n")
    got = _collect(log, Script(), rotated=True)
    assert [line for _, line in got] == [b"ancient", b"oldest", b"older", b"current"]


def test_overlong_line_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line longer than MAX_LINE_BYTES is yielded as it is, and its rest up to the newline is dropped."""
    monkeypatch.setattr(follow_module, "MAX_LINE_BYTES", 10)
    monkeypatch.setattr(follow_module, "_READ_CHUNK", 16)
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"ok\n" + b"x" * 100 + b"\nafter\n")
    got = [line for _, line in _collect(log, Script())]
    assert got[0] == b"ok"
    assert got[1].startswith(b"x") and len(got[1]) > 10
    assert got[2:] == [b"after"]


def test_missing_file_raises(tmp_path: Path) -> None:
    """follow reports a missing log at the start rather than waiting silently."""
    with pytest.raises(FileNotFoundError):
        next(follow(tmp_path / "nope.jsonl", True, False, lambda: True, 0))


@settings(max_examples=60, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=4), min_size=1, max_size=12),
    max_bytes=st.integers(20, 60),
)
def test_every_line_once_across_random_rotations(batches: list[list[int]], max_bytes: int) -> None:
    """With RotatingFile rotating at random points between looks, follow yields each line once, in order.

    A batch can rotate the file up to four times before follow looks again (lines of at most 17 bytes,
    max_bytes at least 20); with five backups the files rotated in between are read from path.k ... path.1.
    """
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "audit.jsonl"
        rf = RotatingFile(log, max_bytes=max_bytes, backups=5)
        expected: list[bytes] = []
        steps = []
        for batch in batches:
            lines = []
            for width in batch:
                text = f"{len(expected):04d}" + "." * width
                expected.append(text.encode())
                lines.append(text.encode() + b"\n")
            steps.append(lambda lines=lines: (rf.write_lines(lines), rf.flush()))
        got = [line for _, line in _collect(log, Script(*steps))]
        rf.close()
        assert got == expected


def test_several_rotations_between_looks(tmp_path: Path) -> None:
    """Two rotations before follow looks again: the file in between (now path.1) is read, in order."""
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"a\n")

    def two_rotations() -> None:
        appender(log, b"b\n")()
        _rotate_like_rotate_py(log)
        appender(log, b"c\n")()
        _rotate_like_rotate_py(log)
        appender(log, b"d\n")()

    assert [line for _, line in _collect(log, Script(two_rotations))] == [b"a", b"b", b"c", b"d"]


def test_all_reads_logrotates_compressed_backups_in_order(tmp_path: Path) -> None:
    """--all over logrotate's set (.3.gz, .2.gz, plain .1, then the file) gives every line once, oldest
    first; a cut .gz ends at its last complete line instead of raising."""
    import gzip

    log = tmp_path / "audit.jsonl"
    (tmp_path / "audit.jsonl.3.gz").write_bytes(gzip.compress(b"a1\na2\n"))
    (tmp_path / "audit.jsonl.2.gz").write_bytes(gzip.compress(b"".join(b"b%d\n" % i for i in range(20000))))
    (tmp_path / "audit.jsonl.1").write_bytes(b"c1\n")
    log.write_bytes(b"d1\n")
    got = list(follow(log, from_start=True, include_rotated=True, stop=lambda: True))
    assert got == [b"a1", b"a2", *(b"b%d" % i for i in range(20000)), b"c1", b"d1"]
    (tmp_path / "audit.jsonl.3.gz").write_bytes(gzip.compress(b"a1\na2\n")[:-12])
    got = list(follow(log, from_start=True, include_rotated=True, stop=lambda: True))
    assert got[-3:] == [b"b19999", b"c1", b"d1"]
