"""The Debian 13 package in a real, booted Debian 13: its systemd, its python3.13, its BCC.

A Debian 13 (trixie) root file system is made with debootstrap from Debian's archive and cached in
.distro-cache/ (tests/e2e/distro_root.py; built on a fresh machine by this test, its time printed). It is
the lower layer of the overlay that systemd_env boots, so PID 1 is Debian 13's systemd 257 and every
program inside is Debian 13's, running on this machine's kernel (6.18; Debian 13's own 6.12 kernel runs
in the kernels tier). The trixie-amd64 .deb is installed with apt from the file alone (its Depends are
in the root already, so the install needs no network: the venv comes from the vendored cp313 wheels), the
service starts, and a real Claude Code session run by an unprivileged user is recorded, in the file and in
journald. The CLI cache is bind-mounted read-only at its host path; 2.0.77 runs on Debian 13's nodejs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from distro_root import build_seconds, debian_root
from fake_api import FakeAnthropicAPI, tag_prompt
from jsonl import stopped_record
from processes import kill
from systemd_env import (
    add_user,
    apt_install,
    booted_systemd,
    build_deb,
    claude_inside,
    print_footprint,
    read_log,
    wait_until,
)

pytestmark = [pytest.mark.root]

UNIT = "claude-audit.service"


@pytest.fixture(scope="module")
def trixie_root() -> Path:
    t0 = time.monotonic()
    root = debian_root("trixie")
    print(f"Debian 13 root: {time.monotonic() - t0:.1f} s (when built: {build_seconds(root)})")
    return root


@pytest.fixture(scope="module")
def deb13() -> Path:
    t0 = time.monotonic()
    path = build_deb(target="trixie-amd64")
    print(f"build-deb trixie-amd64: {time.monotonic() - t0:.1f} s")
    return path


def action(rec: dict[str, Any]) -> str:
    return str(rec["event"]["action"])


def test_debian13_package_records_a_session(
    trixie_root: Path, deb13: Path, claude_bin: Path, fake_api: FakeAnthropicAPI
) -> None:
    """apt installs the trixie .deb offline in booted Debian 13; the service records a real session."""
    t_test = time.monotonic()
    # The CLI's own directory, at its real path (the cache may be reached through a symlink).
    cli_dir = Path(os.path.realpath(claude_bin.parent))
    cli = cli_dir / claude_bin.name
    cache = cli_dir.parents[2]  # .../claude/<version>/node_modules/.bin -> .../claude
    with booted_systemd(lower=trixie_root, binds=[cache]) as env:
        print(f"boot: {env.boot_seconds:.2f} s")
        assert env.path("/etc/debian_version").read_text().startswith("13.")
        assert (
            env.run(["python3", "-c", "import sys; print(sys.version_info[:2])"]).stdout.strip() == "(3, 13)"
        )
        assert env.run(["systemctl", "--version"]).stdout.split()[1].startswith("257")

        took = apt_install(env, deb13)
        print(f"apt-get install (venv from vendored cp313 wheels, start): {took:.1f} s")
        assert env.run(
            ["dpkg-query", "-W", "-f", "${Version} ${Architecture}", "claude-audit"]
        ).stdout.endswith("+deb13 amd64")
        venv_py = env.run(
            [
                "/usr/lib/claude-audit/bin/python",
                "-c",
                "import pydantic_core, sys; print(sys.version_info[:2])",
            ]
        )
        assert venv_py.stdout.strip() == "(3, 13)", venv_py.stderr
        assert env.run(["getent", "group", "claude-audit"]).returncode == 0
        env.wait_active(UNIT, timeout=180)

        add_user(env)
        fake_api.set_script("deb13", ["/bin/echo deb13-marker", "/bin/echo 'second' && /bin/cat /dev/null"])
        t0 = time.monotonic()
        proc = claude_inside(env, cli, fake_api.url, tag_prompt("deb13"))
        try:
            _, err = proc.communicate(timeout=300)
        finally:
            kill(proc)
        assert proc.returncode == 0, err[-3000:]
        print(f"claude session inside Debian 13: {time.monotonic() - t0:.1f} s")

        recs = wait_until(
            "the session's records in the log",
            lambda: (rs := read_log(env)) and any(action(r) == "session-ended" for r in rs) and rs,
            timeout=60,
        )
        assert action(recs[0]) == "daemon-started"
        execs = [r for r in recs if action(r) == "exec"]
        marker = [r for r in execs if r["process"]["args"] == ["/bin/echo", "deb13-marker"]]
        assert len(marker) == 1, [r["process"]["args"] for r in execs]
        assert marker[0]["claude"]["command"] == "/bin/echo deb13-marker"
        assert marker[0]["claude"]["origin"] == "tool"
        cat = [r for r in execs if r["process"]["args"] == ["/bin/cat", "/dev/null"]]
        assert cat and cat[0]["claude"]["command"] == "/bin/echo 'second' && /bin/cat /dev/null"
        claude_pid = marker[0]["claude"]["pid"]
        assert {r["claude"]["pid"] for r in execs} == {claude_pid}

        # journald of Debian 13 has the same record.
        j = env.run(
            ["journalctl", "--no-pager", "--all", "-o", "json", "-u", UNIT, f"CLAUDE_PID={claude_pid}"]
        )
        j_recs = [
            json.loads(e["AUDIT_RECORD"])
            for e in map(json.loads, j.stdout.splitlines())
            if "AUDIT_RECORD" in e
        ]
        assert marker[0] in j_recs

        print_footprint(env, UNIT)
        env.systemctl("stop", UNIT, check=True)
        stopped_record(read_log(env))
        assert env.show(UNIT, "Result") == "success"
    print(f"test_debian13_package_records_a_session: {time.monotonic() - t_test:.1f} s")
