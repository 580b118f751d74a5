"""The issue's reproductions and more, each against the real daemon: it comes up (daemon-started within
a bound), stays up, and still records a real session completely.

Attackers are `nobody` (any local user) unless the attack is the agent's own (then it is run by the
session). "Completely" means: every exec of a fake Claude Code session started after the attack is
recorded once, attributed to its root, including a nested shell and a double fork.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from adversary_util import (
    DAEMON_ENV,
    as_nobody,
    attacker_dir,
    compile_c,
    count_group,
    daemon_under_attack,
    started,
)
from daemon_faults_util import (
    CLI,
    Daemon,
    actions,
    config_text,
    execs_of,
    fake_claude,
    session,
    session_found,
)

pytestmark = [pytest.mark.root]

COMPLETE_STEPS = (
    "/bin/echo adv-one; /bin/sh -c '/bin/echo adv-two; true'; ( setsid /bin/echo adv-three & ); sleep 0.3"
)
COMPLETE_MARKS = ("adv-one", "adv-two", "adv-three")


def _records_session_completely(
    d: Daemon, exe: Path, *, after_found: bool = False, timeout: float = 90.0
) -> None:
    """A new session runs three execs (one nested, one double-forked): each is recorded once, attributed.

    `after_found`: let the session run its commands only once the daemon has found it (a session the
    kernel could not adopt is found by the next scan; what it ran before that is a stated limit)."""
    wanted = [["/bin/echo", m] for m in COMPLETE_MARKS]
    with session(exe, COMPLETE_STEPS) as s:
        if after_found:
            session_found(d, s.pid)
        s.go()
        recs = d.wait_for(
            lambda rs: all(w in [r["process"]["args"] for r in execs_of(rs, s.pid)] for w in wanted),
            timeout=timeout,
        )
    for mark in COMPLETE_MARKS:
        got = [r for r in execs_of(recs, s.pid) if r["process"]["args"] == ["/bin/echo", mark]]
        assert len(got) == 1, (mark, got)


def _base(tmp_path: Path, extra_capture: str = "", extra: str = "") -> tuple[Path, Path, Path]:
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log, capture=extra_capture, only_fake=True)
    if extra:
        cfg.write_text(cfg.read_text() + extra)
    return exe, log, cfg


def test_huge_claude_pid_in_another_users_environment(tmp_path: Path) -> None:
    """Issue repro 1: `nobody` runs `env CLAUDECODE=1 CLAUDE_PID=<5000 digits> sleep`, started after a
    session that is running when the daemon starts. Before: ValueError in the start-up scan, exit 1 (and
    a restart loop under systemd). Now: the value is not a pid, ignored; the daemon comes up."""
    exe, log, cfg = _base(tmp_path)
    with session(exe, "/bin/echo before-daemon-step") as early:
        time.sleep(0.05)  # the sleeper must start after the session for the scan to read its environment
        env = {"CLAUDECODE": "1", "CLAUDE_PID": "7" * 5000, "PATH": "/usr/bin:/bin"}
        with (
            started(as_nobody(["env", *(f"{k}={v}" for k, v in env.items()), "sleep", "1000"])),
            daemon_under_attack(tmp_path, cfg, log) as st,
        ):
            early.go()
            st.daemon.wait_for(
                lambda rs: any(
                    r["process"]["args"][-1] == "before-daemon-step" for r in execs_of(rs, early.pid)
                )
            )
            _records_session_completely(st.daemon, exe)


@pytest.mark.parametrize("planted", ["fifo", "dev-zero-symlink", "huge-sparse-file", "directory"])
def test_session_file_replaced_by_the_agent(tmp_path: Path, planted: str) -> None:
    """Issue repro 2: the agent replaces ~/.claude/sessions/$CLAUDE_PID.json with a FIFO (before: the
    daemon blocks in open() before READY, forever) or a symlink to /dev/zero (before: reads without end,
    memory grows). Now: neither is a regular file of bounded size, so it is not read at all."""
    exe, log, cfg = _base(tmp_path)
    home = tmp_path / "roothome"
    sessions = home / ".claude" / "sessions"
    sessions.mkdir(parents=True)
    with session(exe, "/bin/echo after-plant") as early:
        path = sessions / f"{early.pid}.json"
        if planted == "fifo":
            os.mkfifo(path)
        elif planted == "dev-zero-symlink":
            path.symlink_to("/dev/zero")
        elif planted == "huge-sparse-file":
            with path.open("wb") as f:
                f.truncate(1 << 40)  # 1 TiB of holes
        else:
            path.mkdir()
        with daemon_under_attack(tmp_path, cfg, log, root_home=home) as st:
            early.go()
            recs = st.daemon.wait_for(
                lambda rs: any(r["process"]["args"][-1] == "after-plant" for r in execs_of(rs, early.pid))
            )
            assert all(
                r["claude"].get("identity_source") != "session_file" for r in execs_of(recs, early.pid)
            )
            _records_session_completely(st.daemon, exe)
            rss_kib = int(next(
                line.split()[1]
                for line in Path(f"/proc/{st.daemon.proc.pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            ))  # fmt: skip
            assert rss_kib < 400_000  # a /dev/zero read would have grown without end


def test_node_copies_with_150k_arguments(tmp_path: Path) -> None:
    """Issue repro 3: a copy of a binary named `node` run with 150 000 one-byte arguments, 100 times.
    Before: every scan read and glob-matched every argument of each (~0.3 s CPU per process): start-up
    took minutes and the watchdog killed the daemon in a loop. Now: only the first 4 KiB / 8 arguments
    of an interpreter's cmdline are looked at, so the scan costs the same as with 2 arguments."""
    exe, log, cfg = _base(tmp_path, extra="scan_interval_seconds = 1.0\n")
    with attacker_dir() as adir:
        node = adir / "node"
        node.write_bytes(Path("/bin/sleep").read_bytes())
        node.chmod(0o755)
        loop = 'for i in $(seq 100); do "$0" "$@" & done; wait'
        with started(as_nobody(["bash", "-c", loop, str(node), "1000", *(["0"] * 150_000)])) as g:
            deadline = time.monotonic() + 120
            while count_group(g.proc.pid, b"node") < 100 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert count_group(g.proc.pid, b"node") == 100
            # Bounds that a scan costing tens of seconds (the old behaviour: 49 s to READY here, and
            # every periodic scan as long, the ring not drained meanwhile) cannot meet; measured with
            # the fix: READY in 6.5 s, a scan 0.03 s.
            with daemon_under_attack(tmp_path, cfg, log, ready_bound=40) as st:
                _records_session_completely(st.daemon, exe, timeout=20)
                # periodic scans (every second here) keep running without starving the loop
                status_before = st.daemon.status()
                time.sleep(3)
                assert st.daemon.status().get("records_written", 0) >= status_before.get("records_written", 0)
            print(f"ready after {st.ready_s:.1f} s with 100 x node(150 000 args) on the host")


FLOOD_C = r"""
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    for (int i = 1; i < n; i++)
        if (fork() == 0)
            break;
    for (;;) {
        prctl(PR_SET_NAME, argv[2], 0, 0, 0);
        usleep(100000);
    }
}
"""


def _flood(adir: Path, n: int, name: str) -> list[str]:
    return as_nobody([str(compile_c(FLOOD_C, adir / "flood")), str(n), name])


def test_rename_flood_of_4200_processes(tmp_path: Path) -> None:
    """Issue repro 4: 4 200 processes of `nobody` calling prctl(PR_SET_NAME, <trigger comm>) every 100 ms.
    Before: target_pid_map (4 096) filled, a real session was not adopted (counted nowhere) and
    Sensor.add_root raised, uncaught: the daemon exited. Now: that user's candidates are limited per
    second in the kernel and go to a map of their own, a rejected process is not re-adopted, the throttled
    triggers are counted as a `kernel-candidates` loss, and a real session is recorded completely."""
    exe, log, cfg = _base(tmp_path)
    with attacker_dir() as adir, started(_flood(adir, 4200, "claude.exe")) as g:
        deadline = time.monotonic() + 120
        while count_group(g.proc.pid, b"claude.exe") < 4200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert count_group(g.proc.pid, b"claude.exe") == 4200
        with daemon_under_attack(tmp_path, cfg, log) as st:
            _records_session_completely(st.daemon, exe)
            recs = st.daemon.wait_for(
                lambda rs: any(
                    r["claude_audit"]["lost"]["where"] == "kernel-candidates"
                    for r in actions(rs, "events-lost")
                ),
                timeout=30,
            )
            flood_exe = str(adir / "flood")
            assert not [
                r for r in actions(recs, "session-found") if r["process"].get("executable") == flood_exe
            ]


def test_candidate_map_full_does_not_keep_out_a_real_session(tmp_path: Path) -> None:
    """A flood with a generous per-user budget fills the candidates' map (max_pending_roots = 16): the
    full map is counted (a `kernel-candidates` loss), the real session the kernel could not adopt is
    found by the next scan and confirmed into the roots' own map, which the flood cannot fill, and from
    then on recorded completely."""
    exe, log, cfg = _base(
        tmp_path,
        extra_capture="max_pending_roots = 16",
        extra="candidates_per_uid_per_second = 100000\nscan_interval_seconds = 1.0\n",
    )
    with attacker_dir() as adir, started(_flood(adir, 300, "claude.exe")) as g:
        deadline = time.monotonic() + 60
        while count_group(g.proc.pid) < 300 and time.monotonic() < deadline:
            time.sleep(0.2)
        with daemon_under_attack(tmp_path, cfg, log) as st:
            st.daemon.wait_for(
                lambda rs: any(
                    r["claude_audit"]["lost"]["where"] == "kernel-candidates"
                    for r in actions(rs, "events-lost")
                ),
                timeout=30,
            )
            _records_session_completely(st.daemon, exe, after_found=True)


def test_hook_shaped_like_the_bash_tool_wrapper(tmp_path: Path) -> None:
    """A hook run by the session root whose script ends like the wrapper (`... && eval 'X' && pwd -P >|
    /tmp/claude-1-cwd`) is `unknown`, with no made-up command (before: `tool`, command X, though the
    prefix ran too); the exact wrapper shape is `tool`."""
    exe, log, cfg = _base(tmp_path)
    snap = tmp_path / ".claude" / "shell-snapshots" / "snapshot-bash-1795572670068-k2j4x1.sh"
    snap.parent.mkdir(parents=True)
    snap.write_text("")
    cwdf = tmp_path / "claude-3f2a-cwd"
    hook = f"/bin/echo hook-prefix-ran && eval '/bin/echo hook-eval' && pwd -P >| {cwdf}"
    wrapper = (
        f"source {snap} 2>/dev/null || true && \\builtin shopt -u extglob 2>/dev/null || true && "
        f"eval '/bin/echo tool-eval' < /dev/null && pwd -P >| {cwdf}"
    )
    steps = (f"/bin/sh -c {json.dumps(hook)}; true", f"/bin/bash -c {json.dumps(wrapper)}; true")
    with daemon_under_attack(tmp_path, cfg, log) as st, session(exe, *steps) as s:
        s.go()
        s.go()
        recs = st.daemon.wait_for(
            lambda rs: {"hook-eval", "tool-eval"} <= {r["process"]["args"][-1] for r in execs_of(rs, s.pid)}
        )
    by_mark = {r["process"]["args"][-1]: r for r in execs_of(recs, s.pid)}
    for mark in ("hook-prefix-ran", "hook-eval"):
        assert by_mark[mark]["claude"]["origin"] == "unknown"
        assert "command" not in by_mark[mark]["claude"]
    assert by_mark["tool-eval"]["claude"]["origin"] == "tool"
    assert by_mark["tool-eval"]["claude"]["command"] == "/bin/echo tool-eval"


def test_status_shows_agent_written_identity_escaped(tmp_path: Path) -> None:
    """The agent sets CLAUDE_CODE_SESSION_ID to terminal escapes (clear screen, set title, bidi override);
    `claude-audit status` shows them escaped, never as raw control characters."""
    exe, log, cfg = _base(tmp_path)
    step = (
        "export CLAUDECODE=1 CLAUDE_PID=$$ "
        "CLAUDE_CODE_SESSION_ID=$'\\e[2J\\e]0;pwned\\a\\u202eevil\\u009b1m'; "
        "/bin/sleep 3"
    )
    with daemon_under_attack(tmp_path, cfg, log) as st, session(exe, step) as s:
        s.go()
        st.daemon.wait_status(
            lambda stt: any(x.get("pid") == s.pid and "session_id" in x for x in stt.get("sessions", []))
        )
        out = subprocess.run(
            [*CLI, "status", "--config", str(cfg)], env=DAEMON_ENV, capture_output=True, check=True
        ).stdout
    assert b"pwned" in out
    for bad in (b"\x1b", b"\x07", "\u202e".encode(), "\u009b".encode()):
        assert bad not in out


def test_claude_pid_borrowed_by_another_user(tmp_path: Path) -> None:
    """`nobody` sets CLAUDE_PID to a root session's pid in its own process, started after the session:
    its execs are not attributed to that session (CLAUDE_PID is believed only for the session's own uid).
    Needs the daemon's identity fix (structure branch): fails on the hostile branch alone."""
    exe, log, cfg = _base(tmp_path)
    with attacker_dir() as adir, session(exe, "/bin/echo owner-step") as early:
        time.sleep(0.05)
        go = adir / "go"
        env = ["env", "CLAUDECODE=1", f"CLAUDE_PID={early.pid}", "PATH=/usr/bin:/bin"]
        script = f"while [ ! -e {go} ]; do sleep 0.1; done; /bin/echo borrowed-attribution"
        with started(as_nobody([*env, "sh", "-c", script])), daemon_under_attack(tmp_path, cfg, log) as st:
            session_found(st.daemon, early.pid)
            go.touch()
            early.go()
            st.daemon.wait_for(
                lambda rs: any(r["process"]["args"][-1] == "owner-step" for r in execs_of(rs, early.pid))
            )
            time.sleep(3)
            recs = st.daemon.records()
    assert not [r for r in actions(recs, "exec") if r["process"]["args"][-1] == "borrowed-attribution"]
