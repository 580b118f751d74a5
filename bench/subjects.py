"""What the exec-storm benchmark runs: the storm workload, the claude-audit daemon, auditd, a log tailer.

The storm is bench/storm.c: N workers fork+exec `/bin/true <ns>` as fast as they can, <ns> being
CLOCK_REALTIME read just before the fork. The daemon and auditd each run from a private temp dir.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procstats import host_cpu, kill, pids_named, terminate

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
PY = REPO / ".venv" / "bin" / "python"
AUDIT_RULE = ["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-S", "execveat", "-k", "bench"]
AUDIT_BACKLOG = 8192  # what Debian's /etc/audit/rules.d/audit.rules sets (-b 8192)


# -- the storm ------------------------------------------------------------------------------------------
def build_storm(tmp: Path) -> tuple[Path, Path]:
    """Compile bench/storm.c; returns (unwatched binary, watched binary named `claude`)."""
    plain = tmp / "bin" / "storm"
    plain.parent.mkdir()
    subprocess.run(["cc", "-O2", "-Wall", "-o", str(plain), str(BENCH / "storm.c")], check=True)
    watched = tmp / "watched" / "claude"
    watched.parent.mkdir()
    shutil.copy2(plain, watched)
    return plain, watched


def run_storm(
    binary: Path, workers: int, seconds: float, before_go: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Run one storm; `before_go(pid)` runs after the generator started and before it storms."""
    p = subprocess.Popen(
        [str(binary), str(workers), str(seconds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        if before_go is not None:
            before_go(p.pid)
        h0 = host_cpu()
        out, _ = p.communicate(b"go\n", timeout=seconds + 120)
        h1 = host_cpu()
    finally:
        kill(p)
    if p.returncode != 0:
        raise RuntimeError(f"storm exited {p.returncode}")
    res: dict[str, Any] = json.loads(out)
    res["pid"] = p.pid
    res["host_busy"] = (h1[0] - h0[0]) / max(1, h1[1] - h0[1])
    res["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    res["rate"] = res["execs"] / res["elapsed"]
    return res


# -- claude-audit ----------------------------------------------------------------------------------------
@dataclass
class AuditDaemon:
    """A claude-audit daemon started from this checkout with a config in its own temp dir."""

    dirpath: Path
    watched_glob: str
    flush_interval: float | None = None
    journal_socket: Path | None = None
    """journald's socket to send to (a private journald); None: [journal] enabled = false."""
    daemon_dir: Path = REPO / "daemon"
    """The claude_audit package's parent: another checkout's, to measure an older version side by side."""
    proc: subprocess.Popen[bytes] | None = None
    stderr_path: Path = field(init=False)

    @property
    def log(self) -> Path:
        return self.dirpath / "log" / "audit.jsonl"

    @property
    def status_path(self) -> Path:
        return self.dirpath / "run" / "status.json"

    def start(self) -> None:
        self.dirpath.mkdir(parents=True)
        flush = f"flush_interval_seconds = {self.flush_interval}\n" if self.flush_interval else ""
        cfg = self.dirpath / "config.toml"
        cfg.write_text(
            # no logrotate here: the daemon rotates, as the measured runs always did
            f'[audit_log]\npath = "{self.log}"\nmax_bytes = 104857600\nbackups = 5\n{flush}'
            f'[daemon]\nruntime_dir = "{self.dirpath}/run"\nstate_dir = "{self.dirpath}/state"\n'
            + (
                f'[journal]\nsocket_path = "{self.journal_socket}"\n'
                if self.journal_socket
                else "[journal]\nenabled = false\n"
            )
            + f'[discovery]\nexecutable_globs = ["{self.watched_glob}"]\n'
        )
        cfg.chmod(0o600)
        self.stderr_path = self.dirpath / "daemon.stderr"
        env = dict(os.environ, PYTHONPATH=str(self.daemon_dir))
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [str(PY), "-m", "claude_audit", "run", "--config", str(cfg)], env=env, stderr=err
            )
        deadline = time.monotonic() + 60
        while b'"daemon-started"' not in (self.log.read_bytes() if self.log.exists() else b""):
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.stderr_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError("daemon did not start")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def status(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads(self.status_path.read_bytes()))
        return {}

    def wait_watched(self, pid: int, timeout: float = 30.0) -> float:
        """Wait until status.json lists `pid` as a session; returns how long that took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if any(s.get("pid") == pid for s in self.status().get("sessions", [])):
                return time.monotonic() - t0
            time.sleep(0.02)
        raise RuntimeError(f"daemon did not watch storm root {pid}")

    def log_files(self) -> list[Path]:
        return sorted(self.log.parent.glob("audit.jsonl*"))

    def exec_records(self, root: int) -> list[dict[str, Any]]:
        """Exec records of the session rooted at `root`, from the log and its rotated files."""
        out = []
        for path in self.log_files():
            for line in path.read_bytes().splitlines():
                if b'"action":"exec"' in line:
                    r = json.loads(line)
                    if r.get("claude", {}).get("pid") == root:
                        out.append(r)
        return out

    def lost_records(self) -> int:
        n = 0
        for path in self.log_files():
            for line in path.read_bytes().splitlines():
                if b'"events-lost"' in line:
                    n += int(json.loads(line).get("claude_audit", {}).get("count", 1))
        return n

    def wait_drained(self, root: int, expected: int, timeout: float = 60.0) -> None:
        """Wait until the log holds `expected` /bin/true records of the session, or stops growing."""
        t0 = time.monotonic()
        last, still = -1, time.monotonic()
        while time.monotonic() - t0 < timeout:
            n = sum(path.read_bytes().count(b'"executable":"/bin/true"') for path in self.log_files())
            if n >= expected:
                time.sleep(0.6)  # one more status.json write after the last record
                return
            if n != last:
                last, still = n, time.monotonic()
            elif time.monotonic() - still > 3.0:
                return
            time.sleep(0.1)
        _ = root

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)


@contextlib.contextmanager
def audit_daemon(
    tmp: Path,
    name: str,
    watched: Path,
    flush_interval: float | None,
    *,
    journal_socket: Path | None = None,
    daemon_dir: Path = REPO / "daemon",
) -> Iterator[AuditDaemon]:
    d = AuditDaemon(
        tmp / name, str(watched), flush_interval, journal_socket=journal_socket, daemon_dir=daemon_dir
    )
    try:
        d.start()
        yield d
    finally:
        d.stop()


class Tailer(threading.Thread):
    """Follows the audit log (across rotation) with a 1 ms poll, timing when each exec line appears.

    Keeps (appeared ns, argv ns, @timestamp ns) of every `keep_every`-th /bin/true record and counts all.
    """

    ARGS = re.compile(rb'"args":\["/bin/true","(\d+)"\]')
    TS = re.compile(rb'"@timestamp":"([0-9T:-]+)\.(\d+)Z"')

    def __init__(self, path: Path, keep_every: int = 1) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.keep_every = keep_every
        self.count = 0
        self.samples: list[tuple[int, int, int]] = []
        self._stop_ev = threading.Event()
        self._sec_cache: dict[bytes, int] = {}

    def _ts_ns(self, sec: bytes, frac: bytes) -> int:
        base = self._sec_cache.get(sec)
        if base is None:
            base = calendar.timegm(time.strptime(sec.decode(), "%Y-%m-%dT%H:%M:%S"))
            self._sec_cache = {sec: base}
        return base * 1_000_000_000 + int(frac.ljust(9, b"0")[:9])

    def _lines(self, appeared: int, lines: list[bytes]) -> None:
        for line in lines:
            m = self.ARGS.search(line)
            if m is None:
                continue
            self.count += 1
            if self.count % self.keep_every == 0:
                t = self.TS.search(line)
                ts = self._ts_ns(t.group(1), t.group(2)) if t else 0
                self.samples.append((appeared, int(m.group(1)), ts))

    def run(self) -> None:
        while not self.path.exists():
            if self._stop_ev.wait(0.01):
                return
        f = open(self.path, "rb")  # noqa: SIM115 - reopened on rotation
        ino = os.fstat(f.fileno()).st_ino
        buf = b""
        try:
            while True:
                data = f.read(1 << 20)
                if data:
                    appeared = time.time_ns()
                    buf += data
                    *lines, buf = buf.split(b"\n")
                    self._lines(appeared, lines)
                    continue
                with contextlib.suppress(OSError):
                    if os.stat(self.path).st_ino != ino:  # rotated: the old file is read to its end
                        f.close()
                        f = open(self.path, "rb")  # noqa: SIM115
                        ino = os.fstat(f.fileno()).st_ino
                        continue
                if self._stop_ev.is_set():
                    return
                time.sleep(0.001)
        finally:
            f.close()

    def stop(self) -> None:
        self._stop_ev.set()
        self.join()


# -- auditd ------------------------------------------------------------------------------------------------
def auditctl(*args: str) -> str:
    return subprocess.run(["auditctl", *args], check=True, capture_output=True, text=True).stdout


def audit_status() -> dict[str, str]:
    out = {}
    for line in auditctl("-s").splitlines():
        k, _, v = line.partition(" ")
        out[k] = v.strip()
    return out


def auditd_running() -> list[int]:
    return pids_named("auditd")


@dataclass
class Auditd:
    """auditd -n with a private config dir (log in the temp dir) and the bench execve rule."""

    dirpath: Path
    proc: subprocess.Popen[bytes] | None = None
    saved: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.dirpath / "audit.log"

    def start(self) -> None:
        self.dirpath.mkdir(mode=0o700)
        conf = Path("/etc/audit/auditd.conf").read_text()
        conf = re.sub(r"(?m)^log_file\s*=.*$", f"log_file = {self.log}", conf)
        conf = re.sub(r"(?m)^max_log_file\s*=.*$", "max_log_file = 4096", conf)
        cpath = self.dirpath / "auditd.conf"
        cpath.write_text(conf)
        cpath.chmod(0o640)
        self.saved = audit_status()
        self.proc = subprocess.Popen(
            ["auditd", "-n", "-c", str(self.dirpath)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while audit_status().get("pid") != str(self.proc.pid):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("auditd did not start")
            time.sleep(0.05)
        auditctl("-b", str(AUDIT_BACKLOG))
        auditctl(*AUDIT_RULE)

    def events_logged(self, ppids: list[int]) -> tuple[int, int]:
        """(execve events logged under the bench key, those whose parent is one of `ppids`)."""
        if not self.log.exists():
            return 0, 0
        want = {f" ppid={p} ".encode() for p in ppids}
        total = mine = 0
        for line in self.log.read_bytes().splitlines():
            if line.startswith(b"type=SYSCALL") and b'key="bench"' in line:
                total += 1
                if any(w in line for w in want):
                    mine += 1
        return total, mine

    def wait_drained(self, timeout: float = 30.0) -> None:
        t0 = time.monotonic()
        last, still = -1, time.monotonic()
        while time.monotonic() - t0 < timeout:
            n = self.log.stat().st_size if self.log.exists() else 0
            if n != last:
                last, still = n, time.monotonic()
            elif time.monotonic() - still > 1.0:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            auditctl("-D")
        if self.proc is not None:
            terminate(self.proc)
        if self.saved:  # leave the kernel's audit settings as they were
            with contextlib.suppress(subprocess.CalledProcessError):
                auditctl("-b", self.saved.get("backlog_limit", "64"))
                auditctl("-e", self.saved.get("enabled", "0"))
