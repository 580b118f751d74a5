"""discovery: which processes are Claude Code, and which are session roots.

Processes come from two places: real ones captured from /proc (tests/unit/data/proc_host, see
test_procfs) and ProcInfo values built from the shapes recorded in FIELD_NOTES (native 2.1.x, node 2.0.x,
the self-installed versions/<version> binary and its daemon helpers).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_procfs import NODE_TITLE, PAREN_COMM, PY_CLAUDE, build_proc_root, host_root

from claude_audit.discovery import Matchers, find_roots, is_claude, strip_deleted
from claude_audit.procfs import ProcFS, ProcInfo

# The defaults of config.discovery, as an arbitrary object with the four attributes.
SETTINGS = SimpleNamespace(
    executable_globs=[
        "*/@anthropic-ai/claude-code/bin/claude.exe",
        "*/@anthropic-ai/claude-code/bin/claude",
        "*/.local/share/claude/versions/*",
        "*/.claude/local/claude",
    ],
    script_globs=["*/@anthropic-ai/claude-code/cli.js", "*/@anthropic-ai/claude-code/cli.mjs"],
    interpreter_names=["node", "bun"],
    comm_names=["claude"],
)
M = Matchers.from_config(SETTINGS)

NPM = b"/srv/app/node_modules/@anthropic-ai/claude-code"
NATIVE = NPM + b"/bin/claude.exe"
VERSIONS = b"/home/dev/.local/share/claude/versions/2.1.199"


def proc(
    pid: int,
    ppid: int,
    exe: bytes | None,
    comm: bytes,
    argv: list[bytes] | None = None,
    *,
    cmdline: bytes | None = None,
) -> ProcInfo:
    """A ProcInfo with the given identity; cmdline from argv (NUL-terminated) unless given raw."""
    raw = cmdline if cmdline is not None else b"".join(a + b"\0" for a in (argv or [comm]))
    return ProcInfo(pid, ppid, comm, exe, raw, 1000 + pid, 1000, 1000, "S")


def test_from_config_accepts_any_object_and_freezes() -> None:
    """Matchers.from_config takes lists from any object with the attributes and stores tuples."""
    assert M.executable_globs[0] == "*/@anthropic-ai/claude-code/bin/claude.exe"
    assert M.interpreter_names == ("node", "bun")
    assert isinstance(M.comm_names, tuple)


# -- is_claude on captured processes -----------------------------------------------------------------


def test_captured_node_with_title_claude_is_renamed_interpreter(tmp_path: Path) -> None:
    """A real node that set process.title = "claude" (NUL padded cmdline) matches rule (c)."""
    info = ProcFS(host_root(tmp_path)).read(NODE_TITLE)
    assert info is not None
    assert is_claude(info, M) == "renamed-interpreter"


def test_captured_python_named_claude_is_not_claude(tmp_path: Path) -> None:
    """A real python that renamed its comm to "claude" is not Claude Code: its exe is not an interpreter."""
    info = ProcFS(host_root(tmp_path)).read(PY_CLAUDE)
    assert info is not None
    assert info.comm == b"claude"
    assert is_claude(info, M) is None


def test_captured_ordinary_processes_are_not_claude(tmp_path: Path) -> None:
    """None of the other captured host processes matches."""
    infos = ProcFS(host_root(tmp_path)).read_all()
    hits = {pid for pid, info in infos.items() if is_claude(info, M)}
    assert hits == {NODE_TITLE}
    assert PAREN_COMM not in hits


# -- is_claude on FIELD_NOTES shapes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (proc(1, 0, NATIVE, b"claude", [b"claude", b"-p", b"hi"]), "executable"),
        (proc(1, 0, NATIVE + b" (deleted)", b"claude", [b"claude"]), "executable"),
        (proc(1, 0, VERSIONS, b"2.1.199", [b"claude"]), "executable"),
        (proc(1, 0, VERSIONS, b"2.1.199", [VERSIONS, b"daemon", b"run"]), "executable"),
        (proc(1, 0, VERSIONS, b"2.1.199", [VERSIONS, b"--bg-spare"]), "executable"),
        (proc(1, 0, VERSIONS, b"2.1.199", [VERSIONS, b"--bg-pty-host", b"3"]), "executable"),
        (proc(1, 0, b"/usr/bin/node", b"node", [b"node", NPM + b"/cli.js", b"-p", b"x"]), "script"),
        (proc(1, 0, b"/usr/local/bin/bun", b"bun", [b"bun", NPM + b"/cli.mjs"]), "script"),
        (proc(1, 0, b"/usr/bin/node", b"claude", cmdline=b"claude" + b"\0" * 86), "renamed-interpreter"),
        (proc(1, 0, b"/usr/bin/node", b"claude", cmdline=b"claude" + b" " * 40), "renamed-interpreter"),
        (proc(1, 0, b"/usr/bin/node", b"claude", cmdline=b"claude"), "renamed-interpreter"),
    ],
)
def test_claude_shapes(info: ProcInfo, reason: str) -> None:
    """Every documented Claude Code process shape is recognised, with the rule that matched."""
    assert is_claude(info, M) == reason


@pytest.mark.parametrize(
    "info",
    [
        proc(1, 0, b"/usr/bin/python3", b"claude", cmdline=b"claude" + b"\0" * 20),  # renamed non-interpreter
        proc(1, 0, b"/usr/bin/node", b"node", [b"node", b"server.js"]),  # ordinary node
        proc(1, 0, b"/usr/bin/node", b"claude", [b"node", b"claude"]),  # `node claude`: argv not a title
        proc(1, 0, b"/usr/bin/node", b"claude", cmdline=b"claude --x\0"),  # title is more than a name
        proc(1, 0, b"/usr/bin/node", b"node", cmdline=b"claude\0"),  # title without the comm
        proc(1, 0, None, b"claude", cmdline=b"claude\0"),  # exe unreadable: no evidence
        proc(1, 0, b"/usr/bin/python3", b"python3", [b"python3", NPM + b"/cli.js"]),  # not an interpreter
        proc(1, 0, NPM + b"/vendor/ripgrep/x64-linux/rg", b"rg", [b"rg", b"x"]),  # bundled tool of 2.0.x
        proc(1, 0, b"/usr/bin/claude-helper", b"claude", cmdline=b"claude\0"),
    ],
)
def test_not_claude(info: ProcInfo) -> None:
    """comm or cmdline alone never makes a process Claude Code."""
    assert is_claude(info, M) is None


def test_strip_deleted() -> None:
    """Only the exact kernel suffix is removed."""
    assert strip_deleted(b"/x/claude.exe (deleted)") == b"/x/claude.exe"
    assert strip_deleted(b"/x/claude.exe") == b"/x/claude.exe"
    assert strip_deleted(b"/x/(deleted)") == b"/x/(deleted)"


def test_non_utf8_paths_match() -> None:
    """Globs match executable paths that are not valid UTF-8."""
    exe = b"/home/\xff\xfe/node_modules/@anthropic-ai/claude-code/bin/claude.exe"
    assert is_claude(proc(1, 0, exe, b"claude"), M) == "executable"


# -- find_roots --------------------------------------------------------------------------------------


def tree(*infos: ProcInfo) -> dict[int, ProcInfo]:
    """A pid -> ProcInfo mapping."""
    return {i.pid: i for i in infos}


def claude(pid: int, ppid: int) -> ProcInfo:
    """A native Claude Code process."""
    return proc(pid, ppid, NATIVE, b"claude", [b"claude"])


def bash(pid: int, ppid: int) -> ProcInfo:
    """A bash process."""
    return proc(pid, ppid, b"/usr/bin/bash", b"bash", [b"/bin/bash", b"-c", b"x"])


def pids(roots: list[ProcInfo]) -> list[int]:
    """The pids of find_roots' answer."""
    return [r.pid for r in roots]


def test_two_independent_sessions() -> None:
    """Two Claude processes under ordinary shells are both roots, ascending by pid."""
    infos = tree(bash(10, 1), claude(30, 10), bash(20, 1), claude(25, 20))
    assert pids(find_roots(infos, M)) == [25, 30]


def test_nested_claude_stays_in_outer_session() -> None:
    """A claude run by a Bash tool call (claude -> bash -> claude) is not a root."""
    infos = tree(claude(10, 1), bash(11, 10), claude(12, 11), bash(13, 12))
    assert pids(find_roots(infos, M)) == [10]


def test_daemon_and_its_sessions() -> None:
    """`claude daemon` with --bg-spare helpers and sessions below it: only the daemon is a root."""
    daemon = proc(10, 1, VERSIONS, b"2.1.199", [VERSIONS, b"daemon", b"run"])
    spare = proc(11, 10, VERSIONS, b"2.1.199", [VERSIONS, b"--bg-spare"])
    session = proc(12, 10, VERSIONS, b"2.1.199", [b"claude"])
    assert pids(find_roots(tree(daemon, spare, session), M)) == [10]


def test_tracked_elsewhere_is_not_a_root() -> None:
    """A double-forked nested claude (re-parented to 1) is left in the session the kernel put it in."""
    infos = tree(claude(10, 1), claude(50, 1))
    assert pids(find_roots(infos, M, {50: 10})) == [10]
    assert pids(find_roots(infos, M)) == [10, 50]


def test_ancestor_outside_snapshot_and_cycles() -> None:
    """A parent missing from the snapshot ends the walk; a ppid cycle without Claude does not hang."""
    infos = tree(bash(20, 21), bash(21, 20), claude(22, 20), claude(40, 999))
    assert pids(find_roots(infos, M)) == [22, 40]


def test_non_claude_processes_are_never_roots() -> None:
    """Only Claude processes are returned, even when nothing is nested."""
    infos = tree(bash(10, 1), proc(11, 10, b"/usr/bin/python3", b"claude", cmdline=b"claude\0"))
    assert find_roots(infos, M) == []


# -- real Claude Code captures (tests/unit/data/claude_captures, see its README) -----------------------

CAPTURES = Path(__file__).parent / "data" / "claude_captures"


@pytest.mark.parametrize(
    ("version", "reason"), [("2.1.331", "executable"), ("2.0.77", "renamed-interpreter")]
)
def test_captured_session_has_one_root(tmp_path: Path, version: str, reason: str) -> None:
    """In a real session's tree the Claude process is found, by the expected rule, as the only root."""
    tree_json = json.loads((CAPTURES / version / "tree.json").read_text())
    root = build_proc_root(tmp_path / "proc", (CAPTURES / version / "proc").iterdir())
    infos = ProcFS(root).read_all()
    claude_pid = tree_json["claude_pid"]
    assert is_claude(infos[claude_pid], M) == reason
    assert pids(find_roots(infos, M)) == [claude_pid]
    # Everything else is below it; node's fork-before-exec children still look like Claude but are nested.
    others = {pid for pid, info in infos.items() if pid != claude_pid and is_claude(info, M)}
    assert all(infos[pid].ppid == claude_pid for pid in others)


def test_huge_interpreter_cmdline_costs_only_its_head() -> None:
    """A `node` with 150 000 one-byte arguments is judged on its head: a script named past the first
    SCRIPT_ARGS arguments does not count, and the check does not read or split the rest."""
    args = [b"/usr/bin/node", *([b"x"] * 150_000), NPM + b"/cli.js"]
    p = proc(700, 1, b"/usr/bin/node", b"node", args)
    assert is_claude(p, M) is None
    assert len(p.cmdline_head) == 4096
    late = proc(701, 1, b"/usr/bin/node", b"node", [b"/usr/bin/node", *([b"-x"] * 8), NPM + b"/cli.js"])
    assert is_claude(late, M) is None
    early = proc(702, 1, b"/usr/bin/node", b"node", [b"/usr/bin/node", b"--flag", NPM + b"/cli.js", b"x"])
    assert is_claude(early, M) == "script"
