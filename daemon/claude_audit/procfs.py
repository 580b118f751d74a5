"""Reading processes from procfs: pure parsers for its file formats, and a reader with an injectable root.

Everything a process shows in /proc can change or vanish between two reads: the process exits, execs, or
its pid is reused. `ProcFS.read` therefore reads `stat` first and last and keeps the result only if the
start time (field 22, which a reused pid cannot repeat) is the same both times; any ENOENT, ESRCH or
permission error while reading means "gone" (`None`), never an exception.

The reader never follows paths outside its root, so tests build a fake /proc from captured files in a
temporary directory. The host file system is taken to be the root's parent (`/` for `/proc`), which is
what `host_path` maps into.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

DELETED_SUFFIX = b" (deleted)"
"""What the kernel appends to /proc/<pid>/exe's target when the executable was unlinked."""

# Errors that mean "the process (or this file of it) is not there for us": it exited (ENOENT, ESRCH),
# became a zombie (readlink of exe gives ENOENT), or turned unreadable mid-read, e.g. it exec'd a setuid
# program or /proc is mounted with hidepid (EACCES, EPERM). EINVAL shows up reading a dying task's files.
_GONE_ERRNOS = frozenset({errno.ENOENT, errno.ESRCH, errno.EACCES, errno.EPERM, errno.EINVAL, errno.ENOTDIR})


@dataclass(frozen=True, slots=True)
class StatFields:
    """The fields of /proc/<pid>/stat that the daemon uses."""

    pid: int
    comm: bytes
    state: str
    ppid: int
    pgrp: int
    session: int
    start_ticks: int
    """Field 22, starttime: clock ticks after boot at which the process started."""


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """One process as read from /proc, consistent as of one start time."""

    pid: int
    ppid: int
    comm: bytes
    exe: bytes | None
    """Target of /proc/<pid>/exe, raw (with the kernel's " (deleted)" suffix); None if unreadable."""
    cmdline: bytes
    """Raw /proc/<pid>/cmdline: NUL-separated argv as the process currently shows it (may be rewritten)."""
    start_ticks: int
    uid: int
    """Real user id (first value of Uid: in status)."""
    gid: int
    """Real group id (first value of Gid: in status)."""
    state: str

    @property
    def argv(self) -> list[bytes]:
        """cmdline split at NULs, without the empty element a trailing NUL leaves."""
        return split_cmdline(self.cmdline)


def split_cmdline(data: bytes) -> list[bytes]:
    """Split a /proc cmdline into argv; a missing final NUL (rewritten titles) is tolerated."""
    if not data:
        return []
    if data.endswith(b"\0"):
        data = data[:-1]
    return data.split(b"\0")


def parse_stat(data: bytes) -> StatFields:
    """Parse /proc/<pid>/stat.

    comm is whatever the process named itself (up to 15 bytes), so it may hold spaces and parentheses;
    it ends at the LAST ')' of the line, which no later field can contain. Raises ValueError if the
    text is not a stat line (an empty read of an exiting process, say).
    """
    open_at = data.find(b"(")
    close_at = data.rfind(b")")
    if open_at < 1 or close_at < open_at:
        raise ValueError("not a /proc/<pid>/stat line: no '(comm)'")
    fields = data[close_at + 1 :].split()
    # fields[0] is field 3 (state); field N sits at fields[N - 3]; starttime is field 22.
    if len(fields) < 20:
        raise ValueError(f"/proc/<pid>/stat line has {len(fields) + 2} fields, expected at least 22")
    try:
        return StatFields(
            pid=int(data[:open_at].strip()),
            comm=data[open_at + 1 : close_at],
            state=fields[0].decode("ascii"),
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            session=int(fields[3]),
            start_ticks=int(fields[19]),
        )
    except UnicodeDecodeError as exc:
        raise ValueError(f"/proc/<pid>/stat state is not ASCII: {exc}") from exc


def parse_status_ids(data: bytes) -> tuple[int, int]:
    """Real (uid, gid) from /proc/<pid>/status: the first number of its `Uid:` and `Gid:` lines."""
    uid: int | None = None
    gid: int | None = None
    for line in data.splitlines():
        if line.startswith(b"Uid:"):
            uid = int(line[4:].split()[0])
        elif line.startswith(b"Gid:"):
            gid = int(line[4:].split()[0])
    if uid is None or gid is None:
        raise ValueError("no Uid:/Gid: line in /proc/<pid>/status")
    return uid, gid


def parse_environ(data: bytes) -> dict[bytes, bytes]:
    """Parse /proc/<pid>/environ (NUL-separated NAME=value entries) into a dict.

    Tolerant because a process can write anything into its environment block: a missing final NUL is
    accepted, empty entries are skipped, an entry without '=' becomes a name with an empty value, and a
    repeated name keeps its first value (what getenv() returns).
    """
    env: dict[bytes, bytes] = {}
    for entry in data.split(b"\0"):
        if not entry:
            continue
        name, _, value = entry.partition(b"=")
        env.setdefault(name, value)
    return env


def parse_btime(data: bytes) -> int:
    """Boot time (seconds since the epoch) from the `btime` line of /proc/stat."""
    for line in data.splitlines():
        if line.startswith(b"btime "):
            return int(line.split()[1])
    raise ValueError("no btime line in /proc/stat")


def children_map(infos: Mapping[int, ProcInfo] | Iterable[ProcInfo]) -> dict[int, list[int]]:
    """ppid -> pids of its children (ascending) for the given processes."""
    values = infos.values() if isinstance(infos, Mapping) else infos
    children: dict[int, list[int]] = {}
    for info in values:
        children.setdefault(info.ppid, []).append(info.pid)
    for pids in children.values():
        pids.sort()
    return children


def descendants(root_pid: int, infos: Mapping[int, ProcInfo] | Iterable[ProcInfo]) -> list[int]:
    """Every descendant of root_pid (not root_pid itself), breadth first: a parent precedes its children.

    A snapshot of /proc is not atomic, so a ppid can point at a reused pid; a visited set keeps the
    walk finite even if the parent links form a cycle.
    """
    children = children_map(infos)
    seen = {root_pid}
    order: list[int] = []
    queue = deque(children.get(root_pid, ()))
    while queue:
        pid = queue.popleft()
        if pid in seen:
            continue
        seen.add(pid)
        order.append(pid)
        queue.extend(children.get(pid, ()))
    return order


def _is_gone(exc: OSError) -> bool:
    return exc.errno in _GONE_ERRNOS


class ProcFS:
    """Reads processes below a procfs root (`/proc`, or a directory of captured files in tests)."""

    children_map = staticmethod(children_map)
    descendants = staticmethod(descendants)

    def __init__(self, root: Path = Path("/proc")) -> None:
        """Read from `root`; the host file system is taken to be `root.parent`."""
        self.root = Path(root)

    def host_path(self, path: Path) -> Path:
        """Where an absolute host path is found relative to this root (unchanged for the real /proc)."""
        return self.root.parent / Path(path).relative_to("/")

    def pids(self) -> list[int]:
        """Pids of all processes (thread-group leaders) present now, ascending."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        return sorted(int(n) for n in names if n.isdigit())

    def _read(self, pid: int, name: str) -> bytes:
        with open(self.root / str(pid) / name, "rb") as f:
            return f.read()

    def _stat(self, pid: int) -> StatFields | None:
        try:
            return parse_stat(self._read(pid, "stat"))
        except ValueError:
            return None  # an empty or cut-off read: the process is on its way out
        except OSError as exc:
            if _is_gone(exc):
                return None
            raise

    def read(self, pid: int) -> ProcInfo | None:
        """Read one process, or None if it is gone, unreadable, or its pid was reused mid-read."""
        first = self._stat(pid)
        if first is None:
            return None
        try:
            uid, gid = parse_status_ids(self._read(pid, "status"))
            cmdline = self._read(pid, "cmdline")
        except ValueError:
            return None
        except OSError as exc:
            if _is_gone(exc):
                return None
            raise
        try:
            exe: bytes | None = os.readlink(os.fsencode(self.root / str(pid) / "exe"))
        except OSError:
            # Kernel threads have no exe, others' processes need ptrace access: not an error, just unknown.
            exe = None
        last = self._stat(pid)
        if last is None or last.start_ticks != first.start_ticks:
            return None
        # The last stat wins for what can change without a new start time (comm via prctl, ppid on
        # re-parenting, state).
        return ProcInfo(
            pid=pid,
            ppid=last.ppid,
            comm=last.comm,
            exe=exe,
            cmdline=cmdline,
            start_ticks=last.start_ticks,
            uid=uid,
            gid=gid,
            state=last.state,
        )

    def read_all(self) -> dict[int, ProcInfo]:
        """Every readable process, by pid (processes that vanish during the scan are left out)."""
        infos: dict[int, ProcInfo] = {}
        for pid in self.pids():
            info = self.read(pid)
            if info is not None:
                infos[pid] = info
        return infos

    def environ(self, pid: int) -> dict[bytes, bytes] | None:
        """The process's initial environment, or None if it is gone or not readable by us."""
        try:
            return parse_environ(self._read(pid, "environ"))
        except OSError as exc:
            if _is_gone(exc):
                return None
            raise

    def boot_id(self) -> str:
        """This boot's random id (sys/kernel/random/boot_id below the root), without the newline."""
        return (self.root / "sys" / "kernel" / "random" / "boot_id").read_text("ascii").strip()

    def btime(self) -> int:
        """Boot time in seconds since the epoch, from the root's `stat`."""
        return parse_btime((self.root / "stat").read_bytes())
