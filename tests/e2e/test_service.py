"""The .deb in a booted systemd 252, with the real daemon and a real Claude Code session.

install (postinst starts it) -> enable --now -> active with its STATUS= text -> a Claude Code session run
by an unprivileged user -> `claude-audit status` shows it while it runs -> journalctl shows its exec records
with the structured fields, and filtering on CLAUDE_PID works -> the JSON log holds the same records ->
logrotate-style rename + `systemctl reload` -> new records in a new file -> `systemctl stop` loses nothing
-> purge removes everything.

Pids: the daemon runs in the booted systemd's pid namespace; every pid asserted here is a pid of that
namespace (what its /proc shows), which is what the records must carry.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_api import FakeAnthropicAPI, tag_prompt
from jsonl import stopped_record
from processes import kill
from systemd_env import (
    AUDIT_LOG,
    NONINTERACTIVE,
    SystemdEnv,
    add_user,
    apt_install,
    booted_systemd,
    build_deb,
    claude_inside,
    print_footprint,
    read_log,
    wait_until,
)

UNIT = "claude-audit.service"
STATUS_RE = re.compile(r"^watching (\d+) session\(s\), (\d+) records written, (\d+) events lost$")

# Root, systemd and util-linux are preconditions `make test` installs; CI runs as root. A missing one
# fails (tests/e2e/conftest.py), it is never a reason to skip.
pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def deb() -> Path:
    t0 = time.monotonic()
    path = build_deb()
    print(f"build-deb: {time.monotonic() - t0:.1f} s")
    return path


def journal(env: SystemdEnv, *matches: str) -> list[dict[str, Any]]:
    r = env.run(["journalctl", "--no-pager", "--all", "-o", "json", "-u", UNIT, *matches], check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def status_json(env: SystemdEnv) -> dict[str, Any] | None:
    r = env.run(["claude-audit", "status", "--json"])
    return json.loads(r.stdout) if r.returncode == 0 else None


def action(rec: dict[str, Any]) -> str:
    return str(rec["event"]["action"])


def test_service_end_to_end(deb: Path, claude_bin: Path, fake_api: FakeAnthropicAPI) -> None:
    t_test = time.monotonic()
    with booted_systemd() as env:
        first_pid = _install_and_start(env, deb)
        claude_pid, execs = _session(env, claude_bin, fake_api)
        print_footprint(env, UNIT)
        _journal_matches_file(env, claude_pid, execs)
        rotated = _rotate_and_reload(env, claude_bin, fake_api, first_pid)
        _stop_loses_nothing(env, rotated, first_pid)
        _purge(env)
    print(f"test_service_end_to_end: {time.monotonic() - t_test:.1f} s")


def _install_and_start(env: SystemdEnv, deb: Path) -> str:
    print(f"boot: {env.boot_seconds:.2f} s")
    took = apt_install(env, deb)
    print(f"apt-get install (venv from vendored wheels, start): {took:.1f} s")
    # The Debian 12 build: its venv is the host's CPython 3.11, with the cp311 pydantic-core it vendors.
    arch = env.run(["dpkg-query", "-W", "-f", "${Version} ${Architecture}", "claude-audit"]).stdout
    assert arch.endswith("+deb12 amd64"), arch
    venv = env.run(
        ["/usr/lib/claude-audit/bin/python", "-c", "import pydantic_core, sys; print(sys.version_info[:2])"]
    )
    assert venv.stdout.strip() == "(3, 11)", venv.stderr
    # postinst made the readers' group.
    assert env.run(["getent", "group", "claude-audit"]).returncode == 0
    assert env.systemctl("is-enabled", UNIT).stdout.strip() == "enabled"
    # Debian policy: a service package starts its service at install (deb-systemd-invoke).
    env.wait_active(UNIT, timeout=60)
    first_pid = env.show(UNIT, "MainPID")
    assert first_pid != "0"

    # What users type; idempotent on a running service.
    env.systemctl("enable", "--now", UNIT, check=True)
    env.wait_active(UNIT)
    assert env.show(UNIT, "MainPID") == first_pid
    m = STATUS_RE.match(env.show(UNIT, "StatusText"))
    assert m, env.show(UNIT, "StatusText")
    assert m.group(3) == "0"
    assert env.show(UNIT, "NRestarts") == "0"

    return first_pid


def _session(
    env: SystemdEnv, claude_bin: Path, fake_api: FakeAnthropicAPI
) -> tuple[int, list[dict[str, Any]]]:
    # --- a real Claude Code session, run by an unprivileged user inside the booted system
    add_user(env)
    fake_api.set_script(
        "svc", ["/bin/echo svc-marker-1", "/bin/sleep 3", "/bin/echo 'svc marker 2' && /bin/cat /dev/null"]
    )
    t0 = time.monotonic()
    proc = claude_inside(env, claude_bin, fake_api.url, tag_prompt("svc"))
    try:
        # `claude-audit status` (reads the daemon's status file) shows the session while it runs.
        st = wait_until(
            "the session in claude-audit status",
            lambda: (s := status_json(env)) is not None and s["sessions"] and s,
            timeout=60,
        )
        claude_pid = int(st["sessions"][0]["pid"])
        # A pid of the booted system's namespace: its /proc shows Claude Code there, run by agent.
        cmdline = env.run(["cat", f"/proc/{claude_pid}/cmdline"]).stdout
        assert "claude" in cmdline, (claude_pid, cmdline)
        assert env.run(["stat", "-c", "%U", f"/proc/{claude_pid}"]).stdout.strip() == "agent"
        text = env.run(["claude-audit", "status"]).stdout
        assert f"pid {claude_pid} " in text and "sessions watched: 1" in text, text
        assert STATUS_RE.match(env.show(UNIT, "StatusText")).group(1) == "1"  # type: ignore[union-attr]
        _, err = proc.communicate(timeout=180)
    finally:
        kill(proc)
    assert proc.returncode == 0, err[-3000:]
    print(f"claude session inside: {time.monotonic() - t0:.1f} s")

    def tool_execs(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in recs if action(r) == "exec" and r["claude"].get("origin") == "tool"]

    recs = wait_until(
        "the session's records in the log",
        lambda: (rs := read_log(env)) and any(action(r) == "session-ended" for r in rs) and rs,
    )
    execs = [r for r in recs if action(r) == "exec"]
    assert {r["claude"]["pid"] for r in execs} == {claude_pid}
    echo1 = [r for r in execs if r["process"]["args"] == ["/bin/echo", "svc-marker-1"]]
    assert len(echo1) == 1
    assert echo1[0]["claude"]["command"] == "/bin/echo svc-marker-1"
    # The tool shell is a child of the Claude process, in namespace pids.
    shell = [r for r in tool_execs(recs) if r["process"]["entity_id"] == echo1[0]["claude"]["invocation"]]
    assert shell and shell[0]["process"]["parent"]["pid"] == claude_pid
    cat = [r for r in execs if r["process"]["args"] == ["/bin/cat", "/dev/null"]]
    assert cat and cat[0]["claude"]["command"] == "/bin/echo 'svc marker 2' && /bin/cat /dev/null"

    return claude_pid, execs


def _journal_matches_file(env: SystemdEnv, claude_pid: int, execs: list[dict[str, Any]]) -> None:
    echo1 = [r for r in execs if r["process"]["args"] == ["/bin/echo", "svc-marker-1"]]
    # 2.1.x names its session in ~/.claude/sessions/<pid>.json; 2.0.77 writes no such file and, inside
    # the booted system, the daemon did not get it from the environment either (reported to the lead).
    session_id = echo1[0]["claude"].get("session_id")
    # --- journald: the same records, structured, filterable
    j_all = journal(env)
    j_recs = [e for e in j_all if "AUDIT_RECORD" in e]
    by_pid = journal(env, f"CLAUDE_PID={claude_pid}")
    assert by_pid and all(e["CLAUDE_PID"] == str(claude_pid) for e in by_pid)
    # The argv is in AUDIT_RECORD (PROCESS_ARGS is off by default: the argv once, not three times).
    j_echo = [e for e in by_pid if _record_args(e) == ["/bin/echo", "svc-marker-1"]]
    assert len(j_echo) == 1, by_pid
    je = j_echo[0]
    assert je.get("CLAUDE_SESSION_ID") == session_id
    assert je["CLAUDE_COMMAND"] == "/bin/echo svc-marker-1"
    assert je["CLAUDE_ORIGIN"] == "tool"
    assert je["SYSLOG_IDENTIFIER"] == "claude-audit"
    assert je["PROCESS_PID"] == str(echo1[0]["process"]["pid"])
    assert je["MESSAGE"].startswith("exec ")
    assert json.loads(je["AUDIT_RECORD"]) == echo1[0]
    if session_id is not None:
        by_session = journal(env, f"CLAUDE_SESSION_ID={session_id}")
        assert {e["PROCESS_PID"] for e in by_session if e.get("AUDIT_ACTION") == "exec"} >= {
            str(r["process"]["pid"]) for r in execs if r["claude"].get("session_id") == session_id
        }
    # every exec line in the file is in the journal, byte for byte
    file_lines = {json.dumps(r, sort_keys=True) for r in execs}
    j_lines = {json.dumps(json.loads(e["AUDIT_RECORD"]), sort_keys=True) for e in j_recs}
    assert file_lines <= j_lines


def _rotate_and_reload(env: SystemdEnv, claude_bin: Path, fake_api: FakeAnthropicAPI, first_pid: str) -> str:
    # --- logrotate-style rotation: rename, then reload; new records go to a new file
    rotated = AUDIT_LOG + ".1"
    env.run(["mv", AUDIT_LOG, rotated], check=True)
    before = env.path(rotated).stat().st_size
    env.systemctl("reload", UNIT, check=True)
    wait_until("the reopened log", lambda: env.path(AUDIT_LOG).exists())
    env.wait_active(UNIT)
    assert env.show(UNIT, "MainPID") == first_pid
    fake_api.set_script("svc2", ["/bin/echo after-rotate"])
    proc = claude_inside(env, claude_bin, fake_api.url, tag_prompt("svc2"))
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    wait_until(
        "the second session in the new file",
        lambda: any(action(r) == "session-ended" for r in read_log(env)),
    )
    new = read_log(env)
    assert any(r["process"]["args"] == ["/bin/echo", "after-rotate"] for r in new if action(r) == "exec")
    old = read_log(env, rotated)
    assert env.path(rotated).stat().st_size == before
    assert not any("after-rotate" in json.dumps(r) for r in old)

    return rotated


def _stop_loses_nothing(env: SystemdEnv, rotated: str, first_pid: str) -> None:
    # --- stop: nothing lost, daemon-stopped last, counts match
    t0 = time.monotonic()
    env.systemctl("stop", UNIT, check=True)
    print(f"systemctl stop: {time.monotonic() - t0:.2f} s")
    assert env.systemctl("is-active", UNIT).stdout.strip() == "inactive"
    assert env.show(UNIT, "Result") == "success"
    old, new = read_log(env, rotated), read_log(env)
    everything = old + new
    assert action(everything[0]) == "daemon-started"
    stopped = stopped_record(everything)
    seqs = [r["event"]["sequence"] for r in everything]
    assert seqs == list(range(1, len(everything) + 1)), "a gap or a duplicate in the sequence"
    assert "events-lost" not in [action(r) for r in everything]
    # every record before the final checkpoint, which follows daemon-stopped
    assert stopped["claude_audit"]["records_written"] == len(everything) - 1
    assert stopped["claude_audit"]["events_lost"] == 0
    assert stopped["claude_audit"]["reason"] == "SIGTERM"
    # and the journal has every one of them too (daemon-started .. daemon-stopped of this run)
    j_seqs = sorted(
        json.loads(e["AUDIT_RECORD"])["event"]["sequence"]
        for e in journal(env, f"_PID={first_pid}")
        if "AUDIT_RECORD" in e
    )
    assert j_seqs == seqs
    assert env.run(["claude-audit", "status"]).returncode == 3  # not running


def _purge(env: SystemdEnv) -> None:
    # --- purge
    r = env.run(["apt-get", "purge", "-y", "-q", "claude-audit"], env=NONINTERACTIVE)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for gone in (
        "/etc/claude-audit",
        "/var/log/claude-audit",
        "/var/lib/claude-audit",
        "/usr/lib/claude-audit",
        "/usr/share/claude-audit",
        "/lib/systemd/system/claude-audit.service",
        "/etc/systemd/system/multi-user.target.wants/claude-audit.service",
    ):
        assert not env.path(gone).exists(), gone


@pytest.fixture(scope="module")
def two_debs() -> Iterator[tuple[Path, Path]]:
    """The package built twice, as 0.1.0+e2e1 and 0.1.0+e2e2 (removed afterwards)."""
    built = [build_deb("0.1.0+e2e1"), build_deb("0.1.0+e2e2")]
    yield built[0], built[1]
    for p in built:
        p.unlink(missing_ok=True)


def test_upgrade_keeps_config_and_restarts_then_purge(two_debs: tuple[Path, Path]) -> None:
    v1, v2 = two_debs
    t_test = time.monotonic()
    with booted_systemd() as env:
        apt_install(env, v1)
        env.wait_active(UNIT, timeout=60)
        pid1 = env.show(UNIT, "MainPID")
        # The admin's edit: a conffile the package must keep on upgrade.
        env.run(
            [
                "sed",
                "-i",
                's|^#path = "/var/log/claude-audit/audit.jsonl"|path = "/var/log/claude-audit/edited.jsonl"|',
                "/etc/claude-audit/config.toml",
            ],
            check=True,
        )
        edited = env.path("/etc/claude-audit/config.toml").read_text()
        assert '\npath = "/var/log/claude-audit/edited.jsonl"' in edited
        took = apt_install(env, v2)
        print(f"upgrade install: {took:.1f} s")
        version = env.run(["dpkg-query", "-W", "-f", "${Version}", "claude-audit"]).stdout
        assert version == "0.1.0+e2e2-1+deb12"
        assert env.path("/etc/claude-audit/config.toml").read_text() == edited
        env.wait_active(UNIT, timeout=60)
        pid2 = env.show(UNIT, "MainPID")
        assert pid2 not in ("0", pid1), "the upgrade must restart the service"
        assert env.run(["test", "-d", f"/proc/{pid1}"]).returncode != 0
        # The old daemon stopped cleanly; the restarted one runs with the kept (edited) config.
        stopped_record(read_log(env))
        new = wait_until("the edited log", lambda: read_log(env, "/var/log/claude-audit/edited.jsonl"))
        assert action(new[0]) == "daemon-started"
        assert new[0]["claude_audit"]["daemon_pid"] == int(pid2)

        _purge(env)
        assert env.run(["test", "-d", f"/proc/{pid2}"]).returncode != 0
        assert env.systemctl("is-active", UNIT).stdout.strip() in ("inactive", "unknown")
    print(f"test_upgrade_keeps_config_and_restarts_then_purge: {time.monotonic() - t_test:.1f} s")


def _record_args(entry: dict[str, Any]) -> Any:
    """process.args of the record a journal entry carries (None if it carries none)."""
    rec = json.loads(entry.get("AUDIT_RECORD", "{}"))
    return rec.get("process", {}).get("args")
