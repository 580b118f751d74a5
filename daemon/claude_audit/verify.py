"""`claude-audit verify`: check the audit log's hash chain, checkpoints and seals. Pure but for `load_files`.

Findings have a severity:
- "break": evidence that the log is not what the daemon wrote (a line modified, inserted, deleted,
  reordered, a cut tail, a forged or missing seal). Exit status 1.
- "incomplete": nothing contradicts the log, but part of it cannot be proven: the last run's tail after
  its last checkpoint (the daemon is running, crashed, or the tail was cut: compare with `--journal`).
  Exit status 2.
- "note": facts worth knowing that prove nothing either way (older files pruned by rotation, a run that
  ended without a final checkpoint but whose successor continues the chain from its last line).
Exit status 0 only when there is no break and nothing incomplete.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .chain import chain_of, line_hash
from .lognames import GZ_SUFFIX, backup_number
from .sealing import fingerprint, next_key, seal_message

EXIT_OK: Final = 0
EXIT_BROKEN: Final = 1
EXIT_INCOMPLETE: Final = 2
CHECKPOINT_ACTION: Final = "chain-checkpoint"
MAX_FINDINGS: Final = 1000
"""A log rewritten throughout would otherwise list one finding per line."""


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a log file as verify sees it."""

    file: str
    lineno: int
    hash: str
    record: Any
    chain: dict[str, Any] | None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.lineno}"

    @property
    def key(self) -> tuple[str, int] | None:
        return (self.chain["segment"], self.chain["seq"]) if self.chain else None


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing verify found: severity, kind, where, and what."""

    severity: str
    kind: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.severity}: {self.kind}: {self.message}"


@dataclass
class Report:
    """The outcome of one verification."""

    findings: list[Finding] = field(default_factory=list)
    lines: int = 0
    segments: int = 0
    checkpoints: int = 0
    sealed: int = 0
    journal_checkpoints: int = 0

    def add(self, severity: str, kind: str, where: str, message: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(severity, kind, where, message))

    @property
    def breaks(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "break"]

    @property
    def exit_code(self) -> int:
        if self.breaks:
            return EXIT_BROKEN
        if any(f.severity == "incomplete" for f in self.findings):
            return EXIT_INCOMPLETE
        return EXIT_OK


def parse_line(file: str, lineno: int, raw: bytes) -> Line:
    """One raw line (without its newline) as a Line; never raises."""
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    return Line(file, lineno, line_hash(raw), record, chain_of(record))


def parse_file(name: str, data: bytes) -> list[Line]:
    """Every line of a file's content (a last line without newline included: verify judges it)."""
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    return [parse_line(name, i + 1, raw) for i, raw in enumerate(raw_lines)]


def order_files(files: dict[str, list[Line]]) -> list[str]:
    """Files in chain order, whatever order they were given in.

    A file follows the one whose last line its first line names; files that link to none go by their
    backup number (audit.jsonl.3 before .2 before .1 before audit.jsonl), then by name.
    """

    def by_name(name: str) -> tuple[int, str]:
        base = Path(name).name
        stem, _, _ = base.partition(".jsonl")
        n = backup_number(stem + ".jsonl", base.removesuffix(GZ_SUFFIX)) if ".jsonl" in base else None
        return (-(n if n is not None else 0), name)

    names = sorted(files, key=by_name)
    last_hash = {n: files[n][-1].hash for n in names if files[n]}
    first_prev: dict[str, str | None] = {}
    for n in names:
        first = files[n][0] if files[n] else None
        first_prev[n] = first.chain.get("prev") if first and first.chain else None
    successor: dict[str, str] = {}
    for n in names:
        for m in names:
            if m != n and first_prev[m] is not None and first_prev[m] == last_hash.get(n):
                successor.setdefault(n, m)
    has_predecessor = set(successor.values())
    ordered: list[str] = []
    for n in names:
        if n in has_predecessor or n in ordered:
            continue
        cur: str | None = n
        while cur is not None and cur not in ordered:
            ordered.append(cur)
            cur = successor.get(cur)
    ordered += [n for n in names if n not in ordered]  # a cycle: only a forged set links back
    return ordered


def _ecs(line: Line) -> dict[str, Any]:
    rec = line.record
    if not isinstance(rec, dict):
        return {}
    fields = rec.get("unmapped") if "class_uid" in rec else rec  # an OCSF record keeps them there
    return fields if isinstance(fields, dict) else {}


def _action(line: Line) -> str | None:
    event = _ecs(line).get("event")
    action = event.get("action") if isinstance(event, dict) else None
    return action if isinstance(action, str) else None


def _checkpoint(line: Line) -> dict[str, Any] | None:
    if _action(line) != CHECKPOINT_ACTION:
        return None
    audit = _ecs(line).get("claude_audit")
    cp = audit.get("checkpoint") if isinstance(audit, dict) else None
    return cp if isinstance(cp, dict) else None


class _Keys:
    """key_e for any epoch e from key_0, computed forward once and cached."""

    def __init__(self, key0: bytes) -> None:
        self.keys = [key0]
        self.fingerprint = fingerprint(key0)

    def get(self, epoch: int) -> bytes:
        while len(self.keys) <= epoch:
            self.keys.append(next_key(self.keys[-1]))
        return self.keys[epoch]


def _check_start(prev: Line, cur: Line, report: Report) -> None:
    """A run's first line against the line before it, which it must name."""
    pc, cc = prev.chain, cur.chain
    assert pc is not None and cc is not None
    if cc["prev"] == prev.hash:
        return
    start_field = cc.get("start")
    start: dict[str, Any] = start_field if isinstance(start_field, dict) else {}
    named_seq = start.get("prev_seq")
    same_run = start.get("prev_segment") == pc["segment"]
    if same_run and isinstance(named_seq, int) and named_seq > pc["seq"]:
        report.add(
            "break",
            "truncated",
            prev.where,
            f"run {pc['segment']} ends here at seq {pc['seq']}, but the next run ({cc['segment']}, "
            f"{cur.where}) continues from its seq {named_seq}: {named_seq - pc['seq']} line(s) cut",
        )
    elif same_run and named_seq == pc["seq"]:
        report.add(
            "break",
            "modified",
            prev.where,
            f"the next run ({cur.where}) continues from a line with another hash: this line was changed",
        )
    else:
        report.add(
            "break",
            "unlinked-start",
            cur.where,
            f"run {cc['segment']} starts here but does not continue from the line before it "
            f"({prev.where}, run {pc['segment']} seq {pc['seq']})",
        )


def _check_link(prev: Line, cur: Line, index: dict[tuple[str, int], list[Line]], report: Report) -> None:
    """The chain between two consecutive lines (both chained), classified when it breaks."""
    pc, cc = prev.chain, cur.chain
    assert pc is not None and cc is not None
    if cc["seq"] == 0:
        _check_start(prev, cur, report)
        return
    if cc["segment"] != pc["segment"]:
        seen_start = (cc["segment"], 0) in index
        report.add(
            "break",
            "reordered" if seen_start else "deleted",
            cur.where,
            f"run {cc['segment']} seq {cc['seq']} follows run {pc['segment']} seq {pc['seq']} "
            + ("(its lines are elsewhere in the set)" if seen_start else "(the lines before it are missing)"),
        )
        return
    expected = pc["seq"] + 1
    if cc["seq"] == expected:
        if cc["prev"] != prev.hash:
            report.add(
                "break",
                "modified",
                prev.where,
                f"seq {pc['seq']} does not hash to what seq {cc['seq']} ({cur.where}) records: changed",
            )
        return
    if cc["seq"] > expected:
        missing = range(expected, cc["seq"])
        elsewhere = [(cc["segment"], s) for s in missing if (cc["segment"], s) in index]
        if elsewhere:
            where = index[elsewhere[0]][0].where
            report.add(
                "break",
                "reordered",
                cur.where,
                f"seq {cc['seq']} follows seq {pc['seq']}; seq {elsewhere[0][1]} is at {where}",
            )
        else:
            report.add(
                "break",
                "deleted",
                cur.where,
                f"{len(missing)} line(s) missing before this one (seq {expected}..{cc['seq'] - 1})",
            )
        return
    if len(index[(cc["segment"], cc["seq"])]) > 1:
        report.add(
            "break", "inserted", cur.where, f"a second line with seq {cc['seq']} of run {cc['segment']}"
        )
    else:
        report.add(
            "break", "reordered", cur.where, f"seq {cc['seq']} comes after seq {pc['seq']} (out of order)"
        )


@dataclass
class _SealState:
    keys: _Keys
    last_epoch: int | None = None
    last_sealed: Line | None = None


def _check_checkpoint(line: Line, cp: dict[str, Any], seal: _SealState | None, report: Report) -> None:
    report.checkpoints += 1
    # The checkpoint must name what its own chain field links to; the link itself is checked apart.
    own = line.chain
    assert own is not None
    names = (cp.get("segment"), cp.get("seq"), cp.get("head"))
    if names != (own["segment"], own["seq"] - 1, own["prev"]):
        report.add("break", "checkpoint-mismatch", line.where, "does not name the line before it")
    if seal is None:
        return
    s = cp.get("seal")
    if not isinstance(s, dict):
        report.add(
            "break", "unsealed", line.where, "a checkpoint without a seal in a log verified with a key"
        )
        return
    epoch, tag, fp = s.get("epoch"), s.get("mac"), s.get("fingerprint")
    if type(epoch) is not int or epoch < 0 or not isinstance(tag, str) or epoch > 100_000_000:
        report.add("break", "forged-seal", line.where, "malformed seal")
        return
    if fp != seal.keys.fingerprint:
        report.add("break", "wrong-key", line.where, f"sealed with key {fp!r}, not {seal.keys.fingerprint}")
        return
    msg = seal_message(str(names[0]), int(names[1] or 0), str(names[2]), epoch, final=cp.get("final") is True)
    good = hmac.new(seal.keys.get(epoch), msg, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(good, tag):
        report.add("break", "forged-seal", line.where, f"the seal of epoch {epoch} does not verify")
        return
    if seal.last_epoch is None:
        if epoch != 0:
            report.add(
                "note",
                "epochs-start-late",
                line.where,
                f"first sealed epoch is {epoch}: earlier files not given",
            )
    elif epoch != seal.last_epoch + 1:
        kind = "truncated" if epoch > seal.last_epoch + 1 else "reordered"
        report.add(
            "break",
            kind,
            line.where,
            f"epoch {epoch} follows epoch {seal.last_epoch}: sealed checkpoints are missing or out of order",
        )
    seal.last_epoch = epoch
    seal.last_sealed = line
    report.sealed += 1


def verify_lines(
    files: dict[str, list[Line]],
    *,
    key: bytes | None = None,
    journal: Sequence[bytes] = (),
) -> Report:
    """Verify a set of files (name -> lines) against their chain, checkpoints, seals and the journal."""
    report = Report()
    ordered = order_files(files)
    lines = [ln for name in ordered for ln in files[name]]
    report.lines = len(lines)
    index: dict[tuple[str, int], list[Line]] = defaultdict(list)
    for ln in lines:
        if ln.key is not None:
            index[ln.key].append(ln)
    seal = _SealState(_Keys(key)) if key is not None else None
    prev: Line | None = None
    closed: dict[str, bool] = {}
    for ln in lines:
        c = ln.chain
        if c is None:
            kind = "malformed" if ln.record is None else "unchained"
            report.add("break", kind, ln.where, "not a chained audit record (changed or inserted)")
            prev = ln
            continue
        if c["seq"] == 0:
            report.segments += 1
        if prev is None:
            if c["seq"] != 0 or c["prev"] is not None:
                report.add(
                    "note",
                    "starts-mid-chain",
                    ln.where,
                    f"the first line continues run {c['segment']} from lines not given (pruned or left out)",
                )
        elif prev.chain is not None:
            if c["seq"] == 0 and not closed.get(prev.chain["segment"], False) and c["prev"] == prev.hash:
                report.add("note", "unclean-end", prev.where, "this run ended without a final checkpoint")
            _check_link(prev, ln, index, report)
        cp = _checkpoint(ln)
        if cp is not None:
            _check_checkpoint(ln, cp, seal, report)
            if cp.get("final") is True:
                closed[c["segment"]] = True
        prev = ln
    _check_end(prev, closed, seal, report)
    if journal:
        _check_journal(journal, index, report)
    return report


def _check_end(last: Line | None, closed: dict[str, bool], seal: _SealState | None, report: Report) -> None:
    if last is None:
        report.add("incomplete", "empty", "-", "no lines to verify")
        return
    if seal is not None and seal.last_sealed is None:
        report.add("break", "unsealed", last.where, "no sealed checkpoint at all, though a key was given")
        return
    if last.chain is None:
        return
    if not closed.get(last.chain["segment"], False) or _checkpoint(last) is None:
        report.add(
            "incomplete",
            "open-tail",
            last.where,
            f"run {last.chain['segment']} has no final checkpoint after seq {last.chain['seq']}: the "
            "daemon is running, crashed, or the tail was cut (check with --journal)",
        )


def journal_checkpoints(entries: Iterable[bytes]) -> list[bytes]:
    """The checkpoint lines (AUDIT_RECORD) among `journalctl -o json` output lines."""
    out = []
    for raw in entries:
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        rec = entry.get("AUDIT_RECORD") if isinstance(entry, dict) else None
        if isinstance(rec, list):  # journalctl prints non-UTF-8 values as byte arrays
            try:
                rec = bytes(rec).decode()
            except (ValueError, TypeError):
                continue
        if isinstance(rec, str) and CHECKPOINT_ACTION in rec:
            out.append(rec.encode())
    return out


def _check_journal(
    journal: Sequence[bytes], index: dict[tuple[str, int], list[Line]], report: Report
) -> None:
    last_seq: dict[str, int] = {}
    for seg, seq in index:
        last_seq[seg] = max(seq, last_seq.get(seg, -1))
    for raw in journal:
        jl = parse_line("journal", 0, raw)
        if jl.key is None or _checkpoint(jl) is None:
            continue
        report.journal_checkpoints += 1
        seg, seq = jl.key
        found = index.get(jl.key)
        where = f"journal checkpoint {seg}:{seq}"
        if found:
            if all(ln.hash != jl.hash for ln in found):
                report.add("break", "modified", found[0].where, f"differs from the journal's copy ({where})")
        elif seg not in last_seq:
            report.add("note", "segment-not-given", where, "the journal names a run not in the given files")
        elif seq > last_seq[seg]:
            report.add(
                "break",
                "truncated",
                where,
                f"the files end run {seg} at seq {last_seq[seg]}; the journal has a checkpoint at {seq}",
            )
        else:
            report.add("break", "deleted", where, "the journal's checkpoint line is missing from the files")


def load_files(paths: Sequence[Path], max_bytes: int = 1 << 34) -> dict[str, list[Line]]:
    """Read and parse the named files (regular files only, bounded). I/O; OSError for an unreadable one."""
    out: dict[str, list[Line]] = {}
    for p in paths:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if (st.st_mode & 0o170000) != 0o100000:
                raise OSError(f"{p}: not a regular file")
            with os.fdopen(os.dup(fd), "rb") as f:
                if str(p).endswith(GZ_SUFFIX):
                    # logrotate's compressed backups (the default rotation policy): read through
                    # gzip, bounded like a plain file.
                    try:
                        with gzip.GzipFile(fileobj=f) as z:
                            data = z.read(max_bytes)
                    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                        raise OSError(f"{p}: not a complete gzip file: {exc}") from exc
                else:
                    data = f.read(max_bytes)
        finally:
            os.close(fd)
        out[str(p)] = parse_file(str(p), data)
    return out
