"""The daemon against the real Claude Code CLI: every program a session runs is in the log, attributed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_util import execs, running_daemon
from fake_api import FakeAnthropicAPI, tag_prompt
from jsonl import stopped_record
from processes import exec_storm, kill
from session import start_session

UNRELATED = "unrelated-busy-marker-91c2"


@pytest.fixture
def unrelated_storm() -> Iterator[None]:
    """An unrelated process execing as fast as it can for the whole test."""
    with exec_storm("/bin/true", UNRELATED):
        yield


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
        p = start_session(claude_bin, fake_api.url, tag_prompt("s1"), e2e_dir / "home", e2e_dir / "cwd")
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        d.wait_for(
            lambda rs: (
                done.exists()
                and any(e["process"]["args"] == ["/bin/echo", "double-forked"] for e in execs(rs))
            )
        )
    recs = d.records()
    assert not [e for e in execs(recs) if UNRELATED in e["process"]["args"]]
    # other Claude sessions on the machine are recorded too; this test looks at its own
    ex = [e for e in execs(recs) if e["claude"]["pid"] == p.pid]
    assert ex
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
    assert internal  # recorded from the session's first milliseconds on
    assert all("command" not in e["claude"] for e in internal)
    actions = [r["event"]["action"] for r in recs]
    stopped_record(recs)
    assert "daemon-started" in actions and "events-lost" not in actions
    mine = [r["event"]["action"] for r in recs if r.get("claude", {}).get("pid") == p.pid]
    assert mine[0] == "session-found" and "session-ended" in mine


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


def test_session_running_before_the_daemon_starts(
    claude_bin: Path, fake_api: FakeAnthropicAPI, e2e_dir: Path
) -> None:
    """A session already mid-command when the daemon starts is found, seeded, and its later execs recorded
    with the running tool call's command."""
    go = e2e_dir / "go"
    command = f"true && while [ ! -e {go} ]; do /bin/sleep 0.1; done && /bin/echo after-daemon-start"
    fake_api.set_script("early", [command])
    p = start_session(claude_bin, fake_api.url, tag_prompt("early"), e2e_dir / "home", e2e_dir / "cwd")
    try:
        deadline = time.monotonic() + 60
        while not fake_api.sent_commands("early"):
            assert time.monotonic() < deadline and p.poll() is None, "session did not start its command"
            time.sleep(0.1)
        time.sleep(0.5)  # the wrapper shell is now polling for the go file
        with running_daemon(e2e_dir) as d:
            found = d.wait_for(lambda rs: any(r["event"]["action"] == "session-found" for r in rs))
            go.touch()
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            d.wait_for(
                lambda rs: any(e["process"]["args"] == ["/bin/echo", "after-daemon-start"] for e in execs(rs))
            )
    finally:
        kill(p)
    sf = next(r for r in found if r["event"]["action"] == "session-found")
    assert sf["claude"]["pid"] == p.pid
    echo = next(e for e in execs(d.records()) if e["process"]["args"] == ["/bin/echo", "after-daemon-start"])
    assert echo["claude"]["pid"] == p.pid
    assert echo["claude"]["origin"] == "tool"
    assert echo["claude"]["command"] == command
