"""Joins with Claude Code's own ids, with the real CLI: the session id the CLI reports is on the records of
its session, for 2.1.x (from what it gives its children) and 2.0.x (from its transcript)."""

from __future__ import annotations

import json
from pathlib import Path

from daemon_util import execs, running_daemon
from fake_api import FakeAnthropicAPI, tag_prompt
from session import DEFAULT_ARGS, start_session


def test_session_id_and_transcript_path_match_the_cli(
    claude_bin: Path, fake_api: FakeAnthropicAPI, e2e_dir: Path
) -> None:
    """Every tool exec of the session carries claude.session_id equal to the session_id the CLI prints
    with --output-format json, and claude.transcript_path naming the transcript it wrote (2.0.77: the
    id itself comes from that transcript, identity_source "transcript")."""
    fake_api.set_script("j1", ["/bin/echo first-join-call", "/bin/echo second-join-call"])
    home = e2e_dir / "home"
    with running_daemon(e2e_dir) as d:
        p = start_session(
            claude_bin,
            fake_api.url,
            tag_prompt("j1"),
            home,
            e2e_dir / "cwd",
            args=(*DEFAULT_ARGS, "--output-format", "json"),
        )
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        reported = json.loads(out)["session_id"]
        d.wait_for(
            lambda rs: any(
                e["claude"]["pid"] == p.pid and e["process"]["args"][-1:] == ["second-join-call"]
                for e in execs(rs)
            )
        )
    tool = [
        e for e in execs(d.records()) if e["claude"]["pid"] == p.pid and e["claude"].get("origin") == "tool"
    ]
    assert len({e["claude"]["invocation"] for e in tool}) == 2
    for e in tool:
        assert e["claude"].get("session_id") == reported, e["claude"]
        path = Path(e["claude"]["transcript_path"])
        assert path.name == f"{reported}.jsonl" and path.is_relative_to(home / ".claude" / "projects")
        assert path.is_file()
    if "2.0." in str(claude_bin.resolve()):
        assert {e["claude"]["identity_source"] for e in tool} == {"transcript"}
