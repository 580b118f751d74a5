"""A daemon in a child pid namespace records the pids its own /proc shows, not the host's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
REPO = HERE.parents[1]


def test_sensor_in_child_pid_namespace_reports_namespace_pids() -> None:
    """Loaded inside `unshare --pid`, the sensor tracks by and reports the namespace's pids."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "daemon"))
    out = subprocess.run(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            sys.executable,
            str(HERE / "pidns_probe.py"),
        ],
        env=env,
        check=False,
        capture_output=True,
        timeout=600,  # the kernel tier runs this under emulation, where the BPF compile alone takes minutes
    )
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-3000:]
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen["view_inum"] != 0  # it knew it was not in the initial namespace
    assert seen["my_pid"] == 1  # the probe is the namespace's init: pids there are small
    ev = seen["event"]
    assert ev["root"] == seen["root"]
    assert ev["ppid"] == seen["root"]
    assert ev["pid"] == ev["tid"] == seen["child"]
    assert ev["pid"] < 100  # a namespace pid; host pids on this machine are far larger by now
