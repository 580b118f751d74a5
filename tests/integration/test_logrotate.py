"""The real logrotate, with the shipped /etc/logrotate.d/claude-audit, against the running daemon.

One rotation policy: logrotate renames and compresses, the daemon never rotates these names itself
(max_bytes 0) and follows the rename. Through several rotations under a stream of execs, the rotated set
read the way `claude-audit tail --all` reads it holds every record exactly once, in order.
"""

from __future__ import annotations

import grp
import json
import stat
import subprocess
from pathlib import Path

from daemon_faults_util import (
    REPO,
    actions,
    config_text,
    daemon,
    fake_claude,
    session,
    session_found,
    wait_until,
)
from jsonl import check_record

from claude_audit.follow import follow

SHIPPED = REPO / "packaging" / "debian" / "claude-audit.logrotate"
EXECS = 3000
ROTATIONS = 6


def _logrotate_conf(tmp_path: Path, log: Path, daemon_pid: int) -> Path:
    """The shipped file with only the log path and the reload command replaced (no systemd here)."""
    text = SHIPPED.read_text()
    assert "/var/log/claude-audit/audit.jsonl" in text and "systemctl reload claude-audit.service" in text
    text = text.replace("/var/log/claude-audit/audit.jsonl", str(log))
    text = text.replace("systemctl reload claude-audit.service", f"kill -HUP {daemon_pid}")
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text)
    return conf


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_real_logrotate_under_load_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """Six forced logrotate runs while a session runs numbered execs (at least 3000, and until the
    rotations are done, so every rotation happens under load however slow the machine): afterwards
    audit.jsonl.1 is plain, .2.gz ... .6.gz compressed, no name is used twice, every file keeps the
    readers' group, and reading the set oldest first gives event.sequence 1..N with no gap or repeat
    and every exec once, in the order it ran."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log, only_fake=True)
    cfg.write_text(cfg.read_text().replace("[audit_log]\n", '[audit_log]\ngroup = "adm"\n'))
    state = tmp_path / "logrotate.state"
    with daemon(tmp_path, cfg, log) as d:
        conf = _logrotate_conf(tmp_path, log, d.proc.pid)
        stop, count = tmp_path / "stop", tmp_path / "count"
        script = (
            f"i=0; while [ $i -lt {EXECS} ] || [ ! -e {stop} ]; do i=$((i+1)); /bin/true load $i; done; "
            f"echo $i > {count}"
        )
        with session(exe, script) as s:
            session_found(d, s.pid)
            s.go()
            for _ in range(ROTATIONS):
                # rotate only once the new file has records, so every rotation moves something
                d.wait_for(lambda _rs: _lines(log) >= 20, 120)
                r = subprocess.run(
                    ["/usr/sbin/logrotate", "-f", "-s", str(state), str(conf)],
                    check=False,
                    capture_output=True,
                    text=True,
                )
                assert r.returncode == 0, r.stderr
            stop.touch()
            n = int(
                wait_until(lambda: (count.read_text().strip() or None) if count.exists() else None, 300, d)
            )
            d.wait_for(
                lambda rs: any(
                    r.get("process", {}).get("args") == ["/bin/true", "load", str(n)]
                    for r in actions(rs, "exec")
                ),
                300,
            )
    names = sorted(p.name for p in log.parent.iterdir())
    assert names == ["audit.jsonl", "audit.jsonl.1"] + [
        f"audit.jsonl.{n}.gz" for n in range(2, ROTATIONS + 1)
    ]
    # the readers' group stays on every file, the ones logrotate renamed and the ones it compressed
    adm = grp.getgrnam("adm").gr_gid
    for p in [log.parent, *log.parent.iterdir()]:
        st = p.stat()
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (adm, 0o750 if p.is_dir() else 0o640), p
    recs = [
        json.loads(line) for line in follow(log, from_start=True, include_rotated=True, stop=lambda: True)
    ]
    for r in recs:
        check_record(r)
    seqs = [r["event"]["sequence"] for r in recs]
    assert seqs == list(range(1, len(recs) + 1))
    loads = [
        r["process"]["args"][2]
        for r in actions(recs, "exec")
        if r["process"]["args"][:2] == ["/bin/true", "load"]
    ]
    assert loads == [str(i) for i in range(1, n + 1)] and n >= EXECS
    assert actions(recs, "daemon-stopped")
    assert len(actions(recs, "config-reloaded")) == ROTATIONS  # each postrotate reload was applied
