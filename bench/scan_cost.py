"""What one discovery scan of /proc costs, with N extra processes of another user on the host.

Starts N `sleep` processes as `nobody` (and, with --node-attack K, K copies of sleep named `node` with
150 000 one-byte arguments each, the issue-9 stall), then times R scans as the daemon does them at
start-up and every scan interval: ProcFS().read_all() and find_roots() with the default matchers. Prints
wall time and CPU (user+sys of this process) per scan. The daemon package is imported from --daemon-dir
(default: this checkout), so the same run can measure an older tree extracted with `git archive`. As root:

    .venv/bin/python bench/scan_cost.py [--processes 10000] [--node-attack 0] [--reps 5] [--daemon-dir D]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _members(pgids: set[int]) -> int:
    """Attackers of this run that have exec'd their program (in one of these process groups, comm
    `sleep` or `node`, not the forking shell)."""
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                data = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            comm = data[data.find(b"(") + 1 : data.rfind(b")")]
            fields = data.rsplit(b")", 1)[1].split()
            n += int(fields[2]) in pgids and comm in (b"sleep", b"node")
    return n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=10_000)
    ap.add_argument("--node-attack", type=int, default=0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--daemon-dir", type=Path, default=REPO / "daemon")
    args = ap.parse_args()
    sys.path.insert(0, str(args.daemon_dir))
    from claude_audit.config import Config
    from claude_audit.discovery import Matchers, find_roots
    from claude_audit.procfs import ProcFS

    adir = Path(tempfile.mkdtemp(prefix="claude-audit-bench-", dir="/tmp"))
    adir.chmod(0o755)
    node = adir / "node"
    shutil.copy("/bin/sleep", node)
    node.chmod(0o755)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    loop = 'n=$1; shift; for ((i=0;i<n;i++)); do "$@" & done; wait'
    groups = [
        subprocess.Popen([*nobody, "bash", "-c", loop, "-", str(args.processes), "sleep", "1000"],
                         start_new_session=True),
    ]  # fmt: skip
    if args.node_attack:
        groups.append(
            subprocess.Popen(
                [
                    *nobody,
                    "bash",
                    "-c",
                    loop,
                    "-",
                    str(args.node_attack),
                    str(node),
                    "1000",
                    *(["0"] * 150_000),
                ],
                start_new_session=True,
            )
        )
    try:
        proc = ProcFS()
        want = args.processes + args.node_attack
        deadline = time.monotonic() + 300
        while _members({g.pid for g in groups}) < want and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        m = Matchers.from_config(Config().discovery)
        walls, cpus = [], []
        for _ in range(args.reps):
            w0, c0 = time.monotonic(), _cpu()
            infos = proc.read_all()
            find_roots(infos, m)
            walls.append(time.monotonic() - w0)
            cpus.append(_cpu() - c0)
        print(
            f"daemon={args.daemon_dir} processes_on_host={len(infos)} node_attack={args.node_attack} "
            f"scan_wall_s={min(walls):.3f}..{max(walls):.3f} scan_cpu_s={min(cpus):.3f}..{max(cpus):.3f}"
        )
    finally:
        for g in groups:
            os.killpg(g.pid, signal.SIGKILL)
            g.wait()
        shutil.rmtree(adir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
