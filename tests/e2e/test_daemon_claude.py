"""The daemon against the real Claude Code CLI: every program a session runs is in the log, attributed."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_util import execs, running_daemon
from fake_api import FakeAnthropicAPI, tag_prompt
from session import run_session, start_session

UNRELATED = "unrelated-busy-marker-91c2"


@pytest.fixture
def unrelated_storm() -> Iterator[None]:
    """An unrelated process execing as fast as it can for the whole test."""
    stop = threading.Event()

    def storm() -> None:
        while not stop.is_set():
            subprocess.run(["/bin/true", UNRELATED], check=True)

    t = threading.Thread(target=storm)
    t.start()
    yield
    stop.set()
    t.join()


def _commands(done: Path) -> list[str]:
    return [
        "echo hello > out.txt",
        "printf '%s\\n' \"it's\" 'a \"quoted\" line' && echo ünïcødé ✓",
        "cat <<'EOF' > heredoc.txt\nline one\n  $HOME stays literal\nEOF",
        "bash -c 'sh -c \"/bin/echo nested-deep; true\"; true'",
        f"true && ( setsid sh -c '/bin/sleep 0.3; /bin/echo double-forked; touch {done}' & )",
    ]


def test_session_execs_recorded_and_attributed(
    claude_bin: Path, fake_api: FakeAnthropicAPI, e2e_dir: Path, unrelated_storm: None
) -> None:
    """One JSON line per program the session ran, each with the session root, its tool call and command."""
    done = e2e_dir / "bg-done"
    commands = _commands(done)
    fake_api.set_script("s1", commands)
    with running_daemon(e2e_dir) as d:
        r = run_session(claude_bin, fake_api.url, tag_prompt("s1"), e2e_dir / "home", e2e_dir / "cwd")
        assert r.returncode == 0, r.stderr
        d.wait_for(
            lambda rs: (
                done.exists()
                and any(e["process"]["args"] == ["/bin/echo", "double-forked"] for e in execs(rs))
            )
        )
    recs = d.records()
    ex = execs(recs)
    assert not [e for e in ex if UNRELATED in e["process"]["args"]]
    roots = {e["claude"]["pid"] for e in ex}
    assert len(roots) == 1
    # every agent command appears, byte-exact, as the command of a tool invocation
    tool_cmds = [e["claude"].get("command") for e in ex if e["claude"].get("origin") == "tool"]
    for c in commands:
        assert c in tool_cmds, c
    # descendants carry their invocation's command, also after a double fork
    by_args = {tuple(e["process"]["args"]): e for e in ex}
    deep = by_args[("/bin/echo", "nested-deep")]
    assert deep["claude"]["command"] == commands[3]
    bg = by_args[("/bin/echo", "double-forked")]
    assert bg["claude"]["command"] == commands[4]
    assert bg["process"]["parent"]["pid"] != deep["claude"]["pid"]
    # Claude Code's own start-up shell is internal, never a tool call
    internal = [e for e in ex if e["claude"].get("origin") == "internal"]
    assert all("command" not in e["claude"] for e in internal)
    actions = [r["event"]["action"] for r in recs]
    assert actions[0] == "daemon-started" and actions[-1] == "daemon-stopped"
    assert "session-found" in actions and "session-ended" in actions
    assert "events-lost" not in actions


def test_concurrent_sessions_are_kept_apart(
    claude_bin: Path, fake_api: FakeAnthropicAPI, e2e_dir: Path
) -> None:
    """Two sessions at once: each exec is attributed to its own session and invocation."""
    fake_api.set_script("a", ["/bin/echo from-a-1", "/bin/echo from-a-2"])
    fake_api.set_script("b", ["/bin/echo from-b-1", "/bin/echo from-b-2"])
    with running_daemon(e2e_dir) as d:
        pa = start_session(claude_bin, fake_api.url, tag_prompt("a"), e2e_dir / "home", e2e_dir / "cwd-a")
        pb = start_session(claude_bin, fake_api.url, tag_prompt("b"), e2e_dir / "home", e2e_dir / "cwd-b")
        for p in (pa, pb):
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        d.wait_for(lambda rs: sum(1 for e in execs(rs) if e["process"]["args"][:1] == ["/bin/echo"]) >= 4)
    ex = execs(d.records())
    for tag, p in (("a", pa), ("b", pb)):
        mine = [
            e
            for e in ex
            if e["process"]["args"][:1] == ["/bin/echo"] and f"from-{tag}" in e["process"]["args"][1]
        ]
        assert len(mine) == 2
        assert {e["claude"]["pid"] for e in mine} == {p.pid}
        assert len({e["claude"]["invocation"] for e in mine}) == 2
