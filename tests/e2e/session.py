"""Run the real Claude Code CLI headless (``claude -p``) against a loopback fake API.

The environment is built from scratch (nothing inherited but PATH), so a test run inside another Claude
Code session, or on a developer's machine with real credentials, stays offline and isolated:
HOME is a throw-away directory and TMPDIR points inside it (the CLI keeps task output and
``claude-<hex>-cwd`` files under the temporary directory).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from claude_audit.procfs import parse_stat

# As root, `--dangerously-skip-permissions` / `--permission-mode bypassPermissions` are refused unless
# IS_SANDBOX=1; `--allowedTools Bash` alone lets headless mode run every Bash command without a prompt.
DEFAULT_ARGS: tuple[str, ...] = ("--allowedTools", "Bash")


def session_env(api_url: str, home: Path, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    tmp = Path(home) / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "ANTHROPIC_BASE_URL": api_url,
        "ANTHROPIC_API_KEY": "test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry, error reports, update checks
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
    }
    if extra_env:
        env.update(extra_env)
    return env


def session_argv(claude_bin: Path, prompt: str, args: Sequence[str] = DEFAULT_ARGS) -> list[str]:
    return [str(claude_bin), "-p", prompt, *args]


def start_session(
    claude_bin: Path,
    api_url: str,
    prompt: str,
    home: Path,
    cwd: Path,
    *,
    args: Sequence[str] = DEFAULT_ARGS,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start ``claude -p <prompt>`` without waiting. stdout/stderr are pipes: use ``communicate()``.

    The CLI leads a new session/process group (``start_new_session``), so :func:`kill_session` can end it
    and everything it started in one signal.
    """
    Path(home).mkdir(parents=True, exist_ok=True)
    Path(cwd).mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        session_argv(claude_bin, prompt, args),
        env=session_env(api_url, Path(home), extra_env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def read_ppid(pid: int) -> int | None:
    """The parent pid of a live process, None if it is gone (or exiting: its stat reads empty)."""
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_bytes()).ppid
    except (OSError, ValueError):
        return None


def descendants(root: int) -> dict[int, int]:
    """pid -> ppid for every live descendant of ``root`` (not ``root`` itself), from a /proc scan.

    This kernel has no /proc/PID/task/TID/children, so the whole table is read.
    """
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = read_ppid(int(entry))
            if ppid is not None:
                parent[int(entry)] = ppid
    found: dict[int, int] = {}
    frontier = {root}
    while frontier:
        nxt = {pid for pid, ppid in parent.items() if ppid in frontier and pid not in found}
        found.update({pid: parent[pid] for pid in nxt})
        frontier = nxt
    return found


def kill_session(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a session started here and everything below it.

    The CLI's own process group is not enough: Claude Code spawns each Bash tool shell detached
    (its own process group), so the descendants found in /proc are killed by pid as well.
    """
    if proc.poll() is None:
        for pid in descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def session_dirs(prefix: str = "claude-audit-e2e-") -> Iterator[Path]:
    """A fresh temporary directory holding ``home/`` and ``cwd/``, removed afterwards.

    Also removed: /tmp/claude/<cwd slug>/ for every cwd inside it, which 2.0.x creates for background-task
    output whatever TMPDIR says (2.1.x keeps everything under TMPDIR, i.e. inside the temp home).
    """
    base = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    (base / "home").mkdir()
    (base / "cwd").mkdir()
    try:
        yield base
    finally:
        slug_prefix = re.sub(r"[^A-Za-z0-9]", "-", str(base))
        tmp_claude = Path("/tmp/claude")
        if tmp_claude.is_dir():
            for d in tmp_claude.iterdir():
                if d.name == slug_prefix or d.name.startswith(slug_prefix + "-"):
                    shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def run_session(  # noqa: PLR0917 (the harness API takes these positionally)
    claude_bin: Path,
    api_url: str,
    prompt: str,
    home: Path,
    cwd: Path,
    timeout: float = 120,
    *,
    args: Sequence[str] = DEFAULT_ARGS,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one headless session to completion; on timeout kill its process group and re-raise."""
    proc = start_session(claude_bin, api_url, prompt, home, cwd, args=args, extra_env=extra_env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(proc)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(proc.args, timeout, out, err) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
