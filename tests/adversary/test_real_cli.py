"""An attack by the agent itself, through the real Claude Code CLI (2.1.331, offline against the loopback
fake API): a Bash tool call replaces the session's own registry file with a FIFO and waits; meanwhile
`nobody` runs a process with a 5 000-digit CLAUDE_PID; then the daemon starts. Before: the start-up scan
died on int() (exit 1), and with that fixed it blocked in open() on the FIFO before READY, forever. Now it
comes up, and records the session's next tool call attributed, with its command."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from adversary_util import as_nobody, daemon_under_attack, started
from claude_cli import install_claude
from daemon_faults_util import config_text, execs_of
from fake_api import FakeAnthropicAPI, tag_prompt
from session import session_dirs, start_session

pytestmark = [pytest.mark.root]


def test_agent_plants_a_fifo_as_its_session_file_before_the_daemon_starts(tmp_path: Path) -> None:
    """Real CLI: FIFO session file planted by a tool call + 5000-digit CLAUDE_PID of another user, then
    the daemon starts: it comes up within the bound and records the next tool call completely."""
    claude_bin = install_claude("2.1.331")
    with session_dirs("claude-audit-adv-") as base, FakeAnthropicAPI() as api:
        planted, go = base / "planted", base / "go"
        attack = (
            'f="$HOME/.claude/sessions/$PPID.json"; rm -f "$f"; mkfifo "$f"; '
            f"touch {planted}; while [ ! -e {go} ]; do sleep 0.1; done"
        )
        api.set_script("adv", [attack, "/bin/echo after-fifo-attack"])
        p = start_session(claude_bin, api.url, tag_prompt("adv"), base / "home", base / "cwd")
        try:
            deadline = time.monotonic() + 120
            while not planted.exists():
                assert p.poll() is None, p.communicate()
                assert time.monotonic() < deadline, "the tool call never planted the FIFO"
                time.sleep(0.1)
            assert (base / "home" / ".claude" / "sessions" / f"{p.pid}.json").is_fifo()
            log = tmp_path / "log" / "audit.jsonl"
            cfg = config_text(tmp_path, log)
            sleeper = ["env", "CLAUDECODE=1", "CLAUDE_PID=" + "7" * 5000, "sleep", "1000"]
            with (
                started(as_nobody(sleeper)),
                daemon_under_attack(tmp_path, cfg, log, root_home=base / "home") as st,
            ):
                go.touch()
                _, err = p.communicate(timeout=180)
                assert p.returncode == 0, err
                recs = st.daemon.wait_for(
                    lambda rs: any(
                        r["process"]["args"] == ["/bin/echo", "after-fifo-attack"]
                        for r in execs_of(rs, p.pid)
                    )
                )
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
    (rec,) = [r for r in execs_of(recs, p.pid) if r["process"]["args"] == ["/bin/echo", "after-fifo-attack"]]
    assert rec["claude"]["origin"] == "tool"
    assert rec["claude"]["command"] == "/bin/echo after-fifo-attack"
    assert rec["claude"].get("identity_source") != "session_file"
    print(f"ready after {st.ready_s:.1f} s under the FIFO + CLAUDE_PID attack")
