"""The BPF sensor on the real kernel: who is tracked, what is captured, what is never captured."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from processes import exec_storm
from sensor_util import Collector, watched_root

from claude_audit import bpf_layout
from claude_audit.events import CandidateEvent, ExitEvent
from claude_audit.sensor import Sensor


def test_nested_commands_are_tracked_at_any_depth(sensor: Sensor, collector: Collector) -> None:
    """Commands run by a root, and by its children's children, are all reported with that root."""
    with watched_root(
        sensor, "/bin/echo one >/dev/null; bash -c 'bash -c \"/bin/true deep; :\"; :'; :"
    ) as root:
        pass
    collector.settle()
    argvs = [e.argv for e in collector.execs(root)]
    assert [b"/bin/echo", b"one"] in argvs
    assert [b"/bin/true", b"deep"] in argvs
    deep = next(e for e in collector.execs(root) if e.argv == [b"/bin/true", b"deep"])
    assert deep.session_root == root and deep.invocation != 0
    assert any(isinstance(e, ExitEvent) and e.pid == root for e in collector.events)


def test_reparented_descendants_stay_tracked(sensor: Sensor, collector: Collector, tmp_path: Path) -> None:
    """Double fork, setsid, nohup and disown: the kernel keeps tracking them after re-parenting."""
    done = tmp_path / "done"
    script = (
        "( ( sleep 0.3; /bin/echo double-fork ) & ); "
        "setsid /bin/echo setsid-child; "
        "nohup /bin/echo nohup-child >/dev/null 2>&1 & "
        "( sleep 0.2; /bin/echo disowned ) & disown; "
        f"( ( sleep 0.6; touch {done} ) & )"
    )
    with watched_root(sensor, script) as root:
        pass
    collector.wait_for(done.exists)
    collector.settle()
    by_arg = {e.argv[-1]: e for e in collector.execs(root) if e.argv}
    for tag in (b"double-fork", b"setsid-child", b"nohup-child", b"disowned"):
        assert tag in by_arg, tag
    assert by_arg[b"double-fork"].ppid != root  # re-parented, still attributed
    assert by_arg[b"double-fork"].session_root == root


def test_argv_bytes_preserved_exactly(sensor: Sensor, collector: Collector) -> None:
    """Spaces, newlines, quotes, escapes, empty args and invalid UTF-8 come through byte for byte."""
    weird = [b"/bin/true", b"a b", b"line1\nline2", b"", b"\xff\xfe\x80bad", b"\x1b[31mred", b"q\"'\\"]
    with watched_root(
        sensor, ["/bin/bash", "-c", 'read -r _; exec "$@"', "bash", *[os.fsdecode(a) for a in weird]]
    ):
        pass
    collector.settle()
    assert weird in [e.argv for e in collector.execs()]


def test_32k_argument_is_captured_whole(sensor: Sensor, collector: Collector) -> None:
    """With a 32 KiB cap, a 32 000-byte argument arrives complete and unflagged."""
    big = b"x" * 31_000 + b"\xc3\xa9" * 500
    with watched_root(
        sensor, ["/bin/bash", "-c", 'read -r _; exec "$@"', "bash", "/bin/true", os.fsdecode(big)]
    ):
        pass
    collector.settle()
    ev = next(e for e in collector.execs() if e.filename == b"/bin/true")
    assert ev.argv == [b"/bin/true", big]
    assert not ev.args_truncated
    assert ev.args_original_len == len(b"/bin/true\0") + len(big) + 1


def test_oversized_argv_is_truncated_and_flagged(sensor: Sensor, collector: Collector) -> None:
    """Beyond the cap the argv is cut at the cap, flagged, and its original length reported."""
    big = "y" * 40_000
    with watched_root(sensor, ["/bin/bash", "-c", 'read -r _; exec "$@"', "bash", "/bin/true", big]):
        pass
    collector.settle()
    ev = next(e for e in collector.execs() if e.filename == b"/bin/true")
    assert ev.args_truncated
    assert ev.args_original_len == len(b"/bin/true\0") + 40_001
    assert sum(len(a) + 1 for a in ev.argv) - 1 == 32768
    assert ev.argv[1] == b"y" * (32768 - len(b"/bin/true\0"))


def test_unrelated_processes_are_never_recorded(sensor: Sensor, collector: Collector, tmp_path: Path) -> None:
    """An exec storm outside any session, at the same time as a session, leaves no record."""
    marker = "unrelated-marker-7f3a"
    with (
        exec_storm("/bin/true", marker),
        watched_root(sensor, "for i in $(seq 20); do /bin/true inside; done") as root,
    ):
        pass
    collector.settle()
    assert not [e for e in collector.execs() if marker.encode() in e.argv]
    assert sum(1 for e in collector.execs(root) if e.argv == [b"/bin/true", b"inside"]) == 20


def test_moderate_storm_loses_nothing(sensor: Sensor, collector: Collector) -> None:
    """5 000 execs in a session as fast as bash can: every one reported, kernel lost counter unchanged."""
    before = sensor.counter_totals()
    n = 5000
    with watched_root(sensor, f"for i in $(seq {n}); do /bin/true storm $i; done") as root:
        collector.wait_for(
            lambda: sum(1 for e in collector.execs(root) if e.argv[:2] == [b"/bin/true", b"storm"]) >= n,
            timeout=120,
        )
    collector.settle()
    after = sensor.counter_totals()
    got = {e.argv[2] for e in collector.execs(root) if e.argv[:2] == [b"/bin/true", b"storm"]}
    assert len(got) == n
    assert after[bpf_layout.COUNTER_RING_LOST] == before[bpf_layout.COUNTER_RING_LOST]
    assert collector.queue.dropped == 0


def test_exec_named_claude_adopts_pending_root(sensor: Sensor, collector: Collector, tmp_path: Path) -> None:
    """An untracked exec named "claude" is adopted by the kernel at once, so its first child is caught."""
    fake = tmp_path / "claude"
    fake.write_text("#!/bin/bash\n/bin/echo first-child\n")
    fake.chmod(0o755)
    subprocess.run([str(fake)], check=True, stdout=subprocess.DEVNULL)
    collector.settle()
    cands = [e for e in collector.events if type(e).__name__ == "CandidateEvent"]
    assert cands and cands[0].comm == b"claude"
    child = next(e for e in collector.execs() if e.argv == [b"/bin/echo", b"first-child"])
    assert child.session_root == cands[0].pid
    assert child.track_flags  # pending until the daemon confirms


def test_pid_reuse_is_not_attributed(sensor: Sensor, collector: Collector) -> None:
    """A root pid reused by an unrelated process (forced via ns_last_pid) is not taken for the session."""
    with watched_root(sensor, "exit 0") as root:
        pass
    time.sleep(0.1)
    # The kernel removed the root at exit; put a stale entry back as if the daemon raced with the exit.
    sensor.add_root(root, 1)
    last = Path("/proc/sys/kernel/ns_last_pid")
    for _ in range(50):
        last.write_text(str(root - 1))
        p = subprocess.Popen(["/bin/bash", "-c", "/bin/true reused"])
        p.wait()
        if p.pid == root:
            break
    collector.settle()
    assert not [e for e in collector.execs() if e.argv == [b"/bin/true", b"reused"]]
    sensor.remove_root(root)


def test_fork_from_a_worker_thread_is_tracked(sensor: Sensor, collector: Collector) -> None:
    """A child spawned by a non-leader thread (as runtimes with worker pools do) is still tracked."""
    code = (
        "import subprocess, sys, threading\n"
        "sys.stdin.readline()\n"
        "t = threading.Thread(target=lambda: subprocess.run(['/bin/echo', 'from-thread'], check=True))\n"
        "t.start(); t.join()\n"
    )
    with watched_root(sensor, ["/usr/bin/python3", "-c", code]) as root:
        pass
    collector.settle()
    assert [b"/bin/echo", b"from-thread"] in [e.argv for e in collector.execs(root)]
    assert any(isinstance(e, ExitEvent) and e.pid == root for e in collector.events)


def test_session_exit_reported_when_a_worker_thread_exits_last(sensor: Sensor, collector: Collector) -> None:
    """The session-ended event comes even when the leader thread is not the last thread to exit."""
    code = (
        "import os, sys, threading, time\n"
        "sys.stdin.readline()\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), os._exit(0))).start()\n"
        "import ctypes; ctypes.CDLL(None).pthread_exit(None)\n"
    )
    with watched_root(sensor, ["/usr/bin/python3", "-c", code]) as root:
        pass
    collector.settle()
    assert any(isinstance(e, ExitEvent) and e.pid == root for e in collector.events)


def test_session_exit_reported_once_when_many_threads_exit_together(
    sensor: Sensor, collector: Collector
) -> None:
    """exit_group with many threads ends the session once, with its code, whichever thread is last.

    On kernels without the tracepoint's group_dead argument two threads can both see the process's
    live-thread count at 0; the kernel side must still report the root's exit exactly once.
    """
    code = (
        "import os, sys, threading\n"
        "sys.stdin.readline()\n"
        "go = threading.Barrier(17)\n"
        "for _ in range(16): threading.Thread(target=lambda: (go.wait(), os._exit(7))).start()\n"
        "go.wait(); os._exit(7)\n"
    )
    roots = []
    for _ in range(10):
        with watched_root(sensor, ["/usr/bin/python3", "-c", code]) as root:
            roots.append(root)
    collector.settle()
    for root in roots:
        exits = [e for e in collector.events if isinstance(e, ExitEvent) and e.pid == root]
        assert len(exits) == 1, f"root {root}: {len(exits)} exit events"
        assert os.waitstatus_to_exitcode(exits[0].exit_code) == 7


def _rename_leader_from(code: str, collector: Collector, sensor: Sensor) -> list[CandidateEvent]:
    """Run python `code` (which renames something to "claude"), return the candidates naming its pid."""
    p = subprocess.Popen(["/usr/bin/python3", "-c", code])
    try:
        p.wait(timeout=60)
        collector.settle()
        return [e for e in collector.events if isinstance(e, CandidateEvent) and e.pid == p.pid]
    finally:
        sensor.remove_root(p.pid)  # a candidate is adopted as a pending root; no daemon here to reject it


def test_leader_renamed_by_another_thread_is_a_candidate(sensor: Sensor, collector: Collector) -> None:
    """Writing the leader's /proc comm from a worker thread (the renamed task is not current) is seen."""
    code = (
        "import os, threading\n"
        "def rename():\n"
        "    with open(f'/proc/self/task/{os.getpid()}/comm', 'w') as f: f.write('claude')\n"
        "t = threading.Thread(target=rename); t.start(); t.join()\n"
    )
    cands = _rename_leader_from(code, collector, sensor)
    assert [(c.reason, c.comm) for c in cands] == [("rename", b"claude")]


def test_worker_thread_renamed_is_not_a_candidate(sensor: Sensor, collector: Collector) -> None:
    """A worker thread naming itself "claude" does not make its process a session candidate."""
    code = (
        "import ctypes, threading\n"
        "libc = ctypes.CDLL(None)\n"
        "t = threading.Thread(target=lambda: libc.prctl(15, b'claude', 0, 0, 0)); t.start(); t.join()\n"
    )
    assert _rename_leader_from(code, collector, sensor) == []
