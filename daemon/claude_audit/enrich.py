"""What an exec record adds beyond the kernel event: user and group names, the parent's program when the
parent is a tracked process, the container the process runs in, the machine id. State with bounded
caches; the parsers are pure; every lookup answers at once (names come from accounts.NameCache, which
never waits for NSS).
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .accounts import NameCache, group_names, user_names
from .bounded import read_user_file

PARENTS_MAX: Final = 8192
"""Tracked processes whose last program is remembered (for their children's process.parent)."""
PARENT_ARGS_MAX_BYTES: Final = 4096
"""Most bytes of a parent's argv repeated in a child's record (the parent's own record has them all)."""
CGROUPS_MAX: Final = 4096
"""Cgroup ids whose container is remembered."""
CGROUP_WALK_MAX: Final = 20_000
"""Most cgroup directories looked at to find one id (delegated cgroups let users create many)."""
MACHINE_ID: Final = Path("/etc/machine-id")

_CONTAINER_RE: Final = re.compile(r"(?:^|[-:])([0-9a-f]{64})(?:\.scope)?$")


def container_id_from_cgroup_path(path: str) -> str | None:
    """The container id in a cgroup v2 path, innermost first: docker-<id>.scope, cri-containerd-<id>.scope,
    crio-<id>.scope, libpod-<id>.scope, or a bare <id> component (cgroupfs drivers). Pure."""
    for part in reversed(path.strip("/").split("/")):
        m = _CONTAINER_RE.search(part)
        if m:
            return m.group(1)
    return None


def parse_machine_id(data: bytes) -> str | None:
    """/etc/machine-id: 32 lowercase hex digits and a newline; anything else is None. Pure."""
    text = data.strip()
    if len(text) == 32 and all(c in b"0123456789abcdef" for c in text):
        return text.decode("ascii")
    return None


def read_machine_id(path: Path = MACHINE_ID) -> str | None:
    """The host's machine id (ECS host.id), or None."""
    got = read_user_file(path, 64)
    return parse_machine_id(got.data) if got is not None else None


def bounded_args(args: list[str], cap: int = PARENT_ARGS_MAX_BYTES) -> tuple[list[str], bool]:
    """The leading whole args that fit in `cap` bytes (UTF-8), and whether any were left out. Pure."""
    kept: list[str] = []
    used = 0
    for a in args:
        used += len(a.encode("utf-8", "surrogatepass")) + 1
        if used > cap:
            return kept, True
        kept.append(a)
    return kept, False


@dataclass(frozen=True, slots=True)
class ParentExec:
    """The last program a tracked process ran."""

    executable: str
    args: list[str]
    args_truncated: bool


def cgroup2_mount(mounts: bytes) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted, from /proc/self/mounts text (/sys/fs/cgroup on a unified
    system, /sys/fs/cgroup/unified on a hybrid one), or None. Pure."""
    for line in mounts.split(b"\n"):
        fields = line.split(b" ")
        if len(fields) >= 3 and fields[2] == b"cgroup2":
            return Path(fields[1].decode(errors="replace"))
    return None


def find_cgroup_path(cgroup_id: int, root: Path | None = None, limit: int = CGROUP_WALK_MAX) -> str | None:
    """The path below the cgroup v2 mount (or `root`) of the directory whose inode is `cgroup_id` (what
    bpf_get_current_cgroup_id returns: an id in the v2 hierarchy, so v1 hierarchies, whose inode numbers
    are their own, are never searched), looking at most at `limit` directories. I/O."""
    if root is None:
        got = read_user_file("/proc/self/mounts", 1 << 20)
        root = cgroup2_mount(got.data) if got is not None else None
        if root is None:
            return None
    stack = [root]
    seen = 0
    while stack and seen < limit:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for entry in it:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    seen += 1
                    if entry.inode() == cgroup_id:
                        return "/" + os.path.relpath(entry.path, root)
                    stack.append(Path(entry.path))
        except OSError:
            continue
    return None


class Enrichment:
    """Bounded, never-blocking lookups for exec records."""

    def __init__(
        self,
        users: NameCache | None = None,
        groups: NameCache | None = None,
        cgroup_path: Callable[[int], str | None] = find_cgroup_path,
    ) -> None:
        self.users = users if users is not None else user_names()
        self.groups = groups if groups is not None else group_names()
        self._cgroup_path = cgroup_path
        self._parents: collections.OrderedDict[tuple[int, int], ParentExec] = collections.OrderedDict()
        self._containers: collections.OrderedDict[int, str | None] = collections.OrderedDict()

    def user_name(self, uid: int) -> str | None:
        """The name of `uid` if known now."""
        return self.users.name(uid)

    def group_name(self, gid: int) -> str | None:
        """The name of `gid` if known now."""
        return self.groups.name(gid)

    def remember_exec(self, pid: int, start_ticks: int, executable: str, args: list[str]) -> None:
        """A tracked process ran a program: its children's records name it as their parent's."""
        kept, cut = bounded_args(args)
        key = (pid, start_ticks)
        self._parents[key] = ParentExec(executable, kept, cut)
        self._parents.move_to_end(key)
        while len(self._parents) > PARENTS_MAX:
            self._parents.popitem(last=False)

    def parent(self, pid: int, start_ticks: int) -> ParentExec | None:
        """The last program of process (pid, start) if it is tracked and ran one; the start time makes a
        reused pid miss instead of naming another process's program."""
        return self._parents.get((pid, start_ticks)) if start_ticks else None

    def container_id(self, cgroup_id: int) -> str | None:
        """The container of a cgroup id (looked up once per id), or None outside containers."""
        if cgroup_id in self._containers:
            return self._containers[cgroup_id]
        path = self._cgroup_path(cgroup_id)
        found = container_id_from_cgroup_path(path) if path is not None else None
        self._containers[cgroup_id] = found
        while len(self._containers) > CGROUPS_MAX:
            self._containers.popitem(last=False)
        return found

    def reload(self) -> None:
        """SIGHUP: local account files may have changed."""
        self.users.reload()
        self.groups.reload()
