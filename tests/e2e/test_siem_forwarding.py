"""docs/SIEM.md's configurations, copied verbatim, forward a real session's records to loopback receivers.

In one booted systemd 252 with the .deb installed and a real Claude Code session recorded:
- rsyslog (stock Debian config + the two snippets): imfile -> JSON lines over TCP, and imjournal -> JSON
  with the CLAUDE_* fields over TCP, each to a Python TCP receiver on the host's 127.0.0.1 (the booted
  system shares the host's network namespace);
- systemd-journal-upload -> systemd-journal-remote (--listen-http, socket-activated on loopback), and
  `journalctl -D` on what the collector stored.
"""

from __future__ import annotations

import json
import os
import re
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from claude_cli import NATIVE_VERSION, install_claude
from fake_api import FakeAnthropicAPI, tag_prompt
from jsonl import read_records
from systemd_env import (
    AUDIT_LOG,
    SystemdEnv,
    add_user,
    apt_install,
    booted_systemd,
    build_deb,
    claude_inside,
)
from systemd_env import wait_until as _wait_until

ROOT = Path(__file__).resolve().parents[2]
LONG = "/bin/echo " + "x" * 9000  # a record longer than rsyslog's default 8 KiB message
SIEM_MD = ROOT / "docs" / "SIEM.md"

# Root, systemd and util-linux are preconditions `make test` installs; CI runs as root. A missing one
# fails (tests/e2e/conftest.py), it is never a reason to skip.
pytestmark = [pytest.mark.root]


def doc_files() -> dict[str, str]:
    """{path: content} of every ``` block in docs/SIEM.md whose first line is `# file: <path>`."""
    out: dict[str, str] = {}
    for block in re.findall(r"^```\n(.*?)^```", SIEM_MD.read_text(), flags=re.S | re.M):
        first = block.partition("\n")[0]
        if first.startswith("# file: "):
            out[first.removeprefix("# file: ").strip()] = block
    return out


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Receiver:
    """A loopback TCP server collecting newline-separated lines from any number of connections."""

    server: socketserver.ThreadingTCPServer
    lines: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines)]


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    made: list[Receiver] = []
    for _ in range(2):
        lines: list[bytes] = []

        class Handler(socketserver.StreamRequestHandler):
            sink = lines

            def handle(self) -> None:
                for line in self.rfile:
                    self.sink.append(line.rstrip(b"\n"))

        srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        made.append(Receiver(srv, lines))
    yield made[0], made[1]
    for r in made:
        r.server.shutdown()
        r.server.server_close()


def wait_until(what: str, pred: Any) -> Any:
    """systemd_env.wait_until with this test's pacing (forwarders can take a while under load)."""
    return _wait_until(what, pred, timeout=60.0, every=0.3)


def install_doc_file(env: SystemdEnv, path: str, text: str, ports: dict[str, int]) -> None:
    """Write a doc snippet inside, aimed at loopback: only the host name and the ports change."""
    text = text.replace("siem.example.com", "127.0.0.1")
    for old, new in ports.items():
        text = re.sub(rf"\b{old}\b", str(new), text)
    env.run(["mkdir", "-p", os.path.dirname(path)], check=True)
    env.write(path, text, 0o644)


def test_forwarding_from_doc(receivers: tuple[Receiver, Receiver]) -> None:
    t_test = time.monotonic()
    # The forwarding recipes' files (the Prometheus drop-in of the liveness section is not one of them).
    files = {p: t for p, t in doc_files().items() if not p.startswith("/etc/systemd/system/claude-audit.")}
    assert len(files) == 6, sorted(files)
    file_rx, journal_rx = receivers
    remote_port = free_port()
    ports = {"5140": file_rx.port, "5141": journal_rx.port, "19532": remote_port}
    claude_bin = install_claude(NATIVE_VERSION)
    deb = build_deb()
    with booted_systemd() as env, FakeAnthropicAPI() as api:
        apt_install(env, deb)
        env.wait_active("claude-audit.service", timeout=60)
        add_user(env)
        api.set_script("siem", ["/bin/echo siem-marker", "/usr/bin/printf '%s\\n' ünïcødé", LONG])
        proc = claude_inside(env, claude_bin, api.url, tag_prompt("siem"))
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        log = wait_until(
            "session-ended in the log",
            lambda: (
                (rs := read_records(env.path(AUDIT_LOG)))
                and any(r["event"]["action"] == "session-ended" for r in rs)
                and rs
            ),
        )
        echo = next(r for r in log if r.get("process", {}).get("args") == ["/bin/echo", "siem-marker"])
        session_id = echo["claude"]["session_id"]

        for path, text in files.items():
            install_doc_file(env, path, text, ports)
        r = env.run(["rsyslogd", "-N1"])
        assert r.returncode == 0, r.stdout + r.stderr
        env.systemctl("daemon-reload", check=True)
        t0 = time.monotonic()
        env.systemctl("start", "rsyslog.service", check=True)
        env.systemctl("start", "systemd-journal-remote.socket", check=True)
        env.systemctl("start", "systemd-journal-upload.service", check=True)

        # (a) imfile: every line of the file arrives unchanged, in order.
        file_lines = env.path(AUDIT_LOG).read_bytes().splitlines()
        wait_until("the file's lines at the receiver", lambda: len(file_rx.lines) >= len(file_lines))
        print(f"rsyslog imfile: {len(file_lines)} lines in {time.monotonic() - t0:.1f} s")
        assert file_rx.lines[: len(file_lines)] == file_lines
        assert max(len(x) for x in file_lines) > 18000  # the long command, twice (args and shell)

        # (a) imjournal: the exec records, with the structured fields.
        got = wait_until(
            "the journal records at the receiver",
            lambda: (
                [
                    j
                    for j in journal_rx.json()
                    if j["claude_session_id"] == session_id and j["action"] == "exec"
                ]
                and any(j["claude_command"] == "/bin/echo siem-marker" for j in journal_rx.json())
            ),
        )
        print(f"rsyslog imjournal: {len(journal_rx.lines)} records in {time.monotonic() - t0:.1f} s")
        j = next(
            x
            for x in journal_rx.json()
            if _record_args({"AUDIT_RECORD": x["audit_record"]}) == ["/bin/echo", "siem-marker"]
        )
        assert j["claude_pid"] == str(echo["claude"]["pid"])
        assert j["claude_origin"] == "tool"
        assert j["process_pid"] == str(echo["process"]["pid"])
        assert json.loads(j["audit_record"]) == echo
        uni = [
            x
            for x in journal_rx.json()
            if "ünïcødé" in (_record_args({"AUDIT_RECORD": x["audit_record"]}) or [])
        ]
        assert uni, "non-ASCII arguments arrive intact"
        assert all(x["action"] for x in journal_rx.json()), "only audit records are forwarded"
        wait_until(
            "the long record via imjournal",
            lambda: any(x["claude_command"] == LONG for x in journal_rx.json()),
        )
        assert got

        _journal_remote(env, session_id, echo, t0)
    print(f"test_forwarding_from_doc: {time.monotonic() - t_test:.1f} s")


def _journal_remote(env: SystemdEnv, session_id: str, echo: dict[str, Any], t0: float) -> None:
    # (b) journal-upload -> journal-remote: the collector's journal files hold them, with fields.
    def remote() -> list[dict[str, Any]]:
        r = env.run(
            ["journalctl", "--no-pager", "-D", "/var/log/journal/remote", "-o", "json", "--all",
             "SYSLOG_IDENTIFIER=claude-audit", f"CLAUDE_SESSION_ID={session_id}"]
        )  # fmt: skip
        return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]

    rem = wait_until(
        "records at systemd-journal-remote",
        lambda: (rs := remote()) and any(_record_args(x) == ["/bin/echo", "siem-marker"] for x in rs) and rs,
    )
    print(f"journal-upload -> journal-remote: {len(rem)} entries in {time.monotonic() - t0:.1f} s")
    e = next(x for x in rem if _record_args(x) == ["/bin/echo", "siem-marker"])
    assert e["CLAUDE_COMMAND"] == "/bin/echo siem-marker"
    assert e["CLAUDE_PID"] == str(echo["claude"]["pid"])
    assert e["_SYSTEMD_UNIT"] == "claude-audit.service"
    assert json.loads(e["AUDIT_RECORD"]) == echo
    assert any(x.get("CLAUDE_COMMAND") == LONG for x in remote())


def _record_args(entry: dict[str, Any]) -> Any:
    """process.args of the record a journal entry carries (PROCESS_ARGS is off by default)."""
    rec = json.loads(entry.get("AUDIT_RECORD", "{}"))
    return rec.get("process", {}).get("args")
