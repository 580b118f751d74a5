"""The harness itself: the real CLI, offline against the fake API, really executes scripted commands."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from claude_cli import VERSIONS, install_claude
from fake_api import DONE_TEXT, FakeAnthropicAPI, tag_prompt
from session import kill_session, run_session, start_session

# Single quotes, double quotes, a newline, a heredoc, $-expansion that must stay literal, and unicode
# (2-, 3- and 4-byte UTF-8) in one Bash tool call.
WEIRD_TEXT = 'it\'s "quoted" — ünïcødé ✓ 🦀\n$HOME and `date` stay literal\n'
WEIRD_COMMAND = "cat > weird.txt <<'EOF'\n" + WEIRD_TEXT + "EOF\necho 'it'\\''s done'"


def test_scripted_commands_run(claude_bin: Path, fake_api: FakeAnthropicAPI, e2e_dir: Path) -> None:
    cwd = e2e_dir / "cwd"
    script = ["echo hello > hello.txt", WEIRD_COMMAND, f"printf '%s' ü > {e2e_dir}/abs.txt"]
    fake_api.set_script("one", script)
    proc = run_session(claude_bin, fake_api.url, tag_prompt("one"), e2e_dir / "home", cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert DONE_TEXT in proc.stdout
    assert (cwd / "hello.txt").read_text() == "hello\n"
    assert (cwd / "weird.txt").read_text(encoding="utf-8") == WEIRD_TEXT
    assert (e2e_dir / "abs.txt").read_text(encoding="utf-8") == "ü"
    assert fake_api.sent_commands("one") == script
    results = fake_api.tool_results("one")
    assert len(results) == 3
    assert results[1].strip() == "it's done"
    assert fake_api.other_paths() == []  # nothing but /v1/messages was asked for


def test_concurrent_sessions_share_one_server(
    claude_bin: Path, fake_api: FakeAnthropicAPI, e2e_dir: Path
) -> None:
    tags = ("alpha", "beta")
    for tag in tags:
        fake_api.set_script(tag, [f"echo {tag} > {tag}.txt", "sleep 1", f"echo {tag}-2 >> {tag}.txt"])
    procs = {
        tag: start_session(
            claude_bin, fake_api.url, tag_prompt(tag), e2e_dir / f"home-{tag}", e2e_dir / f"cwd-{tag}"
        )
        for tag in tags
    }
    try:
        outs = {tag: p.communicate(timeout=120) for tag, p in procs.items()}
    finally:
        for p in procs.values():
            kill_session(p)
    for tag in tags:
        assert procs[tag].returncode == 0, outs[tag][1]
        cwd = e2e_dir / f"cwd-{tag}"
        assert sorted(f.name for f in cwd.iterdir()) == [f"{tag}.txt"]
        assert (cwd / f"{tag}.txt").read_text() == f"{tag}\n{tag}-2\n"
        assert len(fake_api.sent_commands(tag)) == 3


def test_mixed_versions_concurrently(fake_api: FakeAnthropicAPI, e2e_dir: Path) -> None:
    """A 2.1.x and a 2.0.x session at the same time against one server."""
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for version in VERSIONS:
            tag = "v" + version.replace(".", "_")
            fake_api.set_script(tag, [f"echo {version} > version.txt"])
            procs[tag] = start_session(
                install_claude(version),
                fake_api.url,
                tag_prompt(tag),
                e2e_dir / tag / "home",
                e2e_dir / tag / "cwd",
            )
        for p in procs.values():
            p.communicate(timeout=120)
    finally:
        for p in procs.values():
            kill_session(p)
    for version in VERSIONS:
        tag = "v" + version.replace(".", "_")
        assert procs[tag].returncode == 0
        assert (e2e_dir / tag / "cwd" / "version.txt").read_text() == f"{version}\n"


def _post(api: FakeAnthropicAPI, body: dict[str, object]) -> tuple[str, bytes]:
    headers = {"content-type": "application/json"}
    req = urllib.request.Request(api.url + "/v1/messages", json.dumps(body).encode(), headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (loopback)
        return resp.headers["Content-Type"], resp.read()


def test_fake_api_without_the_cli(fake_api: FakeAnthropicAPI) -> None:
    """Plain JSON (the CLI always streams) and the SSE framing, checked directly."""
    fake_api.set_script("x", ["echo 1"])
    user = {"role": "user", "content": tag_prompt("x")}
    tools = [{"name": "Bash", "input_schema": {}}]
    ctype, raw = _post(fake_api, {"model": "m", "messages": [user], "tools": tools})
    msg = json.loads(raw)
    assert ctype == "application/json"
    assert msg["stop_reason"] == "tool_use"
    assert msg["content"][0]["input"] == {"command": "echo 1"}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "1"}]}
    history = [user, {"role": "assistant", "content": msg["content"]}, result]
    ctype, raw = _post(fake_api, {"model": "m", "messages": history, "tools": tools, "stream": True})
    assert ctype.startswith("text/event-stream")
    events = [line.split(" ", 1)[1] for line in raw.decode().splitlines() if line.startswith("event: ")]
    assert events == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert fake_api.tool_results("x") == ["1"]
    _, raw = _post(
        fake_api, {"model": "m", "messages": [{"role": "user", "content": "Warmup"}], "tools": tools}
    )
    assert json.loads(raw)["content"][0]["type"] == "text"  # untagged: never a command
