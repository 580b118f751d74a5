"""What Sigma detection adds per exec record, with the whole shipped rule pack loaded.

Exec records are built by the daemon's own builder (records.exec_record) from commands of the kinds a
Claude Code session runs (git, ls, grep, python, npm, a long shell pipeline, a 16 KiB argument) plus a
few that match shipped rules; each is checked with `Detector.check` (field mapping, the parent table,
the prefilter and the candidate rules), as the daemon does for every exec. It prints the thread CPU time
per record (min and median over repetitions) and how many records matched. Run:

    .venv/bin/python bench/rules_cost.py [--records 20000] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "daemon")]

from claude_audit import records  # noqa: E402
from claude_audit.config import RulesConfig  # noqa: E402
from claude_audit.detect import Detector  # noqa: E402
from claude_audit.events import ExecEvent  # noqa: E402
from claude_audit.rulefiles import load_rules  # noqa: E402
from claude_audit.rules import RuleSet  # noqa: E402
from claude_audit.textenc import dumps_line  # noqa: E402

COMMANDS: list[list[bytes]] = [
    [b"/usr/bin/git", b"status", b"--porcelain"],
    [b"/usr/bin/ls", b"-la", b"/srv/app"],
    [b"/usr/bin/grep", b"-rn", b"TODO", b"src/"],
    [b"/usr/bin/python3", b"-m", b"pytest", b"-q", b"tests/unit/test_x.py"],
    [b"/usr/bin/npm", b"run", b"build"],
    [b"/bin/bash", b"-c", b"cd /srv/app && make -j2 2>&1 | tail -20 && echo done"],
    [b"/usr/bin/cat", b"package.json"],
    [b"/usr/bin/sed", b"-n", b"1,80p", b"daemon/claude_audit/records.py"],
    [b"/usr/bin/node", b"x" * 16_000],
    [b"/usr/bin/curl", b"-s", b"http://127.0.0.1:8080/health"],
    [b"/usr/bin/base64", b"-d", b"payload.txt"],
    [b"/usr/bin/chmod", b"+x", b"/tmp/run.sh"],
]


CLAUDE = {"pid": 500, "invocation_pid": 600, "origin": "tool", "command": "make", "session_id": "s"}


def _event(i: int) -> ExecEvent:
    argv = COMMANDS[i % len(COMMANDS)]
    return ExecEvent(
        wall_time_ns=1_800_000_000_000_000_000 + i,
        pid=10_000 + i % 20_000,
        tid=10_000 + i % 20_000,
        ppid=9_999 + i % 20_000,
        uid=1000,
        gid=1000,
        session_root=500,
        root_start_ticks=1,
        invocation=600,
        invocation_start_ticks=2,
        start_ticks=3 + i,
        cgroup_id=1,
        comm=argv[0].rsplit(b"/", 1)[-1][:15],
        filename=argv[0],
        # The shell passes the name typed as argv[0] and the path it found as the file name.
        argv=[argv[0].rsplit(b"/", 1)[-1], *argv[1:]],
        args_truncated=False,
        args_original_len=sum(len(a) + 1 for a in argv),
    )


def _records(n: int) -> list[dict[str, Any]]:
    host = records.HostInfo("bench", "00000000-0000-0000-0000-000000000000", boot_time_ns=0)
    return [records.exec_record(_event(i), host, CLAUDE, i) for i in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    t0 = time.process_time()
    loaded = load_rules(RulesConfig())
    load_s = time.process_time() - t0
    recs = _records(a.records)
    host = records.HostInfo("bench", "00000000-0000-0000-0000-000000000000", boot_time_ns=0)
    per: list[float] = []
    mapping: list[float] = []
    record_cost: list[float] = []
    matched = 0
    for _ in range(a.reps):
        # What every exec costs anyway on the same machine at the same time: the record and its line.
        t = time.thread_time()
        for i in range(len(recs)):
            dumps_line(records.exec_record(_event(i), host, CLAUDE, i))
        record_cost.append((time.thread_time() - t) / len(recs) * 1e6)
        empty = Detector(RuleSet([]))
        t = time.thread_time()
        for r in recs:
            empty.fields(r)
        mapping.append((time.thread_time() - t) / len(recs) * 1e6)
        det = Detector(loaded.ruleset)
        t = time.thread_time()
        for r in recs:
            det.check(r)
        per.append((time.thread_time() - t) / len(recs) * 1e6)
        matched = det.matched
    med = statistics.median
    print(
        f"rules loaded {len(loaded.ruleset)}, refused {len(loaded.refused)}, without prefilter "
        f"{loaded.ruleset.unfiltered}; load+compile {load_s:.2f} s CPU"
    )
    print(f"records {len(recs)} x {a.reps} reps; alerts per rep {matched}")
    print(f"detection CPU per exec record, full pack: min {min(per):.2f} us, median {med(per):.2f} us")
    mapped = f"min {min(mapping):.2f} us, median {med(mapping):.2f} us"
    print(f"  of which field mapping + parent table: {mapped}")
    print(
        f"exec record + JSON line, same run: min {min(record_cost):.2f} us, "
        f"median {med(record_cost):.2f} us; detection / record = {med(per) / med(record_cost):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
