"""output: sequence numbers, the loss ledger (one bucket per kind of loss) and the file sink."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from claude_audit import records
from claude_audit.output import LOSS_BUCKETS, LossLedger, Output
from claude_audit.records import HostInfo
from claude_audit.rotate import RotatingFile

HOST = HostInfo(hostname="box", boot_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
T0 = 1_795_572_670_123_456_789


def _output(tmp_path: Path) -> tuple[Output, Path]:
    path = tmp_path / "log" / "audit.jsonl"
    return Output(HOST, RotatingFile(path, 1 << 20, 1), None, T0, now_ns=lambda: T0), path


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_every_bucket_is_a_documented_place() -> None:
    """The ledger's buckets are exactly the `where` values events-lost accepts."""
    assert set(LOSS_BUCKETS) == records.LOST_WHERE


def test_ledger_states_each_loss_once() -> None:
    """Totals from elsewhere and counts added here are reported as deltas, each only once."""
    ledger = LossLedger()
    ledger.set_total("kernel-ring", 5)
    ledger.add("held-overflow", 2)
    assert sorted(ledger.unreported()) == [("held-overflow", 2), ("kernel-ring", 5)]
    assert ledger.unreported() == []
    ledger.set_total("kernel-ring", 7)
    ledger.set_total("kernel-ring", 6)  # a total never goes back
    assert ledger.unreported() == [("kernel-ring", 2)]
    assert ledger.stated == 9


def test_losses_become_events_lost_records_in_sequence(tmp_path: Path) -> None:
    """report_losses writes one events-lost record per grown bucket, numbered after what came before."""
    out, path = _output(tmp_path)
    out.emit(records.config_rejected(T0, HOST, out.next_seq(), error="x"))
    out.ledger.add("held-at-stop", 3)
    out.report_losses({"queue": 4})
    out.flush()
    recs = _lines(path)
    assert [r["event"]["sequence"] for r in recs] == [1, 2, 3]
    lost = {r["claude_audit"]["lost"]["where"]: r["claude_audit"]["lost"]["count"] for r in recs[1:]}
    assert lost == {"queue": 4, "held-at-stop": 3}
    assert out.records_written == 3
    out.report_losses({"queue": 4})
    out.flush()
    assert len(_lines(path)) == 3


def test_replace_log_moves_on_without_losing_queued_lines(tmp_path: Path) -> None:
    """Switching files (a reload) writes what was queued to the old file first."""
    out, path = _output(tmp_path)
    out.emit(records.config_rejected(T0, HOST, out.next_seq(), error="old"))
    new_path = tmp_path / "new" / "audit.jsonl"
    out.replace_log(RotatingFile(new_path, 1 << 20, 1))
    out.emit(records.config_rejected(T0, HOST, out.next_seq(), error="new"))
    out.close()
    assert [r["claude_audit"]["error"] for r in _lines(path)] == ["old"]
    assert [r["event"]["sequence"] for r in _lines(new_path)] == [2]
