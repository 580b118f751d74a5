"""candidates: the pending-candidate state machine (confirm, reject, grace expiry, held records, stop).

Processes come from captured /proc trees: the real 2.1.331 root (native binary, confirmed from its
executable), the real 2.0.77 root (node renamed to "claude", confirmed from /proc), and from
tests/unit/data/proc_host a python that named itself "claude" (never Claude Code). The kernel maps are
`FakeMaps`; time is a hand-moved clock.
"""

from __future__ import annotations

from pathlib import Path

from kernel_fakes import Clock, FakeMaps, candidate_event, captured_proc, exec_event
from test_procfs import PY_CLAUDE, host_root

from claude_audit import bpf_layout as L
from claude_audit.candidates import CANDIDATE_GRACE_SECONDS, Candidates, Confirmed, Rejected, Undecided
from claude_audit.config import DiscoveryConfig
from claude_audit.discovery import Matchers
from claude_audit.procfs import ProcFS

M = Matchers.from_config(DiscoveryConfig())
NATIVE_ROOT = 16739
NODE_ROOT = 16943


def _candidates(proc: ProcFS, maps: FakeMaps, clock: Clock, held_max: int = 100) -> Candidates:
    return Candidates(maps, proc, M, clock=clock, resolve=lambda p: p, held_max=held_max)


def _py_claude(tmp_path: Path) -> tuple[ProcFS, int]:
    proc = ProcFS(host_root(tmp_path))
    info = proc.read(PY_CLAUDE)
    assert info is not None
    return proc, info.start_ticks


def test_exec_of_claude_binary_is_confirmed_at_once_with_its_held_records(tmp_path: Path) -> None:
    """A candidate whose /proc shows the native Claude binary is confirmed on first sight."""
    cap = captured_proc(tmp_path)
    start = cap.start_ticks(NATIVE_ROOT)
    c = _candidates(cap.proc, FakeMaps(), Clock())
    [d] = c.offer(candidate_event(NATIVE_ROOT, start, reason="rename"))
    assert isinstance(d, Confirmed)
    assert d.key == (NATIVE_ROOT, start) and d.reason == "executable" and d.held == []
    assert len(c) == 0


def test_gone_process_is_confirmed_from_the_exec_path(tmp_path: Path) -> None:
    """A quick `claude --version` is gone before the verdict: the exec'd path alone confirms it."""
    cap = captured_proc(tmp_path)
    c = _candidates(cap.proc, FakeMaps(), Clock())
    path = b"/usr/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe"
    [d] = c.offer(candidate_event(99999, 5, filename=path))
    assert isinstance(d, Confirmed) and d.info.state == "X" and d.info.exe == path


def test_node_renamed_later_is_confirmed_within_grace(tmp_path: Path) -> None:
    """A node that is not yet Claude-shaped is held; once /proc shows the renamed 2.0.x title it is
    confirmed and the records held meanwhile are released in order."""
    cap = captured_proc(tmp_path, "2.0.77")
    start = cap.start_ticks(NODE_ROOT)
    title = (cap.root / str(NODE_ROOT) / "cmdline").read_bytes()
    (cap.root / str(NODE_ROOT) / "cmdline").write_bytes(b"node\0/srv/app.js\0")
    clock = Clock()
    c = _candidates(cap.proc, FakeMaps(), clock)
    assert c.offer(candidate_event(NODE_ROOT, start, filename=b"/usr/bin/node")) == []
    held = [exec_event(17000 + i, root=NODE_ROOT, root_start=start) for i in range(3)]
    assert all(c.hold(ev) for ev in held)
    clock.advance(CANDIDATE_GRACE_SECONDS / 2)
    assert c.recheck() == []
    (cap.root / str(NODE_ROOT) / "cmdline").write_bytes(title)
    [d] = c.recheck()
    assert isinstance(d, Confirmed) and d.reason == "renamed-interpreter" and d.held == held


def test_process_only_named_claude_is_rejected_after_grace(tmp_path: Path) -> None:
    """A python calling itself "claude" waits out the grace period, then is rejected: its root and its
    tracked subtree leave the kernel maps and its held records are filtered, not lost."""
    proc, start = _py_claude(tmp_path)
    maps = FakeMaps()
    maps.add_root(PY_CLAUDE, start, pending=True)
    maps.track(20000, L.TrackedProc(start_ticks=1, root=PY_CLAUDE, root_start_ticks=start))
    clock = Clock()
    c = _candidates(proc, maps, clock)
    assert c.offer(candidate_event(PY_CLAUDE, start, reason="rename")) == []
    assert c.hold(exec_event(20000, root=PY_CLAUDE, root_start=start))
    clock.advance(CANDIDATE_GRACE_SECONDS + 0.1)
    [d] = c.recheck()
    assert isinstance(d, Rejected) and d.held == 1 and d.comm == b"claude"
    assert PY_CLAUDE not in maps.roots and maps.tracked == {}
    assert c.held_overflow == 0


def test_gone_non_claude_is_rejected_at_once(tmp_path: Path) -> None:
    """A candidate that already exited, whose exec'd path is not Claude Code, needs no grace period."""
    cap = captured_proc(tmp_path)
    c = _candidates(cap.proc, FakeMaps(), Clock())
    [d] = c.offer(candidate_event(99998, 5, filename=b"/usr/bin/python3"))
    assert isinstance(d, Rejected)


def test_reused_pid_is_not_taken_for_the_candidate(tmp_path: Path) -> None:
    """/proc shows the candidate's pid with another start time (reused): that process is not judged."""
    cap = captured_proc(tmp_path)
    start = cap.start_ticks(NATIVE_ROOT)
    c = _candidates(cap.proc, FakeMaps(), Clock())
    [d] = c.offer(candidate_event(NATIVE_ROOT, start + 1, reason="rename"))
    assert isinstance(d, Rejected)


def test_held_overflow_is_its_own_count(tmp_path: Path) -> None:
    """Beyond the hold limit, records are counted in held_overflow (never in the ring queue's drops)."""
    proc, start = _py_claude(tmp_path)
    c = _candidates(proc, FakeMaps(), Clock(), held_max=5)
    c.offer(candidate_event(PY_CLAUDE, start, reason="rename"))
    for i in range(8):
        assert c.hold(exec_event(20000 + i, root=PY_CLAUDE, root_start=start))
    assert c.held_overflow == 3
    assert len(c.pending[(PY_CLAUDE, start)].held) == 5
    assert not c.hold(exec_event(1, root=4242, root_start=1))  # not a pending root


def test_stop_settles_what_is_pending(tmp_path: Path) -> None:
    """At stop a still-undecided candidate is Undecided with its held count (a loss the daemon states)."""
    proc, start = _py_claude(tmp_path)
    c = _candidates(proc, FakeMaps(), Clock())
    c.offer(candidate_event(PY_CLAUDE, start, reason="rename"))
    c.hold(exec_event(20000, root=PY_CLAUDE, root_start=start))
    [d] = c.settle()
    assert isinstance(d, Undecided) and d.held == 1
    assert len(c) == 0


def test_offering_twice_keeps_one_pending(tmp_path: Path) -> None:
    """A repeated candidate event for the same process does not restart its grace period."""
    proc, start = _py_claude(tmp_path)
    clock = Clock()
    c = _candidates(proc, FakeMaps(), clock)
    c.offer(candidate_event(PY_CLAUDE, start, reason="rename"))
    deadline = c.pending[(PY_CLAUDE, start)].deadline
    clock.advance(1)
    assert c.offer(candidate_event(PY_CLAUDE, start, reason="rename")) == []
    assert c.pending[(PY_CLAUDE, start)].deadline == deadline
