"""enrich: names, the tracked parent's program, the container and the machine id for exec records."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from builders import HOST, exec_event

from claude_audit import enrich
from claude_audit.accounts import NameCache
from claude_audit.enrich import (
    Enrichment,
    bounded_args,
    container_id_from_cgroup_path,
    find_cgroup_path,
    parse_machine_id,
)
from claude_audit.render import render
from claude_audit.tracker import ExecSeen

CID = "3f" * 32


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/system.slice/docker-{CID}.scope", CID),
        (f"/kubepods.slice/kubepods-besteffort.slice/cri-containerd-{CID}.scope", CID),
        (f"/machine.slice/libpod-{CID}.scope/container", CID),
        (f"/kubepods/burstable/pod1234/{CID}", CID),
        (f"/system.slice/crio-{CID}.scope", CID),
        ("/user.slice/user-1000.slice/session-3.scope", None),
        ("/", None),
        (f"/x/docker-{CID[:-1]}.scope", None),
    ],
)
def test_container_id_from_cgroup_path(path: str, expected: str | None) -> None:
    """The runtimes' cgroup names give the 64-hex container id; a host session's cgroup gives none."""
    assert container_id_from_cgroup_path(path) == expected


def test_parse_machine_id() -> None:
    """Exactly 32 lowercase hex digits (and a newline) is a machine id; anything else is not."""
    assert parse_machine_id(b"0123456789abcdef0123456789abcdef\n") == "0123456789abcdef0123456789abcdef"
    assert parse_machine_id(b"uninitialized\n") is None
    assert parse_machine_id(b"0123456789ABCDEF0123456789ABCDEF") is None


def test_bounded_args_keeps_whole_args() -> None:
    """Whole leading args up to the cap; the rest is cut and said to be."""
    assert bounded_args(["a", "bb"], 10) == (["a", "bb"], False)
    assert bounded_args(["a", "b" * 20, "c"], 10) == (["a"], True)


def test_cgroup2_mount_unified_and_hybrid() -> None:
    """The cgroup2 line of /proc/self/mounts names the v2 hierarchy; v1 hierarchies are not it."""
    hybrid = (
        b"tmpfs /sys/fs/cgroup tmpfs ro 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
        b"cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
    )
    assert enrich.cgroup2_mount(hybrid) == Path("/sys/fs/cgroup/unified")
    unified = b"cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n"
    assert enrich.cgroup2_mount(unified) == Path("/sys/fs/cgroup")
    assert enrich.cgroup2_mount(b"proc /proc proc rw 0 0\n") is None


def test_find_cgroup_path_by_inode(tmp_path: Path) -> None:
    """A directory is found by its inode number below the root; an unknown one is None, bounded."""
    (tmp_path / "system.slice" / f"docker-{CID}.scope").mkdir(parents=True)
    ino = os.stat(tmp_path / "system.slice" / f"docker-{CID}.scope").st_ino
    assert find_cgroup_path(ino, tmp_path) == f"/system.slice/docker-{CID}.scope"
    assert find_cgroup_path(1, tmp_path) is None
    assert find_cgroup_path(ino, tmp_path, limit=1) is None


def _enrichment(cgroups: dict[int, str]) -> tuple[Enrichment, list[int]]:
    asked: list[int] = []

    def path(cgroup_id: int) -> str | None:
        asked.append(cgroup_id)
        return cgroups.get(cgroup_id)

    users = NameCache(lambda: {1000: "alice", 0: "root"}, lambda _i: None)
    groups = NameCache(lambda: {1001: "devs"}, lambda _i: None)
    return Enrichment(users, groups, path), asked


def test_exec_records_gain_names_parent_and_container() -> None:
    """A child's record names its tracked parent's program (matched by pid and start time), the users
    and groups by name, and the container; a reused pid (other start time) gets no parent program."""
    e, asked = _enrichment({77: f"/system.slice/docker-{CID}.scope"})
    parent = exec_event(pid=4100, start_ticks=500, filename=b"/bin/bash", argv=[b"bash", b"-c", b"git"])
    render(ExecSeen(parent, {"pid": 4000}), HOST, 1, 0, enrich=e)
    child = exec_event(ppid=4100, parent_start_ticks=500, euid=0)
    rec = render(ExecSeen(child, {"pid": 4000}), HOST, 2, 0, enrich=e)
    assert rec is not None
    p = rec["process"]
    assert p["parent"]["executable"] == "/bin/bash" and p["parent"]["args"] == ["bash", "-c", "git"]
    assert p["user"] == {"id": "0", "name": "root"} and p["real_user"] == {"id": "1000", "name": "alice"}
    assert rec["user"] == {"id": "1000", "name": "alice"} and rec["group"] == {"id": "1001", "name": "devs"}
    assert rec["container"] == {"id": CID}
    assert asked == [77]  # looked up once per cgroup id
    reused = render(
        ExecSeen(exec_event(ppid=4100, parent_start_ticks=501), {"pid": 4000}), HOST, 3, 0, enrich=e
    )
    assert reused is not None and "executable" not in reused["process"]["parent"]


def test_parents_are_bounded() -> None:
    """Only the most recent PARENTS_MAX processes are remembered."""
    e, _ = _enrichment({})
    for pid in range(enrich.PARENTS_MAX + 10):
        e.remember_exec(pid + 1, 1, "/bin/true", ["true"])
    assert e.parent(1, 1) is None and e.parent(enrich.PARENTS_MAX + 10, 1) is not None
