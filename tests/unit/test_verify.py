"""verify: the chain, checkpoints, seals and journal copy of logs written by the real sink, tampered with
in every way the issue names; an untouched log verifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chained_logs import log_set, write_run

from claude_audit import sealing
from claude_audit.verify import (
    EXIT_BROKEN,
    EXIT_INCOMPLETE,
    EXIT_OK,
    Report,
    journal_checkpoints,
    load_files,
    order_files,
    verify_lines,
)


def _verify(paths: list[Path], **kw: object) -> Report:
    return verify_lines(load_files(paths), **kw)  # type: ignore[arg-type]


def _kinds(report: Report) -> list[str]:
    return [f.kind for f in report.breaks]


def _edit(path: Path, fn: object) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(fn(lines)))  # type: ignore[operator]


@pytest.fixture
def one_run(tmp_path: Path) -> Path:
    """A single clean run of 30 records with checkpoints."""
    log = tmp_path / "log" / "audit.jsonl"
    write_run(log, tmp_path / "state", 30)
    return log


def test_untouched_log_verifies(one_run: Path) -> None:
    """A clean run's log has no finding at all and exits 0."""
    report = _verify([one_run])
    assert report.findings == []
    assert report.exit_code == EXIT_OK
    assert report.lines == 37  # 30 records, 6 checkpoints, the final one
    assert report.checkpoints == 7


def test_flipped_byte_is_a_modified_line(one_run: Path) -> None:
    """One byte changed inside a record's text: the line after it names another hash; verify says which
    line was modified."""
    data = bytearray(one_run.read_bytes())
    at = data.index(b"record 12")
    data[at + 7] = ord("9")
    one_run.write_bytes(bytes(data))
    report = _verify([one_run])
    assert report.exit_code == EXIT_BROKEN
    assert _kinds(report) == ["modified"]
    lineno = bytes(data[:at]).count(b"\n") + 1
    assert report.breaks[0].where == f"{one_run}:{lineno}"


def test_deleted_line(one_run: Path) -> None:
    """A line removed from the middle: the gap in sequence numbers is named at the line after it."""
    _edit(one_run, lambda ls: ls[:10] + ls[11:])
    report = _verify([one_run])
    assert _kinds(report) == ["deleted"]
    assert report.breaks[0].where.endswith(":11")
    assert "seq 10..10" in report.breaks[0].message


def test_swapped_lines_are_reordered(one_run: Path) -> None:
    """Two lines swapped: verify calls it reordering, since the missing line is elsewhere in the log."""
    _edit(one_run, lambda ls: [*ls[:7], ls[8], ls[7], *ls[9:]])
    report = _verify([one_run])
    assert report.exit_code == EXIT_BROKEN
    assert set(_kinds(report)) == {"reordered"}
    assert report.breaks[0].where.endswith(":8")


def test_inserted_copy_of_a_line(one_run: Path) -> None:
    """A line written twice: the second copy is an insertion."""
    _edit(one_run, lambda ls: [*ls[:5], ls[4], *ls[5:]])
    assert _kinds(_verify([one_run])) == ["inserted"]


def test_inserted_foreign_line(one_run: Path) -> None:
    """A well-formed record without a chain field, inserted: unchained."""
    forged = json.dumps({"event": {"action": "exec"}}).encode() + b"\n"
    _edit(one_run, lambda ls: [*ls[:5], forged, *ls[5:]])
    assert _kinds(_verify([one_run])) == ["unchained"]


def test_truncated_tail_is_incomplete_and_caught_by_the_journal(one_run: Path) -> None:
    """Cutting the tail (final checkpoint included) leaves an open run: never exit 0; against the
    journal's checkpoints it is a break naming the cut."""
    journal = [
        json.dumps({"AUDIT_RECORD": ln.decode(), "MESSAGE": "chain-checkpoint"}).encode()
        for ln in one_run.read_bytes().splitlines()
        if b"chain-checkpoint" in ln
    ]
    _edit(one_run, lambda ls: ls[:20])
    report = _verify([one_run])
    assert report.exit_code == EXIT_INCOMPLETE
    assert [f.kind for f in report.findings] == ["open-tail"]
    with_journal = _verify([one_run], journal=journal_checkpoints(journal))
    assert with_journal.exit_code == EXIT_BROKEN
    assert "truncated" in _kinds(with_journal)
    assert with_journal.journal_checkpoints == 7


def test_restart_continues_the_chain(tmp_path: Path) -> None:
    """Three runs (one crashed) in one file: the chain runs across them; the crash is a note only."""
    log, state = tmp_path / "audit.jsonl", tmp_path / "state"
    write_run(log, state, 8)
    write_run(log, state, 3, final=False)
    write_run(log, state, 4)
    report = _verify([log])
    assert report.exit_code == EXIT_OK
    assert report.segments == 3
    assert [f.kind for f in report.findings] == ["unclean-end"]


def test_tail_cut_between_runs_is_truncated(tmp_path: Path) -> None:
    """The tail of a stopped run is cut before the daemon starts again: the new run continues from the
    saved head, which the file no longer holds."""
    log, state = tmp_path / "audit.jsonl", tmp_path / "state"
    write_run(log, state, 10)
    _edit(log, lambda ls: ls[:-3])
    write_run(log, state, 3)
    report = _verify([log])
    assert _kinds(report) == ["truncated"]
    assert "3 line(s) cut" in report.breaks[0].message


def test_rotated_set_in_any_order(tmp_path: Path) -> None:
    """A log rotated into many files verifies whatever order the files are given in; they are put in
    chain order."""
    log = tmp_path / "audit.jsonl"
    write_run(log, tmp_path / "state", 60, max_bytes=4000)
    files = log_set(log)
    assert len(files) > 4
    shuffled = files[::2] + files[1::2]
    assert order_files(load_files(shuffled)) == [str(p) for p in files]
    report = _verify(shuffled)
    assert report.findings == []


def test_dropped_rotated_file(tmp_path: Path) -> None:
    """A rotated file left out from the middle of the set: the lines it held are missing."""
    log = tmp_path / "audit.jsonl"
    write_run(log, tmp_path / "state", 60, max_bytes=4000)
    files = log_set(log)
    report = _verify(files[:2] + files[3:])
    assert report.exit_code == EXIT_BROKEN
    assert "deleted" in _kinds(report)


def test_pruned_oldest_files_are_a_note(tmp_path: Path) -> None:
    """Rotation pruning the oldest files is normal: the rest verifies, with a note that it starts late."""
    log = tmp_path / "audit.jsonl"
    write_run(log, tmp_path / "state", 60, max_bytes=4000)
    report = _verify(log_set(log)[2:])
    assert report.exit_code == EXIT_OK
    assert [f.kind for f in report.findings] == ["starts-mid-chain"]


def _sealed_runs(tmp_path: Path) -> tuple[Path, bytes, Path]:
    key_file = tmp_path / "seal.key"
    key0 = sealing.setup(key_file)
    log = tmp_path / "audit.jsonl"
    write_run(log, tmp_path / "state", 12, key_file=key_file)
    write_run(log, tmp_path / "state", 7, key_file=key_file)
    return log, key0, key_file


def test_sealed_log_verifies_with_its_key(tmp_path: Path) -> None:
    """Sealed checkpoints of two runs verify with key_0, epochs 0.. in a row."""
    log, key0, _ = _sealed_runs(tmp_path)
    report = _verify([log], key=key0)
    assert report.findings == []
    assert report.sealed == report.checkpoints == 5


def test_sealed_log_fails_with_another_key(tmp_path: Path) -> None:
    """Another key (another log's) does not verify the seals."""
    log, _, _ = _sealed_runs(tmp_path)
    assert "wrong-key" in _kinds(_verify([log], key=b"\x01" * 32))


def test_unsealed_log_does_not_verify_as_sealed(tmp_path: Path) -> None:
    """A log written without a key (or with its seals stripped) fails when a key is given."""
    log = tmp_path / "audit.jsonl"
    write_run(log, tmp_path / "state", 12)
    report = _verify([log], key=b"\x02" * 32)
    assert report.exit_code == EXIT_BROKEN
    assert set(_kinds(report)) == {"unsealed"}


def test_forged_tail_with_the_current_key_shows_an_epoch_gap(tmp_path: Path) -> None:
    """Root takes the host (and the key file's current epoch), cuts the log back to an early checkpoint
    and writes a new, correctly chained and sealed run after it: the epochs it cannot seal are missing."""
    log, key0, key_file = _sealed_runs(tmp_path)
    lines = log.read_bytes().splitlines(keepends=True)
    first_cp = next(i for i, ln in enumerate(lines) if b"chain-checkpoint" in ln)
    log.write_bytes(b"".join(lines[: first_cp + 1]))
    state = tmp_path / "forged-state"
    write_run(log, state, 9, key_file=key_file)
    report = _verify([log], key=key0)
    assert report.exit_code == EXIT_BROKEN
    assert "truncated" in _kinds(report)
    assert any("epoch" in f.message for f in report.breaks)


def test_forged_seal_on_a_rewritten_checkpoint(tmp_path: Path) -> None:
    """A past checkpoint re-sealed with a key of a later epoch does not verify."""
    log, key0, key_file = _sealed_runs(tmp_path)
    current = sealing.KeyState.from_json(key_file.read_bytes())
    lines = log.read_bytes().splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if b"chain-checkpoint" in ln)
    rec = json.loads(lines[i])
    cp = rec["claude_audit"]["checkpoint"]
    cp["seal"]["mac"] = sealing.mac(current.key, cp["segment"], cp["seq"], cp["head"], epoch=0, final=False)
    lines[i] = json.dumps(rec, separators=(",", ":")).encode() + b"\n"
    log.write_bytes(b"".join(lines))
    assert "forged-seal" in _kinds(_verify([log], key=key0))


def test_garbage_line_is_malformed(one_run: Path) -> None:
    """A line that is not JSON is reported as malformed, once."""
    _edit(one_run, lambda ls: [*ls[:3], b"\x00\xff not json\n", *ls[4:]])
    assert _kinds(_verify([one_run])) == ["malformed"]


def test_logrotate_compressed_backups_verify(tmp_path: Path) -> None:
    """logrotate's policy compresses backups (.N.gz): they are read through gzip, in chain order, and a
    cut .gz file is an unreadable file, not a silent gap."""
    import gzip

    log = tmp_path / "audit.jsonl"
    write_run(log, tmp_path / "state", 60, max_bytes=4000)
    files = log_set(log)
    gz_files = []
    for p in files[:-2]:  # logrotate's delaycompress leaves .1 plain
        gz = p.with_name(p.name + ".gz")
        gz.write_bytes(gzip.compress(p.read_bytes()))
        p.unlink()
        gz_files.append(gz)
    shown = gz_files + files[-2:]
    assert order_files(load_files(shown[::-1])) == [str(p) for p in shown]
    assert _verify(shown).findings == []
    gz_files[0].write_bytes(gz_files[0].read_bytes()[:-20])
    with pytest.raises(OSError, match="not a complete gzip file"):
        load_files(shown)
