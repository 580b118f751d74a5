"""Run inside a new pid namespace (by test_pidns.py): load the sensor, watch a child, print what it saw.

Prints one JSON object: the pids this namespace's /proc shows for the root and its child, and the pids
the sensor reported for their execs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

# What pytest gives the tests: their own directory and tests/common (pythonpath in pyproject).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
sys.path.insert(0, os.path.dirname(__file__))

from sensor_util import Collector, start_ticks
from settings import default_sensor_settings

from claude_audit.events import ExecEvent
from claude_audit.sensor import RingQueue, Sensor, view_pidns_inum


def main() -> None:
    q = RingQueue(100_000)
    with Sensor(default_sensor_settings(), q) as sensor:
        root = subprocess.Popen(
            ["/bin/bash", "-c", "read -r _; /bin/echo in-ns >/dev/null & echo $! > /dev/stderr; wait; :"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        sensor.add_root(root.pid, start_ticks(root.pid))
        assert root.stdin is not None and root.stderr is not None
        root.stdin.write(b"go\n")
        root.stdin.close()
        child = int(root.stderr.readline())
        root.wait()
        c = Collector(sensor, q)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            isinstance(e, ExecEvent) and e.argv == [b"/bin/echo", b"in-ns"] for e in c.events
        ):
            c.pump()
        ev = next(e for e in c.events if isinstance(e, ExecEvent) and e.argv == [b"/bin/echo", b"in-ns"])
        print(
            json.dumps(
                {
                    "view_inum": view_pidns_inum(),
                    "my_pid": os.getpid(),
                    "root": root.pid,
                    "child": child,
                    "event": {"pid": ev.pid, "tid": ev.tid, "ppid": ev.ppid, "root": ev.session_root},
                }
            )
        )


if __name__ == "__main__":
    main()
