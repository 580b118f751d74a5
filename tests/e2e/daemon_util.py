"""Run the real claude-audit daemon as a subprocess for end-to-end tests, and read what it wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonl import read_records
from processes import terminate

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "claude_audit"]


@dataclass
class RunningDaemon:
    """A daemon started by `running_daemon`, with its log path."""

    proc: subprocess.Popen[bytes]
    log: Path
    config: Path

    def records(self) -> list[dict[str, Any]]:
        """Every record in the current log file, parsed (the test fails on a line that is not JSON)."""
        return read_records(self.log, writer_stopped=self.proc.poll() is not None)

    def wait_for(self, pred: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until pred(records) is true; returns the records."""
        deadline = time.monotonic() + timeout
        while True:
            recs = self.records()
            if pred(recs):
                return recs
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for records")
            time.sleep(0.1)


def write_config(dirpath: Path, extra: str = "", journal_socket: Path | None = None) -> Path:
    """A config file (mode 0600) that keeps everything the daemon writes inside dirpath; journald off
    unless `journal_socket` names one."""
    cfg = dirpath / "config.toml"
    journal = f'enabled = true\nsocket_path = "{journal_socket}"\n' if journal_socket else "enabled = false\n"
    cfg.write_text(
        f'[audit_log]\npath = "{dirpath}/log/audit.jsonl"\nflush_interval_seconds = 0.2\n'
        f'[daemon]\nruntime_dir = "{dirpath}/run"\nstate_dir = "{dirpath}/state"\n'
        f"[journal]\n{journal}{extra}"
    )
    cfg.chmod(0o600)
    return cfg


@contextmanager
def running_daemon(
    dirpath: Path, extra_config: str = "", journal_socket: Path | None = None
) -> Iterator[RunningDaemon]:
    """Start `claude-audit run` and wait for its daemon-started record; SIGTERM it at the end."""
    cfg = write_config(dirpath, extra_config, journal_socket)
    env = dict(os.environ, PYTHONPATH=str(REPO / "daemon"))
    proc = subprocess.Popen([*CLI, "run", "--config", str(cfg)], env=env, stderr=subprocess.PIPE)
    d = RunningDaemon(proc, dirpath / "log" / "audit.jsonl", cfg)
    try:
        d.wait_for(lambda rs: any(r["event"]["action"] == "daemon-started" for r in rs))
        yield d
    finally:
        terminate(proc)
        assert proc.stderr is not None
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.returncode not in (0, -signal.SIGTERM):
            raise AssertionError(f"daemon exited {proc.returncode}: {err[-3000:]}")


def execs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exec records."""
    return [r for r in records if r["event"]["action"] == "exec"]
