"""sessions: the session table (attribution, origins, pid reuse, eviction) and seeding from /proc.

Driven by `FakeMaps` (the kernel maps as dicts) and the real Claude Code 2.1.331 capture under
tests/unit/data/claude_captures (see its README): the root 16739, its shell-snapshot login shell 16749,
and three Bash tool wrappers 16752, 16822, 16891 with their commands below them.
"""

from __future__ import annotations

from pathlib import Path

from kernel_fakes import Clock, FakeMaps, captured_proc, exec_event

from claude_audit import bpf_layout as L
from claude_audit.events import entity_id
from claude_audit.procfs import ProcInfo
from claude_audit.sessions import (
    EVICT_AFTER_SECONDS,
    SessionTable,
    add_root,
    exit_status,
    seed_descendants,
)

BOOT = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
ROOT = 16739
WRAPPERS = (16752, 16822, 16891)
WRAPPER_ARGV = [
    b"/bin/bash",
    b"-c",
    b"source /h/.claude/shell-snapshots/snapshot-bash-1-a.sh 2>/dev/null || true && eval 'sleep 2' "
    b"< /dev/null && pwd -P >| /tmp/claude-ab12-cwd",
]


def _root(cap_proc: object, pid: int = ROOT) -> ProcInfo:
    info = cap_proc.read(pid)  # type: ignore[attr-defined]
    assert info is not None
    return info


# -- seeding -----------------------------------------------------------------------------------------


def test_seeding_tracks_the_captured_tree_with_each_wrapper_as_invocation(tmp_path: Path) -> None:
    """Every process of the real session is tracked; each wrapper heads its own invocation and its
    commands carry it, while the root itself is not a tracked descendant."""
    cap = captured_proc(tmp_path)
    maps = FakeMaps()
    root = _root(cap.proc)
    assert add_root(maps, root.pid, root.start_ticks) is None
    seeded = seed_descendants(maps, cap.proc, root)
    expected = {int(p) for p in cap.tree["processes"]} - {ROOT}
    assert {i.pid for i in seeded.processes} == expected
    assert seeded.track_failures == 0
    assert set(maps.tracked) == expected
    for w in WRAPPERS:
        assert maps.tracked[w].invocation == w
        assert maps.tracked[w].invocation_start_ticks == cap.start_ticks(w)
    # 16894 is `sleep` below `bash -c` below the third wrapper
    assert maps.tracked[16894].invocation == 16891
    assert all(e.root == ROOT and e.root_start_ticks == root.start_ticks for e in maps.tracked.values())
    assert all(e.flags == L.TRACK_SEEDED for e in maps.tracked.values())


def test_reparented_process_is_seeded_by_its_claude_pid(tmp_path: Path) -> None:
    """A process double-forked away (parent pid 1) whose environment names the root in CLAUDE_PID, of
    the root's own user and started after it, is seeded with an unknown invocation (0)."""
    cap = captured_proc(tmp_path)
    root = _root(cap.proc)
    cap.add_process(30000, 1, like=16753, start_ticks=root.start_ticks + 50)
    maps = FakeMaps()
    add_root(maps, root.pid, root.start_ticks)
    seeded = seed_descendants(maps, cap.proc, root)
    assert 30000 in {i.pid for i in seeded.processes}
    assert (maps.tracked[30000].invocation, maps.tracked[30000].invocation_start_ticks) == (0, 0)


def test_reparented_process_of_another_user_or_older_is_not_seeded(tmp_path: Path) -> None:
    """CLAUDE_PID cannot be borrowed: another user's process naming the root, and a process that started
    before the root, stay out of the session."""
    cap = captured_proc(tmp_path)
    root = _root(cap.proc)
    cap.add_process(30001, 1, like=16753, start_ticks=root.start_ticks + 50)
    cap.set_uid(30001, root.uid + 1)
    cap.add_process(30002, 1, like=16753, start_ticks=root.start_ticks - 1)
    maps = FakeMaps()
    add_root(maps, root.pid, root.start_ticks)
    seeded = {i.pid for i in seed_descendants(maps, cap.proc, root).processes}
    assert 30001 not in seeded and 30001 not in maps.tracked
    assert 30002 not in seeded and 30002 not in maps.tracked


def test_huge_claude_pid_in_an_environment_is_ignored(tmp_path: Path) -> None:
    """A 5 000-digit CLAUDE_PID (int() would raise past 4 300 digits) is not a pid: seeding goes on."""
    cap = captured_proc(tmp_path)
    root = _root(cap.proc)
    cap.add_process(30003, 1, like=16753, start_ticks=root.start_ticks + 50)
    cap.set_environ(30003, {b"CLAUDECODE": b"1", b"CLAUDE_PID": b"7" * 5000})
    maps = FakeMaps()
    add_root(maps, root.pid, root.start_ticks)
    seeded = {i.pid for i in seed_descendants(maps, cap.proc, root).processes}
    assert 30003 not in seeded
    assert 16753 in seeded


def test_full_tracking_map_is_counted_not_raised(tmp_path: Path) -> None:
    """Descendants that do not fit in the tracking map are counted as failures; seeding finishes."""
    cap = captured_proc(tmp_path)
    root = _root(cap.proc)
    maps = FakeMaps(tracked_max=3)
    add_root(maps, root.pid, root.start_ticks)
    seeded = seed_descendants(maps, cap.proc, root)
    assert len(maps.tracked) == 3
    assert seeded.track_failures == len(seeded.processes) - 3 > 0


def test_add_root_reports_a_full_map_either_way() -> None:
    """A full root map is an answer, not an exception: bcc's raise and a sensor's False both say why."""
    for raising in (True, False):
        maps = FakeMaps(roots_max=1, refuse_by_raising=raising)
        assert add_root(maps, 10, 100) is None
        err = add_root(maps, 11, 110)
        assert err is not None and err != ""
        assert 11 not in maps.roots
        assert add_root(maps, 10, 100, pending=False) is None  # rewriting a key needs no room


# -- attribution --------------------------------------------------------------------------------------


def test_wrapper_exec_starts_a_tool_invocation_that_descendants_inherit() -> None:
    """The first exec of a wrapper decides origin "tool" and the command; a grandchild carries both."""
    t = SessionTable(BOOT, Clock())
    s = t.add(ROOT, 500, "startup", "executable", executable="/x/claude.exe")
    head = exec_event(
        600, root=ROOT, root_start=500, invocation=600, invocation_start=510, ppid=ROOT, argv=WRAPPER_ARGV
    )
    assert t.is_new_invocation(s, head)
    f = t.claude_fields(s, head)
    assert (f["origin"], f["command"], f["invocation_pid"]) == ("tool", "sleep 2", 600)
    assert f["invocation"] == entity_id(BOOT, 600, 510)
    assert not t.is_new_invocation(s, head)
    child = exec_event(
        601, root=ROOT, root_start=500, invocation=600, invocation_start=510, ppid=600, argv=[b"sleep", b"2"]
    )
    g = t.claude_fields(s, child)
    assert (g["origin"], g["command"], g["invocation"]) == ("tool", "sleep 2", f["invocation"])


def test_only_the_first_record_of_a_tool_call_shows_its_command_in_full() -> None:
    """command_first_shown is true once per invocation (its first record), then false; without a command
    (or an invocation) there is nothing to excerpt, so it stays true."""
    t = SessionTable(BOOT, Clock())
    s = t.add(ROOT, 500, "startup", "executable", executable="/x/claude.exe")
    head = exec_event(
        600, root=ROOT, root_start=500, invocation=600, invocation_start=510, ppid=ROOT, argv=WRAPPER_ARGV
    )
    child = exec_event(
        601, root=ROOT, root_start=500, invocation=600, invocation_start=510, ppid=600, argv=[b"sleep", b"2"]
    )
    t.claude_fields(s, head)
    assert t.command_first_shown(s, head)
    t.claude_fields(s, child)
    assert not t.command_first_shown(s, child)
    assert not t.command_first_shown(s, head)
    reparented = exec_event(700, root=ROOT, root_start=500)
    t.claude_fields(s, reparented)
    assert t.command_first_shown(s, reparented)


def test_root_reexec_is_session_and_reparented_is_unknown() -> None:
    """The Claude process itself execing is origin "session"; a process seeded with invocation 0 is
    "unknown" with no invocation fields."""
    t = SessionTable(BOOT, Clock())
    s = t.add(ROOT, 500, "startup", "executable")
    assert t.claude_fields(s, exec_event(ROOT, root=ROOT, root_start=500))["origin"] == "session"
    f = t.claude_fields(s, exec_event(700, root=ROOT, root_start=500))
    assert f["origin"] == "unknown" and "invocation" not in f


def test_pid_reuse_makes_a_different_session() -> None:
    """The same root pid with another start time is another session with another entity id."""
    t = SessionTable(BOOT, Clock())
    a = t.add(ROOT, 500, "startup", "executable")
    b = t.add(ROOT, 900, "scan", "executable")
    assert a is not b and a.entity_id != b.entity_id
    assert t.get((ROOT, 500)) is a and t.get((ROOT, 900)) is b
    assert t.add(ROOT, 500, "scan", "script") is a  # idempotent per key


def test_end_records_exit_status_once() -> None:
    """A root's exit marks its session ended with a shell-style status; a second exit is ignored."""
    t = SessionTable(BOOT, Clock())
    t.add(ROOT, 500, "startup", "executable")
    s = t.end((ROOT, 500), 9)  # killed by SIGKILL
    assert s is not None and s.ended and s.exit_code == 137
    assert t.end((ROOT, 500), 0) is None
    assert t.live() == []
    assert exit_status(3 << 8) == 3


# -- eviction -------------------------------------------------------------------------------------------


def _tracked(root: int, root_start: int, inv: int = 0, inv_start: int = 0) -> L.TrackedProc:
    return L.TrackedProc(
        start_ticks=1,
        root_start_ticks=root_start,
        invocation_start_ticks=inv_start,
        root=root,
        invocation=inv,
    )


def test_ended_session_is_evicted_after_grace_once_nothing_of_it_is_tracked() -> None:
    """An ended session stays through the grace period and while the kernel still tracks one of its
    processes (an orphan may still exec); then it and its invocations go."""
    clock = Clock()
    t = SessionTable(BOOT, clock)
    s = t.add(ROOT, 500, "startup", "executable")
    t.claude_fields(
        s,
        exec_event(
            600, root=ROOT, root_start=500, invocation=600, invocation_start=510, ppid=ROOT, argv=WRAPPER_ARGV
        ),
    )
    t.end((ROOT, 500), 0)
    orphan = [(601, _tracked(ROOT, 500, 600, 510))]
    assert not t.sweep_due()
    clock.advance(EVICT_AFTER_SECONDS + 1)
    assert t.sweep_due()
    assert t.sweep(orphan).sessions == 0
    assert t.get((ROOT, 500)) is s and len(s.invocations) == 1
    swept = t.sweep([])
    assert (swept.sessions, swept.invocations) == (1, 1)
    assert t.get((ROOT, 500)) is None
    assert t.evicted.sessions == 1


def test_idle_invocation_of_a_live_session_is_evicted() -> None:
    """In a session that goes on, an invocation whose processes are all gone is dropped after the grace
    period; one with a tracked process stays."""
    clock = Clock()
    t = SessionTable(BOOT, clock)
    s = t.add(ROOT, 500, "startup", "executable")
    for inv in (600, 700):
        t.claude_fields(
            s,
            exec_event(
                inv,
                root=ROOT,
                root_start=500,
                invocation=inv,
                invocation_start=inv + 1,
                ppid=ROOT,
                argv=WRAPPER_ARGV,
            ),
        )
    clock.advance(EVICT_AFTER_SECONDS + 1)
    swept = t.sweep([(701, _tracked(ROOT, 500, 700, 701))])
    assert swept.invocations == 1 and swept.sessions == 0
    assert list(s.invocations) == [(700, 701)]
    assert t.get((ROOT, 500)) is s


def test_rejected_root_is_forgotten_after_grace() -> None:
    """A rejected candidate is remembered (its records are filtered) for the grace period only."""
    clock = Clock()
    t = SessionTable(BOOT, clock)
    t.reject((42, 7))
    assert t.is_rejected((42, 7))
    clock.advance(EVICT_AFTER_SECONDS / 2)
    assert t.sweep([]).rejected == 0
    clock.advance(EVICT_AFTER_SECONDS)
    assert t.sweep([]).rejected == 1
    assert not t.is_rejected((42, 7))


def test_many_short_sessions_leave_nothing_behind() -> None:
    """Memory is bounded: ten thousand sessions that start, exec and end leave an empty table."""
    clock = Clock()
    t = SessionTable(BOOT, clock)
    for i in range(10_000):
        s = t.add(1000 + i, i, "scan", "executable")
        t.claude_fields(
            s,
            exec_event(
                50_000 + i,
                root=1000 + i,
                root_start=i,
                invocation=50_000 + i,
                invocation_start=i,
                ppid=1000 + i,
                argv=[b"/bin/true"],
            ),
        )
        t.end((1000 + i, i), 0)
    clock.advance(EVICT_AFTER_SECONDS + 1)
    t.sweep([])
    assert t.sessions == {} and t.rejected == {}


def test_seeding_reads_proc_once_per_level(tmp_path: Path) -> None:
    """The deepest branch of the capture is three levels below the root: seeding reads /proc four times
    (one per level and the empty one, whose snapshot also serves the re-parented pass), not once more."""
    cap = captured_proc(tmp_path)
    reads = 0
    real = cap.proc.read_all

    def counting_read_all() -> dict[int, ProcInfo]:
        nonlocal reads
        reads += 1
        return real()

    cap.proc.read_all = counting_read_all  # type: ignore[method-assign]
    root = _root(cap.proc)
    maps = FakeMaps()
    add_root(maps, root.pid, root.start_ticks)
    seed_descendants(maps, cap.proc, root)
    assert reads == 4
