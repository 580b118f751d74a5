"""Shared builders for the unit tests: a host, exec events, records as read back from the log.

One place for what several test modules need, so a field added to an event or record is added here once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from claude_audit import bpf_layout
from claude_audit.events import ExecEvent
from claude_audit.records import HostInfo, exec_record
from claude_audit.textenc import dumps_line

HOST = HostInfo(hostname="box", boot_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
T0 = 1_795_572_670_123_456_789  # 2026-11-25T02:11:10.123456789Z
SID = "3f2a9c1e-aaaa-bbbb-cccc-000000000000"
SESSION = {"pid": 4000, "session_entity_id": "ENTITY-OF-ROOT-4000xx", "session_id": SID, "version": "2.1.3"}
"""claude.* of a confirmed session (root pid 4000)."""
TOOL_INV = {"invocation": "INV-4100", "invocation_pid": 4100, "origin": "tool", "command": "make test"}
"""claude.* of a tool call (pid 4100) in that session."""


def roundtrip(rec: dict[str, Any]) -> dict[str, Any]:
    """`rec` as a reader of the audit log gets it back: through its JSON line."""
    parsed: dict[str, Any] = json.loads(dumps_line(rec))
    return parsed


def exec_event(**kw: Any) -> ExecEvent:
    """A decoded exec event: pid 4242 runs `git commit -m "fix it"` in tool call 4100 of session 4000.

    Keyword arguments replace fields.
    """
    base: dict[str, Any] = {
        "wall_time_ns": T0,
        "pid": 4242,
        "tid": 4242,
        "ppid": 4100,
        "uid": 1000,
        "gid": 1001,
        "session_root": 4000,
        "root_start_ticks": 1_054_469,
        "invocation": 4100,
        "invocation_start_ticks": 1_054_500,
        "start_ticks": 1_054_600,
        "cgroup_id": 77,
        "comm": b"bash",
        "filename": b"/usr/bin/git",
        "argv": [b"git", b"commit", b"-m", b"fix it"],
        "args_truncated": False,
        "args_original_len": 21,
    }
    base.update(kw)
    return ExecEvent(**base)


def exec_line_record(pid: int, argv: list[bytes], claude: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """An exec record of `pid` running `argv` in session 4000, as a reader of the audit log gets it."""
    fields: dict[str, Any] = {
        "pid": pid,
        "tid": pid,
        "ppid": 4000,
        "gid": 1000,
        "root_start_ticks": 100,
        "invocation": claude.get("invocation_pid", 0),
        "invocation_start_ticks": 200,
        "start_ticks": 300,
        "cgroup_id": 1,
        "comm": argv[0][-15:] if argv else b"?",
        "filename": b"/usr/bin/" + (argv[0] if argv else b"x"),
        "argv": argv,
        "args_original_len": sum(len(a) + 1 for a in argv),
    }
    fields.update(kw)
    return roundtrip(exec_record(exec_event(**fields), HOST, claude, 7))


def raw_exec(
    filename: bytes, argv_area: bytes, *, comm: bytes = b"bash", flags: int = 0, orig: int | None = None
) -> bytes:
    """An exec record as the kernel puts it in the ring: header, then path, then the NUL-separated argv.

    pid 10 (tid 11) of session root 5, invocation 7; `orig` is the argv length before truncation.
    """
    h = bpf_layout.ExecEventHeader(
        type=bpf_layout.EVENT_EXEC,
        pid=10,
        tid=11,
        ppid=9,
        uid=1000,
        gid=1001,
        root=5,
        invocation=7,
        boot_ns=1_000,
        start_ticks=50,
        root_start_ticks=40,
        invocation_start_ticks=45,
        cgroup_id=99,
        flags=flags,
        filename_len=len(filename),
        args_len=len(argv_area),
        args_orig_len=len(argv_area) if orig is None else orig,
        comm=comm,
    )
    return bytes(h) + filename + argv_area


def appender(path: Path, data: bytes) -> Callable[[], None]:
    """A step that appends `data` to `path` when called (for scripted writers)."""

    def step() -> None:
        with path.open("ab") as f:
            f.write(data)

    return step
