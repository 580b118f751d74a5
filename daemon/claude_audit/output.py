"""The sinks: sequence numbers, the loss ledger, the audit file and journald.

Stage: sinks (the last one). Records arrive finished; this module numbers them (`next_seq`), queues their
lines for the file and its entries for journald (both sent by the loop as each batch ends), and keeps
the loss ledger: one named bucket per kind of loss, each stated in an `events-lost` record as soon as it
grows. The ledger takes totals from wherever the count lives (kernel counters, the ring queue, the
decoder, the candidate hold) and reports deltas, so a loss is stated once and never twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from . import ocsf, records
from .chain import Chain
from .journal import DEFAULT_FIELDS, FieldChoice, JournalSink, journal_fields
from .records import HostInfo
from .rotate import RotatingFile
from .sealing import Sealer
from .textenc import dumps_line

log = structlog.get_logger("claude_audit")

LOSS_BUCKETS = (
    "kernel-ring",
    "kernel-ring-decision",
    "kernel-tracking",
    "kernel-candidates",
    "queue",
    "decode",
    "held-overflow",
    "held-at-stop",
    "crash",
    "file",
    "journal",
)
"""Every place a record can be lost (records.LOST_WHERE documents each)."""


class LossLedger:
    """Totals per loss bucket, and how much of each has been stated in a record."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = dict.fromkeys(LOSS_BUCKETS, 0)
        self.reported: dict[str, int] = dict.fromkeys(LOSS_BUCKETS, 0)

    def set_total(self, bucket: str, total: int) -> None:
        """A bucket whose count lives elsewhere (a kernel counter, say): its running total."""
        self.totals[bucket] = max(self.totals[bucket], total)

    def add(self, bucket: str, count: int) -> None:
        """A bucket counted here: count more losses."""
        self.totals[bucket] += count

    def unreported(self) -> list[tuple[str, int]]:
        """(bucket, count not yet stated) for each bucket that grew; marks them stated."""
        out = []
        for bucket, total in self.totals.items():
            delta = total - self.reported[bucket]
            if delta > 0:
                self.reported[bucket] = total
                out.append((bucket, delta))
        return out

    @property
    def stated(self) -> int:
        """Every loss stated in a record so far."""
        return sum(self.reported.values())


class Output:
    """File + journald fan-out with one sequence and one loss ledger for the run."""

    def __init__(
        self,
        host: HostInfo,
        log_file: RotatingFile,
        journal: JournalSink | None,
        since_ns: int,
        *,
        now_ns: Callable[[], int] = time.time_ns,
        journal_choice: FieldChoice = DEFAULT_FIELDS,
        chain: Chain | None = None,
        state_dir: Path | None = None,
        sealer: Sealer | None = None,
        schema: str = "ecs",
    ) -> None:
        self.host = host
        self.journal_choice = journal_choice
        self.log_file = log_file
        self.journal = journal
        self.since_ns = since_ns
        self.now_ns = now_ns
        self.seq = 0
        self.records_written = 0
        self.queued_lines: list[bytes] = []
        self.ledger = LossLedger()
        self.chain = chain
        """Stamps each record's chain field as it is serialised, so what is chained is what is stored."""
        self.state_dir = state_dir
        self.sealer = sealer
        self.checkpoints = 0
        self.schema = schema
        """"ecs", or "ocsf": records are mapped to OCSF (ocsf.py) for the file and journald alike."""

    def next_seq(self) -> int:
        """The next event.sequence number."""
        self.seq += 1
        return self.seq

    def emit(self, record: dict[str, Any]) -> None:
        """Queue a record for the file and for journald (both sent by `write_queued`, once per batch)."""
        ecs = record
        if self.schema == "ocsf":
            record = ocsf.from_ecs(record)
        if self.chain is not None:
            self.chain.stamp(record)
        line = dumps_line(record)
        if self.chain is not None:
            self.chain.advance(line)
        self.queued_lines.append(line)
        self.records_written += 1
        if self.journal is not None:
            # Structured fields from the ECS record whatever the file's schema; AUDIT_RECORD is the line
            # as stored (and chained).
            self.journal.queue(journal_fields(ecs, line, self.journal_choice))

    def write_queued(self) -> None:
        """Write the queued lines to the audit log now, and send journald its entries (one sendmmsg)."""
        lines, self.queued_lines = self.queued_lines, []
        self.log_file.write_lines(lines)
        self.log_file.flush()
        if self.journal is not None:
            self.journal.flush()

    def _save_chain(self) -> None:
        # After the lines reached the file, so the saved head is never ahead of what the file holds; at
        # each tick, not each batch (an atomic file write per 20 ms poll would cost more than the
        # chain): lines written after the last save are found in the log's tail at the next start.
        if self.chain is None or self.state_dir is None:
            return
        state = self.chain.state
        if state is not None and state.seq != self.chain.saved_seq and state.save(self.state_dir):
            self.chain.saved_seq = state.seq

    def checkpoint(self, *, final: bool = False) -> None:
        """Write a chain-checkpoint record naming the chain's head (sealed when a key is configured)."""
        if self.chain is None or self.chain.state is None:
            return
        head = self.chain.state
        seal = self.sealer.seal(head.segment, head.seq, head.head, final=final) if self.sealer else None
        self.emit(
            records.chain_checkpoint(
                self.now_ns(),
                self.host,
                self.next_seq(),
                segment=head.segment,
                chain_seq=head.seq,
                head=head.head,
                final=final,
                seal=seal,
            )
        )
        self.checkpoints += 1
        self.write_queued()

    def flush(self) -> None:
        """Write queued lines, and state any gap a write failure left; save the chain's head."""
        self.write_queued()
        gap = self.log_file.take_gap()
        if gap is not None:
            lines, nbytes = gap
            log.warning("audit log write failures", lines=lines, bytes=nbytes)
            self.ledger.add("file", lines)
            self.ledger.reported["file"] = self.ledger.totals["file"]
            self.emit(
                records.events_lost(
                    self.now_ns(),
                    self.host,
                    self.next_seq(),
                    count=lines,
                    where="file",
                    since_ns=self.since_ns,
                    lost_bytes=nbytes,
                )
            )
            self.write_queued()
        self._save_chain()

    def report_losses(self, totals: Mapping[str, int] | None = None) -> None:
        """Update the ledger with outside totals, then state every loss not yet stated."""
        for bucket, total in (totals or {}).items():
            self.ledger.set_total(bucket, total)
        for where, delta in self.ledger.unreported():
            log.warning("events lost", where=where, count=delta)
            self.emit(
                records.events_lost(
                    self.now_ns(),
                    self.host,
                    self.next_seq(),
                    count=delta,
                    where=where,
                    since_ns=self.since_ns,
                )
            )

    def replace_log(self, log_file: RotatingFile) -> None:
        """Switch to another audit file (config reload); the old one is flushed and closed."""
        self.flush()
        self.log_file.close()
        self.log_file = log_file

    def close(self) -> None:
        """Flush and close both sinks."""
        self.flush()
        self.log_file.close()
        if self.journal is not None:
            self.journal.close()
