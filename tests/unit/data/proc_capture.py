"""Capture processes from the real /proc into a fixture directory for the procfs/discovery tests.

Usage: ``.venv/bin/python tests/unit/data/proc_capture.py DEST PID [PID ...] [--tree]``. For each pid (with
``--tree``: each pid and all its descendants) it writes ``DEST/<pid>/`` holding the raw ``stat``,
``status``, ``cmdline`` and ``comm``, ``exe`` as a text file with the link target (missing if
unreadable), and ``environ`` filtered to the variables the tests need, so no secret of the capturing
shell lands in the repository. Tests rebuild a fake /proc from these files (see ``proc_fixture``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from claude_audit.procfs import parse_stat

KEEP_ENV_PREFIXES = (b"CLAUDE", b"AI_AGENT", b"PATH=", b"HOME=", b"SHELL=", b"PWD=")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = parse_stat(Path(f"/proc/{name}/stat").read_bytes()).ppid
        except (OSError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def capture(dest: Path, pid: int) -> None:
    """Copy one process's files into dest/<pid>/."""
    src = Path(f"/proc/{pid}")
    out = dest / str(pid)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("stat", "status", "cmdline", "comm"):
        (out / name).write_bytes((src / name).read_bytes())
    try:
        env = (src / "environ").read_bytes()
        kept = [e for e in env.split(b"\0") if e.startswith(KEEP_ENV_PREFIXES)]
        (out / "environ").write_bytes(b"".join(e + b"\0" for e in kept))
    except OSError:
        pass
    with contextlib.suppress(OSError):  # kernel threads and others' processes: no readable exe
        (out / "exe").write_bytes(os.readlink(os.fsencode(src / "exe")))


def main(argv: list[str]) -> int:
    """Entry point: DEST PID... [--tree]."""
    tree = "--tree" in argv
    args = [a for a in argv if a != "--tree"]
    dest = Path(args[0])
    for pid in (int(a) for a in args[1:]):
        for p in _descendants(pid) if tree else [pid]:
            capture(dest, p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
