"""Staying in view: each technique an agent could use to run something outside its session's view.

Every test runs the technique inside a watched session on the real kernel sensor (or the real daemon)
and checks that the program it ran is reported and attributed to that session, or, for pid reuse and
unrelated processes, that nothing is attributed that does not belong.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from daemon_faults_util import actions, config_text, daemon, execs_of, fake_claude, wait_until
from processes import kill
from sensor_util import Collector, start_ticks, watched_root

from claude_audit import bpf_layout
from claude_audit.events import CandidateEvent, ExecEvent
from claude_audit.sensor import Sensor

pytestmark = [pytest.mark.root]


def _tagged(collector: Collector, tag: bytes, exe: bytes | None = None) -> list[ExecEvent]:
    """Execs whose last argument is `tag` (and whose executable is `exe`, if given)."""
    return [
        e for e in collector.execs() if e.argv and e.argv[-1] == tag and (exe is None or e.filename == exe)
    ]


def _run_and_find(
    sensor: Sensor,
    collector: Collector,
    script: str | list[str],
    tags: list[bytes],
    *,
    env: dict[str, str] | None = None,
    exe: bytes | None = None,
) -> tuple[int, dict[bytes, ExecEvent]]:
    """Run `script` as a watched root; wait until an exec ending in each tag is seen; return them."""
    with watched_root(sensor, script, env) as root:
        pass
    collector.wait_for(lambda: all(_tagged(collector, t, exe) for t in tags), timeout=30)
    collector.settle()
    found = {}
    for t in tags:
        (ev,) = _tagged(collector, t, exe)
        found[t] = ev
    return root, found


TECHNIQUES = {
    "double-fork": "( ( /bin/echo dbl >/dev/null & ) & ); wait",
    "setsid": "setsid /bin/echo sid >/dev/null",
    "setsid-fork": "setsid -f /bin/echo sidf >/dev/null",
    "nohup-bg": "nohup /bin/echo nohup >/dev/null 2>&1 &",
    "disown": "( /bin/echo dis >/dev/null ) & disown",
    "env-i": "env -i /bin/echo envi >/dev/null",
    "unset-claudecode": (
        "unset CLAUDECODE CLAUDE_PID; env -u CLAUDE_CODE_SESSION_ID /bin/echo unset >/dev/null"
    ),
    "exec-a": "(exec -a innocent /bin/echo execa >/dev/null)",
    "subshell-pipe": "echo x | /bin/cat - >/dev/null; /bin/echo pipe >/dev/null | /bin/true",
}
TAG = {
    "double-fork": b"dbl",
    "setsid": b"sid",
    "setsid-fork": b"sidf",
    "nohup-bg": b"nohup",
    "disown": b"dis",
    "env-i": b"envi",
    "unset-claudecode": b"unset",
    "exec-a": b"execa",
    "subshell-pipe": b"pipe",
}


@pytest.mark.parametrize("name", sorted(TECHNIQUES))
def test_shell_technique_stays_attributed(sensor: Sensor, collector: Collector, name: str) -> None:
    """Re-parenting, new sessions, background jobs, a cleared or stripped environment, argv[0] spoofing:
    the program run is reported with the session root and an invocation."""
    env = dict(os.environ, CLAUDECODE="1", CLAUDE_PID="1", CLAUDE_CODE_SESSION_ID="x")
    root, found = _run_and_find(sensor, collector, TECHNIQUES[name], [TAG[name]], env=env, exe=b"/bin/echo")
    ev = found[TAG[name]]
    assert ev.session_root == root
    assert ev.invocation != 0
    assert ev.filename == b"/bin/echo"


def test_daemon3_style_detach(sensor: Sensor, collector: Collector) -> None:
    """daemon(3) done by hand (fork, setsid, fork, chdir /, close fds, exec): still the session's."""
    code = (
        "import os, sys\n"
        "sys.stdin.readline()\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.chdir('/')\n"
        "        fd = os.open('/dev/null', os.O_RDWR)\n"
        "        for i in (0, 1, 2): os.dup2(fd, i)\n"
        "        os.execv('/bin/echo', ['/bin/echo', 'daemonized'])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
    )
    root, found = _run_and_find(sensor, collector, ["/usr/bin/python3", "-c", code], [b"daemonized"])
    ev = found[b"daemonized"]
    assert ev.session_root == root and ev.invocation != 0
    assert ev.ppid != root  # re-parented away before the exec


def test_exec_from_memfd(sensor: Sensor, collector: Collector) -> None:
    """A program copied into a memfd and run three ways (execve of /proc/self/fd/N, fexecve, execveat
    with AT_EMPTY_PATH) is reported; the path shows it came from a file descriptor."""
    code = (
        "import ctypes, os, sys\n"
        "sys.stdin.readline()\n"
        "fd = os.memfd_create('payload', 0)\n"
        "os.write(fd, open('/bin/true', 'rb').read())\n"
        "def run(f):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try: f()\n"
        "        finally: os._exit(99)\n"
        "    assert os.waitpid(pid, 0)[1] == 0\n"
        "run(lambda: os.execve(f'/proc/self/fd/{fd}', ['payload', 'memfd-proc'], {}))\n"
        "run(lambda: os.execve(fd, ['payload', 'memfd-fexecve'], {}))\n"
        "def at():\n"
        "    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    argv = (ctypes.c_char_p * 3)(b'payload', b'memfd-execveat', None)\n"
        "    envp = (ctypes.c_char_p * 1)(None)\n"
        "    libc.syscall(322, fd, b'', argv, envp, 0x1000)\n"  # SYS_execveat, AT_EMPTY_PATH
        "run(at)\n"
    )
    tags = [b"memfd-proc", b"memfd-fexecve", b"memfd-execveat"]
    root, found = _run_and_find(sensor, collector, ["/usr/bin/python3", "-c", code], tags)
    for t in tags:
        assert found[t].session_root == root, t
        assert found[t].argv == [b"payload", t]
    assert found[b"memfd-proc"].filename.startswith(b"/proc/self/fd/")
    assert found[b"memfd-execveat"].filename.startswith(b"/dev/fd/")


def test_shebang_script_and_its_interpreter(sensor: Sensor, collector: Collector, tmp_path: Path) -> None:
    """A script with a shebang is reported as the script path with its arguments, and what it runs too,
    including a script whose interpreter is itself found through `env`."""
    s1 = tmp_path / "s1"
    s1.write_text("#!/bin/sh\n/bin/echo from-s1 >/dev/null\n")
    s2 = tmp_path / "s2 with space"
    s2.write_text("#!/usr/bin/env python3\nimport subprocess\nsubprocess.run(['/bin/echo', 'from-s2'])\n")
    for s in (s1, s2):
        s.chmod(0o755)
    with watched_root(sensor, f"{s1} arg-s1; '{s2}' arg-s2 >/dev/null") as root:
        pass
    tags = [b"arg-s1", b"from-s1", b"arg-s2", b"from-s2"]
    collector.wait_for(lambda: all(_tagged(collector, t) for t in tags), timeout=30)
    collector.settle()
    assert all(e.session_root == root for t in tags for e in _tagged(collector, t))
    # the kernel reports the interpreter's argv: interpreter, its shebang argument, script, arguments
    assert [e.argv for e in _tagged(collector, b"arg-s1")] == [[b"/bin/sh", os.fsencode(s1), b"arg-s1"]]
    s2_argvs = [e.argv for e in _tagged(collector, b"arg-s2")]
    assert [b"/usr/bin/env", b"python3", os.fsencode(s2), b"arg-s2"] in s2_argvs  # the script's exec
    assert any(a[0].endswith(b"python3") and a[1:] == [os.fsencode(s2), b"arg-s2"] for a in s2_argvs)
    assert [e.filename for e in _tagged(collector, b"arg-s1")] == [os.fsencode(s1)]


def test_descendant_renaming_its_comm(sensor: Sensor, collector: Collector) -> None:
    """A descendant that renames itself (even to "claude") stays in its session: no new candidate root,
    and what it runs afterwards is still attributed to the original session."""
    code = (
        "import ctypes, subprocess, sys\n"
        "sys.stdin.readline()\n"
        "libc = ctypes.CDLL(None)\n"
        "for name in (b'innocent', b'claude'):\n"
        "    libc.prctl(15, name, 0, 0, 0)\n"  # PR_SET_NAME
        "    subprocess.run(['/bin/echo', 'after-' + name.decode()], stdout=subprocess.DEVNULL)\n"
    )
    root, found = _run_and_find(
        sensor, collector, f"/usr/bin/python3 -c {_q(code)}", [b"after-innocent", b"after-claude"]
    )
    for ev in found.values():
        assert ev.session_root == root and ev.invocation != 0
    renamer = found[b"after-claude"].ppid
    assert not [c for c in collector.events if isinstance(c, CandidateEvent) and c.pid == renamer]
    assert renamer not in sensor.root_pids()


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def _after_tick(ticks: int) -> None:
    """Wait until the boot-time clock is past clock tick `ticks` (processes are told apart by their
    start time in 10 ms ticks: a pid reused within the same tick is the documented limit)."""
    wait_until(lambda: True if time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 10_000_000 > ticks else None, 5)


def _reuse_pid(target: int, argv: list[str]) -> bool:
    """Run argv (untracked, from the test process) under pid `target`, forcing it with ns_last_pid."""
    last = Path("/proc/sys/kernel/ns_last_pid")
    for _ in range(200):
        last.write_text(str(target - 1))
        p = subprocess.Popen(argv)
        p.wait()
        if p.pid == target:
            return True
    return False


def test_pid_reused_after_a_tracked_process_exits(sensor: Sensor, collector: Collector) -> None:
    """A tracked descendant exits and an unrelated process gets its pid: the newcomer's exec is not the
    session's, both when the kernel already dropped the entry and when a stale entry is left behind."""
    root, found = _run_and_find(sensor, collector, "/bin/true victim; :", [b"victim"])
    victim = found[b"victim"]
    assert victim.session_root == root
    assert sensor.tracked_entry(victim.pid) is None  # removed at exit
    _after_tick(victim.start_ticks)
    assert _reuse_pid(victim.pid, ["/bin/true", "reused-1"]), "could not force pid reuse"
    # As if the daemon seeded the entry just before the process exited and the exit was missed.
    stale = bpf_layout.TrackedProc(
        start_ticks=victim.start_ticks, root_start_ticks=1, root=root, invocation=root
    )
    assert sensor.track(victim.pid, stale)
    assert _reuse_pid(victim.pid, ["/bin/true", "reused-2"]), "could not force pid reuse"
    collector.settle()
    assert not _tagged(collector, b"reused-1")
    assert not _tagged(collector, b"reused-2")
    assert sensor.tracked_entry(victim.pid) is None  # the stale entry was dropped when seen


def test_pid_reused_by_the_root(sensor: Sensor, collector: Collector) -> None:
    """The session root exits and its pid is reused at once: the newcomer is not taken for the session."""
    with watched_root(sensor, "exit 0") as root:
        rstart = start_ticks(root)
    sensor.add_root(root, rstart)  # a stale root entry, as if the daemon raced with the exit
    _after_tick(rstart)
    assert _reuse_pid(root, ["/bin/bash", "-c", "/bin/true reused-root"])
    collector.settle()
    assert not _tagged(collector, b"reused-root")
    sensor.remove_root(root)


def test_process_started_before_the_daemon(tmp_path: Path) -> None:
    """A session and a child of it already running when the daemon starts are seeded from /proc, and
    what the child runs later is recorded, attributed and flagged seeded_from_proc."""
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    cfg = config_text(tmp_path, log, only_fake=True)
    # the root waits for its child; the child waits for our go, then execs
    script = "bash -c 'read -r _; /bin/true pre-existing; exec /bin/echo child-exec' >/dev/null"
    p = subprocess.Popen([str(exe), "-c", script], stdin=subprocess.PIPE)
    try:
        wait_until(lambda: _child_of(p.pid), 30)
        with daemon(tmp_path, cfg, log) as d:
            recs = d.wait_for(
                lambda rs: any(r["claude"]["pid"] == p.pid for r in actions(rs, "session-found"))
            )
            found = next(r for r in actions(recs, "session-found") if r["claude"]["pid"] == p.pid)
            assert found["claude_audit"]["how"] == "startup"
            assert found["process"]["seeded_descendants"] >= 1
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
            recs = d.wait_for(
                lambda rs: ["/bin/echo", "child-exec"] in [r["process"]["args"] for r in execs_of(rs, p.pid)]
            )
        by_args = {tuple(r["process"]["args"]): r for r in execs_of(recs, p.pid)}
        seeded = by_args[("/bin/echo", "child-exec")]
        later = by_args[("/bin/true", "pre-existing")]
        # the seeded process's own exec is flagged; a process it forks later is tracked by the kernel
        assert "seeded_from_proc" in seeded["claude_audit"]["flags"]
        assert seeded["claude"]["invocation_pid"] == later["claude"]["invocation_pid"]
        assert later["process"]["parent"]["pid"] == seeded["process"]["pid"]
    finally:
        kill(p)
        assert p.stdin is not None
        p.stdin.close()


def _child_of(pid: int) -> bool | None:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return None
    return True if kids else None


def test_descendant_execing_a_binary_named_claude(
    sensor: Sensor, collector: Collector, tmp_path: Path
) -> None:
    """A process inside a session that execs a binary named `claude`: it stays in the session (no
    candidate is made of it), so naming itself Claude Code cannot move it out of view."""
    fake = tmp_path / "claude"
    fake.write_bytes(Path("/bin/true").read_bytes())
    fake.chmod(0o755)
    code = f"read -r _; {fake} named-claude; :"
    with watched_root(sensor, ["/bin/bash", "-c", code]) as root:
        pass
    collector.settle()
    (ev,) = _tagged(collector, b"named-claude")
    assert ev.session_root == root and ev.invocation != 0
    assert not [c for c in collector.events if isinstance(c, CandidateEvent) and c.pid == ev.pid]
