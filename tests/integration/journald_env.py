"""A private systemd-journald for tests, without touching the host's /run, /var or journal.

journald runs in its own mount namespace (`unshare --mount --propagation private`) where a fresh
directory of ours is bind-mounted over /run (and over /var/log/journal if the host has one, so
nothing persistent is written). Because that directory lives on the host side, the test process
reaches the socket at <dir>/run/systemd/journal/socket and reads the journal with
`journalctl -D <dir>/run/log/journal/<machine-id>`. Mounts die with the namespace; the directory is
removed afterwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processes import terminate

JOURNALD = "/lib/systemd/systemd-journald"


@dataclass
class JournaldEnv:
    socket_path: Path
    journal_dir: Path
    pid: int

    def entries(self, **match: str) -> list[dict[str, Any]]:
        """All entries (journalctl -o json), optionally filtered by FIELD=value matches."""
        cmd = ["journalctl", "--no-pager", "-D", str(self.journal_dir), "-o", "json", "--all"]
        cmd += [f"{k}={v}" for k, v in match.items()]
        out = subprocess.run(cmd, capture_output=True, check=True, timeout=30).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_for(self, count: int = 1, timeout: float = 10.0, **match: str) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.entries(**match) if self.journal_dir.exists() else []
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.1)


@contextmanager
def journald_env(timeout: float = 10.0) -> Iterator[JournaldEnv]:
    base = Path(tempfile.mkdtemp(prefix="claude-audit-journald-"))
    run = base / "run"
    var = base / "varjournal"
    run.mkdir()
    var.mkdir()
    script = (
        "set -e\n"
        f"mount --bind {run} /run\n"
        f"if [ -d /var/log/journal ]; then mount --bind {var} /var/log/journal; fi\n"
        "mkdir -p /run/systemd/journal\n"
        f"exec {JOURNALD}\n"
    )
    # Without --fork, unshare execs the shell, which execs journald: proc.pid is journald itself.
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        sock = run / "systemd/journal/socket"
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"systemd-journald exited with {proc.returncode}: {err}")
            if time.monotonic() > deadline:
                raise TimeoutError("systemd-journald did not create its socket")
            time.sleep(0.02)
        machine_id = Path("/etc/machine-id").read_text().strip()
        yield JournaldEnv(socket_path=sock, journal_dir=run / "log/journal" / machine_id, pid=proc.pid)
    finally:
        terminate(proc, timeout=10)
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(base, ignore_errors=True)
