"""The real daemon's hash-chained, sealed log (real BPF, real rotation, a restart in between), verified
untouched and then tampered with: each edit is caught and named by `claude-audit verify`."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_faults_util import CLI, ENV, actions, daemon, fake_claude, session, wait_until
from journald_env import journald_env
from jsonl import read_records

from claude_audit import sealing
from claude_audit.verify import EXIT_BROKEN, EXIT_INCOMPLETE, EXIT_OK, load_files, verify_lines

pytestmark = [pytest.mark.root]


def _config(base: Path, log: Path, key_file: Path, journal: Path | None = None) -> Path:
    cfg = base / "config.toml"
    cfg.write_text(
        f'[audit_log]\npath = "{log}"\nflush_interval_seconds = 0.2\nmax_bytes = 16384\nbackups = 100\n'
        f'[daemon]\nruntime_dir = "{base}/run"\nstate_dir = "{base}/state"\n'
        + (f'[journal]\nsocket_path = "{journal}"\n' if journal else "[journal]\nenabled = false\n")
        + f'[discovery]\nexecutable_globs = ["{fake_claude(base)}"]\n'
        f'script_globs = ["{base}/no-such-script.js"]\ncomm_names = ["claude.exe"]\n'
        f'[integrity]\ncheckpoint_interval_seconds = 1.0\nkey_file = "{key_file}"\n'
    )
    cfg.chmod(0o600)
    return cfg


def _run_session(base: Path, cfg: Path, log: Path, marker: str, execs: int) -> None:
    """One daemon run: a fake session runs `execs` commands, the daemon is stopped cleanly."""
    with (
        daemon(base, cfg, log) as d,
        session(fake_claude(base), f"for i in $(seq {execs}); do /bin/true {marker} $i; done") as s,
    ):
        # The log rotates every few records here: look in the whole set, not the live file only.
        def seen(pred: Callable[[list[dict[str, Any]]], bool]) -> Callable[[], bool | None]:
            return lambda: True if pred([r for p in _log_set(log) for r in read_records(p)]) else None

        wait_until(
            seen(lambda rs: any(r["claude"]["pid"] == s.pid for r in actions(rs, "session-found"))), 60, d
        )
        s.go()
        last = str(execs)
        wait_until(
            seen(lambda rs: any(r["process"]["args"][-1] == last for r in actions(rs, "exec"))), 120, d
        )
        # at least two checkpoints in this run, so epochs advance while it runs
        d.wait_status(lambda st: (st.get("chain") or {}).get("checkpoints", 0) >= 2, 60)


def _log_set(log: Path) -> list[Path]:
    backups = [p for p in log.parent.glob(log.name + ".*") if p.suffix[1:].isdigit()]
    return [*sorted(backups, key=lambda p: -int(p.suffix[1:])), log]


def _verify_cli(files: list[Path], key: bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "verify", "--key", key.hex(), *extra, *map(str, reversed(files))],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_real_log_verifies_and_every_tampering_is_caught(tmp_path: Path) -> None:
    """Two runs of the real daemon (rotating, sealed) verify with exit 0; then, on copies: a flipped
    byte, a deleted line, two lines swapped, an inserted line, a rotated file left out, a cut tail: each
    gives exit 1 (or 2 for the cut tail of the last run, which only the journal can prove) and names
    the kind and the place."""
    base = tmp_path
    log = base / "log" / "audit.jsonl"
    key_file = base / "seal.key"
    key0 = sealing.setup(key_file)
    cfg = _config(base, log, key_file)
    _run_session(base, cfg, log, "first", 60)
    _run_session(base, cfg, log, "second", 40)

    files = _log_set(log)
    assert len(files) >= 3, "the log should have rotated"
    done = _verify_cli(files, key0)
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    assert "verified:" in done.stdout and " 0 break(s)" in done.stdout
    runs = [json.loads(ln) for p in files for ln in p.read_bytes().splitlines() if b'"seq":0,' in ln]
    assert len([r for r in runs if r["claude_audit"]["chain"]["seq"] == 0]) == 2

    def tampered(name: str, edit: Callable[[list[Path]], list[Path]]) -> tuple[int, list[str], str]:
        d = base / "copies" / name
        d.mkdir(parents=True)
        copies = [Path(shutil.copy(p, d / p.name)) for p in files]
        report = verify_lines(load_files(edit(copies)), key=key0)
        first = str(report.breaks[0]) if report.breaks else ""
        return report.exit_code, [f.kind for f in report.findings], first

    def lines_edit(
        fn: Callable[[list[bytes]], list[bytes]], which: int = 1
    ) -> Callable[[list[Path]], list[Path]]:
        def edit(copies: list[Path]) -> list[Path]:
            p = copies[which]
            p.write_bytes(b"".join(fn(p.read_bytes().splitlines(keepends=True))))
            return copies

        return edit

    def flip(ls: list[bytes]) -> list[bytes]:
        i = next(i for i, ln in enumerate(ls) if b'"action":"exec"' in ln)
        ls[i] = ls[i].replace(b"/bin/true", b"/bin/trUe", 1)
        return ls

    rc, kinds, first = tampered("flip", lines_edit(flip))
    assert rc == EXIT_BROKEN and kinds == ["modified"], kinds
    rc, kinds, first = tampered("delete", lines_edit(lambda ls: ls[:3] + ls[4:]))
    assert rc == EXIT_BROKEN and "deleted" in kinds and first.startswith(f"{base}/copies/delete/"), first
    rc, kinds, _ = tampered("swap", lines_edit(lambda ls: [*ls[:4], ls[5], ls[4], *ls[6:]]))
    assert rc == EXIT_BROKEN and set(kinds) == {"reordered"}, kinds
    rc, kinds, _ = tampered("insert", lines_edit(lambda ls: [*ls[:4], ls[2], *ls[4:]]))
    assert rc == EXIT_BROKEN and "inserted" in kinds, kinds
    rc, kinds, _ = tampered("drop-file", lambda cs: cs[:1] + cs[2:])
    assert rc == EXIT_BROKEN and "deleted" in kinds, kinds
    rc, kinds, _ = tampered("cut-tail", lines_edit(lambda ls: ls[:-5], which=-1))
    assert rc == EXIT_INCOMPLETE and kinds == ["open-tail"], kinds


def test_cut_while_stopped_is_caught_at_the_next_start(tmp_path: Path) -> None:
    """The tail is cut while no daemon runs; the next run continues from its saved head, so the cut is a
    break, and the sealed epochs show the gap."""
    base = tmp_path
    log = base / "log" / "audit.jsonl"
    key_file = base / "seal.key"
    key0 = sealing.setup(key_file)
    cfg = _config(base, log, key_file)
    _run_session(base, cfg, log, "first", 10)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-3]))
    _run_session(base, cfg, log, "second", 10)
    done = _verify_cli(_log_set(log), key0)
    assert done.returncode == EXIT_BROKEN, done.stdout
    assert "FIRST BREAK:" in done.stdout and "truncated" in done.stdout


def test_cut_tail_is_caught_against_the_journal(tmp_path: Path) -> None:
    """The daemon sends its records, checkpoints included, to a real (private) journald. The log verifies
    against the journal's checkpoints; with its tail cut (nothing after it), verify alone says only
    "incomplete" (2), and --journal turns it into a break (1) naming the cut."""
    base = tmp_path
    log = base / "log" / "audit.jsonl"
    key_file = base / "seal.key"
    key0 = sealing.setup(key_file)
    with journald_env() as env:
        cfg = _config(base, log, key_file, journal=env.socket_path)
        _run_session(base, cfg, log, "journal", 10)
        env.wait_for(1, 30, AUDIT_ACTION="daemon-stopped")
        jdir = ["--journal", "--journal-dir", str(env.journal_dir)]
        done = _verify_cli(_log_set(log), key0, *jdir)
        assert done.returncode == EXIT_OK, done.stdout + done.stderr
        assert " 0 journal checkpoint(s)" not in done.stdout
        lines = log.read_bytes().splitlines(keepends=True)
        log.write_bytes(b"".join(lines[:-4]))
        assert _verify_cli(_log_set(log), key0).returncode == EXIT_INCOMPLETE
        done = _verify_cli(_log_set(log), key0, *jdir)
        assert done.returncode == EXIT_BROKEN, done.stdout
        assert "truncated" in done.stdout
