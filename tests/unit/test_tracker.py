"""tracker: the state stage end to end, from /proc scans and kernel events to outcomes, without root.

The host is a fake /proc built from the real 2.1.331 capture (uids rewritten to the test's own so session
file ownership can be checked), its session file placed where the captured HOME says, and `FakeMaps`
for the kernel.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from kernel_fakes import CAPTURES, Capture, Clock, FakeMaps, candidate_event, captured_proc, exec_event

from claude_audit.config import DiscoveryConfig
from claude_audit.discovery import Matchers
from claude_audit.events import ExecEvent
from claude_audit.identity import IdentityReader
from claude_audit.tracker import ExecSeen, Lost, NotWatched, SessionEnded, SessionFound, Tracker

M = Matchers.from_config(DiscoveryConfig())
BOOT = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
ROOT = 16739
SESSION_ID = "9b955343-e5fa-4ab6-a160-a8cacdb4f031"


def _home(cap: Capture) -> Path:
    return Path(cap.tree["temp_base"]) / "home"


def _place_session_file(cap: Capture) -> Path:
    """Put the captured ~/.claude/sessions/<pid>.json where the fake host's HOME is."""
    dest = cap.proc.host_path(_home(cap) / ".claude" / "sessions" / f"{ROOT}.json")
    dest.parent.mkdir(parents=True)
    shutil.copyfile(CAPTURES / "2.1.331" / "sessions" / f"{ROOT}.json", dest)
    return dest


def _tracker(cap: Capture, maps: FakeMaps | None = None, clock: Clock | None = None) -> Tracker:
    home = _home(cap)
    identity = IdentityReader(cap.proc, home_of=lambda _uid: home)
    return Tracker(BOOT, maps or FakeMaps(), cap.proc, M, clock=clock or Clock(), identity=identity)


def test_startup_scan_adopts_the_session_with_its_file_identity(tmp_path: Path) -> None:
    """The scan finds the one root, seeds its tree and reads the session file (owner and procStart match)."""
    cap = captured_proc(tmp_path)
    _place_session_file(cap)
    t = _tracker(cap)
    found, out = t.scan("startup")
    assert found == 1
    [sf] = out
    assert isinstance(sf, SessionFound)
    assert sf.session.pid == ROOT and sf.seeded == len(cap.tree["processes"]) - 1
    ident = sf.session.identity
    assert ident["session_id"] == SESSION_ID and ident["identity_source"] == "session_file"
    # the running wrappers were seeded as tool invocations with their commands
    commands = {inv.command for inv in sf.session.invocations.values() if inv.origin == "tool"}
    assert b"sleep 2" in commands
    assert t.scan("scan") == (0, [])  # already watched


def test_session_file_of_another_owner_is_ignored(tmp_path: Path) -> None:
    """A session file owned by a uid other than the session's gives no identity."""
    cap = captured_proc(tmp_path, uid=os.getuid() + 1)
    _place_session_file(cap)
    t = _tracker(cap)
    _, [sf] = t.scan("startup")
    assert isinstance(sf, SessionFound)
    assert "session_id" not in sf.session.identity


def test_session_file_that_is_a_fifo_does_not_block(tmp_path: Path) -> None:
    """The agent replacing its session file with a FIFO cannot wedge the scan."""
    cap = captured_proc(tmp_path)
    dest = _place_session_file(cap)
    dest.unlink()
    os.mkfifo(dest)
    _, [sf] = _tracker(cap).scan("startup")
    assert isinstance(sf, SessionFound) and "session_id" not in sf.session.identity


def _wrapper_exec(cap: Capture, pid: int = 16752) -> ExecEvent:
    root_start = cap.start_ticks(ROOT)
    start = cap.start_ticks(pid)
    argv = (cap.root / str(pid) / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    return exec_event(
        pid,
        root=ROOT,
        root_start=root_start,
        invocation=pid,
        invocation_start=start,
        ppid=ROOT,
        argv=argv,
        filename=b"/bin/bash",
        start_ticks=start,
        uid=os.getuid(),
    )


def test_identity_from_a_new_invocations_environment(tmp_path: Path) -> None:
    """Without a session file, the first exec of a new invocation reads that process's environment once
    (same uid, started after the root, CLAUDE_PID naming it) and the record already carries it."""
    cap = captured_proc(tmp_path)
    t = _tracker(cap)
    root_start = cap.start_ticks(ROOT)
    t.sessions.add(ROOT, root_start, "startup", "executable", uid=os.getuid())
    [seen] = t.on_exec(_wrapper_exec(cap))
    assert isinstance(seen, ExecSeen)
    assert seen.claude["session_id"] == SESSION_ID
    assert seen.claude["identity_source"] == "environment"
    assert seen.claude["origin"] == "tool" and seen.claude["command"] == "sleep 2"


def test_environment_of_another_user_is_not_trusted(tmp_path: Path) -> None:
    """A process of another uid whose environment claims the session gives no identity."""
    cap = captured_proc(tmp_path)
    cap.set_uid(16752, os.getuid() + 1)
    t = _tracker(cap)
    t.sessions.add(ROOT, cap.start_ticks(ROOT), "startup", "executable", uid=os.getuid())
    [seen] = t.on_exec(_wrapper_exec(cap))
    assert isinstance(seen, ExecSeen) and "session_id" not in seen.claude
    assert t.identity.untrusted == 1


def test_environment_is_read_once_per_invocation(tmp_path: Path) -> None:
    """Slow reads happen at first sight: later execs of the same invocation do not read /proc again."""
    cap = captured_proc(tmp_path)
    t = _tracker(cap)
    t.sessions.add(ROOT, cap.start_ticks(ROOT), "startup", "executable", uid=os.getuid())
    ev = _wrapper_exec(cap)
    t.on_exec(ev)
    # Were the environment read again, the cleared identity would come back from it.
    t.sessions.get((ROOT, cap.start_ticks(ROOT))).identity.clear()  # type: ignore[union-attr]
    [seen] = t.on_exec(ev)
    assert "session_id" not in seen.claude  # type: ignore[union-attr]


def test_traceparent_of_an_invocation_is_on_its_records(tmp_path: Path) -> None:
    """With a session file in place (no identity needed from the environment), the invocation head's
    environment is still read once, for TRACEPARENT; later execs of the invocation carry the same trace
    context without another read; an invalid TRACEPARENT gives none."""
    cap = captured_proc(tmp_path)
    _place_session_file(cap)
    env = cap.proc.environ(16752)
    assert env is not None
    trace = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    cap.set_environ(16752, {**env, b"TRACEPARENT": trace})
    t = _tracker(cap)
    t.scan("startup")
    t.sessions.get((ROOT, cap.start_ticks(ROOT))).invocations.clear()  # type: ignore[union-attr]
    ev = _wrapper_exec(cap)
    [seen] = t.on_exec(ev)
    assert isinstance(seen, ExecSeen) and seen.trace is not None
    assert (seen.trace.trace_id, seen.trace.span_id) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
    )
    cap.set_environ(16752, env)  # were it read again, the trace would be gone
    [again] = t.on_exec(ev)
    assert again.trace == seen.trace  # type: ignore[union-attr]
    cap.set_environ(16753, {**env, b"TRACEPARENT": trace.upper()})
    [other] = t.on_exec(_wrapper_exec(cap, 16753))
    assert other.trace is None  # type: ignore[union-attr]


def test_nested_claude_stays_in_the_outer_session(tmp_path: Path) -> None:
    """A second Claude process started by a tool call is seeded into the outer session and not adopted
    as a session of its own by later scans."""
    cap = captured_proc(tmp_path)
    cap.add_process(16760, 16753, like=ROOT, start_ticks=cap.start_ticks(16753) + 1)
    t = _tracker(cap)
    found, _ = t.scan("startup")
    assert found == 1
    assert t.maps.tracked_entry(16760).root == ROOT  # type: ignore[union-attr]
    assert t.scan("scan")[0] == 0
    assert [s.pid for s in t.sessions.live()] == [ROOT]


@pytest.mark.parametrize("raising", [True, False])
def test_full_root_map_is_reported_once_and_retried(tmp_path: Path, raising: bool) -> None:
    """The kernel refusing a root (bcc raising, or add_root returning False) is a NotWatched outcome,
    stated once, counted at each try, and the session is adopted by the first scan after room frees."""
    cap = captured_proc(tmp_path)
    maps = FakeMaps(roots_max=1, refuse_by_raising=raising)
    maps.add_root(1, 1)
    t = _tracker(cap, maps)
    found, [nw] = t.scan("startup")
    assert found == 0 and isinstance(nw, NotWatched)
    assert nw.info.pid == ROOT and nw.error
    assert t.scan("scan") == (0, [])
    assert t.counts.not_watched == 2
    maps.remove_root(1)
    found, [sf] = t.scan("scan")
    assert found == 1 and isinstance(sf, SessionFound)


def test_candidate_confirmed_then_its_held_execs_follow(tmp_path: Path) -> None:
    """A kernel candidate for the native root is adopted and its records, held, come out after it."""
    cap = captured_proc(tmp_path)
    t = _tracker(cap)
    start = cap.start_ticks(ROOT)
    out = t.on_candidate(candidate_event(ROOT, start, reason="rename"))
    assert [type(o) for o in out] == [SessionFound]
    assert out[0].session.how == "kernel-trigger"  # type: ignore[union-attr]


def test_rejected_candidate_records_are_filtered_and_stop_losses_stated(tmp_path: Path) -> None:
    """Records of a rejected root are counted as filtered (not lost); a candidate still undecided at stop
    turns into a Lost("held-at-stop") outcome with its held count."""
    cap = captured_proc(tmp_path)
    # a python-like process that is not Claude: the 2.1.331 snapshot shell
    clock = Clock()
    t = _tracker(cap, clock=clock)
    shell = 16749
    start = cap.start_ticks(shell)
    assert t.on_candidate(candidate_event(shell, start, reason="rename")) == []
    assert t.on_exec(exec_event(40000, root=shell, root_start=start, pending=True)) == []
    [lost] = t.settle()
    assert lost == Lost("held-at-stop", 1)
    assert t.on_candidate(candidate_event(shell, start, reason="rename")) == []
    clock.advance(10)
    assert t.recheck() == []
    assert t.sessions.is_rejected((shell, start))
    assert t.on_exec(exec_event(40001, root=shell, root_start=start)) == []
    assert t.counts.not_session == 1


def test_exit_of_the_root_ends_the_session(tmp_path: Path) -> None:
    """The kernel's exit event for the root gives SessionEnded with the shell-style status."""
    from claude_audit.events import ExitEvent

    cap = captured_proc(tmp_path)
    t = _tracker(cap)
    t.scan("startup")
    start = cap.start_ticks(ROOT)
    [ended] = t.on_event(ExitEvent(1, ROOT, ROOT, start, 2 << 8))
    assert isinstance(ended, SessionEnded) and ended.session.exit_code == 2
    assert t.on_event(ExitEvent(1, ROOT, ROOT, start, 0)) == []


def test_exec_of_a_root_the_map_refuses_is_still_recorded_and_rooted_later(tmp_path: Path) -> None:
    """An exec arriving for a root the daemon did not know, while the root map is full: the exec is
    recorded (the kernel reported it), the refusal is a NotWatched outcome, and the next scan with room
    puts the root in the map and announces the session (it never was)."""
    cap = captured_proc(tmp_path)
    maps = FakeMaps(roots_max=1, refuse_by_raising=False)
    maps.add_root(1, 1)
    t = _tracker(cap, maps)
    out = t.on_exec(_wrapper_exec(cap))
    assert [type(o) for o in out] == [NotWatched, ExecSeen]
    s = t.sessions.get((ROOT, cap.start_ticks(ROOT)))
    assert s is not None and not s.rooted
    maps.remove_root(1)
    found, [sf] = t.scan("scan")
    assert found == 1 and isinstance(sf, SessionFound) and sf.session is s
    assert s.rooted and ROOT in maps.roots
    assert t.scan("scan") == (0, [])


def test_exec_under_a_root_whose_candidate_record_was_lost(tmp_path: Path) -> None:
    """An exec flagged pending_root whose candidate record never arrived (ring full) goes through the
    candidate machine: the real Claude root is adopted at once and the exec follows its session-found."""
    cap = captured_proc(tmp_path)
    t = _tracker(cap)
    ev = exec_event(16752, root=ROOT, root_start=cap.start_ticks(ROOT), ppid=ROOT, pending=True)
    assert [type(o) for o in t.on_exec(ev)] == [SessionFound, ExecSeen]


def test_lost_candidate_of_a_non_claude_root_is_held_then_filtered(tmp_path: Path) -> None:
    """For a pending root that is not Claude Code and whose candidate record was lost, execs are held
    during the grace period, then filtered out when it is rejected."""
    cap = captured_proc(tmp_path)
    clock = Clock()
    t = _tracker(cap, clock=clock)
    shell = 16749
    start = cap.start_ticks(shell)
    for i in range(3):
        assert t.on_exec(exec_event(40000 + i, root=shell, root_start=start, pending=True)) == []
    assert len(t.candidates) == 1
    clock.advance(10)
    assert t.recheck() == []
    assert t.sessions.is_rejected((shell, start)) and t.counts.not_session == 3


def test_confirmed_candidate_refused_by_a_full_map_is_still_recorded(tmp_path: Path) -> None:
    """A confirmed candidate whose root the map refuses: a NotWatched alert, yet its held records are
    written (the kernel reports them as a pending root) and the session is retried by scans."""
    cap = captured_proc(tmp_path)
    maps = FakeMaps(roots_max=1)
    maps.add_root(1, 1)
    t = _tracker(cap, maps)
    start = cap.start_ticks(ROOT)
    out = t.on_candidate(candidate_event(ROOT, start, reason="rename"))
    assert [type(o) for o in out] == [NotWatched]
    s = t.sessions.get((ROOT, start))
    assert s is not None and not s.rooted
    seen = t.on_exec(exec_event(16752, root=ROOT, root_start=start, ppid=ROOT, pending=True))
    assert [type(o) for o in seen] == [ExecSeen]
