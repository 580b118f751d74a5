"""Capture /proc data of real Claude Code sessions for the unit tests of the pure parsers.

For each version, one scripted session runs against the fake API while this script polls /proc every few
milliseconds and keeps, for the Claude process and every descendant, the last complete reading of
stat, status, cmdline, comm, environ and the exe link. The result goes to
``tests/unit/data/claude_captures/<version>/`` (see the README.md there):

    proc/<pid>/{stat,status,cmdline,comm,environ,exe.txt}   raw bytes as read (exe.txt: link target)
    sessions/<pid>.json                                     ~/.claude/sessions/<pid>.json, if written
    tree.json                                               pid -> ppid, roles, the scripted commands

Usage: .venv/bin/python tests/e2e/capture_proc.py [--out DIR] [VERSION ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_cli import REPO_ROOT, VERSIONS, install_claude
from fake_api import FakeAnthropicAPI, tag_prompt
from session import descendants, kill_session, session_dirs, start_session

DEFAULT_OUT = REPO_ROOT / "tests" / "unit" / "data" / "claude_captures"
PROC_FILES = ("stat", "status", "cmdline", "comm", "environ")
POLL_S = 0.003

# The commands the fake API hands out. Each ends in a sleep so the shells can be seen while they run.
HEREDOC_COMMAND = (
    "cat > note.txt <<'EOF'\n"
    'it\'s "quoted" — ünïcødé ✓ 🦀\n'
    "$HOME stays literal\n"
    "EOF\n"
    "echo 'it'\\''s done' && sleep 2"
)
SCRIPT = [
    "sleep 2",
    HEREDOC_COMMAND,
    "bash -c 'sleep 2; true' | cat",
]


QUOTES = {
    "single, ' as '\\''": "'\\''",  # bash's classic form
    "single, ' as '\"'\"'": "'\"'\"'",  # shell-quote's form
}


def quote_style(script: str, command: str) -> str:
    """How the wrapper quoted ``command`` after ``eval``."""
    if "'" not in command and "eval '" + command + "'" in script:
        return "single"
    for name, q in QUOTES.items():
        if "eval '" + command.replace("'", q) + "'" in script:
            return name
    return "double" if 'eval "' in script else "other"


@dataclass
class Seen:
    files: dict[str, bytes]
    first_seen: float
    last_seen: float
    ppid: int


@dataclass
class Poller:
    root: int
    t0: float
    seen: dict[int, Seen] = field(default_factory=dict)
    sessions_json: dict[int, bytes] = field(default_factory=dict)

    def read(self, pid: int) -> dict[str, bytes] | None:
        base = Path(f"/proc/{pid}")
        try:
            files = {name: (base / name).read_bytes() for name in PROC_FILES}
            files["exe.txt"] = str((base / "exe").readlink()).encode()
        except OSError:
            return None
        if not files["cmdline"]:  # zombie: keep the last live reading
            return None
        return files

    def poll(self, home: Path) -> None:
        now = time.monotonic() - self.t0
        tree = descendants(self.root)
        tree[self.root] = 0
        for pid, ppid in tree.items():
            files = self.read(pid)
            if files is None:
                continue
            if pid in self.seen:
                s = self.seen[pid]
                s.files, s.last_seen = files, now
            else:
                self.seen[pid] = Seen(files, now, now, ppid)
        sess = home / ".claude" / "sessions" / f"{self.root}.json"
        with contextlib.suppress(OSError):
            self.sessions_json[self.root] = sess.read_bytes()


def argv_of(files: dict[str, bytes]) -> list[str]:
    return [a.decode("utf-8", "surrogateescape") for a in files["cmdline"].rstrip(b"\0").split(b"\0")]


def eval_argument(script: str) -> str | None:
    """The word after ``eval`` in a wrapper's script, unquoted by a POSIX shell lexer (for the record)."""
    try:
        words = shlex.split(script)
    except ValueError:
        return None
    return words[words.index("eval") + 1] if "eval" in words[:-1] else None


def classify(seen: dict[int, Seen], root: int) -> dict[int, str]:
    """pid -> role. Wrappers and snapshot shells are direct children of the Claude process."""
    roles: dict[int, str] = {}

    def role(pid: int) -> str:
        if pid in roles:
            return roles[pid]
        s = seen[pid]
        argv = argv_of(s.files)
        script = argv[-1] if argv else ""
        if pid == root:
            r = "claude"
        elif s.ppid == root and argv[:1] == ["/bin/bash"] and "SNAPSHOT_FILE=" in script:
            r = "shell_snapshot"
        elif s.ppid == root and argv[:1] == ["/bin/bash"] and "-c" in argv and " eval " in script:
            r = "bash_tool_wrapper"
        elif s.ppid in seen and s.ppid != root:
            parent = role(s.ppid)
            r = {"bash_tool_wrapper": "command", "command": "command"}.get(parent, parent + "_child")
            r = r.replace("_child_child", "_child")
        else:
            r = "other"
        roles[pid] = r
        return r

    for pid in seen:
        role(pid)
    return roles


def capture_version(version: str, out_root: Path) -> dict[str, object]:  # noqa: PLR0915 (one linear recipe)
    claude_bin = install_claude(version)
    out = out_root / version
    with session_dirs("claude-audit-capture-") as base, FakeAnthropicAPI() as api:
        api.set_script("cap", SCRIPT)
        home, cwd = base / "home", base / "cwd"
        t0 = time.monotonic()
        wall0 = time.time()
        proc = start_session(claude_bin, api.url, tag_prompt("cap", "Run the capture commands."), home, cwd)
        poller = Poller(proc.pid, t0)
        try:
            while proc.poll() is None and time.monotonic() - t0 < 120:
                poller.poll(home)
                time.sleep(POLL_S)
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            kill_session(proc)
        elapsed = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{version}: claude exited {proc.returncode}: {stderr}")
        sent = api.sent_commands("cap")
        if sent != SCRIPT:
            raise RuntimeError(f"{version}: sent {sent!r}")
        req_times: list[dict[str, Any]] = [
            {"t": round(r.time - wall0, 3), "kind": r.kind, "tag": r.tag}
            for r in api.requests
            if r.kind != "other"
        ]
        tmp_text = [str(base)]

    root = proc.pid
    seen = poller.seen
    roles = classify(seen, root)
    order = sorted(seen, key=lambda p: seen[p].first_seen)
    wrappers = [p for p in order if roles[p] == "bash_tool_wrapper"]
    if len(wrappers) != len(SCRIPT):
        raise RuntimeError(f"{version}: saw {len(wrappers)} Bash tool wrappers for {len(SCRIPT)} commands")
    index = {p: i for i, p in enumerate(wrappers)}  # the API hands out commands strictly in order

    def command_index(pid: int) -> int | None:
        while pid in seen and pid != root:
            if pid in index:
                return index[pid]
            pid = seen[pid].ppid
        return None

    if out.exists():
        shutil.rmtree(out)
    (out / "proc").mkdir(parents=True)
    processes: dict[str, dict[str, object]] = {}
    for pid in order:
        s = seen[pid]
        d = out / "proc" / str(pid)
        d.mkdir()
        for name, data in s.files.items():
            (d / name).write_bytes(data)
        info: dict[str, object] = {
            "ppid": s.ppid if pid != root else None,
            "role": roles[pid],
            "command_index": command_index(pid),
            "comm": s.files["comm"].decode().rstrip("\n"),
            "exe": s.files["exe.txt"].decode(),
            "argv": argv_of(s.files),
            "first_seen_s": round(s.first_seen, 3),
            "last_seen_s": round(s.last_seen, 3),
        }
        if pid in index:
            arg = eval_argument(argv_of(s.files)[-1])
            info["eval_argument"] = arg
            info["eval_argument_is_command"] = arg == SCRIPT[index[pid]]
            info["quoting"] = quote_style(argv_of(s.files)[-1], SCRIPT[index[pid]])
        processes[str(pid)] = info
    if root in poller.sessions_json:
        (out / "sessions").mkdir()
        (out / "sessions" / f"{root}.json").write_bytes(poller.sessions_json[root])

    snapshot = [p for p in order if roles[p] == "shell_snapshot"]
    tool_use_times = [r["t"] for r in req_times if r["kind"] == "tool_use"]
    timing = {
        "first_api_request_s": req_times[0]["t"] if req_times else None,
        "tool_use_answer_to_wrapper_seen_s": [
            round(seen[w].first_seen - t, 3) for w, t in zip(wrappers, tool_use_times, strict=True)
        ],
        "wrapper_gone_to_next_main_request_s": [
            round(
                next(r["t"] for r in req_times if r["tag"] == "cap" and r["t"] > seen[w].last_seen)
                - seen[w].last_seen,
                3,
            )
            for w in wrappers
        ],
    }
    tree = {
        "version": version,
        "claude_pid": root,
        "claude_bin": str(claude_bin),
        "temp_base": tmp_text[0],
        "commands": SCRIPT,
        "bash_tool_wrappers": wrappers,
        "shell_snapshot_pid": snapshot[0] if snapshot else None,
        "session_file": f"sessions/{root}.json" if root in poller.sessions_json else None,
        "timing": timing,
        "processes": processes,
        "api_requests": req_times,
        "elapsed_s": round(elapsed, 3),
        "stdout": stdout,
        "poll_interval_s": POLL_S,
    }
    (out / "tree.json").write_text(json.dumps(tree, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return tree


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("versions", nargs="*", default=list(VERSIONS))
    args = ap.parse_args(argv)
    for version in args.versions:
        tree = capture_version(version, args.out)
        procs = tree["processes"]
        assert isinstance(procs, dict)
        roles: dict[str, int] = {}
        for v in procs.values():
            roles[v["role"]] = roles.get(v["role"], 0) + 1
        print(f"{version}: {len(procs)} processes {roles}, {tree['elapsed_s']}s, timing {tree['timing']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
