"""What the journald sink adds per record, measured side by side in one run.

For N synthetic exec records (a real ExecEvent through the daemon's own record builder), interleaved
repetitions time (a) what every record costs anyway: record dict + JSON line; (b) the same plus
journal_fields + a native-protocol datagram to a private systemd-journald (tests/integration/
journald_env.py starts it in its own mount namespace). It prints our CPU per record for both, the ratio,
journald's own CPU per 1000 records, and checks that every record arrived. Run as root:

    .venv/bin/python bench/journal_cost.py [--records 20000] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "daemon"), str(REPO / "tests" / "integration"), str(REPO / "tests" / "common")]

from journald_env import journald_env  # noqa: E402
from procstats import cpu_seconds  # noqa: E402

from claude_audit import records  # noqa: E402
from claude_audit.events import ExecEvent  # noqa: E402
from claude_audit.journal import JournalSink, journal_fields  # noqa: E402
from claude_audit.textenc import dumps_line  # noqa: E402

HOST = records.HostInfo("bench", "a18f885e-525d-4eb5-a656-98fee569d22f", boot_time_ns=1_795_000_000 * 10**9)
CLAUDE = {
    "pid": 4000,
    "session_entity_id": "So1ZO_RljRG6KSsd_jNM",
    "session_id": "9b7b288b-7a53-44ff",
    "origin": "tool",
    "invocation": "W6KwOagfos48xfjt3hPu",
    "invocation_pid": 4100,
    "command": "make -j2 test 2>&1 | tail -20",
}


def event(i: int) -> ExecEvent:
    return ExecEvent(
        wall_time_ns=1_795_600_000 * 10**9 + i,
        pid=5000 + i % 30000,
        tid=5000 + i % 30000,
        ppid=4100,
        uid=1000,
        gid=1000,
        session_root=4000,
        root_start_ticks=100,
        invocation=4100,
        invocation_start_ticks=200,
        start_ticks=300 + i,
        cgroup_id=1,
        comm=b"cc",
        filename=b"/usr/bin/cc",
        argv=[b"cc", b"-O2", b"-c", f"src/file{i}.c".encode(), b"-o", b"out.o"],
        args_truncated=False,
        args_original_len=40,
    )


def run(n: int, sink: JournalSink | None) -> float:
    t0 = time.process_time()
    for i in range(n):
        rec = records.exec_record(event(i), HOST, CLAUDE, i)
        line = dumps_line(rec)
        if sink is not None:
            sink.send(journal_fields(rec, line))
    return time.process_time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    n = args.records
    base, withj, jd_cpu = [], [], []
    with journald_env() as env:
        sink = JournalSink(env.socket_path)
        for _ in range(args.reps):
            base.append(run(n, None))
            c0 = cpu_seconds(env.pid)
            withj.append(run(n, sink))
            time.sleep(1.0)  # let journald finish writing what it received
            jd_cpu.append(cpu_seconds(env.pid) - c0)
        arrived = len(env.entries(SYSLOG_IDENTIFIER="claude-audit"))
        sent, failed = sink.sent, sink.failed
        sink.close()
    us = lambda xs: statistics.median(xs) * 1e6 / n  # noqa: E731
    print(f"records per repetition: {n}, repetitions: {args.reps}")
    print("| metric | value |\n|---|---|")
    print(f"| our CPU per record, file path only (median) | {us(base):.1f} us |")
    print(f"| our CPU per record, plus journald sink (median) | {us(withj):.1f} us |")
    print(f"| ratio (with / without journald) | {statistics.median(withj) / statistics.median(base):.2f} |")
    print(f"| journald's CPU per 1000 records (median) | {statistics.median(jd_cpu) * 1e6 / n:.1f} ms |")
    print(f"| datagrams sent / failed / entries in the journal | {sent} / {failed} / {arrived} |")
    return 0 if arrived == sent == n * args.reps and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
