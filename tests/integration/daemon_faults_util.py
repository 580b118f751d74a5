"""Shared by the fault, evasion and hostile-input tests: the real daemon as a subprocess, and fake sessions.

A fake Claude Code session is a copy of /bin/bash installed at npm's path for the native binary
(.../@anthropic-ai/claude-code/bin/claude.exe): the kernel adopts it on exec (comm "claude.exe") and the
daemon confirms it from the executable path, exactly as for the real CLI, but it runs a script we choose.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from jsonl import read_records
from processes import kill, terminate

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "claude_audit"]
ENV = dict(os.environ, PYTHONPATH=str(REPO / "daemon"))

Records = list[dict[str, Any]]
T = TypeVar("T")


def fake_claude(base: Path) -> Path:
    """A bash that discovery takes for Claude Code's native binary."""
    d = base / "node_modules/@anthropic-ai/claude-code/bin"
    d.mkdir(parents=True, exist_ok=True)
    exe = d / "claude.exe"
    if not exe.exists():
        shutil.copy("/bin/bash", exe)
    return exe


def config_text(
    base: Path,
    log: Path,
    *,
    journal_socket: Path | None = None,
    capture: str = "",
    mode: int = 0o600,
    only_fake: bool = False,
    daemon_extra: str = "",
) -> Path:
    """Write base/config.toml keeping everything the daemon writes under base (or at `log`).

    `daemon_extra`: more lines for the [daemon] table.
    `only_fake`: discovery recognises only fake_claude(base), so Claude Code sessions that happen to run
    elsewhere on the machine stay out of this daemon's log and loss counts (their comm "claude" is not
    even a kernel trigger then; only "claude.exe", the fake's comm, is).
    """
    cfg = base / "config.toml"
    cfg.write_text(
        f'[audit_log]\npath = "{log}"\nflush_interval_seconds = 0.2\n'
        f'[daemon]\nruntime_dir = "{base}/run"\nstate_dir = "{base}/state"\n{daemon_extra}\n'
        f"[journal]\nenabled = {'true' if journal_socket else 'false'}\n"
        + (f'socket_path = "{journal_socket}"\n' if journal_socket else "")
        + (f"[capture]\n{capture}\n" if capture else "")
        + (
            f'[discovery]\nexecutable_globs = ["{fake_claude(base)}"]\n'
            f'script_globs = ["{base}/no-such-script.js"]\ncomm_names = ["claude.exe"]\n'
            if only_fake
            else ""
        )
    )
    cfg.chmod(mode)
    return cfg


WAIT_SECONDS = 180.0
"""How long a test waits for the daemon to show something before it fails. Generous: the kernel tier runs
these tests in emulated guests, three side by side on two cores, where the daemon's per-record work
(decode, redaction, Sigma rules, hash chain) is tens of times slower than here. A wait ends as soon as
its condition holds, so this costs nothing when things work."""


@dataclass
class Daemon:
    """A running `claude-audit run`, its log and its stderr file."""

    proc: subprocess.Popen[bytes]
    log: Path
    config: Path
    base: Path
    stderr_path: Path

    def records(self) -> Records:
        """Every record in the current log file (the test fails on any line that is not JSON)."""
        return read_records(self.log, writer_stopped=not self.alive())

    def records_with_backups(self) -> Records:
        """Every record of the daemon's own numbered backups (oldest first) and the current file."""
        backups = [p for p in self.log.parent.glob(self.log.name + ".*") if p.suffix[1:].isdigit()]
        files = [*sorted(backups, key=lambda p: -int(p.suffix[1:])), self.log]
        return [r for p in files for r in read_records(p)]

    def stderr(self) -> str:
        """What the daemon logged so far."""
        return self.stderr_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        """The daemon's status.json (written after each flush)."""
        try:
            data: dict[str, Any] = json.loads((self.base / "run" / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data

    def wait_for(self, pred: Callable[[Records], bool], timeout: float = WAIT_SECONDS) -> Records:
        """Wait until pred(records) holds; returns the records (fails if the daemon exits)."""
        return wait_until(lambda: self._check(pred), timeout, self)

    def _check(self, pred: Callable[[Records], bool]) -> Records | None:
        recs = self.records()
        return recs if pred(recs) else None

    def wait_status(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = WAIT_SECONDS
    ) -> dict[str, Any]:
        """Wait until pred(status.json) holds."""
        return wait_until(lambda: s if pred(s := self.status()) and s else None, timeout, self)

    def alive(self) -> bool:
        """The daemon process is still running."""
        return self.proc.poll() is None


def wait_until(fn: Callable[[], T | None], timeout: float, daemon: Daemon | None = None) -> T:
    """Poll fn until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v is not None:
            return v
        if daemon is not None and not daemon.alive():
            raise AssertionError(f"daemon exited {daemon.proc.returncode}: {daemon.stderr()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@contextmanager
def daemon(base: Path, cfg: Path, log: Path, *, expect_rc: tuple[int, ...] = (0,)) -> Iterator[Daemon]:
    """Start the daemon with `cfg`, wait for its daemon-started record, SIGTERM it at the end."""
    err_path = base / f"daemon-stderr-{time.monotonic_ns()}.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen([*CLI, "run", "--config", str(cfg)], env=ENV, stderr=err)
    d = Daemon(proc, log, cfg, base, err_path)
    try:
        # In the rotated set too: with a small max_bytes the start records can rotate out of the live
        # file before this looks.
        wait_until(
            lambda: (
                True
                if any(
                    r["event"]["action"] == "daemon-started" and r["claude_audit"]["daemon_pid"] == proc.pid
                    for r in d.records_with_backups()
                )
                else None
            ),
            600,  # the kernel tier runs this under emulation, where the BPF compile alone takes minutes
            d,
        )
        yield d
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a test may have stopped it
        terminate(proc, timeout=60)
    if proc.returncode not in expect_rc:
        raise AssertionError(f"daemon exited {proc.returncode}: {d.stderr()[-3000:]}")


@dataclass
class Session:
    """A fake Claude Code session running a bash script in steps: each `go()` runs the next step."""

    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        """The session root's pid."""
        return self.proc.pid

    def go(self) -> None:
        """Let the script past its next `read -r _`."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()


@contextmanager
def session(exe: Path, *steps: str, env: dict[str, str] | None = None) -> Iterator[Session]:
    """Start `exe -c` with each step preceded by `read -r _`; killed at the end if still running."""
    script = "".join(f"read -r _; {s}\n" for s in steps) + "read -r _\n"
    proc = subprocess.Popen([str(exe), "-c", script], stdin=subprocess.PIPE, env=env)
    try:
        yield Session(proc)
    finally:
        if proc.poll() is None:
            assert proc.stdin is not None
            try:
                proc.stdin.close()  # EOF ends the last read
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                kill(proc)


def actions(recs: Records, action: str) -> Records:
    """The records with this event.action."""
    return [r for r in recs if r["event"]["action"] == action]


def execs_of(recs: Records, root: int) -> Records:
    """The exec records attributed to the session rooted at pid `root`."""
    return [r for r in actions(recs, "exec") if r["claude"]["pid"] == root]


def args_of(recs: Records, root: int) -> list[list[str]]:
    """The argv of each exec of that session."""
    return [r["process"]["args"] for r in execs_of(recs, root)]


def session_found(d: Daemon, root: int) -> Records:
    """Wait until the daemon has a session-found record for `root`."""
    return d.wait_for(lambda rs: any(r["claude"]["pid"] == root for r in actions(rs, "session-found")))
