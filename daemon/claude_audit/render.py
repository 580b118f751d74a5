"""The record stage: the state stage's outcomes as ECS records (builders in records.py). Pure.

Every record passes the privacy policy (privacy.py: redaction, prompt, identity fields, command
excerpts) here, once, before any sink sees it.

`Lost` outcomes are not records by themselves: they go to the output's loss ledger, which states them in
`events-lost` records (output.py).
"""

from __future__ import annotations

from typing import Any

from . import records
from .privacy import Privacy
from .records import HostInfo
from .tracker import ExecSeen, NotWatched, Outcome, SessionEnded, SessionFound


def process_object(pid: int, executable: str, comm: bytes, cmdline: bytes) -> dict[str, Any]:
    """ECS process fields of a root as /proc showed it."""
    return {
        "pid": pid,
        "executable": executable,
        "name": comm.decode(errors="replace"),
        "args": [a.decode(errors="replace") for a in cmdline.split(b"\0") if a],
    }


def render(
    outcome: Outcome, host: HostInfo, seq: int, now_ns: int, privacy: Privacy | None = None
) -> dict[str, Any] | None:
    """The record for one outcome (None for a `Lost`, which the ledger states), with the privacy
    policy applied when one is given."""
    rec = _build(outcome, host, seq, now_ns)
    if rec is not None and privacy is not None:
        if isinstance(outcome, ExecSeen):
            claude = outcome.claude
            own = claude.get("origin") == "session" and claude.get("pid") == outcome.event.pid
            privacy.apply(rec, root_args=own, full_command=outcome.full_command)
        else:
            privacy.apply(rec, root_args=isinstance(outcome, SessionFound | NotWatched))
    return rec


def _build(outcome: Outcome, host: HostInfo, seq: int, now_ns: int) -> dict[str, Any] | None:
    if isinstance(outcome, ExecSeen):
        t = outcome.trace
        trace = (t.trace_id, t.span_id) if t is not None else None
        return records.exec_record(outcome.event, host, outcome.claude, seq, trace=trace)
    if isinstance(outcome, SessionFound):
        s, info = outcome.session, outcome.info
        proc = process_object(info.pid, s.executable, info.comm, info.cmdline)
        proc |= {"seeded_descendants": outcome.seeded, "reason": s.reason}
        return records.session_found(
            now_ns, host, seq, claude=s.claude_object(), how=s.how, process_info=proc
        )
    if isinstance(outcome, SessionEnded):
        s = outcome.session
        assert s.exit_code is not None
        return records.session_ended(
            outcome.wall_time_ns, host, seq, claude=s.claude_object(), exit_code=s.exit_code
        )
    if isinstance(outcome, NotWatched):
        info = outcome.info
        exe = (info.exe or b"").decode(errors="replace")
        return records.session_not_watched(
            now_ns,
            host,
            seq,
            how=outcome.how,
            process_info=process_object(info.pid, exe, info.comm, info.cmdline) | {"reason": outcome.reason},
            error=outcome.error,
        )
    return None
