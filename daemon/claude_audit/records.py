"""ECS audit records (nested dicts, ECS 8.11 field names). Pure.

Every record shares one envelope (`@timestamp`, `ecs`, `event`, `host`); `exec_record` maps a kernel
ExecEvent, the other builders describe the daemon's own lifecycle. Text from the kernel follows the
invalid-UTF-8 rule of docs/DESIGN.md: readable text, flag `invalid_utf8`, exact bytes under `raw`.
"""

from __future__ import annotations

import functools
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from claude_audit.events import USER_HZ, Denial, ExecEvent, TrackFlag
from claude_audit.events import entity_id as entity_id  # noqa: PLC0414 - re-exported for callers of records
from claude_audit.textenc import b64, text_field

ECS_VERSION: Final = "8.11.0"
MODULE: Final = "claude_audit"
EXEC_DATASET: Final = "claude_audit.exec"
LIFECYCLE_DATASET: Final = "claude_audit.lifecycle"
SESSION_FOUND_HOW: Final = frozenset({"scan", "kernel-trigger", "startup"})
LOST_WHERE: Final = frozenset(
    {
        "kernel-ring",
        "kernel-ring-decision",
        "kernel-tracking",
        "kernel-candidates",
        "queue",
        "decode",
        "file",
        "journal",
        "held-overflow",
        "held-at-stop",
        "crash",
    }
)

_NS_PER_TICK: Final = 1_000_000_000 // USER_HZ

CAPABILITIES: Final = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
"""Capability names by bit number (linux/capability.h); a bit past the table is written CAP_<n>."""


def capability_names(mask: int) -> list[str]:
    """The names of the bits set in a capability mask, lowest bit first."""
    return [
        CAPABILITIES[bit] if bit < len(CAPABILITIES) else f"CAP_{bit}"
        for bit in range(mask.bit_length())
        if mask >> bit & 1
    ]


def privilege_changed(ev: ExecEvent) -> bool:
    """Whether the exec gave the process privileges its user does not have: a setuid or setgid program
    (effective id other than the real one) or file capabilities for a non-root user."""
    euid = ev.uid if ev.euid is None else ev.euid
    egid = ev.gid if ev.egid is None else ev.egid
    return euid != ev.uid or egid != ev.gid or (ev.uid != 0 and ev.cap_effective != 0)


@dataclass(frozen=True, slots=True)
class HostInfo:
    """Facts about the machine that go into every record."""

    hostname: str
    boot_id: str
    """/proc/sys/kernel/random/boot_id: with pid and start time it names a process uniquely."""
    machine_id: str | None = None
    """/etc/machine-id, written as ECS host.id when known."""
    boot_time_ns: int | None = None
    """Wall-clock time of boot in ns (CLOCK_REALTIME - CLOCK_BOOTTIME); enables process.start."""


@functools.lru_cache(maxsize=256)
def _second_prefix(sec: int) -> str:
    # An exec storm formats thousands of timestamps within the same second: format that part once.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))


def rfc3339_ns(ns: int) -> str:
    """Format ns since the epoch as RFC 3339 UTC with nanoseconds, e.g. 2026-11-25T09:15:02.123456789Z."""
    sec, frac = divmod(ns, 1_000_000_000)
    return f"{_second_prefix(sec)}.{frac:09d}Z"


def command_line(args: Iterable[str]) -> str:
    """Join args into one shell-like line for humans; process.args stays the authoritative form.

    Each arg that the shell would not read back as itself (whitespace, quotes, backslash, other shell
    metacharacters, the empty string) is quoted with shlex.quote, so the line is unambiguous.
    """
    return shlex.join(args)


def envelope(
    now_ns: int,
    host: HostInfo,
    seq: int,
    *,
    action: str,
    dataset: str,
    category: Sequence[str],
    type_: Sequence[str],
    kind: str = "event",
) -> dict[str, Any]:
    """The fields every record starts with: time, ECS version, event classification, host."""
    host_obj: dict[str, Any] = {"hostname": host.hostname, "boot": {"id": host.boot_id}}
    if host.machine_id is not None:
        host_obj["id"] = host.machine_id
    return {
        "@timestamp": rfc3339_ns(now_ns),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": kind,
            "category": list(category),
            "type": list(type_),
            "action": action,
            "dataset": dataset,
            "module": MODULE,
            "sequence": seq,
        },
        "host": host_obj,
    }


def _claude_object(claude: Mapping[str, Any]) -> dict[str, Any]:
    if "pid" not in claude:
        raise ValueError("claude mapping must contain 'pid'")
    return dict(claude)


def _parent(ev: ExecEvent, host: HostInfo) -> dict[str, Any]:
    if not ev.parent_start_ticks:
        return {"pid": ev.ppid}
    return {"pid": ev.ppid, "entity_id": entity_id(host.boot_id, ev.ppid, ev.parent_start_ticks)}


def _credentials(ev: ExecEvent) -> dict[str, Any]:
    """ECS: process.user is the effective user, real_user and saved_user the others (same for groups)."""
    euid = ev.uid if ev.euid is None else ev.euid
    egid = ev.gid if ev.egid is None else ev.egid
    out: dict[str, Any] = {
        "user": {"id": str(euid)},
        "group": {"id": str(egid)},
        "real_user": {"id": str(ev.uid)},
        "real_group": {"id": str(ev.gid)},
        "saved_user": {"id": str(ev.uid if ev.suid is None else ev.suid)},
        "saved_group": {"id": str(ev.gid if ev.sgid is None else ev.sgid)},
    }
    if ev.cap_effective and ev.uid != 0:
        # Root's processes hold every capability as a matter of course; a non-root user's hold some
        # only through a setuid-root or file-capability program: that is what is worth a field.
        out["thread"] = {"id": ev.tid, "capabilities": {"effective": capability_names(ev.cap_effective)}}
    return out


def _quality_flags(ev: ExecEvent) -> set[str]:
    flags = set(ev.data_flags)
    if ev.args_truncated:
        flags.add("args_truncated")
    if ev.filename_truncated:
        flags.add("filename_truncated")
    if ev.track_flags & TrackFlag.PENDING_ROOT:
        flags.add("pending_root")
    if privilege_changed(ev):
        flags.add("privilege_changed")
    return flags


def exec_record(
    ev: ExecEvent,
    host: HostInfo,
    claude: Mapping[str, Any],
    seq: int,
    *,
    trace: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Map one exec of a tracked process to its ECS record.

    `claude` describes the session (at least "pid") and becomes the `claude` object as given; kernel
    facts live in `process`, `user`, `group` and `claude_audit`, so the mapping cannot overwrite them.
    `trace` (trace id, span id) from the invocation's TRACEPARENT becomes ECS `trace.id` and `span.id`.
    """
    flags = _quality_flags(ev)
    raw_process: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    decoded = [text_field(a) for a in ev.argv]
    args = [text for text, _ in decoded]
    if not all(ok for _, ok in decoded):
        raw_process["args"] = [b64(a) for a in ev.argv]
    executable, ok = text_field(ev.filename)
    if not ok:
        raw_process["executable"] = b64(ev.filename)
    comm, ok = text_field(ev.comm)
    if not ok:
        raw["claude_audit"] = {"comm": b64(ev.comm)}
    if raw_process:
        raw["process"] = raw_process
    if raw:
        flags.add("invalid_utf8")

    process: dict[str, Any] = {
        "pid": ev.pid,
        "thread": {"id": ev.tid},
        "entity_id": entity_id(host.boot_id, ev.pid, ev.start_ticks),
        "parent": _parent(ev, host),
        "executable": executable,
        "name": executable.rsplit("/", 1)[-1],
        "args": args,
        "args_count": len(args),
        "command_line": command_line(args),
    }
    if host.boot_time_ns is not None:
        process["start"] = rfc3339_ns(host.boot_time_ns + ev.start_ticks * _NS_PER_TICK)
    process |= _credentials(ev)

    audit: dict[str, Any] = {
        "flags": sorted(flags),
        "args_original_bytes": ev.args_original_len,
        "cgroup_id": ev.cgroup_id,
        "comm": comm,
        "session_entity_id": entity_id(host.boot_id, ev.session_root, ev.root_start_ticks),
    }
    if ev.invocation:
        audit["invocation"] = {
            "pid": ev.invocation,
            "entity_id": entity_id(host.boot_id, ev.invocation, ev.invocation_start_ticks),
        }

    rec = envelope(
        ev.wall_time_ns, host, seq, action="exec", dataset=EXEC_DATASET, category=["process"], type_=["start"]
    )
    if ev.denial is not None:
        _mark_denial(rec, audit, ev.denial)
    rec["process"] = process
    rec["user"] = {"id": str(ev.uid)}
    rec["group"] = {"id": str(ev.gid)}
    rec["claude"] = _claude_object(claude)
    rec["claude_audit"] = audit
    if trace is not None:
        # ECS trace.id / span.id: the exec joins Claude Code's own OpenTelemetry trace (TRACEPARENT).
        rec["trace"] = {"id": trace[0]}
        rec["span"] = {"id": trace[1]}
    if raw:
        rec["raw"] = raw
    return rec


def _mark_denial(rec: dict[str, Any], audit: dict[str, Any], denial: Denial) -> None:
    # Enforcement (docs/ENFORCE.md): the kernel killed the exec before the program ran, or in dry-run
    # would have. Either is an alert, so it reaches journald at error priority.
    denied = denial.decision == "denied"
    event = rec["event"]
    event["action"] = "exec-denied" if denied else "exec-would-deny"
    event["kind"] = "alert"
    event["type"] = ["start", "denied" if denied else "allowed"]
    event["outcome"] = "failure" if denied else "success"
    event["reason"] = denial.reason
    rec["rule"] = {"id": denial.rule_id, "description": denial.reason, "ruleset": "claude-audit enforce"}
    audit["enforce"] = {
        "decision": denial.decision,
        "rule_generation": denial.generation,
        "rule_index": denial.index,
    }


def _lifecycle(
    now_ns: int, host: HostInfo, seq: int, action: str, *, type_: str, details: dict[str, Any] | None
) -> dict[str, Any]:
    rec = envelope(
        now_ns, host, seq, action=action, dataset=LIFECYCLE_DATASET, category=["process"], type_=[type_]
    )
    if details is not None:
        rec["claude_audit"] = details
    return rec


def daemon_started(
    now_ns: int,
    host: HostInfo,
    seq: int,
    *,
    version: str,
    pid: int,
    config_path: str | None,
    sessions: int,
    probes: list[str],
    kernel: Mapping[str, str] | None = None,
    rules: Mapping[str, Any] | None = None,
    enforce: Mapping[str, Any] | None = None,
    config_digest: str | None = None,
) -> dict[str, Any]:
    """Record that the daemon started: its version, pid, config, sessions found and probes attached.

    `rules` (Sigma rules loaded and refused, each refusal with file, id and reason) goes to
    `claude_audit.rules`.

    `config_path` None (running on defaults, no file) leaves `claude_audit.config_path` out. `kernel`
    (release, and how this kernel's differences were handled) goes to `claude_audit.kernel`, `enforce`
    (the configured and the effective mode, the rule ids, and why enforcement is impossible if it is)
    to `claude_audit.enforce`.
    """
    details: dict[str, Any] = {"daemon_pid": pid}
    if config_path is not None:
        details["config_path"] = config_path
    details |= {"sessions": sessions, "probes": list(probes)}
    if kernel is not None:
        details["kernel"] = dict(kernel)
    if rules is not None:
        details["rules"] = dict(rules)
    if enforce is not None:
        details["enforce"] = dict(enforce)
    if config_digest is not None:
        details["config_digest"] = config_digest
    rec = _lifecycle(now_ns, host, seq, "daemon-started", type_="start", details=details)
    rec["service"] = {"name": "claude-audit", "version": version}
    return rec


def enforce_changed(now_ns: int, host: HostInfo, seq: int, *, enforce: Mapping[str, Any]) -> dict[str, Any]:
    """Record that a reload replaced the kernel's deny rules (`enforce` as in daemon_started)."""
    rec = envelope(
        now_ns,
        host,
        seq,
        action="enforce-changed",
        dataset=LIFECYCLE_DATASET,
        category=["configuration"],
        type_=["change"],
    )
    rec["claude_audit"] = {"enforce": dict(enforce)}
    return rec


def daemon_stopped(
    now_ns: int, host: HostInfo, seq: int, *, records_written: int, events_lost: int, reason: str
) -> dict[str, Any]:
    """Record that the daemon is stopping, why, and its totals for the run."""
    return _lifecycle(
        now_ns,
        host,
        seq,
        "daemon-stopped",
        type_="end",
        details={"records_written": records_written, "events_lost": events_lost, "reason": reason},
    )


def config_rejected(
    now_ns: int, host: HostInfo, seq: int, *, error: str, when: str = "reload", config_path: str | None = None
) -> dict[str, Any]:
    """Record that a config was invalid; `error` says why.

    `when` "reload": the running config was kept. `when` "start": the daemon could not start at all (it
    exits 78 and systemd does not restart it), so nothing is audited: an alert.
    """
    if when not in ("reload", "start"):
        raise ValueError(f"when must be 'reload' or 'start', not {when!r}")
    rec = envelope(
        now_ns,
        host,
        seq,
        action="config-rejected",
        dataset=LIFECYCLE_DATASET,
        category=["configuration"],
        type_=["change"],
        kind="alert" if when == "start" else "event",
    )
    rec["event"]["outcome"] = "failure"
    rec["claude_audit"] = {"error": error, "when": when}
    if config_path is not None:
        rec["claude_audit"]["config_path"] = config_path
    return rec


def config_reloaded(
    now_ns: int,
    host: HostInfo,
    seq: int,
    *,
    config_path: str,
    digest: str,
    previous_digest: str,
    changed: Sequence[str],
    needs_restart: Sequence[str],
) -> dict[str, Any]:
    """Record that SIGHUP applied a new config: its digest, the dotted keys that changed, and those among
    them that only take effect at the next start (the BPF program was compiled with them)."""
    rec = envelope(
        now_ns,
        host,
        seq,
        action="config-reloaded",
        dataset=LIFECYCLE_DATASET,
        category=["configuration"],
        type_=["change"],
    )
    rec["event"]["outcome"] = "success"
    rec["claude_audit"] = {
        "config": {
            "path": config_path,
            "digest": digest,
            "previous_digest": previous_digest,
            "changed": list(changed),
            "needs_restart": list(needs_restart),
        }
    }
    return rec


def heartbeat(
    now_ns: int,
    host: HostInfo,
    seq: int,
    *,
    version: str,
    pid: int,
    started_ns: int,
    interval_seconds: float,
    config_digest: str,
    config_path: str | None,
    counters: Mapping[str, int],
    losses: Mapping[str, int],
    sessions_watched: int,
    kernel: Mapping[str, Any],
) -> dict[str, Any]:
    """Record that the daemon is alive and watching, written every `interval_seconds` whatever happens.

    A SIEM alerts on its absence: a host that sent no heartbeat for a few intervals has a daemon that
    died, hangs or was masked. `counters` are totals since start (records written, execs seen...),
    `losses` the totals per loss bucket, `kernel` the state of the BPF program (programs attached).
    """
    details: dict[str, Any] = {
        "daemon_pid": pid,
        "started": rfc3339_ns(started_ns),
        "uptime_seconds": round((now_ns - started_ns) / 1e9, 3),
        "interval_seconds": interval_seconds,
        "config": {"digest": config_digest},
        "counters": dict(counters),
        "losses": dict(losses),
        "sessions_watched": sessions_watched,
        "kernel": dict(kernel),
    }
    if config_path is not None:
        details["config"]["path"] = config_path
    rec = envelope(
        now_ns,
        host,
        seq,
        action="heartbeat",
        dataset=LIFECYCLE_DATASET,
        category=["process"],
        type_=["info"],
        kind="state",
    )
    rec["service"] = {"name": "claude-audit", "version": version}
    rec["claude_audit"] = details
    return rec


def session_found(
    now_ns: int,
    host: HostInfo,
    seq: int,
    *,
    claude: Mapping[str, Any],
    how: str,
    process_info: Mapping[str, Any],
) -> dict[str, Any]:
    """Record a Claude Code session root the daemon now tracks.

    `how` is "scan", "kernel-trigger" or "startup"; `process_info` holds JSON-ready ECS process fields
    of the root (pid, executable, args, ...) and becomes `process`.
    """
    if how not in SESSION_FOUND_HOW:
        raise ValueError(f"how must be one of {sorted(SESSION_FOUND_HOW)}, not {how!r}")
    rec = _lifecycle(now_ns, host, seq, "session-found", type_="info", details={"how": how})
    rec["process"] = dict(process_info)
    rec["claude"] = _claude_object(claude)
    return rec


def session_ended(
    now_ns: int, host: HostInfo, seq: int, *, claude: Mapping[str, Any], exit_code: int
) -> dict[str, Any]:
    """Record that a session root exited; exit_code is passed through as the kernel reported it."""
    claude_obj = _claude_object(claude)
    rec = _lifecycle(now_ns, host, seq, "session-ended", type_="end", details=None)
    rec["process"] = {"pid": claude_obj["pid"], "exit_code": exit_code}
    rec["claude"] = claude_obj
    return rec


def events_lost(
    now_ns: int,
    host: HostInfo,
    seq: int,
    *,
    count: int,
    where: str,
    since_ns: int | None,
    lost_bytes: int | None = None,
) -> dict[str, Any]:
    """Record that `count` events were lost at `where` (one of LOST_WHERE) since `since_ns`.

    "kernel-ring": the BPF ring buffer was full; "kernel-ring-decision": the same, for the record of an
    exec a deny rule matched (the kill happened; its record is what was lost); "kernel-tracking": the
    kernel's table of tracked processes was full; "kernel-candidates": session triggers the kernel did not
    adopt (a user over its per-second candidate budget, or the candidates' map full; a real session among
    them is found by the next scan); "queue": the daemon's in-memory queue was full; "decode": events that
    could not be decoded; "file": audit lines that could not be written; "journal": records journald's
    socket could not take at once; "held-overflow": records of a process awaiting the verdict on whether
    it is Claude Code beyond the number held for it; "held-at-stop": records of such processes still
    undecided when the daemon stopped; "crash": records already taken from the kernel ring that a crashing
    daemon could not handle.

    For "file" the count is of records (lines) that could not be written, and `lost_bytes` their size
    (RotatingFile.take_gap gives both).
    """
    if where not in LOST_WHERE:
        raise ValueError(f"where must be one of {sorted(LOST_WHERE)}, not {where!r}")
    lost: dict[str, Any] = {"count": count, "where": where}
    if since_ns is not None:
        lost["since"] = rfc3339_ns(since_ns)
    if lost_bytes is not None:
        lost["bytes"] = lost_bytes
    return _lifecycle(now_ns, host, seq, "events-lost", type_="info", details={"lost": lost})


def session_not_watched(
    now_ns: int, host: HostInfo, seq: int, *, how: str, process_info: Mapping[str, Any], error: str
) -> dict[str, Any]:
    """Alert: a Claude Code process was found but the kernel could not take it as a session root (its
    root map is full), so nothing it runs is recorded until a later scan succeeds. `process_info` names
    the process (JSON-ready ECS process fields); `error` says why."""
    rec = _lifecycle(
        now_ns, host, seq, "session-not-watched", type_="info", details={"how": how, "error": error}
    )
    rec["event"]["kind"] = "alert"
    rec["event"]["outcome"] = "failure"
    rec["process"] = dict(process_info)
    return rec


def unwatched_window(
    now_ns: int, host: HostInfo, seq: int, *, from_ns: int, to_ns: int, reason: str
) -> dict[str, Any]:
    """Record a span in which no daemon was watching: from the previous run's last sign of life to this
    run's probes being attached. `reason` is "crash" (the previous run did not stop cleanly: killed,
    hung, power loss) or "stopped" (it stopped cleanly; nothing watched until this start)."""
    rec = _lifecycle(
        now_ns,
        host,
        seq,
        "unwatched-window",
        type_="info",
        details={
            "unwatched": {
                "from": rfc3339_ns(from_ns),
                "to": rfc3339_ns(to_ns),
                "seconds": round((to_ns - from_ns) / 1e9, 3),
                "reason": reason,
            }
        },
    )
    rec["event"]["kind"] = "alert" if reason == "crash" else "event"
    return rec


def chain_checkpoint(
    now_ns: int,
    host: HostInfo,
    seq: int,
    *,
    segment: str,
    chain_seq: int,
    head: str,
    final: bool,
    seal: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Record the chain's head (segment, sequence number and hash of its last line) for journald and the
    SIEM to keep: a log whose tail was cut no longer holds the line a checkpoint names. `final` marks
    the one written at a clean stop; `seal` (epoch, mac) is present when checkpoints are keyed."""
    checkpoint: dict[str, Any] = {"segment": segment, "seq": chain_seq, "head": head, "final": final}
    if seal is not None:
        checkpoint["seal"] = dict(seal)
    return _lifecycle(now_ns, host, seq, "chain-checkpoint", type_="info", details={"checkpoint": checkpoint})
