"""User and group names for ids, without ever blocking the daemon on NSS. Pure parsers; I/O at the edges.

NSS (getpwuid, getgrnam) can hang for seconds or minutes on a laptop whose LDAP or SSSD server is
away. So names come first from the local files (/etc/passwd, /etc/group, read bounded and parsed here),
and an id not found there is asked of NSS by one worker thread: the caller gets the name once the worker
has it, and nothing (the record just lacks the name) until then. Each id is looked up once; the caches,
the queue and the files read are all bounded.
"""

from __future__ import annotations

import grp
import pwd
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from .bounded import parse_uint, read_user_file

PASSWD: Final = Path("/etc/passwd")
GROUP: Final = Path("/etc/group")
DB_MAX_BYTES: Final = 8 << 20
"""Largest account file read (a site with 50 000 local accounts has a /etc/passwd of about 4 MB)."""
NAME_MAX_BYTES: Final = 256
"""Longest name kept (Linux's useradd allows 32; NSS backends can return more)."""
CACHE_MAX: Final = 65_536
"""Ids remembered (found or not); past it, ids not yet seen are not resolved."""
PENDING_MAX: Final = 1024
"""Ids waiting for the NSS worker; past it, new ids wait for a later record of theirs."""


def _valid_name(raw: bytes) -> str | None:
    if not raw or len(raw) > NAME_MAX_BYTES:
        return None
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not name.isprintable() or ":" in name:
        return None
    return name


def parse_id_file(data: bytes) -> dict[int, str]:
    """id -> name from /etc/passwd or /etc/group text (name:x:id:...). Pure; bad lines are skipped, the
    first line for an id wins (as getpwuid does)."""
    out: dict[int, str] = {}
    for line in data.split(b"\n"):
        fields = line.split(b":", 3)
        if len(fields) < 3 or line.startswith((b"#", b"+", b"-")):
            continue
        name, ident = _valid_name(fields[0]), parse_uint(fields[2], 10)
        if name is not None and ident is not None and ident < 2**32:
            out.setdefault(ident, name)
    return out


def read_id_file(path: Path) -> dict[int, str]:
    """parse_id_file of a local account file, read bounded; {} if it cannot be read."""
    got = read_user_file(path, DB_MAX_BYTES)
    return parse_id_file(got.data) if got is not None else {}


def local_group_id(name: str, path: Path = GROUP) -> int | None:
    """The gid of group `name` in the local group file (no NSS: it may hang), or None if absent."""
    for gid, group_name in read_id_file(path).items():
        if group_name == name:
            return gid
    return None


def _nss_user(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


def _nss_group(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return None


class NameCache:
    """id -> name, from a local file at once or from NSS in the background. `name(id)` never blocks.

    `local` is read once at construction (and again by `reload`); `nss` runs only in the worker thread.
    """

    def __init__(self, local: Callable[[], dict[int, str]], nss: Callable[[int], str | None]) -> None:
        self._local_reader = local
        self._nss = nss
        self._local = local()
        self._found: dict[int, str | None] = {}
        self._asked: set[int] = set()
        self._queue: queue.Queue[int] = queue.Queue(PENDING_MAX)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def reload(self) -> None:
        """Re-read the local file (SIGHUP); what NSS answered stays."""
        self._local = self._local_reader()

    def name(self, ident: int) -> str | None:
        """The name of `ident` if known now; an unknown id is queued for NSS and None returned."""
        local = self._local.get(ident)
        if local is not None:
            return local
        with self._lock:
            if ident in self._found:
                return self._found[ident]
            if ident in self._asked or len(self._asked) >= CACHE_MAX:
                return None
            try:
                self._queue.put_nowait(ident)
            except queue.Full:
                return None
            self._asked.add(ident)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="nss-lookup", daemon=True)
                self._worker.start()
        return None

    def _work(self) -> None:
        # Daemon thread: a lookup hung in NSS holds only this thread, and never the exit of the process.
        while True:
            ident = self._queue.get()
            try:
                name = self._nss(ident)
            except Exception:  # an NSS module's failure is a missing name, never the daemon's crash
                name = None
            name = _valid_name(name.encode()) if name is not None else None
            with self._lock:
                self._found[ident] = name

    def settled(self) -> bool:
        """No lookup is pending (for tests and the clean stop)."""
        with self._lock:
            return self._asked <= self._found.keys()


def user_names() -> NameCache:
    """Names of uids: /etc/passwd, then NSS in the background."""
    return NameCache(lambda: read_id_file(PASSWD), _nss_user)


def group_names() -> NameCache:
    """Names of gids: /etc/group, then NSS in the background."""
    return NameCache(lambda: read_id_file(GROUP), _nss_group)
