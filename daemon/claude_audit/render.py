"""The record stage: the state stage's outcomes as ECS records (builders in records.py). Pure but for
the enrichment lookups it is given (enrich.py: bounded caches that never block).

Every record passes the privacy policy (privacy.py: redaction, prompt, identity fields, command
excerpts) here, once, before any sink sees it.

`Lost` outcomes are not records by themselves: they go to the output's loss ledger, which states them in
`events-lost` records (output.py).
"""

from __future__ import annotations

from typing import Any

from . import records
from .enrich import Enrichment
from .events import ExecEvent
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


def add_context(rec: dict[str, Any], ev: ExecEvent, enrich: Enrichment) -> None:
    """Names of the ids, the parent's program (when the parent is tracked) and the container, each only
    when known now: a lookup never waits (an id NSS has not answered yet just has no name)."""
    proc = rec["process"]
    for key, lookup in (
        ("user", enrich.user_name),
        ("real_user", enrich.user_name),
        ("saved_user", enrich.user_name),
        ("group", enrich.group_name),
        ("real_group", enrich.group_name),
        ("saved_group", enrich.group_name),
    ):
        name = lookup(int(proc[key]["id"]))
        if name is not None:
            proc[key]["name"] = name
    for key in ("user", "group"):  # the top-level user/group is the real one: who ran it
        name = proc[f"real_{key}"].get("name")
        if name is not None:
            rec[key]["name"] = name
    parent = enrich.parent(ev.ppid, ev.parent_start_ticks)
    if parent is not None:
        proc["parent"] |= {"executable": parent.executable, "args": parent.args}
        if parent.args_truncated:
            rec["claude_audit"]["flags"] = sorted({*rec["claude_audit"]["flags"], "parent_args_truncated"})
    container = enrich.container_id(ev.cgroup_id)
    if container is not None:
        rec["container"] = {"id": container}


def render(
    outcome: Outcome,
    host: HostInfo,
    seq: int,
    now_ns: int,
    *,
    privacy: Privacy | None = None,
    enrich: Enrichment | None = None,
) -> dict[str, Any] | None:
    """The record for one outcome (None for a `Lost`, which the ledger states). With `enrich`, exec
    records gain names, the parent's program and the container (add_context); then the privacy policy
    is applied when one is given; then the exec is remembered, as stored, as its process's program for
    its children's records (so a parent's argv is never shown unredacted)."""
    rec = _build(outcome, host, seq, now_ns)
    if rec is None:
        return None
    if isinstance(outcome, ExecSeen) and enrich is not None:
        add_context(rec, outcome.event, enrich)
    if privacy is not None:
        if isinstance(outcome, ExecSeen):
            claude = outcome.claude
            own = claude.get("origin") == "session" and claude.get("pid") == outcome.event.pid
            privacy.apply(rec, root_args=own, full_command=outcome.full_command)
        else:
            privacy.apply(rec, root_args=isinstance(outcome, SessionFound | NotWatched))
    if isinstance(outcome, ExecSeen) and enrich is not None:
        ev = outcome.event
        enrich.remember_exec(ev.pid, ev.start_ticks, rec["process"]["executable"], rec["process"]["args"])
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
