"""Hostile input through the real daemon: huge argv, 100k arguments, newline in a path, processes that
call themselves "claude", and a burst of thousands of execs. The log stays valid JSON lines (the helper
fails on any line that is not), nothing is invented and nothing is lost."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest
from daemon_faults_util import Records, actions, config_text, daemon, execs_of, fake_claude, session

pytestmark = [pytest.mark.root]


def _start(tmp_path: Path, capture: str = "") -> tuple[Path, Path, Path]:
    exe = fake_claude(tmp_path)
    log = tmp_path / "log" / "audit.jsonl"
    return exe, log, config_text(tmp_path, log, capture=capture, only_fake=True)


def _args_bytes(rec: dict[str, object]) -> list[bytes]:
    raw = rec.get("raw")
    if isinstance(raw, dict) and "args" in raw.get("process", {}):
        return [base64.b64decode(a) for a in raw["process"]["args"]]
    proc = rec["process"]
    assert isinstance(proc, dict)
    return [a.encode() for a in proc["args"]]


def test_one_mib_of_arguments_is_capped_and_flagged(tmp_path: Path) -> None:
    """16 x 64 KiB arguments (1 MiB): the record holds exactly the first argv_max_bytes, is flagged
    args_truncated, and states the original size."""
    exe, log, cfg = _start(tmp_path)  # default argv_max_bytes 16384
    big = [chr(ord("a") + i) * 65536 for i in range(16)]
    # Each argument is made by head | tr (bash's own ${S// /a} takes tens of seconds per 64 KiB on a
    # loaded machine); only /bin/true is exec'd with all of them.
    script = "".join(f"{c[0]}=$(head -c 65536 /dev/zero | tr '\\0' {c[0]}); " for c in big)
    script += "/bin/true " + " ".join(f'"${c[0]}"' for c in big)
    with daemon(tmp_path, cfg, log) as d, session(exe, script) as s:
        s.go()
        recs = d.wait_for(
            lambda rs: any(r["process"]["executable"] == "/bin/true" for r in execs_of(rs, s.pid))
        )
    (rec,) = [r for r in execs_of(recs, s.pid) if r["process"]["executable"] == "/bin/true"]
    area = b"/bin/true\0" + b"".join(c.encode() + b"\0" for c in big)
    assert rec["claude_audit"]["args_original_bytes"] == len(area)
    assert "args_truncated" in rec["claude_audit"]["flags"]
    assert b"\0".join(_args_bytes(rec)) == area[:16384]


def test_hundred_thousand_arguments(tmp_path: Path) -> None:
    """100 000 arguments: recorded up to the cap, flagged, original size exact, line valid JSON."""
    exe, log, cfg = _start(tmp_path, capture="argv_max_bytes = 1048576")
    n = 100_000
    with daemon(tmp_path, cfg, log) as d, session(exe, f"/bin/true $(seq {n})") as s:
        s.go()
        recs = d.wait_for(
            lambda rs: any(r["process"]["executable"] == "/bin/true" for r in execs_of(rs, s.pid))
        )
    (rec,) = [r for r in execs_of(recs, s.pid) if r["process"]["executable"] == "/bin/true"]
    want = ["/bin/true", *(str(i) for i in range(1, n + 1))]
    assert rec["claude_audit"]["args_original_bytes"] == sum(len(a) + 1 for a in want)
    assert rec["process"]["args"] == want  # fits in 1 MiB: complete
    assert rec["process"]["args_count"] == n + 1
    assert "args_truncated" not in rec["claude_audit"]["flags"]


def test_executable_path_with_newline_and_escapes(tmp_path: Path) -> None:
    """A program whose path holds a newline, an ESC sequence and invalid UTF-8 is recorded on one line,
    readable, and exactly recoverable from raw.process.executable."""
    exe, log, cfg = _start(tmp_path)
    d_ = tmp_path / "bin"
    d_.mkdir()
    name = b"evil\nname\x1b[2J\xff"
    path = os.fsencode(d_) + b"/" + name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "wb") as f:
        f.write(Path("/bin/true").read_bytes())
    env = dict(os.environ, P=os.fsdecode(path))
    with daemon(tmp_path, cfg, log) as d, session(exe, '"$P" "arg\nwith newline"', env=env) as s:
        s.go()
        recs = d.wait_for(lambda rs: any("evil" in r["process"]["executable"] for r in execs_of(rs, s.pid)))
    (rec,) = [r for r in execs_of(recs, s.pid) if "evil" in r["process"]["executable"]]
    assert base64.b64decode(rec["raw"]["process"]["executable"]) == path
    assert "invalid_utf8" in rec["claude_audit"]["flags"]
    assert rec["process"]["args"][1] == "arg\nwith newline"
    raw_line = next(x for x in log.read_bytes().splitlines() if b"evil" in x)
    assert b"\x1b" not in raw_line and b"\n" not in raw_line


def test_unrelated_processes_calling_themselves_claude(tmp_path: Path) -> None:
    """An unrelated process renaming itself "claude" (prctl) and a binary named `claude` do not become
    sessions and are not recorded, while a real session running at the same time loses nothing."""
    exe, log, _ = _start(tmp_path)
    cfg = config_text(tmp_path, log)  # default discovery: comm "claude" is a kernel trigger
    named = tmp_path / "bin" / "claude"
    named.parent.mkdir()
    named.write_text("#!/bin/bash\n/bin/echo impostor-binary-child\n")
    named.chmod(0o755)
    renamer = (
        "import ctypes, subprocess\n"
        "ctypes.CDLL(None).prctl(15, b'claude', 0, 0, 0)\n"
        "subprocess.run(['/bin/echo', 'impostor-rename-child'], check=True)\n"
    )
    n = 200
    with (
        daemon(tmp_path, cfg, log) as d,
        session(exe, f"for ((i=0;i<{n};i++)); do /bin/true real-$i; done") as s,
    ):
        s.go()
        p1 = subprocess.run(["/usr/bin/python3", "-c", renamer], check=True, capture_output=True)
        p2 = subprocess.run([str(named)], check=True, capture_output=True)
        assert b"impostor" in p1.stdout and b"impostor" in p2.stdout
        recs = d.wait_for(
            lambda rs: (
                sum(1 for r in execs_of(rs, s.pid) if r["process"]["args"][-1].startswith("real-")) == n
            )
        )
        d.wait_status(lambda st: st["records_written"] >= len(recs))
    recs = d.records()
    found = [r["claude"]["pid"] for r in actions(recs, "session-found")]
    assert s.pid in found
    assert all(r["process"]["executable"] != str(named) for r in actions(recs, "session-found"))
    assert not [r for r in actions(recs, "exec") if "impostor" in " ".join(r["process"]["args"])]
    assert not actions(recs, "events-lost")


def test_burst_of_thousands_of_execs(tmp_path: Path) -> None:
    """5 000 execs as fast as bash can in a session: every one recorded once, no loss reported."""
    exe, log, cfg = _start(tmp_path)
    n = 5000
    with (
        daemon(tmp_path, cfg, log) as d,
        session(exe, f"for ((i=0;i<{n};i++)); do /bin/true b-$i; done") as s,
    ):
        s.go()
        recs = d.wait_for(
            lambda rs: sum(1 for r in execs_of(rs, s.pid) if r["process"]["args"][-1].startswith("b-")) >= n,
            timeout=300,
        )
    got = [
        r["process"]["args"][-1] for r in execs_of(recs, s.pid) if r["process"]["args"][-1].startswith("b-")
    ]
    assert sorted(got) == sorted(f"b-{i}" for i in range(n))
    final: Records = d.records()
    assert not actions(final, "events-lost")
    assert actions(final, "daemon-stopped")[0]["claude_audit"]["events_lost"] == 0
