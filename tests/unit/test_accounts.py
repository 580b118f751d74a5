"""accounts: ids to names from the local files, and NSS only in the background."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from claude_audit import accounts
from claude_audit.accounts import NameCache, local_group_id, parse_id_file

PASSWD = (
    b"root:x:0:0:root:/root:/bin/bash\n"
    b"# a comment:x:5:\n"
    b"agent:x:1000:1000::/home/agent:/bin/bash\n"
    b"dup:x:1000:1000::/:/bin/sh\n"
    b"+nis::::\n"
    b"bad-id:x:12a:1::/:/bin/sh\n"
    b"evil\x1b[31m:x:1001:1::/:/bin/sh\n"
    b"short:x\n"
    b"\xff\xfe:x:1002:1::/:/bin/sh\n"
    b"huge:x:99999999999:1::/:/bin/sh\n"
)


def test_parse_id_file_keeps_good_lines_first_wins() -> None:
    """Comments, NIS lines, bad ids, control characters and invalid UTF-8 are skipped; the first name
    for an id wins, as getpwuid answers."""
    assert parse_id_file(PASSWD) == {0: "root", 1000: "agent"}


def test_local_group_id(tmp_path: Path) -> None:
    """A group is found by name in the local file; a missing group or file is None."""
    f = tmp_path / "group"
    f.write_bytes(b"root:x:0:\nadm:x:4:syslog\nclaude-audit:x:998:filebeat\n")
    assert local_group_id("claude-audit", f) == 998
    assert local_group_id("nope", f) is None
    assert local_group_id("adm", tmp_path / "missing") is None


def test_name_cache_never_waits_for_a_hanging_nss() -> None:
    """An id not in the local file is asked of NSS once, in a worker: while NSS hangs, name() returns None
    at once; when it answers, the name is there; a local id never touches NSS."""
    release = threading.Event()
    asked: list[int] = []

    def slow_nss(ident: int) -> str | None:
        asked.append(ident)
        release.wait(30)
        return f"ldap{ident}"

    cache = NameCache(lambda: {0: "root"}, slow_nss)
    assert cache.name(0) == "root"
    t0 = time.monotonic()
    for _ in range(1000):
        assert cache.name(5000) is None
    assert time.monotonic() - t0 < 1.0
    release.set()
    deadline = time.monotonic() + 30
    while not cache.settled():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert cache.name(5000) == "ldap5000"
    assert asked == [5000]


def test_name_cache_remembers_misses_and_survives_nss_errors() -> None:
    """An id NSS does not know, or whose lookup raises, is remembered as nameless and not asked again."""
    calls: list[int] = []

    def nss(ident: int) -> str | None:
        calls.append(ident)
        if ident == 7:
            raise RuntimeError("nss module broke")
        return None

    cache = NameCache(dict, nss)
    cache.name(6)
    cache.name(7)
    deadline = time.monotonic() + 30
    while not cache.settled():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert cache.name(6) is None and cache.name(7) is None
    assert sorted(calls) == [6, 7]


def test_name_cache_is_bounded() -> None:
    """Past PENDING_MAX ids queued behind a hung NSS, more ids are not queued (memory stays bounded)."""
    hang = threading.Event()
    cache = NameCache(dict, lambda _i: hang.wait(30) and None)
    for i in range(accounts.PENDING_MAX + 50):
        cache.name(10_000 + i)
    assert len(cache._asked) <= accounts.PENDING_MAX + 1  # one may already be in the worker's hands
    hang.set()


def test_real_local_files_resolve_root() -> None:
    """On this machine /etc/passwd and /etc/group name id 0 root, without NSS."""
    assert accounts.read_id_file(accounts.PASSWD)[0] == "root"
    assert accounts.read_id_file(accounts.GROUP)[0] == "root"
