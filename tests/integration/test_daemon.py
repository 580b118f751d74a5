"""The real daemon's own failure modes: a crash is a crash, a full root map is not, a bad reload is stated.

Each test runs `claude-audit run` (daemon_faults_util) against a fake Claude Code session. The crash test
injects one fault into the real daemon (the exec handler raises for one marked command) by starting it
through a tiny Python wrapper; everything else is the daemon as shipped. The root-map test fills the
daemon's own `target_pid_map` with bpftool, as 4 096 processes renaming themselves would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from daemon_faults_util import (
    ENV,
    Daemon,
    actions,
    args_of,
    config_text,
    daemon,
    fake_claude,
    session,
    session_found,
    wait_until,
)

pytestmark = [pytest.mark.root]

# The daemon with one injected fault: the exec handler raises for the command `/bin/true crash-now`.
CRASHING = """
import sys
from claude_audit import tracker
real = tracker.Tracker.on_exec
def on_exec(self, ev):
    if ev.argv[-1:] == [b"crash-now"]:
        raise RuntimeError("injected fault")
    return real(self, ev)
tracker.Tracker.on_exec = on_exec
from claude_audit.cli import main
sys.exit(main(["run", "--config", sys.argv[1]]))
"""


def _start_crashing(base: Path, cfg: Path, log: Path) -> Daemon:
    err_path = base / f"daemon-stderr-{time.monotonic_ns()}.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", CRASHING, str(cfg)], env=ENV, stderr=err)
    d = Daemon(proc, log, cfg, base, err_path)
    d.wait_for(
        lambda rs: any(r["claude_audit"].get("daemon_pid") == proc.pid for r in actions(rs, "daemon-started"))
    )
    return d


def test_crash_exits_nonzero_states_its_losses_and_next_start_alerts(tmp_path: Path) -> None:
    """An unexpected exception in the main loop: the daemon exits 70 (so systemd restarts it), writes
    no daemon-stopped and no clean-stop heartbeat, counts the record it was handling (and any after it)
    as lost with where="crash", and the next start states the gap as an unwatched-window alert."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log, only_fake=True)
    d = _start_crashing(tmp_path, cfg, log)
    try:
        with session(exe, "/bin/true before; /bin/true crash-now; /bin/true after") as s:
            session_found(d, s.pid)
            s.go()
            rc = d.proc.wait(timeout=60)
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
    assert rc == 70, d.stderr()[-2000:]
    assert "injected fault" in d.stderr()
    recs = d.records()
    assert actions(recs, "daemon-stopped") == []
    crash = [
        r["claude_audit"]["lost"]
        for r in actions(recs, "events-lost")
        if r["claude_audit"]["lost"]["where"] == "crash"
    ]
    assert len(crash) == 1 and crash[0]["count"] >= 1
    assert ["/bin/true", "crash-now"] not in args_of(recs, s.pid)
    beat = json.loads((tmp_path / "state" / "heartbeat.json").read_text())
    assert beat["clean_stop"] is False
    assert not (tmp_path / "run" / "status.json").exists()
    with daemon(tmp_path, cfg, log) as d2:
        recs = d2.records()
    [window] = actions(recs, "unwatched-window")
    assert window["claude_audit"]["unwatched"]["reason"] == "crash"
    assert window["event"]["kind"] == "alert"


def _map_id(pid: int, key_size: int, value_size: int, max_entries: int) -> int:
    """The id of the BPF map with this shape among the maps process `pid` holds open."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-map":
                continue
            info = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
                if ":" in line
            )
        except OSError:
            continue
        shape = (int(info["key_size"]), int(info["value_size"]), int(info["max_entries"]))
        if shape == (key_size, value_size, max_entries):
            found.append(int(info["map_id"]))
    assert len(set(found)) == 1, found
    return found[0]


def _bpftool_batch(tmp_path: Path, lines: list[str]) -> None:
    batch = tmp_path / "bpftool-batch.txt"
    batch.write_text("".join(line + "\n" for line in lines))
    # A full map makes the batch stop at the first refused insert: that is the point of filling it.
    subprocess.run(["bpftool", "batch", "file", str(batch)], capture_output=True, check=False)


def _hex(n: int, size: int) -> str:
    return " ".join(f"{b:02x}" for b in n.to_bytes(size, "little"))


FILLER_PIDS = range(4_000_000, 4_000_000 + 4096)  # above any pid_max this host allows: never real


def test_full_root_map_is_an_alert_not_a_crash(tmp_path: Path) -> None:
    """With the kernel's root map full, a new Claude Code session cannot be adopted: the daemon writes a
    session-not-watched alert naming it and keeps running; once room frees, a scan adopts the session and
    its commands are recorded."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log, only_fake=True)
    cfg.write_text(cfg.read_text() + "scan_interval_seconds = 0.5\n")
    with daemon(tmp_path, cfg, log) as d:
        roots = _map_id(d.proc.pid, 4, 16, 4096)
        value = _hex(1, 8) + " " + _hex(0, 8)
        _bpftool_batch(
            tmp_path, [f"map update id {roots} key hex {_hex(p, 4)} value hex {value}" for p in FILLER_PIDS]
        )
        with session(exe, "/bin/true after-room") as s:
            recs = d.wait_for(
                lambda rs: any(r["process"]["pid"] == s.pid for r in actions(rs, "session-not-watched"))
            )
            alert = next(r for r in actions(recs, "session-not-watched") if r["process"]["pid"] == s.pid)
            assert alert["event"]["kind"] == "alert"
            assert alert["process"]["executable"] == str(exe)
            assert alert["claude_audit"]["error"]
            assert d.alive()
            _bpftool_batch(tmp_path, [f"map delete id {roots} key hex {_hex(p, 4)}" for p in FILLER_PIDS])
            session_found(d, s.pid)
            s.go()
            d.wait_for(lambda rs: ["/bin/true", "after-room"] in args_of(rs, s.pid))
        st = d.wait_status(lambda st: st.get("sessions_not_watched", 0) >= 1)
        assert st["sessions_not_watched"] >= 1


def test_reload_checks_file_safety_and_a_bad_log_path_is_rejected(tmp_path: Path) -> None:
    """SIGHUP runs the same safety check as start (a group-writable config is refused), and a config
    whose log path cannot be opened is rejected with a record; the daemon keeps its running config."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log, only_fake=True)
    good = cfg.read_text()
    with daemon(tmp_path, cfg, log) as d, session(exe, "/bin/true after-reloads") as s:
        session_found(d, s.pid)
        cfg.chmod(0o666)
        d.proc.send_signal(signal.SIGHUP)
        recs = d.wait_for(lambda rs: len(actions(rs, "config-rejected")) >= 1)
        assert "writable by group or others" in actions(recs, "config-rejected")[0]["claude_audit"]["error"]
        cfg.chmod(0o600)
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        cfg.write_text(good.replace(str(log), str(blocker / "audit.jsonl")))
        d.proc.send_signal(signal.SIGHUP)
        recs = d.wait_for(lambda rs: len(actions(rs, "config-rejected")) >= 2)
        assert "audit_log.path" in actions(recs, "config-rejected")[1]["claude_audit"]["error"]
        s.go()
        d.wait_for(lambda rs: ["/bin/true", "after-reloads"] in args_of(rs, s.pid))
        assert d.alive()
    wait_until(lambda: True if actions(d.records(), "daemon-stopped") else None, 10)


def test_reload_states_the_new_config_digest_and_what_changed(tmp_path: Path) -> None:
    """A valid config applied on SIGHUP is a config-reloaded record: new digest, the previous one (the
    daemon-started digest), the changed keys, and which of them wait for a restart (capture)."""
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log, only_fake=True)
    with daemon(tmp_path, cfg, log) as d:
        started = actions(d.records(), "daemon-started")[-1]["claude_audit"]
        cfg.write_text(
            cfg.read_text().replace("[discovery]\n", "[discovery]\nscan_interval_seconds = 7.0\n")
            + "[capture]\nargv_max_bytes = 4096\n"
        )
        d.proc.send_signal(signal.SIGHUP)
        recs = d.wait_for(lambda rs: bool(actions(rs, "config-reloaded")))
        c = actions(recs, "config-reloaded")[0]["claude_audit"]["config"]
        assert c["previous_digest"] == started["config_digest"] != c["digest"]
        assert c["changed"] == ["capture.argv_max_bytes", "discovery.scan_interval_seconds"]
        assert c["needs_restart"] == ["capture.argv_max_bytes"]
        assert c["path"] == str(cfg)
        assert d.wait_status(lambda st: st.get("config_digest") == c["digest"])


def test_setuid_exec_records_the_effective_root(tmp_path: Path) -> None:
    """A session run by an unprivileged user (nobody) runs the setuid-root /usr/bin/passwd: its record has
    process.user.id 0 (effective), real_user the caller, saved_user 0, capabilities it gained, and the
    privilege_changed flag; the session's plain exec keeps the caller everywhere. The parent's entity id
    is the one the parent's own exec record carries, with its program and args (the parent is tracked);
    ids carry names; host.id is the machine id."""
    base = Path(tempfile.mkdtemp(prefix="claude-audit-setuid-"))
    try:
        base.chmod(0o755)  # nobody must reach the fake Claude Code binary
        exe = fake_claude(base)
        for d in [base, *exe.parents]:
            if d == base.parent:
                break
            d.chmod(0o755)
        log = tmp_path / "log" / "audit.jsonl"
        cfg = config_text(tmp_path, log, only_fake=True)
        cfg.write_text(cfg.read_text().replace(str(tmp_path / "node_modules"), str(base / "node_modules")))
        with daemon(tmp_path, cfg, log) as d:
            script = (
                "read -r _; /bin/sh -c '/usr/bin/passwd --help >/dev/null; /bin/true plain; :'\nread -r _\n"
            )
            proc = subprocess.Popen(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(exe), "-c", script],
                stdin=subprocess.PIPE,
            )
            try:
                session_found(d, proc.pid)
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
                recs = d.wait_for(
                    lambda rs: any(a == ["/bin/true", "plain"] for a in args_of(rs, proc.pid)), 120
                )
            finally:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=30)
        execs = {
            r["process"]["executable"]: r for r in actions(recs, "exec") if r["claude"]["pid"] == proc.pid
        }
        pw = execs["/usr/bin/passwd"]["process"]
        assert pw["user"]["id"] == pw["saved_user"]["id"] == "0"
        assert pw["real_user"]["id"] == pw["group"]["id"] == "65534"
        assert "CAP_SYS_ADMIN" in pw["thread"]["capabilities"]["effective"]
        assert "privilege_changed" in execs["/usr/bin/passwd"]["claude_audit"]["flags"]
        plain = execs["/bin/true"]
        assert plain["process"]["user"] == plain["process"]["real_user"] == {"id": "65534", "name": "nobody"}
        assert "privilege_changed" not in plain["claude_audit"]["flags"]
        assert "capabilities" not in plain["process"]["thread"]
        sh = execs["/bin/sh"]
        assert plain["process"]["parent"]["entity_id"] == sh["process"]["entity_id"]
        # names from /etc/passwd and /etc/group; the tracked parent's program; the machine id
        assert pw["user"]["name"] == "root" and pw["real_user"]["name"] == "nobody"
        assert execs["/usr/bin/passwd"]["user"] == {"id": "65534", "name": "nobody"}
        assert plain["group"]["name"] == "nogroup"
        assert plain["process"]["parent"]["executable"] == "/bin/sh"
        assert plain["process"]["parent"]["args"] == sh["process"]["args"]
        assert plain["host"]["id"] == Path("/etc/machine-id").read_text().strip()
    finally:
        shutil.rmtree(base)


def test_container_id_from_the_cgroup_the_exec_runs_in(tmp_path: Path) -> None:
    """A session moved into a cgroup named as docker names a container's (docker-<64 hex>.scope, made
    here in the cgroup v2 hierarchy): its exec records carry that id as container.id; before the move
    they carry none."""
    from claude_audit.enrich import cgroup2_mount

    mount = cgroup2_mount(Path("/proc/self/mounts").read_bytes())
    assert mount is not None, "no cgroup v2 hierarchy mounted"
    cid = os.urandom(32).hex()
    cg = mount / f"docker-{cid}.scope"
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log, only_fake=True)
    cg.mkdir()
    try:
        with daemon(tmp_path, cfg, log) as d, session(exe, "/bin/true outside", "/bin/true inside") as s:
            session_found(d, s.pid)
            s.go()
            d.wait_for(lambda rs: ["/bin/true", "outside"] in args_of(rs, s.pid))
            (cg / "cgroup.procs").write_text(str(s.pid))
            s.go()
            recs = d.wait_for(lambda rs: ["/bin/true", "inside"] in args_of(rs, s.pid))
            (mount / "cgroup.procs").write_text(str(s.pid))
        by_arg = {r["process"]["args"][-1]: r for r in actions(recs, "exec") if r["claude"]["pid"] == s.pid}
        assert by_arg["inside"]["container"] == {"id": cid}
        assert "container" not in by_arg["outside"]
    finally:
        cg.rmdir()
