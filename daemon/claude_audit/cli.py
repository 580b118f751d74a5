"""The `claude-audit` command: run, check-config, doctor, status, tail, rules check.

Expected failures (bad config, missing privileges, no BTF) print one clear message and exit with a
sysexits-style status; only bugs produce tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from . import __version__
from .config import DEFAULT_CONFIG_PATH, Config, ConfigError, check_file_safety, load_config

EX_OK = 0
EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_NOPERM = 77
EX_CONFIG = 78


def _configure_logging(level: str) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def _load(path: Path | None) -> tuple[Config, Path | None]:
    """Load the config named on the command line, or the default file if it exists."""
    if path is None:
        if DEFAULT_CONFIG_PATH.exists():
            path = DEFAULT_CONFIG_PATH
        else:
            return load_config(None), None
    check_file_safety(path)
    return load_config(path), path


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground."""
    from .doctor import problems
    from .sensor import SensorError

    config, path = _load(args.config)
    _configure_logging(config.daemon.log_level)
    blocking = [p for p in problems() if p.fatal]
    if blocking:
        for p in blocking:
            print(f"claude-audit: {p.what}\n  fix: {p.fix}", file=sys.stderr)
        return EX_NOPERM if any(p.name == "privileges" for p in blocking) else EX_UNAVAILABLE
    from .daemon import Daemon

    try:
        return Daemon(config, path).run()
    except SensorError as exc:
        print(f"claude-audit: cannot start the kernel sensor: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file and print the effective settings."""
    config, path = _load(args.config)
    print(f"config OK: {path or 'built-in defaults'}")
    print(json.dumps(config.model_dump(mode="json"), indent=2))
    return EX_OK


def cmd_doctor(_args: argparse.Namespace) -> int:
    """Say what the host is missing for the daemon to run, and how to fix it."""
    from .doctor import checks

    found = checks()
    for c in found:
        mark = "ok" if c.ok else ("FAIL" if c.fatal else "warn")
        print(f"[{mark}] {c.name}: {c.what}" + ("" if c.ok else f"\n       fix: {c.fix}"))
    failed = [c for c in found if not c.ok and c.fatal]
    print(f"{len(failed)} of {len(found)} checks failed" if failed else "all checks passed")
    return EX_UNAVAILABLE if failed else EX_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Show what the running daemon reports in its status file."""
    config, _ = _load(args.config)
    path = config.daemon.runtime_dir / "status.json"
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"claude-audit: not running (no {path})", file=sys.stderr)
        return 3  # LSB: program is not running
    except (OSError, ValueError) as exc:
        print(f"claude-audit: cannot read {path}: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    pid = status.get("pid") if isinstance(status, dict) else None
    if not isinstance(pid, int) or not _alive(pid):
        print(f"claude-audit: not running (stale {path})", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(status, indent=2))
        return EX_OK
    # Session fields (cwd, session id, version) come from files and environments the audited users
    # write: every value is shown with its control and bidi characters made visible.
    print(f"claude-audit {_shown(status.get('version'))} pid {_shown(status.get('pid'))}")
    print(f"log: {_shown(status.get('log_path'))}")
    print(
        f"records written: {_shown(status.get('records_written'))}  "
        f"events lost: {_shown(status.get('events_lost'))}"
    )
    kc = status.get("kernel_counters", {})
    if isinstance(kc, dict):
        print("kernel: " + "  ".join(f"{_shown(k)}={_shown(v)}" for k, v in kc.items()))
    rules = status.get("rules")
    if isinstance(rules, dict):
        print(
            f"sigma rules: {_shown(rules.get('loaded'))} loaded, {_shown(rules.get('refused'))} refused, "
            f"{_shown(rules.get('alerts'))} alerts in {_shown(rules.get('execs_checked'))} execs"
        )
        for r in rules.get("refusals") or []:
            if isinstance(r, dict):
                print(f"  refused {_shown(r.get('id'))} ({_shown(r.get('file'))}): {_shown(r.get('reason'))}")
    sessions = status.get("sessions", [])
    sessions = sessions if isinstance(sessions, list) else []
    print(f"sessions watched: {len(sessions)}")
    for s in sessions:
        if not isinstance(s, dict):
            continue
        extra = " ".join(f"{k}={_shown(s[k])}" for k in ("session_id", "version", "cwd") if k in s)
        line = f"  pid {_shown(s.get('pid'))} found by {_shown(s.get('how'))}, {_shown(s.get('execs'))} execs"
        print(f"{line} {extra}".rstrip())
    return EX_OK


def _shown(value: object) -> str:
    """A status value as terminal-safe text (textenc.neutralise: controls, separators, bidi escaped)."""
    from .textenc import neutralise

    return neutralise(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_tail(args: argparse.Namespace) -> int:
    """Follow the audit log and print one readable line per record."""
    from .tail import tail_main

    config, _ = _load(args.config)
    return tail_main(args, config)


EX_DATAERR = 65


def cmd_rules_check(args: argparse.Namespace) -> int:
    """Load Sigma rule files (the given ones, or what the config names) and print, per rule, ok or
    refused and why; exit 65 when any rule or file is refused."""
    from .rulefiles import load_files, load_rules

    if args.files:
        # Files named on the command line are checked as given (the owner and mode checks still apply).
        loaded = load_files([glob_escape(str(f)) for f in args.files])
    else:
        config, _ = _load(args.config)
        loaded = load_rules(config.rules)
    for rule in loaded.ruleset.rules:
        print(
            f"ok       {_shown(rule.id)}  {_shown(rule.level)}  {_shown(rule.title)}  ({_shown(rule.source)})"
        )
    for r in loaded.refused:
        who = f"{_shown(r.rule_id or '-')}  {_shown(r.title or '-')}  ({_shown(r.source)})"
        print(f"refused  {who}: {_shown(r.reason)}")
    print(f"{len(loaded.ruleset)} loaded, {len(loaded.refused)} refused, {loaded.files} files")
    return EX_DATAERR if loaded.refused else EX_OK


def glob_escape(path: str) -> str:
    """A path as a glob that matches only itself."""
    import glob

    return glob.escape(path)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests)."""
    p = argparse.ArgumentParser(prog="claude-audit", description=__doc__)
    p.add_argument("--version", action="version", version=f"claude-audit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--config", type=Path, default=None, help=f"config file (default {DEFAULT_CONFIG_PATH})"
        )
        return sp

    with_config(sub.add_parser("run", help="run the daemon in the foreground")).set_defaults(fn=cmd_run)
    with_config(sub.add_parser("check-config", help="validate the config")).set_defaults(fn=cmd_check_config)
    sub.add_parser("doctor", help="check the host can run the daemon").set_defaults(fn=cmd_doctor)
    st = with_config(sub.add_parser("status", help="show the running daemon's status"))
    st.add_argument("--json", action="store_true", help="print the raw status JSON")
    st.set_defaults(fn=cmd_status)
    t = with_config(sub.add_parser("tail", help="follow the audit log, one line per record"))
    t.add_argument("--file", type=Path, default=None, help="log file (default: the config's audit_log.path)")
    t.add_argument("--session", default=None, help="only this session (id, root pid or entity id)")
    t.add_argument("--origin", action="append", default=None, help="only these origins (repeatable)")
    t.add_argument("--no-follow", action="store_true", help="print what is there and exit")
    t.add_argument("--all", action="store_true", help="start from the oldest rotated file, not the end")
    t.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    t.set_defaults(fn=cmd_tail)
    rules = sub.add_parser("rules", help="Sigma rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    rc = with_config(
        rules_sub.add_parser("check", help="load rule files; print each rule: ok, or refused and why")
    )
    rc.add_argument("files", nargs="*", type=Path, help="rule files (default: what the config loads)")
    rc.set_defaults(fn=cmd_rules_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the claude-audit command."""
    args = build_parser().parse_args(argv)
    try:
        rc = int(args.fn(args))
    except ConfigError as exc:
        # Every subcommand that reads the config ends here on a bad one: one line, no traceback.
        print(f"claude-audit: bad config: {exc}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":
    sys.exit(main())
