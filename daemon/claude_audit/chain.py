"""The hash chain of the audit log: every line names the SHA-256 of the line before it. Sinks stage.

Each record gets `claude_audit.chain = {"segment": S, "seq": n, "prev": H}` just before it is serialised
for the file (output.py), so what is chained is exactly what is stored, and journald's AUDIT_RECORD
carries the same bytes. `prev` is the SHA-256 (hex) of the previous line's bytes without its newline.

A segment is one run of the daemon. Its first line (seq 0) also carries `start`, naming the segment and
sequence number of the line it continues from, so a restart never opens a fresh, unlinked chain.
Rotation needs nothing: the chain runs on from the last line of audit.jsonl.1 to the first of the new
audit.jsonl.

The chain state (segment, seq, head) is kept in `state_dir/chain.json`, written atomically after each
batch of lines reaches the file. At the next start the log's last lines are read back: if they extend the
saved head (lines written between the last save and a crash), the new segment continues from the file;
if they do not (the tail was cut or edited while no daemon ran), it continues from the saved head, and
`verify` sees the break.

Pure except `ChainState.load/save` and `resume`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .lognames import backup_path

STATE_FILE: Final = "chain.json"
TAIL_READ_BYTES: Final = 1 << 20
"""How much of the log's end is read at start to find lines written after the last state save."""
GENESIS: Final = None
"""`prev` of the very first line of a chain that continues nothing."""


def line_hash(line: bytes) -> str:
    """SHA-256 (hex) of one log line, its trailing newline excluded."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainState:
    """Where the chain stands: the last line's segment, sequence number and hash."""

    segment: str
    seq: int
    head: str

    @staticmethod
    def load(state_dir: Path) -> ChainState | None:
        """The saved state, or None if there is none or it cannot be read."""
        try:
            raw = (state_dir / STATE_FILE).read_bytes()[:4096]
            data = json.loads(raw)
            state = ChainState(str(data["segment"]), int(data["seq"]), str(data["head"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return state if len(state.head) == 64 and state.seq >= 0 else None

    def save(self, state_dir: Path) -> bool:
        """Write the state atomically (temporary file, then rename); False if that failed."""
        tmp = state_dir / f".{STATE_FILE}.{os.getpid()}"
        try:
            state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"segment": self.segment, "seq": self.seq, "head": self.head}))
            os.replace(tmp, state_dir / STATE_FILE)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        return True


def ecs_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Where a record keeps its ECS-named fields: the record itself, or an OCSF record's `unmapped`."""
    if "class_uid" not in record:
        return record
    unmapped = record.get("unmapped")
    if not isinstance(unmapped, dict):
        unmapped = record["unmapped"] = {}
    return unmapped


def chain_of(record: Any) -> dict[str, Any] | None:
    """The chain field of a parsed record, or None if it has none (or not a well-formed one)."""
    if not isinstance(record, dict):
        return None
    unmapped = record.get("unmapped") if "class_uid" in record else record
    audit = unmapped.get("claude_audit") if isinstance(unmapped, dict) else None
    chain = audit.get("chain") if isinstance(audit, dict) else None
    if not isinstance(chain, dict):
        return None
    seq, seg, prev = chain.get("seq"), chain.get("segment"), chain.get("prev")
    if type(seq) is not int or seq < 0 or not isinstance(seg, str):
        return None
    if not (prev is None or isinstance(prev, str)):
        return None
    return chain


class Chain:
    """The running chain of one daemon run (one segment)."""

    def __init__(self, previous: ChainState | None, *, resumed_from: str, segment: str | None = None) -> None:
        self.segment = segment or secrets.token_hex(8)
        self.seq = -1
        self.head: str | None = previous.head if previous else GENESIS
        self.start: dict[str, Any] = {"from": resumed_from}
        if previous is not None:
            self.start |= {"prev_segment": previous.segment, "prev_seq": previous.seq}
        self.saved_seq = -1

    def stamp(self, record: dict[str, Any]) -> None:
        """Put the next chain field into `record` (call `advance` with its serialised line next)."""
        chain: dict[str, Any] = {"segment": self.segment, "seq": self.seq + 1, "prev": self.head}
        if self.seq < 0:
            chain["start"] = self.start
        fields = ecs_fields(record)
        audit = fields.get("claude_audit")
        if isinstance(audit, dict):
            audit["chain"] = chain
        else:
            fields["claude_audit"] = {"chain": chain}

    def advance(self, line: bytes) -> None:
        """The stamped record's line: it becomes the head."""
        self.seq += 1
        self.head = line_hash(line)

    @property
    def state(self) -> ChainState | None:
        """The state to save (None before the first line)."""
        if self.seq < 0 or self.head is None:
            return None
        return ChainState(self.segment, self.seq, self.head)


def _last_lines(path: Path) -> list[bytes]:
    """The complete lines in the last TAIL_READ_BYTES of `path` (the first, maybe partial, dropped)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - TAIL_READ_BYTES)
        data = os.pread(fd, TAIL_READ_BYTES, start)
    except OSError:
        return []
    finally:
        os.close(fd)
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: empty, or a line cut by a crash
    if start > 0 and lines:
        lines.pop(0)
    return [ln for ln in lines if ln]


def extend_from_log(saved: ChainState, lines: list[bytes]) -> ChainState | None:
    """The log's last line as a state, if `lines` (the log's end) run on from `saved` unbroken."""
    parsed = []
    for ln in lines:
        try:
            chain = chain_of(json.loads(ln))
        except ValueError:
            chain = None
        parsed.append((ln, chain))
    start = None
    for i, (ln, chain) in enumerate(parsed):
        at_saved = chain is not None and (chain["segment"], chain["seq"]) == (saved.segment, saved.seq)
        if at_saved and line_hash(ln) == saved.head:
            start = i
    if start is None:
        return None
    state = saved
    for ln, chain in parsed[start + 1 :]:
        expected = (state.segment, state.seq + 1, state.head)
        if not chain or (chain["segment"], chain["seq"], chain["prev"]) != expected:
            return None
        state = ChainState(state.segment, state.seq + 1, line_hash(ln))
    return state


def last_chained(lines: list[bytes]) -> ChainState | None:
    """The state named by the last line, if it carries a chain field (no saved state to compare with)."""
    if not lines:
        return None
    try:
        chain = chain_of(json.loads(lines[-1]))
    except ValueError:
        return None
    if chain is None:
        return None
    return ChainState(chain["segment"], chain["seq"], line_hash(lines[-1]))


def resume(state_dir: Path, log_path: Path) -> Chain:
    """The chain for a new run: continues the saved state, extended by lines the log holds beyond it. I/O.

    `start.from` in the first line says which: "log" (the log's last lines extend the saved head, or
    there is no saved state and the log's last line is chained), "state" (the log does not extend the
    saved head: it was cut or edited while no daemon ran; verify will show the break), "new" (neither).
    """
    saved = ChainState.load(state_dir)
    # A rotation after the last save leaves the saved head in the newest backup.
    lines = _last_lines(backup_path(log_path, 1)) + _last_lines(log_path)
    if saved is not None:
        extended = extend_from_log(saved, lines)
        if extended is not None:
            return Chain(extended, resumed_from="log")
        return Chain(saved, resumed_from="state")
    found = last_chained(lines)
    if found is not None:
        return Chain(found, resumed_from="log")
    return Chain(None, resumed_from="new")
