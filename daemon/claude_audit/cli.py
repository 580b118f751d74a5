"""The `claude-audit` command: run, check-config, doctor, status, tail, redact-check, verify,
integrity setup, rules check.

Expected failures (bad config, missing privileges, no BTF) print one clear message and exit with a
sysexits-style status; only bugs produce tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
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
EX_NOINPUT = 66
EX_CANTCREAT = 73
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

    try:
        config, path = _load(args.config)
    except ConfigError as exc:
        announce_rejected_config(str(exc), args.config or DEFAULT_CONFIG_PATH)
        raise
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


def announce_rejected_config(
    error: str, config_path: Path, journal_socket: Path | None = None, boot_id: str | None = None
) -> bool:
    """Send a config-rejected alert to journald when the daemon cannot start on its config.

    The audit file's path comes from the very config that failed, so journald is the one sink the
    record can reach; without it a bad config looks like a quiet host. Best effort: False if journald
    did not take it.
    """
    import socket
    import time

    from . import records
    from .journal import DEFAULT_SOCKET, JournalSink, journal_fields
    from .procfs import ProcFS
    from .textenc import dumps_line

    try:
        boot = boot_id if boot_id is not None else ProcFS().boot_id()
    except OSError:
        boot = ""
    host = records.HostInfo(hostname=socket.gethostname(), boot_id=boot)
    rec = records.config_rejected(
        time.time_ns(), host, 1, error=error, when="start", config_path=str(config_path)
    )
    with JournalSink(journal_socket or DEFAULT_SOCKET) as sink:
        return sink.send(journal_fields(rec, dumps_line(rec)))


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file and print the effective settings."""
    config, path = _load(args.config)
    print(f"config OK: {path or 'built-in defaults'}")
    print(json.dumps(config.model_dump(mode="json"), indent=2))
    for line in enforce_summary(config):
        print(line)
    return EX_OK


def enforce_summary(config: Config) -> list[str]:
    """The effective deny rules as the kernel will apply them, one line each (users as uids)."""
    e = config.enforce
    lines = [
        f"enforce: mode {e.mode}, {len(e.deny)} deny rule(s)" + (" (none loaded)" if e.mode == "off" else "")
    ]
    for r in e.deny:
        if r.program is not None:
            target = f"program {r.program!r}"
        elif r.path is not None:
            target = f"path {r.path!r}"
        else:
            target = f"path prefix {r.path_prefix!r}"
        args = f" args starting {r.args!r}" if r.args else ""
        users = f" for uids {r.uids()}" if r.users else " for every user"
        lines.append(f"  {r.id}: {target}{args}{users}: {r.reason}")
    return lines


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


def cmd_hook(args: argparse.Namespace) -> int:
    """A Claude Code hook command; it never fails the tool call for its own problems (the kernel enforces)."""
    from .hook import pre_tool_use

    try:
        config, _ = _load(args.config)
    except ConfigError:
        return EX_OK  # e.g. a config only root may read: the hook is a courtesy, the kernel still applies
    answer = pre_tool_use(config.enforce)
    if answer is not None:
        print(answer)
    return EX_OK


def cmd_tail(args: argparse.Namespace) -> int:
    """Follow the audit log and print one readable line per record."""
    from .tail import tail_main

    config, _ = _load(args.config)
    return tail_main(args, config)


REDACT_CHECK_LINE_MAX = 16 * 1024 * 1024
"""Longest log line redact-check reads (a record is at most argv_max_bytes plus a little, far less)."""


def cmd_redact_check(args: argparse.Namespace) -> int:
    """Show what the configured rules would redact in a log file, a command line or a command text.

    Prints one line per record or sample that a rule matches (the redacted form, never the secret);
    exit 1 if anything would be redacted, 0 if nothing would.
    """
    from .config import privacy_policy
    from .redact import read_key
    from .textenc import neutralise

    config, _ = _load(args.config)
    key = read_key(config.daemon.state_dir)
    note = "" if key is not None else " (hashes use a throw-away key, not the daemon's: run as root to match)"
    policy = privacy_policy(config, key or os.urandom(32))
    red = policy.redactor
    if red is None:
        print("no redaction rules are configured ([privacy] default_rules = false and no [[redact]])")
        return EX_OK
    found = 0

    def show(where: str, hits: Sequence[object], text: str) -> None:
        nonlocal found
        found += 1
        rules = sorted({r for h in hits for r in getattr(h, "rules", ())})
        print(f"{where}: {','.join(rules)}: {neutralise(text)}")

    if args.argv:
        new_args, hits = red.redact_args(args.argv, {args.argv[0].rsplit("/", 1)[-1]})
        if hits:
            show("argv", hits, shlex.join(new_args))
    if args.command_text is not None:
        new_cmd, hits = red.redact_text(args.command_text, "command")
        if hits:
            show("command", hits, new_cmd)
    if args.file is not None:
        try:
            f = args.file.open("rb")
        except OSError as exc:
            print(f"claude-audit: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return EX_UNAVAILABLE
        with f:
            for n, line in enumerate(iter(lambda: f.readline(REDACT_CHECK_LINE_MAX), b""), 1):
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a cut line or not a record: nothing to check
                if not isinstance(rec, dict):
                    continue
                result = red.redact_record(rec)
                if result.hits:
                    proc = rec.get("process", {})
                    claude = rec.get("claude", {})
                    text = claude.get("command") if "command" in result.summary()["fields"] else None
                    if text is None and isinstance(proc, dict):
                        text = shlex.join(str(a) for a in proc.get("args", []))
                    show(f"{args.file}:{n}", result.hits, str(text))
    print(f"{found} would be redacted{note}", file=sys.stderr)
    return 1 if found else EX_OK


def _journal_checkpoints(journal_dir: Path | None) -> list[bytes] | None:
    """The chain-checkpoint lines journald holds (AUDIT_RECORD), or None if journalctl failed."""
    import subprocess

    from .verify import journal_checkpoints

    journal: list[bytes] = []
    cmd = ["journalctl", "-o", "json", "--no-pager", "SYSLOG_IDENTIFIER=claude-audit"]
    if journal_dir is not None:
        cmd[1:1] = ["-D", str(journal_dir)]
    # ECS records carry AUDIT_ACTION, which keeps the read small; OCSF records do not: then all of
    # claude-audit's entries are read and the checkpoints picked out by content.
    for query in ([*cmd, "AUDIT_ACTION=chain-checkpoint"], cmd):
        try:
            done = subprocess.run(query, capture_output=True, check=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"claude-audit: cannot read the journal: {exc}", file=sys.stderr)
            return None
        journal = journal_checkpoints(done.stdout.splitlines())
        if journal:
            break
    return journal


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify the audit log's hash chain, checkpoints and seals; exit 0 only if everything verifies."""
    from .lognames import rotated
    from .verify import load_files, verify_lines

    paths: list[Path] = list(args.files)
    if args.all or not paths:
        config, _ = _load(args.config)
        base = config.audit_log.path
        paths += [*reversed(rotated(base)), base]
    key = None
    if args.key_file is not None:
        try:
            args.key = args.key_file.read_text().strip()
        except OSError as exc:
            print(f"claude-audit: cannot read {args.key_file}: {exc}", file=sys.stderr)
            return EX_NOINPUT
    if args.key is not None:
        try:
            key = bytes.fromhex(args.key)
        except ValueError:
            key = b""
        if len(key) != 32:
            print("claude-audit: --key must be the 64 hex digits `integrity setup` printed", file=sys.stderr)
            return EX_USAGE
    try:
        files = load_files(paths)
    except OSError as exc:
        print(f"claude-audit: cannot read the log: {exc}", file=sys.stderr)
        return EX_NOINPUT
    journal: list[bytes] = []
    if args.journal:
        found = _journal_checkpoints(args.journal_dir)
        if found is None:
            return EX_UNAVAILABLE
        journal = found
    report = verify_lines(files, key=key, journal=journal)
    for finding in report.findings:
        print(_shown_text(str(finding)))
    breaks = report.breaks
    if breaks:
        print(_shown_text(f"FIRST BREAK: {breaks[0]}"))
    verdict = {0: "verified", 1: "BROKEN", 2: "incomplete"}[report.exit_code]
    print(
        f"{verdict}: {report.lines} lines in {len(files)} file(s), {report.segments} run start(s), "
        f"{report.checkpoints} checkpoint(s), {report.sealed} sealed, "
        f"{report.journal_checkpoints} journal checkpoint(s), {len(breaks)} break(s)"
    )
    return report.exit_code


def cmd_integrity_setup(args: argparse.Namespace) -> int:
    """Create the sealing key file and print the verification key, to be kept off this host."""
    from .sealing import SealError, fingerprint, setup

    try:
        key0 = setup(args.key_file, force=args.force)
    except (SealError, OSError) as exc:
        print(f"claude-audit: {exc}", file=sys.stderr)
        return EX_CANTCREAT
    print(f"key file: {args.key_file} (epoch 0; set [integrity] key_file to it and restart the daemon)")
    print(f"fingerprint: {fingerprint(key0)}")
    print(f"verification key: {key0.hex()}")
    print("Keep the verification key OFF this host: whoever holds it can seal any epoch.")
    return EX_OK


def _shown_text(text: str) -> str:
    from .textenc import neutralise

    return neutralise(text)


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
    h = with_config(sub.add_parser("hook", help="Claude Code hook commands (see docs/ENFORCE.md)"))
    h.add_argument("event", choices=("pre-tool-use",), help="the hook event")
    h.set_defaults(fn=cmd_hook)
    t = with_config(sub.add_parser("tail", help="follow the audit log, one line per record"))
    t.add_argument("--file", type=Path, default=None, help="log file (default: the config's audit_log.path)")
    t.add_argument("--session", default=None, help="only this session (id, root pid or entity id)")
    t.add_argument("--origin", action="append", default=None, help="only these origins (repeatable)")
    t.add_argument("--no-follow", action="store_true", help="print what is there and exit")
    t.add_argument("--all", action="store_true", help="start from the oldest rotated file, not the end")
    t.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    t.set_defaults(fn=cmd_tail)
    rc = with_config(
        sub.add_parser(
            "redact-check",
            help="show what the redaction rules would replace (exit 1 if anything)",
            description="Check a log file (--file), an agent's command text (--command) or a command "
            "line (after --) against the configured rules; prints redacted forms, never the secrets.",
        )
    )
    rc.add_argument("--file", type=Path, default=None, help="an audit log (JSON lines) to check")
    rc.add_argument("--command", dest="command_text", default=None, help="a shell command text")
    rc.add_argument("argv", nargs="*", help="a command line, one argument per word (put it after --)")
    rc.set_defaults(fn=cmd_redact_check)
    v = with_config(
        sub.add_parser(
            "verify",
            help="verify the audit log's hash chain (exit 0 verified, 1 broken, 2 incomplete)",
        )
    )
    v.add_argument("files", nargs="*", type=Path, help="log files, rotated ones too, in any order")
    v.add_argument("--all", action="store_true", help="the config's audit log and all its rotated files")
    v.add_argument("--key", default=None, help="verification key (hex) from `integrity setup`")
    v.add_argument("--key-file", type=Path, default=None, help="file holding the verification key (hex)")
    v.add_argument("--journal", action="store_true", help="also check against the journal's checkpoints")
    v.add_argument("--journal-dir", type=Path, default=None, help="journal directory (journalctl -D)")
    v.set_defaults(fn=cmd_verify)
    integ = sub.add_parser("integrity", help="forward-secure sealing of the audit log")
    isub = integ.add_subparsers(dest="integrity_command", required=True)
    ist = isub.add_parser("setup", help="create the key file and print the verification key")
    ist.add_argument("--key-file", type=Path, required=True, help="where the daemon's key file goes")
    ist.add_argument("--force", action="store_true", help="replace an existing key file")
    ist.set_defaults(fn=cmd_integrity_setup)
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
