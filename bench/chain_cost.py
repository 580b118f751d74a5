"""What the hash chain adds per record, measured side by side in one run.

For N synthetic exec records (a real ExecEvent through the daemon's own record builder, as in
journal_cost.py), interleaved repetitions time (a) record dict + JSON line, the cost every record has
anyway; (b) the same with the chain stamped and advanced (`Chain.stamp` + `dumps_line` + `Chain.advance`,
exactly what `Output.emit` does). It prints CPU per record for both and the difference. No root needed:

    .venv/bin/python bench/chain_cost.py [--records 50000] [--reps 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "daemon"), str(REPO / "bench")]

from journal_cost import CLAUDE, HOST, event  # noqa: E402

from claude_audit import records  # noqa: E402
from claude_audit.chain import Chain  # noqa: E402
from claude_audit.textenc import dumps_line  # noqa: E402


def run(n: int, chained: bool) -> float:
    """CPU seconds per record for n records, with or without the chain."""
    chain = Chain(None, resumed_from="new")
    events = [event(i) for i in range(n)]
    t0 = time.process_time()
    for i, ev in enumerate(events):
        rec = records.exec_record(ev, HOST, CLAUDE, i)
        if chained:
            chain.stamp(rec)
        line = dumps_line(rec)
        if chained:
            chain.advance(line)
    return (time.process_time() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    plain, chained = [], []
    for _ in range(a.reps):
        plain.append(run(a.records, False))
        chained.append(run(a.records, True))
    # The minimum: on a shared machine the other runs measure the neighbours as much as the code.
    p, c = min(plain), min(chained)
    print(f"records per rep: {a.records}, reps: {a.reps}")
    print(f"record + JSON line:          {p * 1e6:7.2f} us/record (min of reps)")
    print(f"record + chain + JSON line:  {c * 1e6:7.2f} us/record (min of reps)")
    print(f"chain cost:                  {(c - p) * 1e6:7.2f} us/record")


if __name__ == "__main__":
    main()
