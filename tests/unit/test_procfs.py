"""procfs: pure parsers on captured /proc files, and ProcFS over a fake /proc built from them.

tests/unit/data/proc_host/ holds processes captured from a real machine with
tests/unit/data/proc_capture.py: pid 1, kthreadd (no exe, empty cmdline), a python that renamed
itself "a) (b c)", a node that set process.title = "claude" (NUL padding), a python that renamed
itself "claude", and a sleep whose executable was deleted.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

from claude_audit.decode import split_argv
from claude_audit.procfs import (
    CMDLINE_HEAD,
    CMDLINE_MAX,
    ENVIRON_MAX,
    UNKNOWN_ID,
    ProcFS,
    parse_environ,
    parse_stat,
    parse_status_ids,
)

DATA = Path(__file__).parent / "data"
HOST = DATA / "proc_host"

KTHREADD = 2
PAREN_COMM = 10271  # python, prctl(PR_SET_NAME, "a) (b c)")
NODE_TITLE = 10273  # node -e 'process.title="claude"'
PY_CLAUDE = 10274  # python, prctl(PR_SET_NAME, "claude")
DELETED = 13009  # a copy of sleep, unlinked while running


def build_proc_root(dest: Path, sources: Iterable[Path]) -> Path:
    """Build a fake /proc in dest from captured pid directories; `exe`/`exe.txt` text files become symlinks.

    Non-pid entries of the first source's parent (stat, sys/kernel/random/boot_id) are copied too.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for src in sources:
        out = dest / src.name
        out.mkdir()
        for f in src.iterdir():
            if f.name in ("exe", "exe.txt"):
                os.symlink(f.read_bytes(), os.fsencode(out / "exe"))
            else:
                shutil.copyfile(f, out / f.name)
    return dest


def host_root(tmp_path: Path) -> Path:
    """The whole captured host as a fake /proc (pids plus stat and boot_id)."""
    root = build_proc_root(tmp_path / "proc", [p for p in HOST.iterdir() if p.name.isdigit()])
    shutil.copyfile(HOST / "stat", root / "stat")
    shutil.copytree(HOST / "sys", root / "sys")
    return root


# -- parse_stat ------------------------------------------------------------------------------------


def test_parse_stat_comm_with_parens_and_spaces_from_capture() -> None:
    """A comm holding ") (" and spaces is cut at the last ')' and the fields after it stay aligned."""
    st = parse_stat((HOST / str(PAREN_COMM) / "stat").read_bytes())
    assert st.pid == PAREN_COMM
    assert st.comm == b"a) (b c)"
    assert st.state == "S"
    assert st.ppid == 10265
    raw = (HOST / str(PAREN_COMM) / "stat").read_bytes()
    assert st.start_ticks == int(raw.rsplit(b")", 1)[1].split()[19])


def test_parse_stat_field_22_golden() -> None:
    """Field 22 (starttime) is taken, not a neighbour: golden line with distinct numbers everywhere."""
    fields = " ".join(str(n) for n in range(4, 53))  # field N holds the number N
    st = parse_stat(f"77 (we)ird) R {fields}\n".encode())
    assert (st.pid, st.comm, st.state, st.ppid, st.pgrp, st.session, st.start_ticks) == (
        77,
        b"we)ird",
        "R",
        4,
        5,
        6,
        22,
    )


def test_parse_stat_kernel_thread() -> None:
    """kthreadd's stat parses (ppid 0)."""
    st = parse_stat((HOST / str(KTHREADD) / "stat").read_bytes())
    assert (st.pid, st.comm, st.ppid) == (2, b"kthreadd", 0)


@pytest.mark.parametrize("data", [b"", b"123", b"1 (x) S 1 2", b"1 x) S " + b"1 " * 30])
def test_parse_stat_rejects_garbage(data: bytes) -> None:
    """Empty, truncated or comm-less text raises ValueError (ProcFS turns that into 'gone')."""
    with pytest.raises(ValueError, match="stat"):
        parse_stat(data)


# -- status, environ ------------------------------------------------------------------------


def test_parse_status_ids_from_capture() -> None:
    """Real uid/gid come from the captured status file."""
    assert parse_status_ids((HOST / str(NODE_TITLE) / "status").read_bytes()) == (0, 0)


def test_parse_status_ids_takes_real_not_effective() -> None:
    """Of `Uid: real effective saved fs` the first (real) id is returned."""
    data = b"Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1001\t0\t0\t0\n"
    assert parse_status_ids(data) == (1000, 1001)


def test_parse_status_ids_missing_line() -> None:
    """A status without Uid:/Gid: is rejected."""
    with pytest.raises(ValueError, match="Uid"):
        parse_status_ids(b"Name:\tx\n")


def test_parse_environ_tolerance() -> None:
    """No trailing NUL, an entry without '=', empty entries, '=' in values, first duplicate wins."""
    data = b"A=1\0\0NOEQ\0B=x=y\0A=2\0C="
    assert parse_environ(data) == {b"A": b"1", b"NOEQ": b"", b"B": b"x=y", b"C": b""}


def test_parse_environ_from_capture() -> None:
    """The captured (filtered) environ of a process parses to PATH and friends."""
    env = parse_environ((HOST / str(NODE_TITLE) / "environ").read_bytes())
    assert env[b"PATH"].startswith(b"/")
    assert b"" not in env


def test_split_cmdline_padding_and_no_trailing_nul() -> None:
    """process.title's NUL padding gives empty elements; a title without a final NUL is kept whole."""
    padded = (HOST / str(NODE_TITLE) / "cmdline").read_bytes()
    argv = split_argv(padded)
    assert argv[0] == b"claude"
    assert set(argv[1:]) == {b""}
    assert split_argv(b"claude --x") == [b"claude --x"]
    assert split_argv(b"") == []


# -- ProcFS over a fake /proc ---------------------------------------------------------------------


def test_read_captured_processes(tmp_path: Path) -> None:
    """ProcFS.read returns the captured facts: comm, exe target, cmdline, ids, start time."""
    proc = ProcFS(host_root(tmp_path))
    node = proc.read(NODE_TITLE)
    assert node is not None
    assert node.comm == b"claude"
    assert node.exe == b"/usr/bin/node"
    assert node.cmdline.startswith(b"claude\0\0")
    assert (node.ppid, node.uid, node.gid, node.state) == (10265, 0, 0, "S")
    assert node.start_ticks == parse_stat((HOST / str(NODE_TITLE) / "stat").read_bytes()).start_ticks


def test_read_deleted_exe_kept_raw(tmp_path: Path) -> None:
    """The kernel's " (deleted)" suffix on exe is kept as is."""
    got = ProcFS(host_root(tmp_path)).read(DELETED)
    assert got is not None
    assert got.exe == b"/tmp/capx/sleep-del (deleted)"


def test_read_kernel_thread_and_unreadable_exe(tmp_path: Path) -> None:
    """kthreadd (no exe link, empty cmdline) and pid 1 (exe not readable when captured) read with exe None."""
    proc = ProcFS(host_root(tmp_path))
    kt = proc.read(KTHREADD)
    assert kt is not None
    assert (kt.exe, kt.cmdline) == (None, b"")
    one = proc.read(1)
    assert one is not None
    assert one.exe is None


def test_pids_and_read_all(tmp_path: Path) -> None:
    """pids() lists only numeric entries; read_all maps every one of them."""
    proc = ProcFS(host_root(tmp_path))
    assert proc.pids() == [1, 2, PAREN_COMM, NODE_TITLE, PY_CLAUDE, DELETED]
    assert sorted(proc.read_all()) == proc.pids()


def test_read_missing_pid_is_none(tmp_path: Path) -> None:
    """A pid that does not exist reads as None, as does its environ."""
    proc = ProcFS(host_root(tmp_path))
    assert proc.read(99999) is None
    assert proc.environ(99999) is None


def test_read_vanishing_mid_read(tmp_path: Path) -> None:
    """A process whose status or cmdline disappears between files reads as None, not an exception."""
    root = host_root(tmp_path)
    (root / str(NODE_TITLE) / "cmdline").unlink()
    (root / str(PY_CLAUDE) / "status").unlink()
    proc = ProcFS(root)
    assert proc.read(NODE_TITLE) is None
    assert proc.read(PY_CLAUDE) is None


def test_read_empty_stat_is_none(tmp_path: Path) -> None:
    """An empty stat (what an exiting task can give) reads as None."""
    root = host_root(tmp_path)
    (root / str(NODE_TITLE) / "stat").write_bytes(b"")
    assert ProcFS(root).read(NODE_TITLE) is None


class _ReusedPid(ProcFS):
    """A ProcFS whose second stat read shows another start time, as if the pid was reused mid-read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls = 0

    def _read(self, pid: int, name: str, cap: int) -> bytes:
        data = super()._read(pid, name, cap)
        if name == "stat":
            self.calls += 1
            if self.calls == 2:
                head, tail = data.rsplit(b")", 1)
                fields = tail.split()
                fields[19] = str(int(fields[19]) + 1).encode()
                data = head + b") " + b" ".join(fields) + b"\n"
        return data


def test_read_pid_reuse_mid_read_is_none(tmp_path: Path) -> None:
    """If the start time changed between the first and last stat read, the mixed read is discarded."""
    assert _ReusedPid(host_root(tmp_path)).read(NODE_TITLE) is None


class _Raising(ProcFS):
    """A ProcFS whose reads of one file fail with a given errno."""

    def __init__(self, root: Path, name: str, err: int) -> None:
        super().__init__(root)
        self.name, self.err = name, err

    def _read(self, pid: int, name: str, cap: int) -> bytes:
        if name == self.name:
            raise OSError(self.err, os.strerror(self.err))
        return super()._read(pid, name, cap)


@pytest.mark.parametrize("err", [errno.ESRCH, errno.EACCES, errno.EPERM, errno.ENOENT])
@pytest.mark.parametrize("name", ["stat", "status", "cmdline", "environ"])
def test_races_read_as_gone(tmp_path: Path, name: str, err: int) -> None:
    """ESRCH/EACCES/EPERM/ENOENT on any file means gone (None), never an exception."""
    proc = _Raising(host_root(tmp_path), name, err)
    if name == "environ":
        assert proc.environ(NODE_TITLE) is None
    else:
        assert proc.read(NODE_TITLE) is None


def test_unexpected_errors_propagate(tmp_path: Path) -> None:
    """An error that is not a process race (EIO) is not swallowed."""
    with pytest.raises(OSError, match="Input/output"):
        _Raising(host_root(tmp_path), "cmdline", errno.EIO).read(NODE_TITLE)


def test_environ_from_fake_root(tmp_path: Path) -> None:
    """environ() parses the file below the root."""
    env = ProcFS(host_root(tmp_path)).environ(NODE_TITLE)
    assert env is not None
    assert b"PATH" in env


def test_boot_id_btime_and_host_path(tmp_path: Path) -> None:
    """boot_id is read below the root; host paths map into the root's parent."""
    proc = ProcFS(host_root(tmp_path))
    assert proc.boot_id() == (HOST / "sys/kernel/random/boot_id").read_text().strip()
    assert len(proc.boot_id()) == 36
    assert proc.host_path(Path("/root/.claude/sessions/1.json")) == tmp_path / "root/.claude/sessions/1.json"
    assert ProcFS().host_path(Path("/etc/x")) == Path("/etc/x")


# -- bounded, lazy reads --------------------------------------------------------------------------


class _Counting(ProcFS):
    """A ProcFS that records which files were read, and how many bytes were asked for."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[tuple[int, str, int]] = []

    def _read(self, pid: int, name: str, cap: int) -> bytes:
        self.reads.append((pid, name, cap))
        return super()._read(pid, name, cap)


def test_read_all_reads_only_stat_and_exe(tmp_path: Path) -> None:
    """A scan reads stat (and the exe link) of each process: never cmdline, status or environ."""
    proc = _Counting(host_root(tmp_path))
    infos = proc.read_all()
    assert sorted(infos) == proc.pids()
    assert {name for _, name, _ in proc.reads} == {"stat"}


def test_lazy_cmdline_and_ids_are_read_on_use_and_capped(tmp_path: Path) -> None:
    """cmdline_head asks for CMDLINE_HEAD bytes, cmdline for CMDLINE_MAX, ids read status once."""
    proc = _Counting(host_root(tmp_path))
    node = proc.read_all()[NODE_TITLE]
    proc.reads.clear()
    assert node.cmdline_head.startswith(b"claude\0")
    assert (NODE_TITLE, "cmdline", CMDLINE_HEAD) in proc.reads
    assert node.cmdline.startswith(b"claude\0\0")
    assert (NODE_TITLE, "cmdline", CMDLINE_MAX) in proc.reads
    assert (node.uid, node.gid) == (0, 0)
    assert (node.uid, node.gid) == (0, 0)
    assert [r for r in proc.reads if r[1] == "status"] == [(NODE_TITLE, "status", 16384)]


def test_lazy_read_of_a_replaced_process_is_empty(tmp_path: Path) -> None:
    """If the process is gone (or its pid reused) before the lazy read, cmdline is b"" and ids unknown."""
    root = host_root(tmp_path)
    node = ProcFS(root).read_all()[NODE_TITLE]
    stat = root / str(NODE_TITLE) / "stat"
    head, tail = stat.read_bytes().rsplit(b")", 1)
    fields = tail.split()
    fields[19] = b"1" + fields[19]
    stat.write_bytes(head + b") " + b" ".join(fields) + b"\n")
    assert node.cmdline == b""
    assert node.cmdline_head == b""
    assert (node.uid, node.gid) == (UNKNOWN_ID, UNKNOWN_ID)


def test_huge_cmdline_is_read_up_to_the_cap(tmp_path: Path) -> None:
    """150 000 one-byte arguments: read() keeps CMDLINE_MAX bytes, the head CMDLINE_HEAD."""
    root = host_root(tmp_path)
    (root / str(NODE_TITLE) / "cmdline").write_bytes(b"x\0" * 150_000)
    info = ProcFS(root).read(NODE_TITLE)
    assert info is not None
    assert len(info.cmdline) == CMDLINE_MAX
    assert len(info.cmdline_head) == CMDLINE_HEAD
    light = ProcFS(root).read_all()[NODE_TITLE]
    assert len(light.cmdline_head) == CMDLINE_HEAD


def test_environ_is_capped_and_drops_a_cut_entry(tmp_path: Path) -> None:
    """An environment larger than the cap is cut there; the entry cut in the middle is left out."""
    root = host_root(tmp_path)
    pad = b"PAD=" + b"p" * (ENVIRON_MAX - 20) + b"\0"
    (root / str(NODE_TITLE) / "environ").write_bytes(b"A=1\0" + pad + b"CLAUDE_PID=123456789\0")
    env = ProcFS(root).environ(NODE_TITLE)
    assert env is not None
    assert env[b"A"] == b"1"
    assert b"CLAUDE_PID" not in env
    assert all(not k.startswith(b"CLAUDE") for k in env)


@pytest.mark.parametrize(
    "stat",
    [
        b"1 (x) S " + b"7" * 5000 + b" 1 1" + b" 1" * 30,
        b"1 (x) S -1 1 1" + b" 1" * 30,
        b"1 (x) \xff 1 1 1" + b" 1" * 30,
        b"1 (x) SS 1 1 1" + b" 1" * 30,
    ],
)
def test_parse_stat_refuses_odd_numbers_with_value_error(stat: bytes) -> None:
    """A 5000-digit or negative number, or a non-letter state, is a ValueError (read as gone), not a crash."""
    with pytest.raises(ValueError, match="stat"):
        parse_stat(stat)


def test_parse_status_ids_refuses_huge_numbers() -> None:
    """A status whose Uid: holds a 5000-digit number is refused with ValueError."""
    with pytest.raises(ValueError, match="Uid"):
        parse_status_ids(b"Uid:\t" + b"9" * 5000 + b"\t0\t0\t0\nGid:\t0\t0\t0\t0\n")


def test_pids_ignore_absurd_names(tmp_path: Path) -> None:
    """A numeric name longer than any pid (a fake root) is not a pid."""
    root = host_root(tmp_path)
    (root / ("9" * 5000)[:200]).mkdir()
    assert ProcFS(root).pids() == [1, 2, PAREN_COMM, NODE_TITLE, PY_CLAUDE, DELETED]


def test_scan_rereads_exe_only_for_new_or_changed_processes(tmp_path: Path) -> None:
    """A later read_all reads only stat of a process it saw with the same start and comm (its exe link
    is taken from before); a new comm or start time, and every FULL_READ_EVERY-th scan, read it again."""
    from claude_audit.procfs import FULL_READ_EVERY

    class _Links(ProcFS):
        def __init__(self, root: Path) -> None:
            super().__init__(root)
            self.links: list[int] = []

        def _exe(self, pid: int) -> bytes | None:
            self.links.append(pid)
            return super()._exe(pid)

    proc = _Links(host_root(tmp_path))
    first = proc.read_all()
    assert sorted(proc.links) == sorted(first)
    proc.links.clear()
    second = proc.read_all()
    assert proc.links == []
    assert {p: i.exe for p, i in second.items()} == {p: i.exe for p, i in first.items()}
    assert {p: i.start_ticks for p, i in second.items()} == {p: i.start_ticks for p, i in first.items()}

    # NODE_TITLE renames itself: its exe link is read again, nobody else's.
    comm = proc.root / str(NODE_TITLE) / "stat"
    head, tail = comm.read_bytes().split(b"(", 1)
    comm.write_bytes(head + b"(renamed" + tail[tail.rindex(b")") :])
    assert proc.read_all()[NODE_TITLE].comm == b"renamed"
    assert proc.links == [NODE_TITLE]

    proc.links.clear()
    for _ in range(FULL_READ_EVERY - 3):
        proc.read_all()
    assert proc.links == []
    proc.read_all()  # the FULL_READ_EVERY-th call since the first: every link again
    assert sorted(proc.links) == proc.pids()
