"""The .deb in a booted systemd: install -> active -> status -> journal -> reload -> stop -> purge."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from systemd_env import booted_systemd

ROOT = Path(__file__).resolve().parents[2]
# The daemon half runs once verified end to end under the unit (set CLAUDE_AUDIT_SERVICE_E2E=1 to run it).
HAVE_DAEMON = os.environ.get("CLAUDE_AUDIT_SERVICE_E2E") == "1"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb missing"),
]


@pytest.fixture(scope="module")
def deb() -> Path:
    out = subprocess.run([str(ROOT / "packaging/build-deb.sh")], capture_output=True, text=True, check=True)
    return ROOT / out.stdout.strip().splitlines()[-1]


def test_install_run_reload_purge(deb: Path) -> None:
    with booted_systemd() as env:
        env.copy_in(deb, f"/root/{deb.name}")
        r = env.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", f"/root/{deb.name}"],
            env={"DEBIAN_FRONTEND": "noninteractive"},
            timeout=600,
        )
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert env.path("/usr/lib/claude-audit/bin/python").exists()
        assert env.systemctl("is-enabled", "claude-audit.service").stdout.strip() == "enabled"
        assert env.path("/etc/claude-audit/config.toml").exists()

        if HAVE_DAEMON:
            env.systemctl("enable", "--now", "claude-audit.service")
            env.wait_active("claude-audit.service", timeout=60)
            assert env.show("claude-audit.service", "StatusText")
            env.run(["/bin/sh", "-c", "true"])
            time.sleep(2)
            env.systemctl("reload", "claude-audit.service", check=True)
            env.wait_active("claude-audit.service")
            log = env.run(["journalctl", "--no-pager", "-u", "claude-audit.service", "-o", "cat"]).stdout
            assert log
            env.systemctl("stop", "claude-audit.service", check=True)
            assert env.systemctl("is-active", "claude-audit.service").stdout.strip() == "inactive"

        noninteractive = {"DEBIAN_FRONTEND": "noninteractive"}
        r = env.run(["apt-get", "purge", "-y", "-q", "claude-audit"], env=noninteractive)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        for gone in (
            "/etc/claude-audit",
            "/var/log/claude-audit",
            "/var/lib/claude-audit",
            "/usr/lib/claude-audit",
        ):
            assert not env.path(gone).exists(), gone
