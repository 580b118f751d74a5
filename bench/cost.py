#!/usr/bin/env python3
"""What claude-audit costs, side by side in one run: no monitor, claude-audit writing only its file,
claude-audit with a real journald, and auditd. `make bench` runs it. Run as root from the repository:

    .venv/bin/python bench/cost.py [--reps 3] [--storm-seconds 8] [--idle-seconds 30] [--no-auditd]

Each repetition runs, in order: a storm with nothing watching; a storm inside a watched session under a
daemon with [journal] enabled = false; the same under a daemon sending to a private systemd-journald (its
own mount namespace, tests/integration/journald_env.py, as bench/journal_cost.py); the same storm under
auditd with an execve rule (bench/exec_storm.py's set-up). Then a latency phase (watched storm, the log
tailed with a 1 ms poll), and the idle phases of bench/idle_cost.py (no session; 10 idle sessions).

CPU per record is the process CPU clock delta from the storm's go until its last record is in the log,
over the records; journald's is its own process's delta over the same window. RSS is the daemon's VmRSS
at the end of its storm. Medians over the repetitions; every sample goes to bench/results/cost.json.
The storm is bench/storm.c (2 workers fork+exec /bin/true as fast as they can).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests" / "integration")]

from exec_storm import Bench  # noqa: E402
from idle_cost import run_idle  # noqa: E402
from journald_env import journald_env  # noqa: E402
from procstats import cpu_seconds, kauditd_pid  # noqa: E402
from report import machine, summary  # noqa: E402
from subjects import BENCH, Auditd, Tailer, audit_daemon, auditctl, auditd_running, build_storm  # noqa: E402


def journal_storm(b: Bench, name: str) -> dict[str, Any]:
    """A watched storm under a daemon that also sends every record to a private journald."""
    with (
        journald_env() as env,
        audit_daemon(b.tmp, name, b.watched, None, journal_socket=env.socket_path) as d,
    ):
        j0 = cpu_seconds(env.pid)
        res = b.watched_storm(d, b.args.storm_seconds)
        time.sleep(1.0)  # journald writes what it received
        res["journald_cpu_s"] = cpu_seconds(env.pid) - j0
        entries = env.entries(SYSLOG_IDENTIFIER="claude-audit", CLAUDE_PID=str(res["pid"]))
        res["journal_true"] = sum(1 for e in entries if e.get("PROCESS_EXECUTABLE") == "/bin/true")
        res["journal_dropped"] = d.status().get("losses", {}).get("journal", 0)
    return res


def auditd_storm(b: Bench, i: int) -> dict[str, Any]:
    """The plain storm under auditd with an execve rule (every exec audited)."""
    a = Auditd(b.tmp / f"auditd{i}")
    a.start()
    try:
        kpid = kauditd_pid()
        c0 = cpu_seconds(a.proc.pid) if a.proc else 0.0
        k0 = cpu_seconds(kpid) if kpid else 0.0
        res = b.storm()
        a.wait_drained()
        c1 = cpu_seconds(a.proc.pid) if a.proc else 0.0
        k1 = cpu_seconds(kpid) if kpid else 0.0
        logged, mine = a.events_logged(res["worker_pids"])
        res.update(
            auditd_cpu_s=c1 - c0, kauditd_cpu_s=k1 - k0, events_logged=logged, storm_events_logged=mine
        )
        if a.proc:
            res["rss_kb"] = int(Path(f"/proc/{a.proc.pid}/status").read_text().split("VmRSS:")[1].split()[0])
        return res
    finally:
        a.stop()


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def table(raw: dict[str, Any]) -> str:
    """The markdown table: one column per monitor, one row per cost."""
    reps = raw["reps"]
    base = med([r["baseline"]["rate"] for r in reps])
    f = [r["file"] for r in reps]
    j = [r["journal"] for r in reps]
    a = [r["auditd"] for r in reps if "auditd" in r]
    per = lambda cpu, n: 1e6 * cpu / max(1, n)  # noqa: E731
    f_us = med([per(x["daemon_cpu_s"], x["records_true"]) for x in f])
    j_us = med([per(x["daemon_cpu_s"], x["records_true"]) for x in j])
    jd_us = med([per(x["journald_cpu_s"], x["records_true"]) for x in j])
    idle = raw["idle"]
    lat = raw["latency"]["latency_ms"]
    rows = [
        ("storm execs/s (median of reps)", f"{base:.0f}", f"{med([x['rate'] for x in f]):.0f}",
         f"{med([x['rate'] for x in j]):.0f}", f"{med([x['rate'] for x in a]):.0f}" if a else "not run", ""),
        ("storm throughput vs no monitor", "1", f"{med([x['rate'] for x in f]) / base:.3f}",
         f"{med([x['rate'] for x in j]) / base:.3f}",
         f"{med([x['rate'] for x in a]) / base:.3f}" if a else "",
         ">= 0.97"),
        ("monitor CPU per exec record, us", "", f"{f_us:.1f}", f"{j_us:.1f}",
         f"{med([per(x['auditd_cpu_s'], x['events_logged']) for x in a]):.1f}" if a else "", "<= 12 / <= 25"),
        ("+ journald's (kauditd's) own CPU per record, us", "", "", f"{jd_us:.1f}",
         f"{med([per(x['kauditd_cpu_s'], x['events_logged']) for x in a]):.1f}" if a else "", ""),
        ("records == execs; journal entries == execs", "", ", ".join(
            f"{x['records_true']}/{x['execs']}" for x in f), ", ".join(
            f"{x['records_true']}/{x['execs']}; {x['journal_true']}/{x['execs']}" for x in j), "", "equal"),
        ("idle CPU, no session / 10 idle sessions, % of a core", "",
         f"{idle['no_session']['cpu_percent']:.3f} / {idle['sessions']['cpu_percent']:.3f}", "", "",
         "<= 0.1 / <= 0.2"),
        ("idle wake-ups/s, no session / 10 sessions", "",
         f"{idle['no_session']['wakeups_per_s']:.2f} / {idle['sessions']['wakeups_per_s']:.2f}", "", "", ""),
        ("RSS at the end of the storm, MiB", "", f"{med([x['rss_kb_end'] / 1024 for x in f]):.0f}",
         f"{med([x['rss_kb_end'] / 1024 for x in j]):.0f}",
         f"{med([x['rss_kb'] / 1024 for x in a if 'rss_kb' in x]):.0f}" if a else "", "<= 120"),
        ("exec -> file latency p50 / p99, ms", "", f"{lat.get('p50', 0):.1f} / {lat.get('p99', 0):.1f}",
         "", "", "p99 <= 50"),
    ]  # fmt: skip
    out = [
        "| | no monitor | claude-audit, file only | claude-audit + journald | auditd (execve rule) "
        "| target |",
        "|---|---|---|---|---|---|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    before = [r["before"] for r in reps if "before" in r]
    if before:
        out.append("")
        out.append(
            f"Same run, the daemon from {raw['args']['before']} (file only): "
            f"{med([per(x['daemon_cpu_s'], x['records_true']) for x in before]):.1f} us CPU per record, "
            f"throughput {med([x['rate'] for x in before]) / base:.3f} of no monitor, RSS "
            f"{med([x['rss_kb_end'] / 1024 for x in before]):.0f} MiB; records "
            + ", ".join(f"{x['records_true']}/{x['execs']}" for x in before)
        )
    ib = raw.get("idle_before")
    if ib:
        n0, n1 = ib["no_session"], ib["sessions"]
        out.append(
            f"Idle, that daemon: {n0['cpu_percent']:.3f} / {n1['cpu_percent']:.3f} % of a core, "
            f"{n0['wakeups_per_s']:.2f} / {n1['wakeups_per_s']:.2f} wake-ups/s (no session / idle sessions)."
        )
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--storm-seconds", type=float, default=8.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument("--idle-sessions", type=int, default=10)
    ap.add_argument("--no-auditd", action="store_true")
    ap.add_argument(
        "--before",
        type=Path,
        default=None,
        help="another checkout's daemon/ directory: adds its file-only daemon as a column, for before/after",
    )
    ap.add_argument("--out", default=str(BENCH / "results" / "cost.json"))
    args = ap.parse_args()
    args.flush_interval = None
    args.profile = None
    if os.geteuid() != 0:
        print("cost.py must run as root (BPF, journald, auditd)", file=sys.stderr)
        return 2
    if not args.no_auditd and (auditd_running() or auditctl("-l").strip() not in ("", "No rules")):
        print(
            "an auditd or audit rules are already in place: not touching them; pass --no-auditd",
            file=sys.stderr,
        )
        return 2
    raw = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(raw, indent=1, default=str) + "\n")
    m = raw["machine"]
    print(
        f"\nMachine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, {m['date']}, "
        f"load average at start {' '.join(m['loadavg_at_start'])}"
    )
    print(f"Command: bench/cost.py --reps {args.reps} --storm-seconds {args.storm_seconds:g} "
          f"--idle-seconds {args.idle_seconds:g}; wall {raw['wall_seconds']:.0f} s\n")  # fmt: skip
    print(raw["table"])
    print(f"\nraw samples: {out}")
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every phase, in order; returns the raw samples with the table."""
    t0 = time.monotonic()
    raw: dict[str, Any] = {"machine": machine(), "args": vars(args), "reps": []}
    with tempfile.TemporaryDirectory(prefix="claude-audit-cost-") as td:
        tmp = Path(td)
        plain, watched = build_storm(tmp)
        b = Bench(args, tmp, plain, watched)
        for i in range(args.reps):
            r: dict[str, Any] = {}
            b.log(f"rep {i}: no monitor")
            r["baseline"] = b.storm()
            b.log(f"rep {i}: claude-audit, file only")
            with b.daemon() as d:
                r["file"] = b.watched_storm(d, args.storm_seconds)
            if args.before is not None:
                b.log(f"rep {i}: claude-audit from {args.before}, file only")
                with audit_daemon(tmp, f"before{i}", watched, None, daemon_dir=args.before.resolve()) as d:
                    r["before"] = b.watched_storm(d, args.storm_seconds)
            b.log(f"rep {i}: claude-audit + journald")
            r["journal"] = journal_storm(b, f"journal{i}")
            if not args.no_auditd:
                b.log(f"rep {i}: auditd")
                r["auditd"] = auditd_storm(b, i)
            raw["reps"].append(r)
        b.log("latency: watched storm while tailing the log")
        with b.daemon() as d:
            tail = Tailer(d.log)
            tail.start()
            lat = b.watched_storm(d, args.latency_seconds)
            time.sleep(0.3)
            tail.stop()
        lat["latency_ms"] = summary([(t - n) / 1e6 for t, n, _ in tail.samples])
        raw["latency"] = lat
        b.log(f"idle: {args.idle_seconds:g} s without a session, then with {args.idle_sessions}")
        repo_daemon = Path(__file__).resolve().parents[1] / "daemon"
        raw["idle"] = run_idle(tmp, watched, args.idle_seconds, args.idle_sessions, repo_daemon)
        if args.before is not None:
            b.log(f"idle: the daemon from {args.before}")
            before = args.before.resolve()
            raw["idle_before"] = run_idle(
                tmp, watched, args.idle_seconds, args.idle_sessions, before, name="idle-before"
            )
    raw["wall_seconds"] = time.monotonic() - t0
    raw["table"] = table(raw)
    return raw


if __name__ == "__main__":
    sys.exit(main())
