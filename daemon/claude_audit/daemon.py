"""The daemon: wires sensor, discovery, sessions and sinks together in one polling main loop.

Order at start (as Tetragon does): attach probes, then scan /proc and seed sessions, then write the
daemon-started record and tell systemd READY=1, so nothing that runs after READY can be missed.
Signal handlers only set flags; the loop polls the ring with a timeout so it can also flush the log,
rotate, rescan, report losses and ping the watchdog on time.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from . import __version__, heartbeat, records
from . import bpf_layout as L
from .claude import classify_origin, claude_env_info, extract_command, parse_session_file
from .config import Config, ConfigError, load_config
from .decode import DecodeError, decode_event
from .discovery import Matchers, exec_path_is_claude, find_roots, is_claude
from .events import CandidateEvent, ExecEvent, ExitEvent
from .journal import JournalSink, journal_fields
from .procfs import ProcFS, ProcInfo
from .rotate import RotatingFile
from .sensor import PROBES, RingQueue, Sensor, SensorSettings, boot_to_wall_offset_ns
from .sessions import Session, SessionKey, SessionTable, seed_descendants, tracked_elsewhere
from .textenc import dumps_line

log = structlog.get_logger("claude_audit")


CANDIDATE_GRACE_SECONDS = 2.0
"""How long a kernel-flagged process may take to show it is Claude Code."""
HELD_PER_CANDIDATE = 10_000
"""Records held per unconfirmed candidate; beyond this they are counted as lost."""


@dataclass
class PendingCandidate:
    """A kernel-adopted process awaiting the daemon's verdict, and its records held meanwhile."""

    event: CandidateEvent
    deadline: float
    held: list[ExecEvent] = field(default_factory=list)


@dataclass
class Flags:
    """Set by signal handlers, read by the main loop."""

    stop: bool = False
    reload: bool = False
    stop_reason: str = ""


class Notifier:
    """sd_notify, quiet when not run by systemd (no NOTIFY_SOCKET)."""

    def __init__(self) -> None:
        self._n: Any = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify

            self._n = sdnotify.SystemdNotifier()

    def notify(self, state: str) -> None:
        """Send one notification (READY=1, STATUS=..., WATCHDOG=1, STOPPING=1, ...)."""
        if self._n is not None:
            self._n.notify(state)

    def watchdog_interval(self) -> float | None:
        """Half the watchdog timeout systemd set for us, in seconds, or None."""
        usec = os.environ.get("WATCHDOG_USEC")
        if not usec or not usec.isdigit():
            return None
        return int(usec) / 2e6


def exit_status(wait_status: int) -> int:
    """A shell-style exit status from the kernel's wait status: the code, or 128 + the killing signal."""
    signo = wait_status & 0x7F
    return 128 + signo if signo else (wait_status >> 8) & 0xFF


def _now_ns() -> int:
    return time.time_ns()


class Daemon:
    """One run of the audit daemon. Construct, then `run()`; returns the process exit status."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        proc: ProcFS | None = None,
        sensor_factory: Callable[[SensorSettings, RingQueue], Sensor] = Sensor,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.proc = proc or ProcFS()
        self.sensor_factory = sensor_factory
        self.notifier = notifier or Notifier()
        self.flags = Flags()
        self.boot_to_wall = boot_to_wall_offset_ns()
        self.host = records.HostInfo(
            hostname=socket.gethostname(), boot_id=self.proc.boot_id(), boot_time_ns=self.boot_to_wall
        )
        self.matchers = Matchers.from_config(config.discovery)
        self.sessions = SessionTable(self.host.boot_id, origin_of=self._origin_of)
        self.queue = RingQueue(config.daemon.queue_max_events)
        self.seq = 0
        self.records_written = 0
        self.decode_errors = 0
        self.dropped_not_session = 0
        self.lost_reported: dict[str, int] = {}
        self.counters: list[int] = [0] * L.COUNTER_MAX
        self.sensor: Sensor | None = None
        self.log_file: RotatingFile | None = None
        self.journal: JournalSink | None = None
        self.pending_lines: list[bytes] = []
        self.pending: dict[SessionKey, PendingCandidate] = {}
        self.started_ns = 0

    # -- signals --------------------------------------------------------------------------------------
    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.flags.stop = True
        self.flags.stop_reason = signal.Signals(signum).name

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.flags.reload = True

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reopens the log and re-reads the config."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    # -- output ---------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def emit(self, record: dict[str, Any]) -> None:
        """Queue a record for the file (flushed by the loop) and send it to journald now."""
        line = dumps_line(record)
        self.pending_lines.append(line)
        self.records_written += 1
        if self.journal is not None:
            self.journal.send(journal_fields(record, line))

    def write_pending(self) -> None:
        """Write the queued lines to the audit log now."""
        assert self.log_file is not None
        self.log_file.write_lines(self.pending_lines)
        self.pending_lines = []
        self.log_file.flush()

    def flush(self) -> None:
        """Write queued lines to the audit log, and state any gap a write failure left."""
        assert self.log_file is not None
        self.write_pending()
        gap = self.log_file.take_gap()
        if gap is not None:
            lines, nbytes = gap
            log.warning("audit log write failures", lines=lines, bytes=nbytes)
            self.emit(
                records.events_lost(
                    _now_ns(),
                    self.host,
                    self._next_seq(),
                    count=lines,
                    where="file",
                    since_ns=self.started_ns,
                    lost_bytes=nbytes,
                )
            )
            self.write_pending()

    # -- discovery ------------------------------------------------------------------------------------
    def _claude_pid_of(self, pid: int) -> int | None:
        env = self.proc.environ(pid)
        if not env or env.get(b"CLAUDECODE") != b"1":
            return None
        value = env.get(b"CLAUDE_PID", b"")
        return int(value) if value.isdigit() else None

    def scan(self, how: str) -> int:
        """Find Claude Code processes in /proc that are not watched yet and watch them; returns how many."""
        assert self.sensor is not None
        infos = self.proc.read_all()
        known = {s.key for s in self.sessions.live()}
        elsewhere = tracked_elsewhere(self.sensor.tracked_items())
        found = 0
        for info in find_roots(infos, self.matchers, elsewhere):
            if (info.pid, info.start_ticks) in known:
                continue
            reason = is_claude(info, self.matchers) or "unknown"
            self._watch(info, how, reason)
            found += 1
        return found

    def _watch(self, info: ProcInfo, how: str, reason: str) -> Session:
        assert self.sensor is not None
        exe = (info.exe or b"").decode(errors="replace")
        s = self.sessions.add(info.pid, info.start_ticks, how, reason, exe)
        seeded = seed_descendants(self.sensor, self.proc, info, self._claude_pid_of)
        claude_exe = os.fsencode(exe) or None
        for child in seeded:
            if child.ppid == info.pid:
                # A tool call already running: its wrapper's argv is still in /proc, so later execs below
                # it get the agent's command as if its exec had been seen.
                argv = child.argv
                exe_path = child.exe or (argv[0] if argv else b"")
                origin = classify_origin(argv, exe_path, parent_is_root=True, claude_exe=claude_exe)
                self.sessions.seed_invocation(s, child, origin, extract_command(argv))
        self._enrich(s, info)
        self.emit(
            records.session_found(
                _now_ns(),
                self.host,
                self._next_seq(),
                claude=s.claude_object(),
                how=how,
                process_info={
                    "pid": info.pid,
                    "executable": exe,
                    "name": info.comm.decode(errors="replace"),
                    "args": [a.decode(errors="replace") for a in info.cmdline.split(b"\0") if a],
                    "seeded_descendants": len(seeded),
                    "reason": reason,
                },
            )
        )
        log.info("session found", pid=info.pid, how=how, reason=reason, seeded=len(seeded))
        return s

    def _enrich(self, s: Session, info: ProcInfo) -> None:
        """Session identity from ~/.claude/sessions/<pid>.json, checked against the start time.

        The file is written by the agent's own user, so its values are labelled with their source and
        kept in claude.*; they never replace a kernel fact (pid, start time, executable).
        """
        try:
            home = Path(pwd.getpwuid(info.uid).pw_dir)
        except KeyError:
            return
        path = self.proc.host_path(home / ".claude" / "sessions" / f"{info.pid}.json")
        try:
            data = path.read_bytes()
        except OSError:
            return
        sf = parse_session_file(data, info.pid, info.start_ticks)
        if sf is None:
            return
        s.identity.update(sf.claude_fields())

    def _enrich_from_env(self, s: Session, pid: int) -> None:
        if "session_id" in s.identity:
            return
        env = self.proc.environ(pid)
        if not env:
            return
        info = claude_env_info(env)
        if info.get("CLAUDE_PID") != str(s.pid):
            return  # not inherited from this session's root (or tampered with): not trusted
        fields: dict[str, Any] = {}
        if "CLAUDE_CODE_SESSION_ID" in info:
            fields["session_id"] = info["CLAUDE_CODE_SESSION_ID"]
        if "CLAUDE_CODE_ENTRYPOINT" in info:
            fields["entrypoint"] = info["CLAUDE_CODE_ENTRYPOINT"]
        if "version" in info:
            fields["version"] = info["version"]
        if fields:
            fields["identity_source"] = "environment"
            s.identity.update(fields)

    def _origin_of(self, ev: ExecEvent, s: Session) -> tuple[str, bytes | None]:
        command = extract_command(ev.argv)
        origin = classify_origin(
            ev.argv,
            ev.filename,
            parent_is_root=ev.ppid == s.pid,
            claude_exe=os.fsencode(s.executable) or None,
        )
        return origin, command

    # -- events ---------------------------------------------------------------------------------------
    def handle_raw(self, raw: bytes) -> None:
        """Decode and handle one ring-buffer record; a bad record is counted and skipped."""
        try:
            ev = decode_event(raw, self.boot_to_wall)
        except DecodeError as exc:
            self.decode_errors += 1
            log.warning("undecodable record", error=str(exc))
            return
        if isinstance(ev, ExecEvent):
            self._on_exec(ev)
        elif isinstance(ev, CandidateEvent):
            self._on_candidate(ev)
        elif isinstance(ev, ExitEvent):
            self._on_exit(ev)

    def _candidate_verdict(self, ev: CandidateEvent) -> tuple[ProcInfo | None, str | None]:
        """(what /proc shows of the candidate, why it is Claude Code or None)."""
        info = self.proc.read(ev.pid)
        if info is not None and info.start_ticks != ev.start_ticks:
            info = None  # the pid was already reused
        if ev.reason == "exec" and ev.filename:
            resolved = os.fsencode(os.path.realpath(os.fsdecode(ev.filename)))
            why = exec_path_is_claude(resolved, self.matchers)
            if why is not None:
                if info is None:  # gone already (a quick `claude --version`)
                    info = ProcInfo(
                        pid=ev.pid,
                        ppid=ev.ppid,
                        comm=ev.comm,
                        exe=resolved,
                        cmdline=ev.filename,
                        start_ticks=ev.start_ticks,
                        uid=0,
                        gid=0,
                        state="X",
                    )
                return info, why
        if info is None:
            return None, None
        return info, is_claude(info, self.matchers)

    def _on_candidate(self, ev: CandidateEvent) -> None:
        key = (ev.pid, ev.start_ticks)
        if self.sessions.get(key) is not None or key in self.pending:
            return
        self.pending[key] = PendingCandidate(ev, time.monotonic() + CANDIDATE_GRACE_SECONDS)
        self._decide(key)

    def _decide(self, key: SessionKey) -> None:
        """Confirm, reject or keep waiting on a pending candidate.

        A process can look like Claude Code only a moment after the kernel flagged it (node renames
        itself once its script runs), so an unconfirmed candidate that is still alive is re-checked
        until a grace period ends; meanwhile its records are held, then written or dropped.
        """
        assert self.sensor is not None
        pc = self.pending[key]
        info, reason = self._candidate_verdict(pc.event)
        if info is not None and reason is not None:
            del self.pending[key]
            self.sensor.add_root(key[0], key[1], pending=False)
            self._watch(info, "kernel-trigger", reason)
            for held in pc.held:
                self._on_exec(held)
            return
        alive = info is not None and info.state not in ("Z", "X")
        if alive and time.monotonic() < pc.deadline:
            return
        # Not Claude Code (a process that only named itself so): forget it and everything it started.
        del self.pending[key]
        self.sensor.remove_root(key[0])
        self.sensor.untrack_session(key[0], key[1])
        self.sessions.rejected.add(key)
        self.dropped_not_session += len(pc.held)
        log.debug("candidate rejected", pid=key[0], comm=pc.event.comm.decode(errors="replace"))

    def recheck_pending(self) -> None:
        """Re-examine candidates still waiting for a verdict."""
        for key in list(self.pending):
            self._decide(key)

    def _on_exec(self, ev: ExecEvent) -> None:
        key = (ev.session_root, ev.root_start_ticks)
        pc = self.pending.get(key)
        if pc is not None:
            if len(pc.held) < HELD_PER_CANDIDATE:
                pc.held.append(ev)
            else:
                self.queue.dropped += 1  # reported as a queue loss
            return
        if key in self.sessions.rejected:
            self.dropped_not_session += 1
            return
        s = self.sessions.get(key)
        if s is None:
            # A root the kernel adopted whose candidate record was lost, or one seeded just now.
            info = self.proc.read(ev.session_root)
            reason = (
                is_claude(info, self.matchers) if info and info.start_ticks == ev.root_start_ticks else None
            )
            if info is None or reason is None:
                if ev.track_flags:
                    self.dropped_not_session += 1
                    return
                reason = "kernel-tracked"
                s = self.sessions.add(ev.session_root, ev.root_start_ticks, "kernel-trigger", reason)
            else:
                s = self._watch(info, "kernel-trigger", reason)
        s.execs += 1
        if ev.pid == ev.invocation and s.identity.get("identity_source") != "session_file":
            # Claude Code writes its session file a moment after it starts; look again at each new
            # invocation until it is there, and meanwhile use what it gave its children.
            root = self.proc.read(s.pid)
            if root is not None and root.start_ticks == s.start_ticks:
                self._enrich(s, root)
            self._enrich_from_env(s, ev.pid)
        claude = self.sessions.claude_fields(s, ev)
        self.emit(records.exec_record(ev, self.host, claude, self._next_seq()))

    def _on_exit(self, ev: ExitEvent) -> None:
        s = self.sessions.get((ev.session_root, ev.root_start_ticks))
        if s is None or s.ended:
            return
        s.ended = True
        s.exit_code = exit_status(ev.exit_code)
        self.emit(
            records.session_ended(
                ev.wall_time_ns,
                self.host,
                self._next_seq(),
                claude=s.claude_object(),
                exit_code=s.exit_code,
            )
        )
        log.info("session ended", pid=s.pid, exit_code=ev.exit_code, execs=s.execs)

    # -- losses ---------------------------------------------------------------------------------------
    def report_losses(self) -> None:
        """Turn every new loss (kernel ring, tracking map, queue) into an events-lost record."""
        assert self.sensor is not None
        self.counters = self.sensor.counter_totals()
        totals = {
            "kernel-ring": self.counters[L.COUNTER_RING_LOST] + self.counters[L.COUNTER_CANDIDATE_LOST],
            "kernel-tracking": self.counters[L.COUNTER_TRACK_FULL],
            "queue": self.queue.dropped,
            "decode": self.decode_errors,
        }
        for where, total in totals.items():
            delta = total - self.lost_reported.get(where, 0)
            if delta > 0:
                self.lost_reported[where] = total
                log.warning("events lost", where=where, count=delta)
                self.emit(
                    records.events_lost(
                        _now_ns(),
                        self.host,
                        self._next_seq(),
                        count=delta,
                        where=where,
                        since_ns=self.started_ns,
                    )
                )

    @property
    def events_lost(self) -> int:
        """Every loss reported so far."""
        return sum(self.lost_reported.values())

    # -- status ---------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What `claude-audit status` shows."""
        return {
            "pid": os.getpid(),
            "version": __version__,
            "started": self.started_ns,
            "log_path": str(self.config.audit_log.path),
            "records_written": self.records_written,
            "events_lost": self.events_lost,
            "kernel_counters": {
                "ring_lost": self.counters[L.COUNTER_RING_LOST],
                "tracking_full": self.counters[L.COUNTER_TRACK_FULL],
                "candidates_lost": self.counters[L.COUNTER_CANDIDATE_LOST],
                "stale_pids": self.counters[L.COUNTER_STALE_PID],
                "execs_seen": self.counters[L.COUNTER_EXECS_SEEN],
            },
            "queue_dropped": self.queue.dropped,
            "sessions": [
                {"pid": s.pid, "entity_id": s.entity_id, "how": s.how, "execs": s.execs, **s.identity}
                for s in self.sessions.live()
            ],
        }

    def write_status(self) -> None:
        """Write status.json atomically in the runtime directory (0640: it names sessions)."""
        d = self.config.daemon.runtime_dir
        try:
            d.mkdir(mode=0o750, parents=True, exist_ok=True)
            tmp = d / f".status.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
            with os.fdopen(fd, "w") as f:
                json.dump(self.status(), f)
            os.replace(tmp, d / "status.json")
        except OSError as exc:
            log.debug("cannot write status", error=str(exc))

    def status_text(self) -> str:
        """One line for systemctl status."""
        return (
            f"watching {len(self.sessions.live())} session(s), {self.records_written} records written, "
            f"{self.events_lost} events lost"
        )

    # -- reload ---------------------------------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: reopen the log (logrotate) and re-read the config; a bad config is reported and ignored."""
        self.notifier.notify("RELOADING=1")
        assert self.log_file is not None
        self.flush()
        self.log_file.reopen()
        if self.config_path is not None:
            try:
                new = load_config(self.config_path)
            except ConfigError as exc:
                log.error("config reload failed; keeping the running config", error=str(exc))
                self.emit(records.config_rejected(_now_ns(), self.host, self._next_seq(), error=str(exc)))
            else:
                self._apply_config(new)
        self.notifier.notify("READY=1")

    def _apply_config(self, new: Config) -> None:
        # Settings the BPF program was compiled with need a restart; the rest apply now.
        if new.audit_log != self.config.audit_log:
            assert self.log_file is not None
            self.log_file.close()
            self.log_file = self._open_log(new)
        self.matchers = Matchers.from_config(new.discovery)
        self.config = new
        log.info("config reloaded")

    def _open_log(self, cfg: Config) -> RotatingFile:
        return RotatingFile(cfg.audit_log.path, cfg.audit_log.max_bytes, cfg.audit_log.backups)

    # -- main -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open sinks, attach probes, seed sessions, write daemon-started, report READY."""
        self.started_ns = _now_ns()
        self.log_file = self._open_log(self.config)
        if self.config.journal.enabled:
            self.journal = JournalSink(self.config.journal.socket_path)
        d = self.config.discovery
        settings = SensorSettings(
            argv_max_bytes=self.config.capture.argv_max_bytes,
            filename_max_bytes=self.config.capture.filename_max_bytes,
            ring_buffer_bytes=self.config.capture.ring_buffer_bytes,
            max_tracked_processes=self.config.capture.max_tracked_processes,
            candidate_comms=tuple(d.comm_names),
        )
        previous = heartbeat.read_previous(self.config.daemon.state_dir)
        self.sensor = self.sensor_factory(settings, self.queue)
        attached_ns = _now_ns()
        found = self.scan("startup")
        self.emit(
            records.daemon_started(
                _now_ns(),
                self.host,
                self._next_seq(),
                version=__version__,
                pid=os.getpid(),
                config_path=str(self.config_path) if self.config_path else None,
                sessions=found,
                probes=list(PROBES),
                kernel=self.sensor.kernel_facts(),
            )
        )
        if previous is not None:
            reason = "stopped" if previous.clean_stop else "crash"
            self.emit(
                records.unwatched_window(
                    _now_ns(),
                    self.host,
                    self._next_seq(),
                    from_ns=previous.last_alive_ns,
                    to_ns=attached_ns,
                    reason=reason,
                )
            )
            if reason == "crash":
                log.warning("previous run did not stop cleanly", pid=previous.pid)
        heartbeat.write(self.config.daemon.state_dir, _now_ns())
        self.flush()
        self.write_status()
        self.notifier.notify("READY=1")
        self.notifier.notify(f"STATUS={self.status_text()}")
        log.info("ready", sessions=found, log=str(self.config.audit_log.path))

    def loop_once(self, timeout_ms: int) -> None:
        """Poll the ring once and handle what arrived."""
        assert self.sensor is not None
        self.sensor.poll(timeout_ms)
        for raw in self.queue.drain():
            self.handle_raw(raw)

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit status."""
        self.install_signal_handlers()
        self.start()
        flush_every = self.config.audit_log.flush_interval_seconds
        watchdog_every = self.notifier.watchdog_interval()
        next_scan = time.monotonic() + self.config.discovery.scan_interval_seconds
        next_tick = 0.0
        timeout_ms = max(1, int(min(self.config.daemon.poll_interval_seconds, watchdog_every or 1.0) * 1000))
        try:
            while not self.flags.stop:
                self.loop_once(timeout_ms)
                if self.pending_lines:
                    # Records reach the file as soon as they are decoded, not at the next tick: the
                    # tick only paces status, loss reports and the watchdog.
                    self.write_pending()
                if self.pending:
                    self.recheck_pending()
                now = time.monotonic()
                if self.flags.reload:
                    self.flags.reload = False
                    self.reload()
                if now >= next_scan:
                    self.scan("scan")
                    next_scan = now + self.config.discovery.scan_interval_seconds
                if now >= next_tick:
                    self.report_losses()
                    self.flush()
                    self.write_status()
                    heartbeat.write(self.config.daemon.state_dir, _now_ns())
                    self.notifier.notify(f"STATUS={self.status_text()}")
                    self.notifier.notify("WATCHDOG=1")
                    next_tick = now + flush_every
        finally:
            self.stop()
        return 0

    def stop(self) -> None:
        """Drain what the kernel already reported, write daemon-stopped, flush and detach."""
        self.notifier.notify("STOPPING=1")
        if self.sensor is not None:
            self.sensor.consume()
            for raw in self.queue.drain():
                self.handle_raw(raw)
            self.report_losses()
        if self.log_file is not None:
            self.emit(
                records.daemon_stopped(
                    _now_ns(),
                    self.host,
                    self._next_seq(),
                    records_written=self.records_written + 1,
                    events_lost=self.events_lost,
                    reason=self.flags.stop_reason or "stopped",
                )
            )
            self.flush()
            self.log_file.close()
            heartbeat.write(self.config.daemon.state_dir, _now_ns(), clean_stop=True)
        if self.sensor is not None:
            self.sensor.close()
            self.sensor = None
        if self.journal is not None:
            self.journal.close()
        with contextlib.suppress(OSError):
            (self.config.daemon.runtime_dir / "status.json").unlink()
        log.info("stopped", records=self.records_written, lost=self.events_lost)
