#!/usr/bin/env python3
"""What an idle claude-audit daemon costs: CPU and wake-ups with no session and with idle sessions.

Run as root from the repository:

    .venv/bin/python bench/idle_cost.py [--seconds 60] [--sessions 10] [--daemon-dir OTHER/daemon]

For each case (no session; N idle watched sessions) a daemon starts with the bench's config (journald
off), settles for a few seconds, and is then watched for --seconds: CPU from its process CPU clock,
wake-ups from voluntary context switches (/proc/PID/status: each time it went to sleep), RSS at the end.
An idle session is bench/storm.c installed as `claude` (the discovery glob makes it a session root),
waiting for its go line and never given one. --daemon-dir runs another checkout's daemon package, to
compare versions side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procstats import cpu_seconds, kill, rss_kb
from subjects import REPO, AuditDaemon, audit_daemon, build_storm

SETTLE_SECONDS = 5.0


def switches(pid: int) -> int:
    """Voluntary context switches of every thread of pid so far."""
    n = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                n += int(line.split()[1])
    return n


def measure(d: AuditDaemon, seconds: float) -> dict[str, float]:
    """CPU share, wake-ups per second and RSS of the daemon over `seconds`."""
    c0, w0, t0 = cpu_seconds(d.pid), switches(d.pid), time.monotonic()
    time.sleep(seconds)
    c1, w1, t1 = cpu_seconds(d.pid), switches(d.pid), time.monotonic()
    return {
        "cpu_percent": 100 * (c1 - c0) / (t1 - t0),
        "wakeups_per_s": (w1 - w0) / (t1 - t0),
        "rss_mib": rss_kb(d.pid) / 1024,
    }


def idle_case(
    tmp: Path, name: str, watched: Path, *, sessions: int, seconds: float, daemon_dir: Path
) -> dict[str, Any]:
    """One daemon, `sessions` idle sessions, measured after settling."""
    with audit_daemon(tmp, name, watched, None, daemon_dir=daemon_dir) as d:
        roots = [subprocess.Popen([str(watched), "1", "1"], stdin=subprocess.PIPE) for _ in range(sessions)]
        try:
            for p in roots:
                d.wait_watched(p.pid)
            time.sleep(SETTLE_SECONDS)
            res = measure(d, seconds)
        finally:
            for p in roots:
                kill(p)
    res["sessions"] = sessions
    return res


def run_idle(
    tmp: Path, watched: Path, seconds: float, sessions: int, daemon_dir: Path, *, name: str = "idle"
) -> dict[str, Any]:
    """Both idle cases, in one run (daemon directories `<name>0` and `<name>1` below tmp)."""
    return {
        "no_session": idle_case(tmp, f"{name}0", watched, sessions=0, seconds=seconds, daemon_dir=daemon_dir),
        "sessions": idle_case(
            tmp, f"{name}1", watched, sessions=sessions, seconds=seconds, daemon_dir=daemon_dir
        ),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--daemon-dir", type=Path, default=REPO / "daemon")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("idle_cost.py must run as root (BPF)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="claude-audit-idle-") as td:
        tmp = Path(td)
        _, watched = build_storm(tmp)
        res = run_idle(tmp, watched, args.seconds, args.sessions, args.daemon_dir.resolve())
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
