"""The booted-systemd fixture itself: boots, runs a notify unit, journals, leaves the host alone."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from systemd_env import booted_systemd

# Root, systemd and util-linux are preconditions `make test` installs; CI runs as root. A missing one
# fails (tests/e2e/conftest.py), it is never a reason to skip.
pytestmark = [pytest.mark.root]

NOTIFY_UNIT = """[Unit]
Description=e2e notify probe

[Service]
Type=notify
NotifyAccess=all
ExecStart=/bin/sh -c 'echo probe-output-$$; systemd-notify --ready --status="probe says hi"; exec sleep 600'
"""


def test_boot_notify_journal_and_host_untouched(tmp_path: Path) -> None:
    marker = Path("/tmp") / f"claude-audit-marker-{uuid.uuid4().hex}"
    marker.write_text("keep me")
    etc_before = sorted(os.listdir("/etc"))
    try:
        with booted_systemd(tmp_path) as env:
            print(f"systemd boot to running: {env.boot_seconds:.2f} s")
            state = env.run(["systemctl", "is-system-running", "--wait"], timeout=60).stdout.strip()
            assert state in ("running", "degraded")
            # Inside: a fresh /tmp, so the host marker is not visible there.
            assert env.run(["test", "-e", str(marker)]).returncode != 0

            env.write("/etc/systemd/system/probe.service", NOTIFY_UNIT)
            env.systemctl("daemon-reload", check=True)
            env.systemctl("start", "probe.service", check=True)
            env.wait_active("probe.service")
            assert env.show("probe.service", "StatusText") == "probe says hi"
            out = env.run(["journalctl", "--no-pager", "-u", "probe.service", "-o", "cat"]).stdout
            assert "probe-output-" in out
            # Writes inside went to the overlay, not the host.
            assert not Path("/etc/systemd/system/probe.service").exists()
        assert marker.read_text() == "keep me"
        assert sorted(os.listdir("/etc")) == etc_before
        assert not list(tmp_path.iterdir()), "teardown must remove the boot directory"
    finally:
        marker.unlink(missing_ok=True)
