"""A bearer token in a real Claude Code session's command never reaches the installed service's sinks.

The .deb in a booted systemd 252, default config; the real Claude Code CLI (offline, fake API) runs as an
unprivileged user a command carrying `Authorization: Bearer <token>`. The token must be in neither the
audit file nor `journalctl -u claude-audit -o json`, and the command's records carry the redaction flag,
the rule and the keyed hash of the token (equal on every record that held it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fake_api import FakeAnthropicAPI, tag_prompt
from processes import kill
from systemd_env import AUDIT_LOG, add_user, apt_install, booted_systemd, build_deb, claude_inside, wait_until

UNIT = "claude-audit.service"
TOKEN = "e2eBearerTok3n" + "Q7x" * 8
COMMAND = f"/bin/echo -H 'Authorization: Bearer {TOKEN}' https://api.example.com/v1 && /bin/echo after-token"

pytestmark = [pytest.mark.root]


def test_bearer_token_is_in_no_sink(claude_bin: Path, fake_api: FakeAnthropicAPI) -> None:
    """The token is in neither the file nor journald; the records say redacted, with rule and hash."""
    t0 = time.monotonic()
    deb = build_deb()
    with booted_systemd() as env:
        apt_install(env, deb)
        env.wait_active(UNIT, timeout=60)
        add_user(env)
        fake_api.set_script("priv", [COMMAND])
        proc = claude_inside(env, claude_bin, fake_api.url, tag_prompt("priv"))
        try:
            _, err = proc.communicate(timeout=180)
        finally:
            kill(proc)
        assert proc.returncode == 0, err[-3000:]

        def file_text() -> str:
            return env.run(["cat", AUDIT_LOG]).stdout

        text = wait_until(
            "the token command's records in the log",
            lambda: (t := file_text()) and '"session-ended"' in t and '"after-token"' in t and t,
            timeout=60,
        )
        wait_until(
            "the records in journald",
            lambda: (
                "after-token"
                in env.run(["journalctl", "--no-pager", "--all", "-o", "json", "-u", UNIT]).stdout
            ),
            timeout=60,
        )
        journal = env.run(["journalctl", "--no-pager", "--all", "-o", "json", "-u", UNIT], check=True).stdout
    assert TOKEN not in text
    assert TOKEN not in journal
    recs = [json.loads(line) for line in text.splitlines() if line.strip()]
    holding = [r for r in recs if _mentions_bearer(r)]
    assert holding, "the command's records are missing"
    hashes = set()
    for r in holding:
        red = r["claude_audit"]["redacted"]
        assert "redacted" in r["claude_audit"]["flags"]
        assert "auth-header" in red["rules"]
        hashes |= set(red["hashes"])
    assert len(hashes) == 1 and len(next(iter(hashes))) == 16, hashes
    echo = [r for r in holding if r["process"]["args"][:2] == ["/bin/echo", "-H"]]
    assert echo and echo[0]["process"]["args"][2].startswith("Authorization: Bearer [REDACTED:auth-header:")
    entries = [json.loads(line) for line in journal.splitlines() if line.strip()]
    flagged = [e for e in entries if "redacted" in e.get("AUDIT_FLAGS", "")]
    assert flagged and all(TOKEN not in json.dumps(e) for e in entries)
    print(f"test_bearer_token_is_in_no_sink: {time.monotonic() - t0:.1f} s")


def _mentions_bearer(r: dict[str, Any]) -> bool:
    if r["event"]["action"] != "exec":
        return False
    return "Bearer" in json.dumps(r.get("process", {}).get("args", [])) or "Bearer" in str(
        r.get("claude", {}).get("command", "")
    )
