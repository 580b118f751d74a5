"""Faults under the real daemon: a full disk, a vanished log, a bad reload, SIGKILL, no journald, a full ring.

Each test runs `claude-audit run` as a subprocess with its own config and a fake Claude Code session
(daemon_faults_util), and checks what the daemon wrote: that it kept running, and that every loss is
stated in the log with its exact count.
"""

from __future__ import annotations

import errno
import grp
import itertools
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from daemon_faults_util import (
    CLI,
    ENV,
    Daemon,
    Session,
    actions,
    args_of,
    config_text,
    daemon,
    execs_of,
    fake_claude,
    session,
    session_found,
    wait_until,
)
from journald_env import journald_env
from jsonl import read_records

pytestmark = [pytest.mark.root]


def _ns(rfc3339: str) -> int:
    """ns since the epoch of an RFC 3339 UTC timestamp with 9 fractional digits."""
    whole, frac = rfc3339.rstrip("Z").split(".")
    return int(datetime.fromisoformat(whole + "+00:00").timestamp()) * 1_000_000_000 + int(frac)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted on a directory of ours, unmounted afterwards."""
    mnt = tmp_path / "smallfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _fill(path: Path) -> None:
    """Write to `path` until the filesystem refuses another byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 512, b"\0"):
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)


def test_disk_full_then_space_returns(tmp_path: Path, small_fs: Path) -> None:
    """Full log filesystem: the daemon keeps running, journald still gets every record, the dropped lines
    are counted, and once space returns an events-lost record (where="file") states the exact gap."""
    exe = fake_claude(tmp_path)
    log = small_fs / "claude-audit" / "audit.jsonl"
    pad = "p" * 400
    n = 300
    with journald_env() as jd:
        cfg = config_text(tmp_path, log, journal_socket=jd.socket_path)
        with (
            daemon(tmp_path, cfg, log) as d,
            session(
                exe,
                f"for ((i=0;i<{n};i++)); do /bin/true full-$i {pad}; done",
                "/bin/true after-space",
            ) as s,
        ):
            session_found(d, s.pid)
            _fill(small_fs / "filler")
            before = d.status()["records_written"]
            s.go()
            # status.json is written right after a flush: once it counts these records they were tried.
            d.wait_status(lambda st: st["records_written"] >= before + n)
            assert d.alive()
            assert "audit lines dropped" in d.stderr()
            (small_fs / "filler").unlink()
            s.go()
            recs = d.wait_for(
                lambda rs: (
                    ["/bin/true", "after-space"] in args_of(rs, s.pid)
                    and any(r["claude_audit"]["lost"]["where"] == "file" for r in actions(rs, "events-lost"))
                )
            )
        lost = [r for r in actions(recs, "events-lost") if r["claude_audit"]["lost"]["where"] == "file"]
        seqs = {r["event"]["sequence"] for r in recs}
        missing = set(range(1, max(seqs) + 1)) - seqs
        assert missing, "the disk was full, some lines must be missing"
        assert sum(r["claude_audit"]["lost"]["count"] for r in lost) == len(missing)
        assert all(r["claude_audit"]["lost"]["bytes"] > 0 for r in lost)
        assert max(missing) < min(r["event"]["sequence"] for r in lost)
        # journald kept receiving: every line missing from the file is in the journal
        entries = jd.wait_for(len(seqs) + len(missing), SYSLOG_IDENTIFIER="claude-audit")
        in_journal = {json.loads(e["AUDIT_RECORD"])["event"]["sequence"] for e in entries}
        assert missing <= in_journal


@contextmanager
def _first_exec_logged(tmp_path: Path) -> Iterator[tuple[Daemon, Session, Path]]:
    """(daemon, session, log) once the session's `/bin/true one` is in the log; go() runs `/bin/true two`."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    with (
        daemon(tmp_path, config_text(tmp_path, log), log) as d,
        session(exe, "/bin/true one", "/bin/true two") as s,
    ):
        session_found(d, s.pid)
        s.go()
        d.wait_for(lambda rs: ["/bin/true", "one"] in args_of(rs, s.pid))
        yield d, s, log


def test_log_file_deleted_under_the_daemon(tmp_path: Path) -> None:
    """The log file is unlinked while the daemon runs: later records land in a recreated file (0640)."""
    with _first_exec_logged(tmp_path) as (d, s, log):
        log.unlink()
        s.go()
        recs = d.wait_for(lambda rs: ["/bin/true", "two"] in args_of(rs, s.pid))
        assert ["/bin/true", "one"] not in args_of(recs, s.pid)  # a new file, not the old inode
        assert stat.S_IMODE(log.stat().st_mode) == 0o640


def test_log_directory_moved_away(tmp_path: Path) -> None:
    """The log directory is renamed while the daemon runs: it is recreated (0750) and records land there."""
    with _first_exec_logged(tmp_path) as (d, s, log):
        (tmp_path / "log").rename(tmp_path / "log-moved")
        s.go()
        recs = d.wait_for(lambda rs: ["/bin/true", "two"] in args_of(rs, s.pid))
        assert stat.S_IMODE((tmp_path / "log").stat().st_mode) == 0o750
        assert stat.S_IMODE(log.stat().st_mode) == 0o640
        assert ["/bin/true", "one"] not in args_of(recs, s.pid)
        moved = (tmp_path / "log-moved" / "audit.jsonl").read_text()
        assert "two" not in [
            # (or [""]: another session on the machine can be found with an unreadable, empty cmdline)
            (json.loads(x).get("process", {}).get("args") or [""])[-1]
            for x in moved.splitlines()
        ]


def test_invalid_config_on_reload_is_rejected(tmp_path: Path) -> None:
    """The config turns invalid before SIGHUP: the daemon keeps running on the old one and says so."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log)
    with daemon(tmp_path, cfg, log) as d, session(exe, "/bin/true after-reload") as s:
        session_found(d, s.pid)
        cfg.write_text(cfg.read_text() + "[capture]\nargv_max_bytes = 1000\n")
        d.proc.send_signal(signal.SIGHUP)
        recs = d.wait_for(lambda rs: bool(actions(rs, "config-rejected")))
        err = actions(recs, "config-rejected")[0]["claude_audit"]["error"]
        assert "capture.argv_max_bytes" in err and "power of two" in err
        s.go()
        d.wait_for(lambda rs: ["/bin/true", "after-reload"] in args_of(rs, s.pid))
        assert d.alive()


def test_sigkill_then_restart_names_the_unwatched_window(tmp_path: Path) -> None:
    """After SIGKILL the next start writes an unwatched-window record (reason crash) covering the kill."""
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log)
    with daemon(tmp_path, cfg, log, expect_rc=(-signal.SIGKILL,)) as d:
        d.wait_status(lambda st: "pid" in st)  # at least one heartbeat after start
        killed_ns = time.time_ns()
        d.proc.kill()
        d.proc.wait()
    restarted_ns = time.time_ns()
    with daemon(tmp_path, cfg, log) as d2:
        recs = d2.records()
    windows = actions(recs, "unwatched-window")
    assert len(windows) == 1
    w = windows[0]["claude_audit"]["unwatched"]
    assert w["reason"] == "crash"
    assert windows[0]["event"]["kind"] == "alert"
    assert _ns(w["from"]) <= killed_ns
    assert _ns(w["to"]) >= restarted_ns
    # a clean stop and start gives a "stopped" window, not a crash
    with daemon(tmp_path, cfg, log) as d3:
        recs = d3.records()
    assert [r["claude_audit"]["unwatched"]["reason"] for r in actions(recs, "unwatched-window")][
        -1
    ] == "stopped"


def test_journald_missing_warns_once_and_file_continues(tmp_path: Path) -> None:
    """No journald socket at all: one warning, and every record still goes to the file."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log, journal_socket=tmp_path / "no-such-dir" / "socket")
    n = 50
    with (
        daemon(tmp_path, cfg, log) as d,
        session(exe, f"for ((i=0;i<{n};i++)); do /bin/true nj-$i; done") as s,
    ):
        session_found(d, s.pid)
        s.go()
        recs = d.wait_for(lambda rs: sum(1 for a in args_of(rs, s.pid) if a[1:2] == ["nj-49"]) == 1)
        assert {a[1] for a in args_of(recs, s.pid) if a[0] == "/bin/true"} == {f"nj-{i}" for i in range(n)}
        assert d.stderr().count("journald unavailable") == 1


def _journald_gone(sock: Path) -> bool | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(b"MESSAGE=probe\n", str(sock))
    except OSError as e:
        return True if e.errno in (errno.ECONNREFUSED, errno.ENOENT) else None
    finally:
        s.close()
    return None


def test_journald_stops_mid_run(tmp_path: Path) -> None:
    """journald stops while the daemon runs: the daemon goes on writing the file, warns, never exits."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    with journald_env() as jd:
        cfg = config_text(tmp_path, log, journal_socket=jd.socket_path)
        with daemon(tmp_path, cfg, log) as d, session(exe, "/bin/true before", "/bin/true after") as s:
            session_found(d, s.pid)
            s.go()
            d.wait_for(lambda rs: ["/bin/true", "before"] in args_of(rs, s.pid))
            got = jd.wait_for(1, 30.0, SYSLOG_IDENTIFIER="claude-audit", PROCESS_EXECUTABLE="/bin/true")
            assert len(got) == 1
            os.kill(jd.pid, signal.SIGTERM)  # journald_env started it; its pid is ours to stop
            wait_until(lambda: _journald_gone(jd.socket_path), 30)
            s.go()
            d.wait_for(lambda rs: ["/bin/true", "after"] in args_of(rs, s.pid))
            d.wait_for(lambda rs: "journald unavailable" in d.stderr())
            assert d.alive()


def test_ring_overflow_loss_is_exact(tmp_path: Path) -> None:
    """A 64 KiB ring and a daemon stopped during a burst: the kernel drops events, and the log's
    events-lost records count exactly those drops, so records written + lost = execs generated."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(
        tmp_path,
        log,
        capture="ring_buffer_bytes = 65536\nargv_max_bytes = 512\nfilename_max_bytes = 64",
        only_fake=True,
    )
    n = 1000  # over twice what the 64 KiB ring holds (~450 records of this size): loss is certain
    done = tmp_path / "burst-done"
    with (
        daemon(tmp_path, cfg, log) as d,
        session(exe, f"for ((i=0;i<{n};i++)); do /bin/true burst $i; done; echo > {done}", ":") as s,
    ):
        session_found(d, s.pid)
        d.proc.send_signal(signal.SIGSTOP)  # nobody drains the ring during the burst
        try:
            s.go()
            # minutes under emulation (the kernel tier), about a second here
            wait_until(lambda: True if done.exists() else None, 900)
        finally:
            d.proc.send_signal(signal.SIGCONT)
        s.go()
        d.wait_for(lambda rs: bool(actions(rs, "events-lost")))

        def file_lost() -> int:
            return sum(r["claude_audit"]["lost"]["count"] for r in actions(d.records(), "events-lost"))

        # a snapshot in which status.json and the log agree (both are written in the same tick)
        st = d.wait_status(lambda st: st["events_lost"] > 0 and st["events_lost"] == file_lost())
    kc = st["kernel_counters"]
    assert st["events_lost"] == (
        kc["ring_lost"] + kc["candidates_lost"] + kc["tracking_full"] + st["queue_dropped"]
    )
    recs = d.records()
    burst = [a for a in args_of(recs, s.pid) if a[:2] == ["/bin/true", "burst"]]
    assert len({a[2] for a in burst}) == len(burst)
    lost = [r["claude_audit"]["lost"] for r in actions(recs, "events-lost")]
    assert {x["where"] for x in lost} == {"kernel-ring"}
    lost_total = sum(x["count"] for x in lost)
    assert lost_total > 0
    assert len(burst) + lost_total == n, (kc, st["queue_dropped"])
    assert actions(recs, "daemon-stopped")[0]["claude_audit"]["events_lost"] == lost_total


def test_log_and_directory_modes_despite_umask(tmp_path: Path) -> None:
    """The log file is 0640 and its directory 0750 even when the daemon starts with umask 000."""
    log = tmp_path / "newdir" / "audit.jsonl"
    cfg = config_text(tmp_path, log)
    old = os.umask(0)
    try:
        with daemon(tmp_path, cfg, log):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(log.stat().st_mode) == 0o640
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o750
    status_dir = tmp_path / "run"
    assert stat.S_IMODE(status_dir.stat().st_mode) & 0o007 == 0


@pytest.mark.parametrize("mode", [0o602, 0o620, 0o666])
def test_config_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    """A config file writable by group or others: exit 78 (EX_CONFIG) with a message naming the fix."""
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log, mode=mode)
    r = subprocess.run(
        [*CLI, "run", "--config", str(cfg)], check=False, env=ENV, capture_output=True, timeout=60
    )
    assert r.returncode == 78
    err = r.stderr.decode()
    assert "writable by group or others" in err and f"chmod go-w {cfg}" in err
    assert not log.exists()


def test_daemon_runs_no_program_of_its_own(tmp_path: Path, sensor: object) -> None:
    """The daemon never execs anything (no shell, no helper, BCC compiles in-process): watched from
    start-up by a second sensor, its process tree shows only its own exec of python; and no exec in its
    log has the daemon as parent."""
    from sensor_util import Collector, watched_root

    from claude_audit.sensor import Sensor

    assert isinstance(sensor, Sensor)
    col = Collector(sensor, sensor.queue)
    sensor.consume()
    sensor.queue.drain()
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log)
    argv = ["/bin/bash", "-c", 'read -r _; exec "$@"', "bash", *CLI, "run", "--config", str(cfg)]
    with watched_root(sensor, argv, env=ENV) as dpid:
        wait_until(lambda: True if log.exists() and "daemon-started" in log.read_text() else None, 120)
        with session(exe, "/bin/true a; bash -c '/bin/true b'; (/bin/true c &)") as s:
            d_recs: list[dict[str, object]] = []

            def seen() -> bool | None:
                d_recs[:] = read_records(log)
                return True if ["/bin/true", "c"] in args_of(d_recs, s.pid) else None

            s.go()
            wait_until(seen, 60)
        # a reload must not exec anything either (made visible by a config it rejects)
        cfg.write_text(cfg.read_text() + "[capture]\nargv_max_bytes = 1000\n")
        os.kill(dpid, signal.SIGHUP)
        wait_until(lambda: True if "config-rejected" in log.read_text() else None, 60)
        os.kill(dpid, signal.SIGTERM)
    col.settle()
    # Popen returns once the child's close-on-exec pipe closes, which is before the kernel's exec
    # tracepoint fires: the bootstrap bash's own exec can land after add_root and be seen. It is ours.
    own = [e for e in col.execs(dpid) if e.argv[:3] != [b"/bin/bash", b"-c", argv[2].encode()]]
    assert [e.pid for e in own] == [dpid], [(e.filename, e.argv[:3]) for e in own]
    assert own[0].filename == os.fsencode(CLI[0])
    assert execs_of(d_recs, s.pid)
    assert all(r["process"]["parent"]["pid"] != dpid for r in actions(d_recs, "exec"))


def test_heartbeats_stop_at_sigkill_and_the_restart_names_the_gap(tmp_path: Path) -> None:
    """With a 1 s heartbeat interval the log gets a heartbeat about every second (and the Prometheus
    textfile follows); after SIGKILL none comes, and the next start's unwatched-window begins no earlier
    than the last heartbeat and covers the kill, so a SIEM sees both the silence and its explanation."""
    log = tmp_path / "log" / "audit.jsonl"
    metrics = tmp_path / "metrics" / "claude_audit.prom"
    metrics.parent.mkdir()
    cfg = config_text(
        tmp_path,
        log,
        daemon_extra=f'heartbeat_interval_seconds = 1.0\nprometheus_textfile = "{metrics}"',
    )
    with daemon(tmp_path, cfg, log, expect_rc=(-signal.SIGKILL,)) as d:
        recs = d.wait_for(lambda rs: len(actions(rs, "heartbeat")) >= 4)
        beats = actions(recs, "heartbeat")
        for b in beats:
            a = b["claude_audit"]
            assert a["daemon_pid"] == d.proc.pid and a["interval_seconds"] == 1.0
            assert a["kernel"]["state"] == "attached"
            assert a["kernel"]["programs_attached"] == a["kernel"]["programs_expected"] == 4
            assert a["config"]["digest"].startswith("sha256:") and a["config"]["path"] == str(cfg)
            # the count includes the heartbeat itself: it equals its place in this run's sequence
            assert a["counters"]["records_written"] == b["event"]["sequence"]
            assert b["service"]["version"]
        gaps = [(_ns(b["@timestamp"]) - _ns(a["@timestamp"])) / 1e9 for a, b in itertools.pairwise(beats)]
        assert all(0.9 <= g < 15 for g in gaps), gaps  # about 1 s; a loaded machine may stretch it
        text = wait_until(lambda: metrics.read_text() if metrics.exists() else None, 30)
        assert "claude_audit_kernel_programs_attached 4\n" in text
        assert "claude_audit_last_update_timestamp_seconds " in text
        d.proc.kill()
        d.proc.wait()
        killed_ns = time.time_ns()
    last_beat_ns = _ns(actions(d.records(), "heartbeat")[-1]["@timestamp"])
    time.sleep(3)  # the silence a SIEM would see: three intervals without a heartbeat
    restarted_ns = time.time_ns()
    with daemon(tmp_path, cfg, log) as d2:
        recs = d2.wait_for(lambda rs: bool(actions(rs, "heartbeat") and actions(rs, "unwatched-window")))
    after = [b for b in actions(recs, "heartbeat") if b["claude_audit"]["daemon_pid"] == d2.proc.pid]
    assert after, "the new run writes a heartbeat at start"
    silence = (_ns(after[0]["@timestamp"]) - last_beat_ns) / 1e9
    assert silence >= 3.0
    window = actions(recs, "unwatched-window")[0]
    w = window["claude_audit"]["unwatched"]
    assert w["reason"] == "crash" and window["event"]["kind"] == "alert"
    assert last_beat_ns <= _ns(w["from"]) <= killed_ns
    assert _ns(w["to"]) >= restarted_ns
    assert w["seconds"] >= 3.0


def test_readers_group_can_read_the_log_and_others_cannot(tmp_path: Path) -> None:
    """With [audit_log] group = "adm", the directory is 0750 and the file 0640 with that group: an
    unprivileged user in the group lists and reads the log; the same user without the group cannot."""
    base = Path(tempfile.mkdtemp(prefix="claude-audit-readers-"))
    try:
        base.chmod(0o755)  # the test's own directory: the reader must reach the log directory inside
        log = base / "log" / "audit.jsonl"
        cfg = config_text(tmp_path, log)
        cfg.write_text(cfg.read_text().replace("[audit_log]\n", '[audit_log]\ngroup = "adm"\n'))
        adm = grp.getgrnam("adm").gr_gid
        with daemon(tmp_path, cfg, log):
            pass
        assert (log.parent.stat().st_gid, stat.S_IMODE(log.parent.stat().st_mode)) == (adm, 0o750)
        assert (log.stat().st_gid, stat.S_IMODE(log.stat().st_mode)) == (adm, 0o640)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534"]
        member = subprocess.run(
            [*as_nobody, f"--groups={adm}", "sh", "-c", f"ls {log.parent} && cat {log}"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert member.returncode == 0, member.stderr
        assert "daemon-started" in member.stdout and "audit.jsonl" in member.stdout
        outsider = subprocess.run(
            [*as_nobody, "--clear-groups", "cat", str(log)], capture_output=True, text=True, check=False
        )
        assert outsider.returncode != 0 and "Permission denied" in outsider.stderr
    finally:
        shutil.rmtree(base)


def test_missing_readers_group_is_a_warning(tmp_path: Path) -> None:
    """A configured group that does not exist does not stop the daemon: one warning, root's group."""
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log)
    cfg.write_text(cfg.read_text().replace("[audit_log]\n", '[audit_log]\ngroup = "no-such-group-9f3"\n'))
    with daemon(tmp_path, cfg, log) as d:
        pass
    assert "audit log group does not exist" in d.stderr()
    assert log.stat().st_gid == 0
