"""Reading processes from procfs: pure parsers for its file formats, and a reader with an injectable root.

Everything in /proc about another user's process is hostile input: its comm, cmdline and environment
are whatever it wrote, and its argv area can be megabytes (150 000 one-byte arguments). So every read
here has a cap fixed before the read, every number is parsed with a length limit (bounded.parse_uint),
and the expensive files are read lazily, only for the processes that can matter:

* a scan (`read_all`) reads `stat` (pid, comm, ppid, start time; a few hundred bytes) and the `exe` link
  of every process, nothing else;
* `ProcInfo.cmdline` and `ProcInfo.uid`/`gid` are read on first use, capped (`CMDLINE_MAX`,
  `STATUS_MAX`), and kept only if the process still has the same start time afterwards;
* `ProcInfo.cmdline_head` is the first `CMDLINE_HEAD` bytes only: what discovery needs to recognise
  ``node .../cli.js`` or a renamed title, whatever the process holds after that;
* `environ` is capped at `ENVIRON_MAX`.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .bounded import parse_uint
from .decode import split_argv

DELETED_SUFFIX = b" (deleted)"
"""What the kernel appends to /proc/<pid>/exe's target when the executable was unlinked."""

STAT_MAX: Final = 4096
"""/proc/<pid>/stat is 52 numbers and a comm of at most 15 bytes (64 escaped): far below this."""
STATUS_MAX: Final = 16384
"""/proc/<pid>/status is about 1.5 KiB; its Uid:/Gid: lines come in the first few hundred bytes."""
CMDLINE_HEAD: Final = 4096
"""Bytes of cmdline discovery looks at: argv[0..n] of ``node [flags] script`` or a rewritten title."""
CMDLINE_MAX: Final = 131072
"""Bytes of cmdline kept for a process that matters (a session root, a tool call's wrapper shell)."""
ENVIRON_MAX: Final = 131072
"""Bytes of the initial environment read; a variable beyond this is not seen (docs/GUARANTEES.md)."""
UNKNOWN_ID: Final = -1
"""uid/gid of a process that was gone (or replaced) before its status could be read."""

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


class ProcInfo:
    """One process as read from /proc, consistent as of one start time.

    Built either with every value given (tests, and the daemon for a process it knows from the kernel)
    or by `ProcFS.read_all` with only stat and exe read: then `cmdline`, `cmdline_head`, `uid` and
    `gid` are read from /proc on first use (capped, and only if the start time still matches; a process
    gone by then shows an empty cmdline and `UNKNOWN_ID`).
    """

    __slots__ = ("_cmdline", "_head", "_ids", "_source", "comm", "exe", "pid", "ppid", "start_ticks", "state")

    def __init__(  # noqa: PLR0917 - the field order of the dataclass this replaced, used positionally
        self,
        pid: int,
        ppid: int,
        comm: bytes,
        exe: bytes | None,
        cmdline: bytes | None,
        start_ticks: int,
        uid: int | None,
        gid: int | None,
        state: str,
        *,
        source: ProcFS | None = None,
    ) -> None:
        self.pid = pid
        self.ppid = ppid
        self.comm = comm
        self.exe = exe
        """Target of /proc/<pid>/exe, raw (with the kernel's " (deleted)" suffix); None if unreadable."""
        self.start_ticks = start_ticks
        self.state = state
        self._cmdline = cmdline
        self._head = cmdline[:CMDLINE_HEAD] if cmdline is not None else None
        self._ids = (uid, gid) if uid is not None and gid is not None else None
        self._source = source

    @property
    def cmdline(self) -> bytes:
        """Raw /proc/<pid>/cmdline, at most CMDLINE_MAX bytes: NUL-separated argv as the process shows it."""
        if self._cmdline is None:
            got = self._source.cmdline(self.pid, self.start_ticks, CMDLINE_MAX) if self._source else None
            self._cmdline = got if got is not None else b""
            self._head = self._cmdline[:CMDLINE_HEAD]
        return self._cmdline

    @property
    def cmdline_head(self) -> bytes:
        """The first CMDLINE_HEAD bytes of cmdline, read without reading the rest."""
        if self._head is None:
            got = self._source.cmdline(self.pid, self.start_ticks, CMDLINE_HEAD) if self._source else None
            self._head = got if got is not None else b""
        return self._head

    def _load_ids(self) -> tuple[int, int]:
        if self._ids is None:
            got = self._source.ids(self.pid, self.start_ticks) if self._source else None
            self._ids = got if got is not None else (UNKNOWN_ID, UNKNOWN_ID)
        return self._ids

    @property
    def uid(self) -> int:
        """Real user id (first value of Uid: in status); UNKNOWN_ID if it could not be read."""
        return self._load_ids()[0]

    @property
    def gid(self) -> int:
        """Real group id (first value of Gid: in status); UNKNOWN_ID if it could not be read."""
        return self._load_ids()[1]

    @property
    def argv(self) -> list[bytes]:
        """cmdline split at NULs, without the empty element a trailing NUL leaves."""
        return split_argv(self.cmdline)

    def __repr__(self) -> str:
        return f"ProcInfo(pid={self.pid}, ppid={self.ppid}, comm={self.comm!r}, exe={self.exe!r})"


def _number(field: bytes, what: str) -> int:
    n = parse_uint(field)
    if n is None:
        raise ValueError(f"/proc/<pid>/stat {what} is not a number: {field[:32]!r}")
    return n


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
    state = fields[0]
    if len(state) != 1 or not state.isalpha():
        raise ValueError(f"/proc/<pid>/stat state is not one letter: {state[:8]!r}")
    return StatFields(
        pid=_number(data[:open_at].strip(), "pid"),
        comm=data[open_at + 1 : close_at],
        state=state.decode("ascii"),
        ppid=_number(fields[1], "ppid"),
        pgrp=_number(fields[2], "pgrp"),
        session=_number(fields[3], "session"),
        start_ticks=_number(fields[19], "starttime"),
    )


def parse_status_ids(data: bytes) -> tuple[int, int]:
    """Real (uid, gid) from /proc/<pid>/status: the first number of its `Uid:` and `Gid:` lines."""
    uid: int | None = None
    gid: int | None = None
    for line in data.splitlines():
        if line.startswith((b"Uid:", b"Gid:")):
            values = line[4:].split()
            n = parse_uint(values[0], 10) if values else None
            if n is None:
                raise ValueError(f"/proc/<pid>/status {line[:3].decode()} is not a number")
            if line.startswith(b"Uid:"):
                uid = n
            else:
                gid = n
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


def _is_gone(exc: OSError) -> bool:
    return exc.errno in _GONE_ERRNOS


FULL_READ_EVERY = 12
"""Every this many scans read_all reads every exe link again (a minute at the default scan interval)."""


class ProcFS:
    """Reads processes below a procfs root (`/proc`, or a directory of captured files in tests)."""

    def __init__(self, root: Path = Path("/proc")) -> None:
        """Read from `root`; the host file system is taken to be `root.parent`."""
        self.root = Path(root)
        self._prefix = os.fsencode(self.root) + b"/"  # bytes paths: pathlib costs more than the read
        self._scan_exe: dict[int, tuple[int, bytes, bytes | None]] = {}
        """pid -> (start ticks, comm, exe link) as the previous read_all saw them."""
        self._scans = 0

    def host_path(self, path: Path) -> Path:
        """Where an absolute host path is found relative to this root (unchanged for the real /proc)."""
        return self.root.parent / Path(path).relative_to("/")

    def pids(self) -> list[int]:
        """Pids of all processes (thread-group leaders) present now, ascending."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        return sorted(int(n) for n in names if n.isdigit() and len(n) <= 7)

    def _read(self, pid: int, name: str, cap: int) -> bytes:
        """At most `cap` bytes of /proc/<pid>/<name>."""
        path = b"%s%d/%s" % (self._prefix, pid, name.encode())
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            chunks: list[bytes] = []
            left = cap
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _stat(self, pid: int) -> StatFields | None:
        try:
            return parse_stat(self._read(pid, "stat", STAT_MAX))
        except ValueError:
            return None  # an empty or cut-off read: the process is on its way out
        except OSError as exc:
            if _is_gone(exc):
                return None
            raise

    def cwd(self, pid: int, start_ticks: int) -> bytes | None:
        """The working directory of (pid, start_ticks), or None if gone, reused or unreadable."""
        try:
            cwd = os.readlink(b"%s%d/cwd" % (self._prefix, pid))
        except OSError:
            return None
        return cwd if self._same_start(pid, start_ticks) else None

    def _exe(self, pid: int) -> bytes | None:
        try:
            return os.readlink(b"%s%d/exe" % (self._prefix, pid))
        except OSError:
            # Kernel threads have no exe, others' processes need ptrace access: not an error, just unknown.
            return None

    def _same_start(self, pid: int, start_ticks: int) -> bool:
        last = self._stat(pid)
        return last is not None and last.start_ticks == start_ticks

    def cmdline(self, pid: int, start_ticks: int, cap: int = CMDLINE_MAX) -> bytes | None:
        """At most `cap` bytes of the cmdline of the process (pid, start_ticks); None if it is gone."""
        try:
            data = self._read(pid, "cmdline", cap)
        except OSError as exc:
            if _is_gone(exc):
                return None
            raise
        return data if self._same_start(pid, start_ticks) else None

    def ids(self, pid: int, start_ticks: int) -> tuple[int, int] | None:
        """Real (uid, gid) of the process (pid, start_ticks); None if it is gone."""
        try:
            ids = parse_status_ids(self._read(pid, "status", STATUS_MAX))
        except ValueError:
            return None
        except OSError as exc:
            if _is_gone(exc):
                return None
            raise
        return ids if self._same_start(pid, start_ticks) else None

    def read(self, pid: int) -> ProcInfo | None:
        """Read one process with its (capped) cmdline and ids, or None if it is gone or was replaced."""
        first = self._stat(pid)
        if first is None:
            return None
        try:
            uid, gid = parse_status_ids(self._read(pid, "status", STATUS_MAX))
            cmdline = self._read(pid, "cmdline", CMDLINE_MAX)
        except ValueError:
            return None
        except OSError as exc:
            if _is_gone(exc):
                return None
            raise
        exe = self._exe(pid)
        last = self._stat(pid)
        if last is None or last.start_ticks != first.start_ticks:
            return None
        # The last stat wins for what can change without a new start time (comm via prctl, ppid on
        # re-parenting, state).
        return ProcInfo(
            last.pid, last.ppid, last.comm, exe, cmdline, last.start_ticks, uid, gid, last.state, source=self
        )

    def read_light(self, pid: int) -> ProcInfo | None:
        """Read stat and exe only; cmdline and ids follow lazily (see ProcInfo). None if gone."""
        first = self._stat(pid)
        if first is None:
            return None
        exe = self._exe(pid)
        if exe is not None and not self._same_start(pid, first.start_ticks):
            return None  # the exe link may be a newer process's with this pid
        return ProcInfo(
            pid, first.ppid, first.comm, exe, None, first.start_ticks, None, None, first.state, source=self
        )

    def read_all(self) -> dict[int, ProcInfo]:
        """Every readable process, by pid, read light (processes that vanish during the scan are left out).

        Costs two small reads and one readlink per process, whatever the processes hold; a process the
        previous call saw with the same start time and comm costs its stat only. Its exe link can change
        only by an exec, and an exec renames the process to the new file's name; so only an exec of a
        file of the same name elsewhere is seen late, by the full read every FULL_READ_EVERY calls.
        """
        known = {} if self._scans % FULL_READ_EVERY == 0 else self._scan_exe
        self._scans += 1
        seen: dict[int, tuple[int, bytes, bytes | None]] = {}
        infos: dict[int, ProcInfo] = {}
        for pid in self.pids():
            first = self._stat(pid)
            if first is None:
                continue
            prev = known.get(pid)
            if prev is not None and prev[0] == first.start_ticks and prev[1] == first.comm:
                exe = prev[2]
            else:
                exe = self._exe(pid)
                if exe is not None and not self._same_start(pid, first.start_ticks):
                    continue  # the exe link may be a newer process's with this pid
            seen[pid] = (first.start_ticks, first.comm, exe)
            infos[pid] = ProcInfo(
                pid,
                first.ppid,
                first.comm,
                exe,
                None,
                first.start_ticks,
                None,
                None,
                first.state,
                source=self,
            )
        self._scan_exe = seen  # only what runs now: bounded by the process count, like the result
        return infos

    def environ(self, pid: int, cap: int = ENVIRON_MAX) -> dict[bytes, bytes] | None:
        """The process's initial environment (its first `cap` bytes), or None if gone or unreadable."""
        try:
            data = self._read(pid, "environ", cap)
        except OSError as exc:
            if _is_gone(exc):
                return None
            raise
        if len(data) == cap and b"\0" in data:
            data = data[: data.rindex(b"\0")]  # a cut-off last entry is not a value
        return parse_environ(data)

    def boot_id(self) -> str:
        """This boot's random id (sys/kernel/random/boot_id below the root), without the newline."""
        return (self.root / "sys" / "kernel" / "random" / "boot_id").read_text("ascii").strip()
