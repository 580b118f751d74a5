"""Shared by the adversary tests: attackers as an unprivileged user, and the daemon under attack.

Attack programs live in a world-readable directory under /tmp (the test's own tmp_path is root-only),
run as `nobody` through setpriv, each group in a session of its own so the test ends exactly the
processes it started (killpg of the group it created). The daemon can run in a private mount namespace
in which /root is a directory of the test: root's ~/.claude/sessions is then the test's, so an agent's
session file (FIFO, symlink to /dev/zero) is planted there without touching the host's /root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from daemon_faults_util import CLI, ENV, Daemon, actions

NOBODY = 65534
DAEMON_ENV = dict(ENV, PYTHONPATH=os.environ.get("CLAUDE_AUDIT_DAEMON_DIR", ENV["PYTHONPATH"]))
"""The daemon's environment. CLAUDE_AUDIT_DAEMON_DIR runs the tier against another tree's daemon package
(e.g. one extracted with `git archive <rev>`), to measure how an older version fares under each attack."""
READY_BOUND_S = 90.0
"""How long the daemon may take to write daemon-started under an attack: BPF compilation (3-10 s on
this 2-core machine under load) plus a scan whose cost does not depend on what the attackers hold."""


def as_nobody(argv: Sequence[str]) -> list[str]:
    """argv run as uid/gid nobody with no supplementary groups."""
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *argv]


@contextmanager
def attacker_dir() -> Iterator[Path]:
    """A directory under /tmp that nobody can read and execute from; removed at the end."""
    d = Path(tempfile.mkdtemp(prefix="claude-audit-adv-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def compile_c(src: str, out: Path) -> Path:
    """Compile a small C program (world-executable)."""
    c = out.with_suffix(".c")
    c.write_text(src)
    subprocess.run(["cc", "-O2", "-o", str(out), str(c)], check=True)
    out.chmod(0o755)
    return out


@dataclass
class Group:
    """Processes started by one Popen in a session of their own (pgid = the Popen's pid)."""

    proc: subprocess.Popen[bytes]

    def end(self) -> None:
        """SIGKILL the group this test created, and reap its leader."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@contextmanager
def started(argv: Sequence[str], env: dict[str, str] | None = None) -> Iterator[Group]:
    """Start argv in a new session; kill its whole group at the end."""
    g = Group(
        subprocess.Popen(
            list(argv),
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    try:
        yield g
    finally:
        g.end()


def count_group(pgid: int, comm: bytes | None = None) -> int:
    """How many processes of process group `pgid` exist now (with this comm, if given: the attackers
    that have exec'd their program, not the shell still forking them)."""
    n = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            data = Path(f"/proc/{name}/stat").read_bytes()
            fields = data.rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and (comm is None or data[data.find(b"(") + 1 : data.rfind(b")")] == comm):
            n += 1
    return n


@dataclass
class Started:
    """A daemon under attack, and how long it took to write daemon-started."""

    daemon: Daemon
    ready_s: float


@contextmanager
def daemon_under_attack(
    base: Path, cfg: Path, log: Path, *, root_home: Path | None = None, ready_bound: float = READY_BOUND_S
) -> Iterator[Started]:
    """Start the daemon (in a mount namespace with /root = root_home, if given) and require its
    daemon-started record within `ready_bound` seconds; SIGTERM it at the end and require exit 0."""
    argv = [*CLI, "run", "--config", str(cfg)]
    if root_home is not None:
        argv = [
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", 'mount --bind "$0" /root && exec "$@"', str(root_home), *argv,
        ]  # fmt: skip
    err_path = base / f"daemon-stderr-{time.monotonic_ns()}.txt"
    t0 = time.monotonic()
    with err_path.open("wb") as err:
        proc = subprocess.Popen(argv, env=DAEMON_ENV, stderr=err)
    d = Daemon(proc, log, cfg, base, err_path)
    try:
        d.wait_for(
            lambda rs: any(
                r["claude_audit"].get("daemon_pid") == proc.pid for r in actions(rs, "daemon-started")
            ),
            timeout=ready_bound,
        )
        yield Started(d, time.monotonic() - t0)
        assert d.alive(), f"daemon exited {proc.returncode}: {d.stderr()[-3000:]}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise AssertionError(f"daemon exited {proc.returncode}: {d.stderr()[-3000:]}")
