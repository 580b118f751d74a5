"""The daemon: wires the stages of docs/DESIGN.md together in one polling main loop.

    ring (sensor) -> decode -> state (tracker: sessions, candidates, identity)
        -> record (render) -> sinks (output)

Order at start (as Tetragon does): attach probes, then scan /proc and seed sessions, then write the
daemon-started record and tell systemd READY=1, so nothing that runs after READY can be missed. Signal
handlers only set flags (a signal ends the wait at once); the loop waits on the ring until a record
arrives or the earliest timer is due (flush, rescan, candidate re-check, sweep, loss report, status,
heartbeat, watchdog), so an idle daemon hardly wakes.

Only a clean stop (SIGTERM/SIGINT) writes daemon-stopped and a clean-stop heartbeat. Any unexpected
exception is a crash: what was already taken from the ring is counted as lost, what was already made a
record is written, and `run` returns EX_SOFTWARE so systemd restarts the daemon; the heartbeat left
behind makes the next start's unwatched-window an alert.
"""

from __future__ import annotations

import collections
import dataclasses
import math
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
from .chain import resume as resume_chain
from .config import (
    Config,
    ConfigError,
    EnforceConfig,
    changed_keys,
    check_file_safety,
    config_digest,
    deny_rule_groups,
    load_config,
    privacy_policy,
)
from .decode import DecodeError, decode_event
from .detect import Detector, alert_record
from .discovery import Matchers
from .enforce import effective_mode
from .enrich import Enrichment, read_machine_id
from .events import ExecEvent
from .journal import FieldChoice, JournalSink
from .output import Output
from .privacy import Privacy
from .procfs import ProcFS
from .redact import load_or_create_key
from .render import render
from .rotate import RotatingFile
from .rulefiles import LoadedRules, load_rules
from .sealing import Sealer, SealError
from .sensor import PROBES, RingQueue, Sensor, SensorError, SensorSettings, boot_to_wall_offset_ns
from .service import Notifier, StopRequest, remove_status, write_status
from .tracker import ExecSeen, Lost, NotWatched, Outcome, SessionEnded, SessionFound, Tracker

log = structlog.get_logger("claude_audit")

RESTART_SECTIONS = frozenset({"capture"})
"""Config sections the BPF program is compiled with: a reload records a change, the next start applies it."""
EX_SOFTWARE = 70
EX_CONFIG = 78
"""Exit status when the configured sealing key file cannot be used (sysexits: configuration error)."""
"""Exit status of a crash (sysexits: internal software error), so systemd's Restart=on-failure acts."""
RECHECK_INTERVAL_SECONDS = 0.1
"""How often undecided candidates are looked at again in /proc while any are pending. Not every batch:
under a flood of look-alikes (each user may have the kernel adopt 20 a second) a recheck per 20 ms batch
would re-read /proc for every one of them 50 times a second."""
IDLE_TICK_SECONDS = 2.0
"""The tick's interval while no record arrives: heartbeat (so a crash's unwatched window starts at most
this long before the crash), status file and loss report. While records flow it is the flush interval."""
MAX_WAIT_SECONDS = 60.0
"""Longest single wait, whatever the timers say (a bound, not a knob)."""
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


def _journal_choice(cfg: Config) -> FieldChoice:
    j = cfg.journal
    return FieldChoice(j.process_args, j.command, j.audit_record, j.message_text_chars)


def _hash_key(cfg: Config) -> bytes:
    """The redaction hash key from the state directory; if it cannot be kept there, one for this run
    only (hashes then match within the run, not across restarts), said in the daemon's log."""
    try:
        return load_or_create_key(cfg.daemon.state_dir)
    except OSError as exc:
        log.error("cannot keep the redaction hash key; using one for this run only", error=str(exc))
        return os.urandom(32)


def _now_ns() -> int:
    return time.time_ns()


@dataclasses.dataclass
class Periodic:
    """A task the main loop runs every `interval()` seconds (math.inf: never)."""

    interval: Callable[[], float]
    action: Callable[[], object]
    due: float

    def run_if_due(self, now: float) -> None:
        """Run the task if its time has come, and schedule the next run."""
        if now >= self.due:
            self.action()
            self.due = now + self.interval()


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
        self.status_changed = False
        """A session was found or ended: the status file says so at once, not at the next idle tick."""
        self.hash_key = b""
        self.privacy: Privacy | None = None
        self.rules: LoadedRules | None = None
        self.detector: Detector | None = None
        self.config_digest = config_digest(config)

    # -- the pipeline ---------------------------------------------------------------------------------
    def publish(self, outcomes: Iterable[Outcome]) -> None:
        """Record stage and sinks: each outcome becomes a record (or a ledger entry) in order."""
        assert self.out is not None
        for o in outcomes:
            if isinstance(o, Lost):
                self.out.ledger.add(o.where, o.count)
                continue
            rec = render(
                o, self.host, self.out.next_seq(), _now_ns(), privacy=self.privacy, enrich=self.enrich
            )
            if rec is not None:
                self.out.emit(rec)
                # On the record as stored (after redaction): an alert never carries what the log does not.
                if isinstance(o, ExecSeen) and self.detector is not None:
                    self.detect(rec)
            if isinstance(o, SessionFound | SessionEnded | NotWatched):
                self.status_changed = True
            if isinstance(o, SessionFound):
                s = o.session
                log.info("session found", pid=s.pid, how=s.how, reason=s.reason, seeded=o.seeded)
            elif isinstance(o, SessionEnded):
                log.info(
                    "session ended", pid=o.session.pid, exit_code=o.session.exit_code, execs=o.session.execs
                )
            elif isinstance(o, NotWatched):
                log.error("session not watched", pid=o.info.pid, error=o.error)

    def detect(self, rec: dict[str, Any]) -> None:
        """Alert records for the rules an exec record matches, right after it."""
        assert self.out is not None and self.detector is not None
        hits, parent_known = self.detector.check(rec)
        for rule in hits:
            self.out.emit(
                alert_record(rec, rule, self.host, self.out.next_seq(), _now_ns(), parent_known=parent_known)
            )

    def load_rules(self, config: Config) -> None:
        """Compile the rules the config names; every refusal is logged (and stated in daemon-started and
        status). The new set replaces the old one whole, so a reload never runs half of each."""
        loaded = load_rules(config.rules)
        for r in loaded.refused:
            log.warning("sigma rule refused", file=r.source, id=r.rule_id, title=r.title, reason=r.reason)
        self.rules = loaded
        self.detector = Detector(loaded.ruleset) if len(loaded.ruleset) else None
        log.info(
            "sigma rules loaded", loaded=len(loaded.ruleset), refused=len(loaded.refused), files=loaded.files
        )

    def handle_raw(self, raw: bytes) -> None:
        """Decode one ring-buffer record and pass it on; a bad record is counted and skipped."""
        assert self.tracker is not None
        try:
            ev = decode_event(raw, self.boot_to_wall)
        except DecodeError as exc:
            self.decode_errors += 1
            log.warning("undecodable record", error=str(exc))
            return
        if isinstance(ev, ExecEvent) and ev.denial is not None:
            ev = self.resolve_denial(ev)
        self.publish(self.tracker.on_event(ev))

    def resolve_denial(self, ev: ExecEvent) -> ExecEvent:
        """Name the rule a kernel decision points at (by generation and index) in the record."""
        assert self.sensor is not None and ev.denial is not None
        rule = self.sensor.deny_rule(ev.denial.generation, ev.denial.index)
        if rule is None:
            return ev
        return dataclasses.replace(
            ev, denial=dataclasses.replace(ev.denial, rule_id=rule.id, reason=rule.reason)
        )

    def apply_enforcement(self, enforce: EnforceConfig) -> dict[str, Any]:
        """Load the deny rules into the kernel in the mode this kernel allows; what the records say of it."""
        assert self.sensor is not None
        can_kill = self.sensor.kernel.can_kill
        mode = effective_mode(enforce.mode, can_kill)
        self.sensor.apply_enforcement(mode, deny_rule_groups(enforce.deny), enforce.deny)
        facts: dict[str, Any] = {
            "mode": enforce.mode,
            "effective_mode": mode,
            "rules": [r.id for r in enforce.deny] if mode != "off" else [],
        }
        if enforce.mode == "enforce" and not can_kill:
            facts["not_possible"] = (
                "this kernel cannot kill in BPF (" + "; ".join(self.sensor.kernel.cannot_kill) + "): "
                "deny rules are recorded (exec-would-deny) but nothing is stopped"
            )
            log.error(
                "enforcement not possible; deny rules run in record-only mode", why=facts["not_possible"]
            )
        return facts

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
        decisions_lost = self.counters[L.COUNTER_DENY_RECORD_LOST]
        return {
            "kernel-ring": self.counters[L.COUNTER_RING_LOST]
            + self.counters[L.COUNTER_CANDIDATE_LOST]
            - decisions_lost,
            "kernel-ring-decision": decisions_lost,
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
                "execs_denied": self.counters[L.COUNTER_DENIED],
                "execs_would_deny": self.counters[L.COUNTER_WOULD_DENY],
                "decision_records_lost": self.counters[L.COUNTER_DENY_RECORD_LOST],
            },
            "chain": self._chain_status(),
            "queue_dropped": self.queue.dropped,
            "filtered_not_session": t.counts.not_session,
            "sessions_not_watched": t.counts.not_watched,
            "pending_candidates": len(t.candidates),
            "evicted": dataclasses.asdict(t.sessions.evicted),
            "rules": {
                "loaded": len(self.rules.ruleset) if self.rules else 0,
                "refused": len(self.rules.refused) if self.rules else 0,
                "execs_checked": self.detector.evaluated if self.detector else 0,
                "alerts": self.detector.matched if self.detector else 0,
                "refusals": self.rules.summary()["refusals"] if self.rules else [],
            },
            "sessions": [
                {"pid": s.pid, "entity_id": s.entity_id, "how": s.how, "execs": s.execs, **s.identity}
                for s in t.sessions.live()
            ],
        }

    def _chain_status(self) -> dict[str, Any] | None:
        assert self.out is not None
        chain, sealer = self.out.chain, self.out.sealer
        if chain is None:
            return None
        status: dict[str, Any] = {
            "segment": chain.segment,
            "seq": chain.seq,
            "checkpoints": self.out.checkpoints,
        }
        if sealer is not None:
            status |= {"sealed_epoch": sealer.state.epoch, "seal_key_write_failures": sealer.failed}
        return status

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
        else:
            # Running on defaults: there is no config to re-read, but rule files may have changed.
            self.load_rules(self.config)
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
        self.out.schema = new.audit_log.schema_
        self.tracker.matchers = Matchers.from_config(new.discovery)
        self.privacy = privacy_policy(new, self.hash_key)
        self.out.journal_choice = _journal_choice(new)
        # Rule files may have changed even when the config did not: read them again.
        self.load_rules(new)
        if new.enforce != self.config.enforce:
            facts = self.apply_enforcement(new.enforce)
            self.out.emit(records.enforce_changed(_now_ns(), self.host, self.out.next_seq(), enforce=facts))
            log.info("deny rules replaced", **facts)
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
        self.hash_key = _hash_key(self.config)
        self.privacy = privacy_policy(self.config, self.hash_key)
        journal = JournalSink(self.config.journal.socket_path) if self.config.journal.enabled else None
        state_dir = self.config.daemon.state_dir
        key_file = self.config.integrity.key_file
        # A key file that cannot be used is a set-up error (SealError, like a bad config): running on
        # unsealed would silently give up what the admin asked for.
        sealer = Sealer.load(key_file) if key_file is not None else None
        self.out = Output(
            self.host,
            _open_log(self.config),
            journal,
            self.started_ns,
            journal_choice=_journal_choice(self.config),
            chain=resume_chain(state_dir, self.config.audit_log.path),
            state_dir=state_dir,
            sealer=sealer,
            schema=self.config.audit_log.schema_,
        )
        previous = heartbeat.read_previous(self.config.daemon.state_dir)
        # Before the probes: compiling the rules takes a moment, and nothing waits in the ring meanwhile.
        self.load_rules(self.config)
        self.sensor = self.sensor_factory(SensorSettings.from_config(self.config), self.queue)
        attached_ns = _now_ns()
        enforce = self.apply_enforcement(self.config.enforce)
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
                rules=self.rules.summary() if self.rules else None,
                enforce=enforce,
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
        self.status_changed = False
        write_status(self.config.daemon.runtime_dir, self.status())
        self.notifier.notify(f"STATUS={self.status_text()}")

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit status (EX_SOFTWARE after a crash)."""
        self.signals.install()
        try:
            self.start()
            self.main_loop()
        except SealError as exc:
            log.error("cannot use integrity.key_file", error=str(exc))
            self.crash()
            return EX_CONFIG
        except SensorError:
            self.crash()
            raise  # a set-up problem with its own message and exit status (cli.py)
        except Exception:
            log.exception("daemon crashed")
            self.crash()
            return EX_SOFTWARE
        self.stop()
        return 0

    def collect(self, busy: bool, wait_s: float) -> None:
        """Take what the kernel reported: wait for the ring, or pace a batch while records flow.

        Exec records wake the daemon only when they are the first in an empty ring (the BPF ring's
        adaptive notification), so an idle daemon sleeps until a record or its next timer. While records
        flow it does not wait on the ring (each batch's first record would wake it again) but sleeps
        `poll_interval_seconds` and takes the whole batch: that interval bounds latency and sets the
        batch size.
        """
        assert self.sensor is not None
        if busy:
            time.sleep(min(self.config.daemon.poll_interval_seconds, wait_s))
            self.sensor.consume()
        else:
            self.sensor.poll(max(1, math.ceil(wait_s * 1000)))

    def handle_queued(self) -> int:
        """Handle every record taken from the ring; returns how many."""
        self.in_flight = collections.deque(self.queue.drain())
        n = len(self.in_flight)
        while self.in_flight:
            self.handle_raw(self.in_flight[0])
            self.in_flight.popleft()  # only once handled: a record that raised is counted by crash()
        return n

    def main_loop(self) -> None:
        """Wait, handle, write and run what is due, until asked to stop.

        Every periodic task has its own timer and the loop sleeps until the earliest one is due or the
        kernel reports something, so an idle daemon wakes a few times a second at most: the tick
        (losses, flush, heartbeat, status) runs every flush interval while records flow and every
        IDLE_TICK_SECONDS otherwise, the watchdog at its own interval, candidates are rechecked only
        while some are pending.
        """
        assert self.out is not None and self.tracker is not None
        out, tracker = self.out, self.tracker

        def cfg() -> Config:
            return self.config

        flush_every = self.config.audit_log.flush_interval_seconds
        watchdog_every = self.notifier.watchdog_interval() or math.inf
        now = time.monotonic()
        # In the order they run when due together; each interval is read when it is rescheduled, so a
        # reload's new interval applies from the next run on.
        periodic = [
            Periodic(lambda: cfg().discovery.scan_interval_seconds, lambda: self.scan("scan"), now),
            Periodic(lambda: SWEEP_INTERVAL_SECONDS, tracker.sweep, now),
            Periodic(lambda: cfg().integrity.checkpoint_interval_seconds, out.checkpoint, now),
            Periodic(lambda: cfg().daemon.heartbeat_interval_seconds, self.emit_heartbeat, now),
            Periodic(
                lambda: METRICS_INTERVAL_SECONDS if cfg().daemon.prometheus_textfile else math.inf,
                self.write_metrics,
                now,
            ),
        ]
        for task in periodic:
            task.due = now + task.interval()
        next_tick = now + flush_every
        next_watchdog = now if watchdog_every < math.inf else math.inf
        next_recheck = now
        written_at_tick = out.records_written
        busy = False
        while not self.signals.stop:
            now = time.monotonic()
            due = min(next_tick, next_watchdog, *(t.due for t in periodic))
            if len(tracker.candidates):
                due = min(due, next_recheck)
            self.collect(busy, min(max(0.0, due - now), MAX_WAIT_SECONDS))
            busy = self.handle_queued() > 0
            if out.queued_lines:
                # Records reach the file as soon as they are decoded, not at the next tick: the tick
                # only paces status, loss reports and the heartbeat.
                out.write_queued()
            now = time.monotonic()
            if now >= next_recheck and len(tracker.candidates):
                self.publish(tracker.recheck())
                next_recheck = now + RECHECK_INTERVAL_SECONDS
            if self.signals.reload:
                self.signals.reload = False
                self.reload()
            for task in periodic:
                task.run_if_due(now)
            if now >= next_tick or self.status_changed:
                self.report_losses()
                out.flush()
                heartbeat.write(self.config.daemon.state_dir, _now_ns())
                self.tick_status()
                active = busy or out.records_written != written_at_tick
                written_at_tick = out.records_written
                next_tick = now + (flush_every if active else max(flush_every, IDLE_TICK_SECONDS))
            if now >= next_watchdog:
                self.notifier.notify("WATCHDOG=1")
                next_watchdog = now + watchdog_every

    def stop(self) -> None:
        """Clean stop: drain what the kernel already reported, settle candidates, write daemon-stopped."""
        assert self.out is not None and self.tracker is not None and self.sensor is not None
        self.notifier.notify("STOPPING=1")
        self.sensor.consume()
        self.handle_queued()
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
        out.checkpoint(final=True)
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
                out.checkpoint()  # not final: verify must see that this run did not end cleanly
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
