#!/usr/bin/env python3
"""Exec-storm benchmark: claude-audit against no monitoring and against auditd, in one interleaved run.

Run as root from the repository (the daemon loads BPF; auditd needs CAP_AUDIT_CONTROL):

    .venv/bin/python bench/exec_storm.py                 # default run, about 4-5 minutes
    .venv/bin/python bench/exec_storm.py --storm-seconds 60 --soak-seconds 600   # the full-length checks

Each repetition runs, in this order: a baseline storm (nothing watching), the claude-audit daemon with
an unrelated storm and then a storm inside a watched session, and the same unrelated storm under auditd
with an execve rule. Then a latency phase (watched storm while this script tails the log) and a memory
soak (watched storm for --soak-seconds, RSS sampled every second). It prints a markdown table and
writes every raw sample to bench/results/latest.json.

The storm is bench/storm.c, compiled into a temp dir with cc: N workers fork+exec `/bin/true <ns>` as
fast as they can, where <ns> is CLOCK_REALTIME read just before the fork, used for the latency numbers.
The watched storm binary is installed as `<tmp>/watched/claude` and the daemon's config lists that
path in [discovery] executable_globs, so the kernel adopts it as a candidate by comm on exec and the
daemon confirms it as a session root (the kernel-trigger path a real Claude Code takes); the storm waits
for the bench's go (after status.json lists the session) before it starts.

Modules: procstats.py (CPU time, RSS, host load, ending processes), subjects.py (the storm, the daemon,
auditd, the log tailer), report.py (statistics, analysis against the targets, the table); this file
holds the phases and the command line.

The daemon runs with its default configuration except for paths, [journal] enabled = false (this
host has no journald) and the discovery glob above; --flush-interval overrides
[audit_log] flush_interval_seconds to show what bounds the latency.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procstats import Sampler, cpu_seconds, kauditd_pid, rss_kb
from report import analyse, linreg_slope, machine, summary, table
from subjects import (
    BENCH,
    REPO,
    Auditd,
    AuditDaemon,
    Tailer,
    audit_daemon,
    audit_status,
    auditctl,
    auditd_running,
    build_storm,
    run_storm,
)


# -- phases ------------------------------------------------------------------------------------------------
@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    plain: Path
    watched: Path
    raw: dict[str, Any] = field(default_factory=dict)
    n_daemons: int = 0

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def daemon(self) -> contextlib.AbstractContextManager[AuditDaemon]:
        self.n_daemons += 1
        return audit_daemon(self.tmp, f"daemon{self.n_daemons}", self.watched, self.args.flush_interval)

    def storm(self, binary: Path | None = None, **kw: Any) -> dict[str, Any]:
        return run_storm(binary or self.plain, self.args.workers, self.args.storm_seconds, **kw)

    def watched_storm(self, d: AuditDaemon, seconds: float, profile: Path | None = None) -> dict[str, Any]:
        """A storm inside a watched session: throughput, records vs execs, losses, daemon CPU and RSS."""
        sampler = Sampler(d.pid)
        sampler.start()
        spy: subprocess.Popen[bytes] | None = None
        mark: dict[str, Any] = {}

        def go(pid: int) -> None:
            mark["discovery_s"] = d.wait_watched(pid)
            mark["cpu0"] = cpu_seconds(d.pid)
            mark["rss0"] = rss_kb(d.pid)

        if profile is not None:
            pyspy = REPO / ".venv" / "bin" / "py-spy"
            spy = subprocess.Popen(
                [str(pyspy), "record", "--pid", str(d.pid), "--format", "raw", "--output", str(profile),
                 "--rate", "200", "--duration", str(int(seconds) + 2), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        res = run_storm(self.watched, self.args.workers, seconds, before_go=go)
        d.wait_drained(res["pid"], res["execs"])
        cpu1 = cpu_seconds(d.pid)
        status = d.status()
        samples = sampler.stop()
        if spy is not None:
            spy.wait()
        recs = d.exec_records(res["pid"])
        true_recs = [r for r in recs if r["process"]["executable"] == "/bin/true"]
        kc = status.get("kernel_counters", {})
        lost = (
            kc.get("ring_lost", 0)
            + kc.get("tracking_full", 0)
            + kc.get("candidates_lost", 0)
            + status.get("queue_dropped", 0)
        )
        res.update(
            discovery_s=mark["discovery_s"],
            records_true=len(true_recs),
            records_session=len(recs),
            records_match=len(true_recs) == res["execs"],
            lost_kernel_and_queue=lost,
            lost_status_events_lost=status.get("events_lost"),
            lost_records=d.lost_records(),
            daemon_cpu_s=cpu1 - mark["cpu0"],
            cpu_ms_per_1000=(cpu1 - mark["cpu0"]) * 1e6 / max(1, len(true_recs)),
            rss_kb_start=mark["rss0"],
            rss_kb_end=samples[-1][2] if samples else None,
            rss_kb_max=max(s[2] for s in samples) if samples else None,
            status=status,
        )
        return res

    def rep(self, i: int) -> dict[str, Any]:
        r: dict[str, Any] = {}
        self.log(f"rep {i}: baseline storm (nothing watching)")
        r["baseline"] = self.storm()
        with self.daemon() as d:
            self.log(f"rep {i}: claude-audit running, unrelated storm")
            cpu0 = cpu_seconds(d.pid)
            r["daemon_unrelated"] = self.storm()
            r["daemon_unrelated"]["daemon_cpu_s"] = cpu_seconds(d.pid) - cpu0
            self.log(f"rep {i}: claude-audit running, watched storm")
            prof = Path(self.args.profile) if (self.args.profile and i == 0) else None
            r["watched"] = self.watched_storm(d, self.args.storm_seconds, profile=prof)
        if not self.args.no_auditd:
            self.log(f"rep {i}: auditd with execve rule, storm")
            a = Auditd(self.tmp / f"auditd{i}")
            a.start()
            try:
                kpid = kauditd_pid()
                st0 = audit_status()
                c0 = cpu_seconds(a.proc.pid) if a.proc else 0.0
                k0 = cpu_seconds(kpid) if kpid else 0.0
                res = self.storm()
                a.wait_drained()
                c1 = cpu_seconds(a.proc.pid) if a.proc else 0.0
                k1 = cpu_seconds(kpid) if kpid else 0.0
                st1 = audit_status()
                logged, mine = a.events_logged(res["worker_pids"])
                res.update(
                    storm_events_logged=mine,
                    auditd_cpu_s=c1 - c0,
                    kauditd_cpu_s=k1 - k0,
                    lost=int(st1.get("lost", 0)) - int(st0.get("lost", 0)),
                    events_logged=logged,
                    cpu_ms_per_1000=(c1 - c0) * 1e6 / max(1, logged),
                    cpu_ms_per_1000_with_kauditd=(c1 - c0 + k1 - k0) * 1e6 / max(1, logged),
                )
                r["auditd"] = res
            finally:
                a.stop()
        return r

    def latency(self) -> dict[str, Any]:
        self.log("latency: watched storm while tailing the log")
        with self.daemon() as d:
            tail = Tailer(d.log)
            tail.start()
            res = self.watched_storm(d, self.args.latency_seconds)
            time.sleep(0.3)
            tail.stop()
        lat = [(a - n) / 1e6 for a, n, _ in tail.samples]
        kern = [(t - n) / 1e6 for _, n, t in tail.samples]
        res.update(tailed=tail.count, latency_ms=summary(lat), timestamp_minus_argv_ms=summary(kern))
        return res

    def soak(self) -> dict[str, Any]:
        secs = self.args.soak_seconds
        self.log(f"soak: watched storm for {secs:g} s, RSS every second")
        with self.daemon() as d:
            sampler = Sampler(d.pid, interval=1.0)
            sampler.start()
            tail = Tailer(d.log, keep_every=20)
            tail.start()
            res = self.watched_storm(d, secs)
            time.sleep(0.3)
            tail.stop()
            samples = sampler.stop()
        rss = [s[2] for s in samples]
        half = samples[len(samples) // 2 :]
        slope = linreg_slope([s[0] for s in half], [s[2] for s in half]) * 60 if len(half) > 2 else 0.0
        res.update(
            rss_samples=samples,
            rss_kb_first=rss[0] if rss else None,
            rss_kb_last=rss[-1] if rss else None,
            rss_kb_max=max(rss) if rss else None,
            rss_kb_per_min_second_half=slope,
            tailed=tail.count,
            latency_ms=summary([(a - n) / 1e6 for a, n, _ in tail.samples]),
        )
        # A long soak writes more than max_bytes * (backups + 1): rotation removes the oldest files by
        # design, so count what the tail saw across every rotation, not what is left on disk.
        res.update(
            records_on_disk=res["records_true"],
            records_true=tail.count,
            records_match=tail.count == res["execs"],
            cpu_ms_per_1000=res["daemon_cpu_s"] * 1e6 / max(1, tail.count),
        )
        return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="storm workers (default 2)")
    ap.add_argument("--storm-seconds", type=float, default=8.0, help="each throughput phase (default 8)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--latency-seconds", type=float, default=10.0, help="latency phase (default 10)")
    ap.add_argument("--soak-seconds", type=float, default=30.0, help="memory soak (default 30; 600 = issue)")
    ap.add_argument("--no-auditd", action="store_true", help="skip the auditd column")
    ap.add_argument("--flush-interval", type=float, default=None, help="override flush_interval_seconds")
    ap.add_argument("--profile", default=None, help="py-spy raw profile: rep 0 watched storm")
    ap.add_argument("--out", default=str(BENCH / "results" / "latest.json"), help="JSON output path")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("exec_storm.py must run as root (BPF, auditd)", file=sys.stderr)
        return 2
    if not args.no_auditd:
        if shutil.which("auditd") is None or shutil.which("auditctl") is None:
            print("auditd not installed (apt-get install auditd) or pass --no-auditd", file=sys.stderr)
            return 2
        if auditd_running():
            print("an auditd is already running: not touching it; pass --no-auditd", file=sys.stderr)
            return 2
        if auditctl("-l").strip() not in ("", "No rules"):
            print("audit rules are already loaded: not touching them; pass --no-auditd", file=sys.stderr)
            return 2
    t_start = time.monotonic()
    raw: dict[str, Any] = {"machine": machine(), "args": vars(args), "reps": []}
    with tempfile.TemporaryDirectory(prefix="claude-audit-bench-") as td:
        tmp = Path(td)
        plain, watched = build_storm(tmp)
        b = Bench(args, tmp, plain, watched, raw)
        for i in range(args.reps):
            raw["reps"].append(b.rep(i))
        raw["latency"] = b.latency()
        raw["soak"] = b.soak()
    raw["wall_seconds"] = time.monotonic() - t_start
    raw["analysis"] = analyse(raw, args)
    md = table(raw, raw["analysis"])
    raw["table"] = md
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(raw, indent=1, default=str) + "\n")
    m = raw["machine"]
    print(f"\nMachine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, {m['date']}")
    print(f"Storm: {args.workers} workers fork+exec /bin/true; {args.reps} interleaved reps of "
          f"{args.storm_seconds:g} s; latency {args.latency_seconds:g} s; soak {args.soak_seconds:g} s; "
          f"wall {raw['wall_seconds']:.0f} s\n")  # fmt: skip
    print(md)
    print(f"\nraw samples: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
