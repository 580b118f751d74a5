"""Audit logs written by the real sink (Output + RotatingFile + Chain), for verify's tests."""

from __future__ import annotations

from pathlib import Path

from claude_audit import records
from claude_audit.chain import resume
from claude_audit.output import Output
from claude_audit.records import HostInfo
from claude_audit.rotate import RotatingFile
from claude_audit.sealing import Sealer

HOST = HostInfo(hostname="box", boot_id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
T0 = 1_795_572_670_123_456_789


def write_run(
    log: Path,
    state_dir: Path,
    records_count: int,
    *,
    checkpoint_every: int = 5,
    final: bool = True,
    key_file: Path | None = None,
    max_bytes: int = 1 << 30,
    backups: int = 20,
    schema: str = "ecs",
) -> Output:
    """One daemon run as the daemon's sink writes it: chained records, periodic checkpoints, and a final
    checkpoint at a clean stop (none when `final` is False: a crash)."""
    sealer = Sealer.load(key_file) if key_file is not None else None
    out = Output(
        HOST,
        RotatingFile(log, max_bytes, backups),
        None,
        T0,
        now_ns=lambda: T0,
        chain=resume(state_dir, log),
        state_dir=state_dir,
        sealer=sealer,
        schema=schema,
    )
    for i in range(records_count):
        out.emit(records.config_rejected(T0 + i, HOST, out.next_seq(), error=f"record {i}"))
        out.write_queued()
        if checkpoint_every and (i + 1) % checkpoint_every == 0:
            out.checkpoint()
    if final:
        out.checkpoint(final=True)
    out.flush()
    out.log_file.close()
    return out


def log_set(log: Path) -> list[Path]:
    """The log and its backups, oldest first."""
    backups = sorted(log.parent.glob(log.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [p for p in backups if p.suffix[1:].isdigit()] + [log]
