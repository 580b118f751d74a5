"""The daemon: wires the stages of docs/DESIGN.md together in one polling main loop.

    ring (sensor) -> decode -> state (tracker: sessions, candidates, identity)
        -> record (render) -> sinks (output)

Order at start (as Tetragon does): attach probes, then scan /proc and seed sessions, then write the
daemon-started record and tell systemd READY=1, so nothing that runs after READY can be missed. Signal
handlers only set flags; the loop polls the ring with a timeout so it can also flush the log, rescan,
re-check candidates, sweep ended sessions, report losses and ping the watchdog on time.

Only a clean stop (SIGTERM/SIGINT) writes daemon-stopped and a clean-stop heartbeat. Any unexpected
exception is a crash: what was already taken from the ring is counted as lost, what was already made a
record is written, and `run` returns EX_SOFTWARE so systemd restarts the daemon; the heartbeat left
behind makes the next start's unwatched-window an alert.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import structlog

from . import __version__, heartbeat, records
from . import bpf_layout as L
from .accounts import local_group_id
from .config import Config, ConfigError, changed_keys, check_file_safety, config_digest, load_config
from .decode import DecodeError, decode_event
from .discovery import Matchers
from .enrich import Enrichment, read_machine_id
from .journal import JournalSink
from .output import Output
from .procfs import ProcFS
from .render import render
from .rotate import RotatingFile
from .sensor import PROBES, RingQueue, Sensor, SensorError, SensorSettings, boot_to_wall_offset_ns
from .service import Notifier, StopRequest, remove_status, write_status
from .tracker import Lost, NotWatched, Outcome, SessionEnded, SessionFound, Tracker

log = structlog.get_logger("claude_audit")

RESTART_SECTIONS = frozenset({"capture"})
"""Config sections the BPF program is compiled with: a reload records a change, the next start applies it."""
EX_SOFTWARE = 70
"""Exit status of a crash (sysexits: internal software error), so systemd's Restart=on-failure acts."""
RECHECK_INTERVAL_SECONDS = 0.1
"""How often undecided candidates are looked at again in /proc. Not every poll: under a flood of
look-alikes (each user may have the kernel adopt 20 a second) a recheck per 20 ms poll would re-read
/proc for every one of them 50 times a second."""
METRICS_INTERVAL_SECONDS = 15.0
"""Most seconds between rewrites of the Prometheus textfile (node_exporter's scrape interval is 15 s to
1 min): its timestamp must move even when heartbeats are minutes apart."""
SWEEP_INTERVAL_SECONDS = 10.0
"""How often ended sessions, idle invocations and rejected candidates are looked at for eviction."""


def _log_group(cfg: Config) -> int | None:
    name = cfg.audit_log.group
    if not name:
        return None
    gid = local_group_id(name)
    if gid is None:
        log.warning("audit log group does not exist; the log is readable by root only", group=name)
    return gid


def _open_log(cfg: Config) -> RotatingFile:
    return RotatingFile(
        cfg.audit_log.path, cfg.audit_log.max_bytes, cfg.audit_log.backups, group_id=_log_group(cfg)
    )


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
        self.signals = StopRequest()
        self.boot_to_wall = boot_to_wall_offset_ns()
        self.host = records.HostInfo(
            hostname=socket.gethostname(),
            boot_id=self.proc.boot_id(),
            machine_id=read_machine_id(),
            boot_time_ns=self.boot_to_wall,
        )
        self.enrich = Enrichment()
        self.queue = RingQueue(config.daemon.queue_max_events)
        self.decode_errors = 0
        self.counters: list[int] = [0] * L.COUNTER_MAX
        self.sensor: Sensor | None = None
        self.tracker: Tracker | None = None
        self.out: Output | None = None
        self.in_flight: collections.deque[bytes] = collections.deque()
        """Raw records taken from the ring and not yet handled (counted as lost if the daemon crashes)."""
        self.started_ns = 0
        self.config_digest = config_digest(config)

    # -- the pipeline ---------------------------------------------------------------------------------
    def publish(self, outcomes: Iterable[Outcome]) -> None:
        """Record stage and sinks: each outcome becomes a record (or a ledger entry) in order."""
        assert self.out is not None
        for o in outcomes:
            if isinstance(o, Lost):
                self.out.ledger.add(o.where, o.count)
                continue
            rec = render(o, self.host, self.out.next_seq(), _now_ns(), self.enrich)
            if rec is not None:
                self.out.emit(rec)
            if isinstance(o, SessionFound):
                s = o.session
                log.info("session found", pid=s.pid, how=s.how, reason=s.reason, seeded=o.seeded)
            elif isinstance(o, SessionEnded):
                log.info(
                    "session ended", pid=o.session.pid, exit_code=o.session.exit_code, execs=o.session.execs
                )
            elif isinstance(o, NotWatched):
                log.error("session not watched", pid=o.info.pid, error=o.error)

    def handle_raw(self, raw: bytes) -> None:
        """Decode one ring-buffer record and pass it on; a bad record is counted and skipped."""
        assert self.tracker is not None
        try:
            ev = decode_event(raw, self.boot_to_wall)
        except DecodeError as exc:
            self.decode_errors += 1
            log.warning("undecodable record", error=str(exc))
            return
        self.publish(self.tracker.on_event(ev))

    def loop_once(self, timeout_ms: int) -> None:
        """Poll the ring once and handle what arrived."""
        assert self.sensor is not None
        self.sensor.poll(timeout_ms)
        self.in_flight = collections.deque(self.queue.drain())
        while self.in_flight:
            self.handle_raw(self.in_flight[0])
            self.in_flight.popleft()  # only once handled: a record that raised is counted by crash()

    def scan(self, how: str) -> int:
        """Adopt Claude Code processes not watched yet; returns how many."""
        assert self.tracker is not None
        found, outcomes = self.tracker.scan(how)
        self.publish(outcomes)
        return found

    def loss_totals(self) -> dict[str, int]:
        """Loss counts that live outside the ledger (kernel counters, queue, decoder, state stage)."""
        assert self.sensor is not None and self.tracker is not None
        self.counters = self.sensor.counter_totals()
        return {
            "kernel-ring": self.counters[L.COUNTER_RING_LOST] + self.counters[L.COUNTER_CANDIDATE_LOST],
            "kernel-tracking": self.counters[L.COUNTER_TRACK_FULL] + self.tracker.counts.seed_track_failures,
            "kernel-candidates": self.counters[L.COUNTER_ROOTS_FULL]
            + self.counters[L.COUNTER_CANDIDATE_THROTTLED],
            "queue": self.queue.dropped,
            "decode": self.decode_errors,
            "journal": self.out.journal.dropped_busy if self.out and self.out.journal else 0,
            "held-overflow": self.tracker.candidates.held_overflow,
        }

    def report_losses(self) -> None:
        """Turn every new loss into an events-lost record."""
        assert self.out is not None
        self.out.report_losses(self.loss_totals())

    @property
    def events_lost(self) -> int:
        """Every loss stated so far."""
        return self.out.ledger.stated if self.out is not None else 0

    # -- status ---------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What `claude-audit status` shows."""
        assert self.tracker is not None and self.out is not None
        t = self.tracker
        return {
            "pid": os.getpid(),
            "version": __version__,
            "started": self.started_ns,
            "log_path": str(self.config.audit_log.path),
            "config_digest": self.config_digest,
            "records_written": self.out.records_written,
            "events_lost": self.events_lost,
            "losses": dict(self.out.ledger.reported),
            "kernel_counters": {
                "ring_lost": self.counters[L.COUNTER_RING_LOST],
                "tracking_full": self.counters[L.COUNTER_TRACK_FULL],
                "candidates_lost": self.counters[L.COUNTER_CANDIDATE_LOST],
                "stale_pids": self.counters[L.COUNTER_STALE_PID],
                "execs_seen": self.counters[L.COUNTER_EXECS_SEEN],
                "candidate_maps_full": self.counters[L.COUNTER_ROOTS_FULL],
                "candidates_throttled": self.counters[L.COUNTER_CANDIDATE_THROTTLED],
                "rejected_retriggers": self.counters[L.COUNTER_CANDIDATE_REJECTED_AGAIN],
            },
            "queue_dropped": self.queue.dropped,
            "filtered_not_session": t.counts.not_session,
            "sessions_not_watched": t.counts.not_watched,
            "pending_candidates": len(t.candidates),
            "evicted": dataclasses.asdict(t.sessions.evicted),
            "sessions": [
                {"pid": s.pid, "entity_id": s.entity_id, "how": s.how, "execs": s.execs, **s.identity}
                for s in t.sessions.live()
            ],
        }

    def status_text(self) -> str:
        """One line for systemctl status."""
        assert self.tracker is not None and self.out is not None
        return (
            f"watching {len(self.tracker.sessions.live())} session(s), {self.out.records_written} records "
            f"written, {self.events_lost} events lost"
        )

    # -- reload ---------------------------------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: reopen the log (logrotate) and re-read the config with the same checks as at start.

        A config that fails the safety check or validation, or names a log that cannot be opened, is
        stated in a config-rejected record and the running config is kept.
        """
        assert self.out is not None
        self.notifier.notify("RELOADING=1")
        self.out.flush()
        self.out.log_file.reopen()
        self.enrich.reload()
        if self.config_path is not None:
            try:
                check_file_safety(self.config_path)
                new = load_config(self.config_path)
                new_log = _open_log(new) if new.audit_log != self.config.audit_log else None
            except ConfigError as exc:
                self._reject_config(str(exc))
            except OSError as exc:
                self._reject_config(f"audit_log.path: cannot open: {exc}")
            else:
                self._apply_config(new, new_log)
        self.notifier.notify("READY=1")

    def _reject_config(self, error: str) -> None:
        assert self.out is not None
        log.error("config reload failed; keeping the running config", error=error)
        self.out.emit(records.config_rejected(_now_ns(), self.host, self.out.next_seq(), error=error))

    def _apply_config(self, new: Config, new_log: RotatingFile | None) -> None:
        # Settings the BPF program was compiled with need a restart; the rest apply now.
        assert self.out is not None and self.tracker is not None
        if new_log is not None:
            self.out.replace_log(new_log)
        self.tracker.matchers = Matchers.from_config(new.discovery)
        changed = changed_keys(self.config, new)
        previous_digest, self.config_digest = self.config_digest, config_digest(new)
        self.config = new
        self.out.emit(
            records.config_reloaded(
                _now_ns(),
                self.host,
                self.out.next_seq(),
                config_path=str(self.config_path),
                digest=self.config_digest,
                previous_digest=previous_digest,
                changed=changed,
                needs_restart=[k for k in changed if k.split(".")[0] in RESTART_SECTIONS],
            )
        )
        log.info("config reloaded", changed=changed)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open sinks, attach probes, seed sessions, write daemon-started, report READY."""
        self.started_ns = _now_ns()
        journal = JournalSink(self.config.journal.socket_path) if self.config.journal.enabled else None
        self.out = Output(self.host, _open_log(self.config), journal, self.started_ns)
        previous = heartbeat.read_previous(self.config.daemon.state_dir)
        self.sensor = self.sensor_factory(SensorSettings.from_config(self.config), self.queue)
        attached_ns = _now_ns()
        self.tracker = Tracker(
            self.host.boot_id, self.sensor, self.proc, Matchers.from_config(self.config.discovery)
        )
        found = self.scan("startup")
        out = self.out
        out.emit(
            records.daemon_started(
                _now_ns(),
                self.host,
                out.next_seq(),
                version=__version__,
                pid=os.getpid(),
                config_path=str(self.config_path) if self.config_path else None,
                sessions=found,
                probes=list(PROBES),
                kernel=self.sensor.kernel_facts(),
                config_digest=self.config_digest,
            )
        )
        if previous is not None:
            reason = "stopped" if previous.clean_stop else "crash"
            out.emit(
                records.unwatched_window(
                    _now_ns(),
                    self.host,
                    out.next_seq(),
                    from_ns=previous.last_alive_ns,
                    to_ns=attached_ns,
                    reason=reason,
                )
            )
            if reason == "crash":
                log.warning("previous run did not stop cleanly", pid=previous.pid)
        self.emit_heartbeat()
        out.flush()
        self.tick_status()
        self.notifier.notify("READY=1")
        log.info("ready", sessions=found, log=str(self.config.audit_log.path))

    def liveness(self, kernel: dict[str, Any] | None = None) -> heartbeat.Liveness:
        """The daemon's vital signs now (heartbeat record and metrics file); `kernel` is the BPF program
        state if the caller already has it."""
        assert self.out is not None and self.tracker is not None and self.sensor is not None
        kernel = kernel if kernel is not None else self.sensor.program_state()
        return heartbeat.Liveness(
            now_ns=_now_ns(),
            started_ns=self.started_ns,
            version=__version__,
            config_digest=self.config_digest,
            records_written=self.out.records_written,
            losses=dict(self.out.ledger.reported),
            sessions_watched=len(self.tracker.sessions.live()),
            execs_seen=self.counters[L.COUNTER_EXECS_SEEN],
            programs_attached=kernel["programs_attached"],
            programs_expected=kernel["programs_expected"],
        )

    def emit_heartbeat(self) -> None:
        """The heartbeat record, and the metrics file if configured."""
        assert self.out is not None and self.sensor is not None
        self.report_losses()  # refreshes the kernel counters too
        kernel = self.sensor.program_state()
        live = self.liveness(kernel)
        self.out.emit(
            records.heartbeat(
                live.now_ns,
                self.host,
                self.out.next_seq(),
                version=live.version,
                pid=os.getpid(),
                started_ns=live.started_ns,
                interval_seconds=self.config.daemon.heartbeat_interval_seconds,
                config_digest=live.config_digest,
                config_path=str(self.config_path) if self.config_path else None,
                counters={
                    # +1: this heartbeat itself, so the count matches the log after it
                    "records_written": live.records_written + 1,
                    "execs_seen": live.execs_seen,
                    "execs_filtered_not_session": self.tracker.counts.not_session if self.tracker else 0,
                },
                losses={k: v for k, v in live.losses.items() if v},
                sessions_watched=live.sessions_watched,
                kernel=kernel,
            )
        )
        # The state file never lags the last heartbeat record, so the next start's unwatched-window
        # begins no earlier than the last heartbeat a SIEM saw.
        heartbeat.write(self.config.daemon.state_dir, _now_ns())
        if kernel["state"] != "attached":
            log.error("BPF programs missing", **kernel)
        self.write_metrics(live)

    def write_metrics(self, live: heartbeat.Liveness | None = None) -> None:
        """Rewrite the Prometheus textfile, if one is configured."""
        target = self.config.daemon.prometheus_textfile
        if not target:
            return
        if not heartbeat.write_textfile(Path(target), heartbeat.prometheus_text(live or self.liveness())):
            log.debug("cannot write the metrics file", path=target)

    def tick_status(self) -> None:
        """Status file and systemd status line."""
        write_status(self.config.daemon.runtime_dir, self.status())
        self.notifier.notify(f"STATUS={self.status_text()}")

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit status (EX_SOFTWARE after a crash)."""
        self.signals.install()
        try:
            self.start()
            self.main_loop()
        except SensorError:
            self.crash()
            raise  # a set-up problem with its own message and exit status (cli.py)
        except Exception:
            log.exception("daemon crashed")
            self.crash()
            return EX_SOFTWARE
        self.stop()
        return 0

    def main_loop(self) -> None:
        """Poll, handle, write and tick until asked to stop."""
        assert self.out is not None and self.tracker is not None
        flush_every = self.config.audit_log.flush_interval_seconds
        watchdog_every = self.notifier.watchdog_interval()
        next_scan = time.monotonic() + self.config.discovery.scan_interval_seconds
        next_sweep = time.monotonic() + SWEEP_INTERVAL_SECONDS
        next_tick = next_recheck = 0.0
        next_heartbeat = time.monotonic() + self.config.daemon.heartbeat_interval_seconds
        next_metrics = time.monotonic() + METRICS_INTERVAL_SECONDS
        timeout_ms = max(1, int(min(self.config.daemon.poll_interval_seconds, watchdog_every or 1.0) * 1000))
        while not self.signals.stop:
            self.loop_once(timeout_ms)
            if self.out.queued_lines:
                # Records reach the file as soon as they are decoded, not at the next tick: the tick
                # only paces status, loss reports and the watchdog.
                self.out.write_queued()
            now = time.monotonic()
            if now >= next_recheck:
                self.publish(self.tracker.recheck())
                next_recheck = now + RECHECK_INTERVAL_SECONDS
            if self.signals.reload:
                self.signals.reload = False
                self.reload()
            if now >= next_scan:
                self.scan("scan")
                next_scan = now + self.config.discovery.scan_interval_seconds
            if now >= next_sweep:
                self.tracker.sweep()
                next_sweep = now + SWEEP_INTERVAL_SECONDS
            if now >= next_heartbeat:
                self.emit_heartbeat()
                next_heartbeat = now + self.config.daemon.heartbeat_interval_seconds
                next_metrics = now + METRICS_INTERVAL_SECONDS
            elif now >= next_metrics:
                self.write_metrics()
                next_metrics = now + METRICS_INTERVAL_SECONDS
            if now >= next_tick:
                self.report_losses()
                self.out.flush()
                heartbeat.write(self.config.daemon.state_dir, _now_ns())
                self.tick_status()
                self.notifier.notify("WATCHDOG=1")
                next_tick = now + flush_every

    def stop(self) -> None:
        """Clean stop: drain what the kernel already reported, settle candidates, write daemon-stopped."""
        assert self.out is not None and self.tracker is not None and self.sensor is not None
        self.notifier.notify("STOPPING=1")
        self.sensor.consume()
        self.in_flight = collections.deque(self.queue.drain())
        while self.in_flight:
            self.handle_raw(self.in_flight[0])
            self.in_flight.popleft()
        self.publish(self.tracker.settle())
        self.report_losses()
        out = self.out
        out.emit(
            records.daemon_stopped(
                _now_ns(),
                self.host,
                out.next_seq(),
                records_written=out.records_written + 1,
                events_lost=self.events_lost,
                reason=self.signals.stop_reason or "stopped",
            )
        )
        out.close()
        heartbeat.write(self.config.daemon.state_dir, _now_ns(), clean_stop=True)
        self._release()
        log.info("stopped", records=out.records_written, lost=self.events_lost)

    def crash(self) -> None:
        """After an unexpected exception: state what was lost, write what was made, release the kernel.

        No daemon-stopped record and no clean-stop heartbeat: the next start states the gap as a crash.
        Every step is best effort; the original exception is what matters.
        """
        out = self.out
        if out is not None:
            lost = len(self.in_flight) + len(self.queue.items)
            self.in_flight.clear()
            self.queue.items.clear()
            out.ledger.add("crash", lost)
            try:
                ready = self.sensor is not None and self.tracker is not None
                out.report_losses(self.loss_totals() if ready else None)
            except Exception:
                log.exception("could not state the crash's losses")
            try:
                out.close()
            except Exception:
                log.exception("could not write the records made before the crash")
        self._release()

    def _release(self) -> None:
        if self.sensor is not None:
            try:
                self.sensor.close()
            finally:
                self.sensor = None
        remove_status(self.config.daemon.runtime_dir)
