"""What the privacy policy costs (CPU per record) and saves (bytes per record and per session).

Sessions, built through the daemon's own record stage (records.exec_record, render with and without
the policy, journal_fields + encode_entry for journald's payload):
  * "captured": the real Claude Code 2.1.331 session of tests/unit/data/claude_captures (its start-up
    shell, three Bash tool calls and their programs: real argv, real wrapper scripts);
  * "build": that session plus one tool call of the kind the issue names: a 2 KiB heredoc command
    (a build script) whose build starts --build-children compiler processes.
"before" is what the daemon wrote until this change: claude.command in full on every record, and
journald entries with PROCESS_ARGS, a MESSAGE of up to 4096 characters and AUDIT_RECORD. "after" is the
default policy: shipped redaction rules, command excerpts of 256 characters on descendants, journald
without PROCESS_ARGS and with a 256-character MESSAGE text.

CPU: process time of Privacy.apply (the default rule set) per record, over the records of the build
session (mostly compiler execs), over records of each recorded kind alone, and over records holding a
secret; the JSON line (dumps_line) of the same records is timed alongside for scale. No root needed:

    .venv/bin/python bench/privacy_cost.py [--build-children 500] [--reps 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "daemon")]

from claude_audit import records  # noqa: E402
from claude_audit.config import Config, privacy_policy  # noqa: E402
from claude_audit.events import ExecEvent, entity_id  # noqa: E402
from claude_audit.journal import FieldChoice, encode_entry, journal_fields  # noqa: E402
from claude_audit.origin import classify_origin, extract_command  # noqa: E402
from claude_audit.privacy import Privacy  # noqa: E402
from claude_audit.textenc import dumps_line  # noqa: E402

CAPTURE = REPO / "tests/unit/data/claude_captures/2.1.331/tree.json"
HOST = records.HostInfo("bench", "a18f885e-525d-4eb5-a656-98fee569d22f", boot_time_ns=1_795_000_000 * 10**9)
BEFORE_JOURNAL = FieldChoice(process_args=True, command=True, audit_record=True, message_text_chars=4096)
AFTER_JOURNAL = FieldChoice()
BUILD_COMMAND = (
    "cat > build.sh <<'EOF'\n"
    + "".join(
        f"cc -O2 -Wall -Iinclude -c src/module_{i:03d}.c -o build/module_{i:03d}.o\n" for i in range(32)
    )
    + "EOF\nbash build.sh && make -j2 test 2>&1 | tail -20"
)

Item = tuple[ExecEvent, dict[str, Any], bool]
"""(event, claude object, first record of its tool call)."""


def _event(i: int, pid: int, ppid: int, inv: int, *, argv: list[str], exe: str) -> ExecEvent:
    raw = [a.encode() for a in argv]
    return ExecEvent(
        wall_time_ns=1_795_600_000 * 10**9 + i,
        pid=pid,
        tid=pid,
        ppid=ppid,
        uid=1000,
        gid=1000,
        session_root=4000,
        root_start_ticks=100,
        invocation=inv,
        invocation_start_ticks=200,
        start_ticks=300 + i,
        cgroup_id=1,
        comm=exe.rsplit("/", 1)[-1][:15].encode(),
        filename=exe.encode(),
        argv=raw,
        args_truncated=False,
        args_original_len=sum(len(a) + 1 for a in raw),
    )


def captured_session() -> list[Item]:
    """The captured session's execs, each with the claude object the state stage gives it."""
    tree = json.loads(CAPTURE.read_text())
    procs = tree["processes"]
    root = str(tree["claude_pid"])
    session = {"pid": 4000, "session_entity_id": entity_id(HOST.boot_id, 4000, 100), "session_id": "s-1"}
    items: list[Item] = []
    shown: set[str] = set()
    order = sorted((p for p in procs if p != root), key=lambda p: procs[p]["first_seen_s"])
    for i, pid in enumerate(order):
        head = pid
        while procs[head]["ppid"] is not None and str(procs[head]["ppid"]) != root:
            head = str(procs[head]["ppid"])
        h = procs[head]
        hargv = [a.encode() for a in h["argv"]]
        origin = classify_origin(hargv, h["exe"].encode(), parent_is_root=True, claude_exe=None)
        command = extract_command(hargv)
        claude = dict(session) | {
            "invocation": entity_id(HOST.boot_id, int(head), 200),
            "invocation_pid": int(head),
            "origin": origin,
        }
        if command is not None:
            claude["command"] = command.decode()
        p = procs[pid]
        ev = _event(i, int(pid), int(p["ppid"]), int(head), argv=p["argv"], exe=p["exe"])
        items.append((ev, claude, head not in shown))
        shown.add(head)
    return items


def build_session(children: int) -> list[Item]:
    """The captured session plus one build tool call with `children` compiler processes."""
    items = captured_session()
    claude = dict(items[0][1]) | {
        "invocation": entity_id(HOST.boot_id, 9000, 200),
        "invocation_pid": 9000,
        "origin": "tool",
        "command": BUILD_COMMAND,
    }
    script = (
        "source /home/u/.claude/shell-snapshots/snapshot-bash-1-x.sh 2>/dev/null || true && "
        f"eval '{BUILD_COMMAND}' < /dev/null && pwd -P >| /tmp/claude-1-cwd"
    )
    n = len(items)
    items.append(
        (_event(n, 9000, 4000, 9000, argv=["/bin/bash", "-c", script], exe="/usr/bin/bash"), claude, True)
    )
    for i in range(children):
        m = i % 32
        argv = [
            "cc",
            "-O2",
            "-Wall",
            "-Iinclude",
            "-c",
            f"src/module_{m:03d}.c",
            "-o",
            f"build/module_{m:03d}.o",
        ]
        items.append((_event(n + 1 + i, 9001 + i, 9000, 9000, argv=argv, exe="/usr/bin/cc"), claude, False))
    return items


def sizes(items: list[Item], privacy: Privacy | None, choice: FieldChoice) -> tuple[int, int]:
    """(audit file bytes, journald payload bytes) of the session's exec records."""
    file_bytes = journal_bytes = 0
    for seq, (ev, claude, first) in enumerate(items):
        rec = records.exec_record(ev, HOST, claude, seq)
        if privacy is not None:
            privacy.apply(rec, full_command=first)
        line = dumps_line(rec)
        file_bytes += len(line)
        journal_bytes += len(encode_entry(journal_fields(rec, line, choice)))
    return file_bytes, journal_bytes


def per_record_us(recs: list[dict[str, Any]], fn: Callable[[dict[str, Any]], object], reps: int) -> float:
    """Least over reps of process time per record of fn (on fresh copies, not timed): the machine is
    shared, and the least is the run that other work disturbed least."""
    runs = []
    for _ in range(reps):
        batch = copy.deepcopy(recs)
        t0 = time.process_time()
        for r in batch:
            fn(r)
        runs.append((time.process_time() - t0) / len(batch) * 1e6)
    return min(runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--build-children", type=int, default=500)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    policy = privacy_policy(Config(), b"b" * 32)

    print(
        "bytes (exec records only)         records   file before  file after  journal before  journal after"
    )
    for name, items in (("captured", captured_session()), ("build", build_session(args.build_children))):
        fb, jb = sizes(items, None, BEFORE_JOURNAL)
        fa, ja = sizes(items, policy, AFTER_JOURNAL)
        n = len(items)
        print(f"  {name:<10} session total        {n:7d}  {fb:11d}  {fa:10d}  {jb:14d}  {ja:13d}")
        per = f"{fb / n:11.0f}  {fa / n:10.0f}  {jb / n:14.0f}  {ja / n:13.0f}"
        print(f"  {name:<10} per record           {'':7}  {per}")

    build = build_session(args.build_children)
    built = [records.exec_record(ev, HOST, claude, i) for i, (ev, claude, _) in enumerate(build)]
    cc = [r for r in built if r["process"]["name"] == "cc"]
    wrappers = [
        r
        for r in built
        if r["claude"].get("origin") in {"tool", "internal"} and r["process"]["name"] == "bash"
    ]
    secret = copy.deepcopy(cc[:200])
    for r in secret:
        r["process"]["args"] = [
            "curl",
            "-H",
            "Authorization: Bearer abcDEF123456tokXYZ",
            "https://api.example.com",
        ]
    print(
        "\nCPU per record (process time, least of reps)       policy (default rules)   dumps_line (for scale)"
    )
    for label, recs in (
        ("build session, all exec records", built),
        ("compiler execs (cc, command repeated)", cc),
        ("bash wrappers / start-up shell (long argv)", wrappers),
        ("records holding a bearer token", secret),
    ):
        p = per_record_us(recs, lambda r: policy.apply(r, full_command=False), args.reps)
        d = per_record_us(recs, dumps_line, args.reps)
        print(f"  {label:<46} {len(recs):5d}  {p:10.2f} us  {d:16.2f} us")
    needle, hay = "token", "git status --short && npm test"
    calib = min(timeit.repeat(lambda: needle in hay, number=100_000, repeat=5)) / 100_000 * 1e9
    load = os.getloadavg()[0]
    print(f"\nmachine scale: a substring test in a 30-char string, through a lambda, took {calib:.0f} ns;")
    print(f"load average {load:.1f} on {os.cpu_count()} cores while this ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
