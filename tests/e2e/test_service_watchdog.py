"""The installed service when its main loop hangs: systemd's watchdog kills it, Restart= brings it back,
and the new run states the window in which nothing was watched."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from systemd_env import apt_install, booted_systemd, build_deb, read_log

UNIT = "claude-audit.service"

pytestmark = [pytest.mark.root]


def test_hung_daemon_is_restarted_by_the_watchdog() -> None:
    """SIGSTOP freezes the daemon's loop (no WATCHDOG=1): systemd aborts it and restarts it, and the
    restarted daemon writes an unwatched-window alert covering the freeze."""
    deb: Path = build_deb()
    with booted_systemd() as env:
        apt_install(env, deb)
        env.wait_active(UNIT, timeout=60)
        # The shipped WatchdogSec=30 would make this test wait half a minute; the mechanism is the same.
        env.run(["mkdir", "-p", f"/etc/systemd/system/{UNIT}.d"], check=True)
        env.write(f"/etc/systemd/system/{UNIT}.d/watchdog.conf", "[Service]\nWatchdogSec=3\n")
        env.systemctl("daemon-reload", check=True)
        env.systemctl("restart", UNIT, check=True)
        env.wait_active(UNIT)
        hung = env.show(UNIT, "MainPID")
        restarts = int(env.show(UNIT, "NRestarts"))
        env.run(["kill", "-STOP", hung], check=True)
        frozen_at = time.time_ns()

        deadline = time.monotonic() + 90
        while True:
            pid = env.show(UNIT, "MainPID")
            if pid not in ("0", hung) and env.systemctl("is-active", UNIT).stdout.strip() == "active":
                break
            assert time.monotonic() < deadline, "the watchdog did not restart the hung daemon"
            time.sleep(0.2)
        assert int(env.show(UNIT, "NRestarts")) == restarts + 1
        journal = env.run(["journalctl", "--no-pager", "-u", UNIT], check=True).stdout
        assert "Watchdog timeout" in journal

        deadline = time.monotonic() + 30
        while not (windows := [r for r in read_log(env) if r["event"]["action"] == "unwatched-window"]) or (
            windows[-1]["claude_audit"]["unwatched"]["reason"] != "crash"
        ):
            assert time.monotonic() < deadline, "no unwatched-window record after the restart"
            time.sleep(0.2)
    window = windows[-1]
    assert window["event"]["kind"] == "alert"
    # the window starts at the frozen run's last heartbeat, at most a tick before the freeze
    start_ns = _parse(window["claude_audit"]["unwatched"]["from"])
    assert frozen_at - 3_000_000_000 < start_ns <= frozen_at


def _parse(rfc3339: str) -> int:
    """ns since the epoch from our RFC 3339 timestamps (always UTC, 9 fractional digits)."""
    from datetime import UTC, datetime

    whole, frac = rfc3339.rstrip("Z").split(".")
    sec = int(datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    return sec * 1_000_000_000 + int(frac)
