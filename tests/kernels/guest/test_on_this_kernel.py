"""Run inside a kernel-tier guest: one daemon on this kernel, watching real Claude Code sessions.

A BPF compile takes ~25 s under TCG, so this module starts the daemon once and checks several workloads
against it: what daemon-started says about the kernel, a native (2.1.x) session with nested commands, a
double fork, exact argv bytes, and a node (2.0.x) session (a script run by node, which then renames
itself "claude"). Both sessions must end with session-ended (the sched_process_exit probe); the
task_rename probe on its own is covered by tests/integration/test_sensor.py, which the guest also runs.
The host side (tests/kernels/test_kernels.py) sets CLAUDE_AUDIT_EXPECT_EXIT_DETECTION.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

E2E = Path(__file__).resolve().parents[2] / "e2e"
sys.path.insert(0, str(E2E))

from claude_cli import NATIVE_VERSION, install_claude  # noqa: E402
from daemon_util import CLI, REPO, RunningDaemon, execs, write_config  # noqa: E402
from fake_api import FakeAnthropicAPI, tag_prompt  # noqa: E402
from session import start_session  # noqa: E402

# Under TCG the daemon's start (Python start-up, BTF parse, BCC compile, attach) takes a minute or more.
DAEMON_START_TIMEOUT = 600.0


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A directory for the daemon's files and the sessions' homes."""
    with tempfile.TemporaryDirectory(prefix="claude-audit-guest-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def daemon(workdir: Path) -> Iterator[RunningDaemon]:
    """The daemon from the checkout, started once for the module; SIGTERMed at the end."""
    cfg = write_config(workdir)
    env = dict(os.environ, PYTHONPATH=str(REPO / "daemon"))
    with (workdir / "daemon.stderr").open("wb") as err:
        proc = subprocess.Popen([*CLI, "run", "--config", str(cfg)], env=env, stderr=err)
    d = RunningDaemon(proc, workdir / "log" / "audit.jsonl", cfg)
    out = os.environ.get("CLAUDE_AUDIT_GUEST_OUT")
    try:
        start = time.monotonic()
        d.wait_for(lambda rs: any(r["event"]["action"] == "daemon-started" for r in rs), DAEMON_START_TIMEOUT)
        if out:  # spawn to daemon-started: Python start-up, BTF, BPF compile and load, /proc scan
            (Path(out) / "daemon_start_seconds").write_text(f"{time.monotonic() - start:.1f}\n")
        yield d
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        if out:  # the host test shows these when something failed
            (Path(out) / "daemon.stderr").write_bytes((workdir / "daemon.stderr").read_bytes())
            if d.log.exists():
                (Path(out) / "audit.jsonl").write_bytes(d.log.read_bytes())


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeAnthropicAPI]:
    """The loopback Messages API the sessions talk to."""
    with FakeAnthropicAPI() as api:
        yield api


def _run_session(
    version: str, tag: str, commands: list[str], *, api: FakeAnthropicAPI, d: RunningDaemon, base: Path
) -> tuple[int, list[dict[str, Any]]]:
    """Run one real `claude -p` session of `version`; return its pid and the records naming it."""
    claude = install_claude(version)  # already in .e2e-cache on the host: only checked here
    api.set_script(tag, commands)
    p = start_session(claude, api.url, tag_prompt(tag), base / f"home-{tag}", base / f"cwd-{tag}")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]

    def ended(rs: list[dict[str, Any]]) -> bool:
        return any(
            r["event"]["action"] == "session-ended" and r.get("claude", {}).get("pid") == p.pid for r in rs
        )

    recs = d.wait_for(ended, 120)
    return p.pid, [r for r in recs if r.get("claude", {}).get("pid") == p.pid]


def test_daemon_started_names_this_kernel(daemon: RunningDaemon) -> None:
    """daemon-started states this kernel's release, raw tracepoint probes, and its exit detection."""
    (started,) = [r for r in daemon.records() if r["event"]["action"] == "daemon-started"]
    kernel = started["claude_audit"]["kernel"]
    assert kernel["release"] == platform.release()
    assert os.environ["CLAUDE_AUDIT_EXPECT_EXIT_DETECTION"] in kernel["exit_detection"]
    assert all(p.startswith("raw_tracepoint:") for p in started["claude_audit"]["probes"])


def test_native_session_every_exec_attributed(
    daemon: RunningDaemon, fake_api: FakeAnthropicAPI, workdir: Path
) -> None:
    """A 2.1.x session: nested, double-forked and byte-exact commands recorded under their tool call."""
    done = workdir / "bg-done"
    commands = [
        "printf '%s\\n' \"it's\" 'a \"quoted\" line' && /bin/echo ünïcødé ✓ '  spaced  '",
        "bash -c 'sh -c \"/bin/echo nested-deep; true\"; true'",
        f"true && ( setsid sh -c '/bin/sleep 0.3; /bin/echo double-forked; touch {done}' & )",
    ]
    pid, mine = _run_session(NATIVE_VERSION, "native", commands, api=fake_api, d=daemon, base=workdir)
    deadline = time.monotonic() + 120
    while not done.exists():
        assert time.monotonic() < deadline, "the double-forked command never ran"
        time.sleep(0.2)
    recs = daemon.wait_for(
        lambda rs: any(e["process"]["args"] == ["/bin/echo", "double-forked"] for e in execs(rs))
    )
    ex = [e for e in execs(recs) if e["claude"]["pid"] == pid]
    tool_cmds = [e["claude"].get("command") for e in ex if e["claude"].get("origin") == "tool"]
    for c in commands:
        assert c in tool_cmds, c
    by_args = {tuple(e["process"]["args"]): e for e in ex}
    assert by_args[("/bin/echo", "ünïcødé", "✓", "  spaced  ")]["claude"]["command"] == commands[0]
    assert by_args[("/bin/echo", "nested-deep")]["claude"]["command"] == commands[1]
    assert by_args[("/bin/echo", "double-forked")]["claude"]["command"] == commands[2]
    actions = [r["event"]["action"] for r in mine]
    assert actions[0] == "session-found" and "session-ended" in actions
