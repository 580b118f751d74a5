"""The installed service and the two start-up failures a restart cannot cure, plus tracefs.

- tracefs unmounted in the booted system: the service still starts and records (the unit no longer
  mounts it: every probe is a raw tracepoint).
- A bad config at start: exit 78, RestartPreventExitStatus keeps systemd from looping, and journald has a
  config-rejected alert from the daemon (the one sink it can reach without a config).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from jsonl import check_record
from systemd_env import apt_install, booted_systemd, build_deb, read_log, wait_until

UNIT = "claude-audit.service"

pytestmark = [pytest.mark.root]


def test_no_tracefs_readers_group_then_bad_config_is_not_restarted() -> None:
    """Without tracefs the service starts and writes daemon-started; with the claude-audit group present
    the log directory and file get it (0750, 0640) from the sandboxed daemon; with a bad config it fails once
    with status 78, is not restarted, and `journalctl -u` shows the config-rejected alert naming the key."""
    deb: Path = build_deb()
    with booted_systemd() as env:
        apt_install(env, deb)
        env.wait_active(UNIT, timeout=60)
        env.systemctl("stop", UNIT, check=True)
        while env.run(["mountpoint", "-q", "/sys/kernel/tracing"]).returncode == 0:
            env.run(["umount", "/sys/kernel/tracing"], check=True)
        env.systemctl("start", UNIT, check=True)
        env.wait_active(UNIT)
        pid = int(env.show(UNIT, "MainPID"))
        wait_until(
            "daemon-started without tracefs",
            lambda: any(
                r["event"]["action"] == "daemon-started" and r["claude_audit"]["daemon_pid"] == pid
                for r in read_log(env)
            ),
            timeout=60,
        )
        assert env.run(["mountpoint", "-q", "/sys/kernel/tracing"]).returncode != 0

        # The readers' group (the package's postinst created it): at its next start the daemon, root but
        # not a member, gives it the directory and the file (CAP_CHOWN in the unit).
        gid = env.run(["getent", "group", "claude-audit"], check=True).stdout.split(":")[2]
        env.systemctl("restart", UNIT, check=True)
        env.wait_active(UNIT)
        owners = env.run(
            ["stat", "-c", "%g %a %n", "/var/log/claude-audit", "/var/log/claude-audit/audit.jsonl"],
            check=True,
        ).stdout.split("\n")
        assert owners[0].split()[:2] == [gid, "750"] and owners[1].split()[:2] == [gid, "640"], owners

        restarts = int(env.show(UNIT, "NRestarts"))
        env.write("/etc/claude-audit/config.toml", '[daemon]\nlog_level = "loud"\n', mode=0o644)
        env.systemctl("restart", UNIT)
        wait_until("the unit failed", lambda: env.systemctl("is-failed", UNIT).stdout.strip() == "failed", 60)
        assert env.show(UNIT, "ExecMainStatus") == "78"
        # RestartSec=2s: three of them without a restart means systemd will not restart it
        time.sleep(6)
        assert env.systemctl("is-failed", UNIT).stdout.strip() == "failed"
        assert int(env.show(UNIT, "NRestarts")) == restarts
        r = env.run(
            ["journalctl", "--no-pager", "--all", "-o", "json", "-u", UNIT, "AUDIT_ACTION=config-rejected"],
            check=True,
        )
        entries = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        assert len(entries) == 1, r.stdout
        rec = json.loads(entries[0]["AUDIT_RECORD"])
        check_record(rec)
        assert rec["event"]["kind"] == "alert" and rec["claude_audit"]["when"] == "start"
        assert "daemon.log_level" in rec["claude_audit"]["error"]
        assert rec["claude_audit"]["config_path"] == "/etc/claude-audit/config.toml"
