#!/usr/bin/env python3
"""Record sizes for sizing shippers (line buffers) and storage: typical, p99 and maximum per record type.

Run as root from the repository:

    .venv/bin/python bench/record_sizes.py                  # synthetic session + argv-cap worst cases
    .venv/bin/python bench/record_sizes.py --log LOG ...    # also: the records of existing audit logs

The synthetic run starts the daemon (default capture settings: argv_max_bytes 16384), a fake Claude Code
session (a copy of bash at npm's path, as the integration tests use) that runs a mix of everyday
commands, then one exec at the argv cap for each kind of content: plain ASCII, control characters (each
escaped as \\u00XX in JSON), invalid UTF-8 (U+FFFD in the text plus the exact bytes in base64 under
raw), so the largest line any record can reach is measured, not estimated. Sizes are bytes of the JSON
line including its newline. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(REPO / "daemon"))
ARGV_CAP = 16384

EVERYDAY = r"""
/bin/true
ls -la /usr/bin >/dev/null
/bin/sh -c 'echo hello; /bin/true --version'
git --version >/dev/null 2>&1 || /bin/true git
find /etc -maxdepth 1 -name '*.conf' >/dev/null
grep -r --include='*.py' -n 'def ' /usr/lib/python3/dist-packages/bcc >/dev/null
/usr/bin/env python3 -c 'print(1)' >/dev/null
/bin/sh -c "cat /etc/os-release | head -3 >/dev/null"
"""


def _argv_file(base: Path, name: str, content: bytes) -> Path:
    p = base / name
    p.write_bytes(content)
    return p


def synthetic(base: Path) -> Path:
    """Run the daemon and a session; returns the audit log."""
    d = base / "node_modules/@anthropic-ai/claude-code/bin"
    d.mkdir(parents=True)
    exe = d / "claude.exe"
    shutil.copy("/bin/bash", exe)
    log = base / "log" / "audit.jsonl"
    cfg = base / "config.toml"
    cfg.write_text(
        f'[audit_log]\npath = "{log}"\nflush_interval_seconds = 0.2\n'
        f'[daemon]\nruntime_dir = "{base}/run"\nstate_dir = "{base}/state"\n'
        "[journal]\nenabled = false\n"
        f'[discovery]\nexecutable_globs = ["{exe}"]\nscript_globs = ["{base}/none.js"]\n'
        'comm_names = ["claude.exe"]\n'
    )
    cfg.chmod(0o600)
    # One argument of argv-cap bytes per kind: what the kernel copies is cut at the cap.
    kinds = {
        "ascii": b"a" * ARGV_CAP,
        "controls": b"\x01" * ARGV_CAP,
        "invalid-utf8": b"\xff" * ARGV_CAP,
    }
    files = {k: _argv_file(base, f"argv-{k}", v) for k, v in kinds.items()}
    worst = "".join(f'/bin/true "$(cat {files[k]})"\n' for k in kinds)
    script = f"read -r _\n{EVERYDAY}\n{EVERYDAY}\n{worst}read -r _\n"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "claude_audit", "run", "--config", str(cfg)],
        env=ENV,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: log.exists() and b"daemon-started" in log.read_bytes(), 300)
        session = subprocess.Popen(
            [str(exe), "-c", script], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=base
        )
        assert session.stdin is not None
        _wait(lambda: b"session-found" in log.read_bytes(), 60)
        session.stdin.write(b"go\n")
        session.stdin.flush()
        _wait(lambda: log.read_bytes().count(b'"/bin/true",') >= 3 + 2, 120)
        session.stdin.close()
        session.wait(30)
        time.sleep(1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    return log


def _wait(cond: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.05)


def sizes(logs: list[Path]) -> dict[str, list[int]]:
    """Line sizes (bytes, newline included) by event.action; exec records at the argv cap apart."""
    out: dict[str, list[int]] = {}
    for log in logs:
        for line in log.read_bytes().splitlines(keepends=True):
            rec = json.loads(line)
            action = rec["event"]["action"]
            if action == "exec" and rec["claude_audit"].get("args_original_bytes", 0) > ARGV_CAP // 2:
                flags = rec["claude_audit"]["flags"]
                arg = rec["process"]["args"][-1]
                kind = "controls" if "\x01" in arg else "ascii"
                kind = "invalid-utf8" if "invalid_utf8" in flags else kind
                action = f"exec at the argv cap ({kind})"
            out.setdefault(action, []).append(len(line))
    return out


def p99(values: list[int]) -> int:
    """The 99th percentile (nearest rank)."""
    s = sorted(values)
    return s[max(0, -(-len(s) * 99 // 100) - 1)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, action="append", default=[], help="also measure this audit log")
    ap.add_argument("--no-synthetic", action="store_true", help="only the --log files")
    args = ap.parse_args(argv)
    logs = list(args.log)
    tmp = Path(tempfile.mkdtemp(prefix="claude-audit-sizes-"))
    try:
        if not args.no_synthetic:
            logs.append(synthetic(tmp))
        table = sizes(logs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("| record | count | typical (median) | p99 | max |")
    print("|---|---|---|---|---|")
    for action in sorted(table):
        v = table[action]
        print(f"| {action} | {len(v)} | {int(statistics.median(v))} | {p99(v)} | {max(v)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
