"""chain: the field stamped on each record, the saved state, and where a new run continues from."""

from __future__ import annotations

import json
import os
from pathlib import Path

from chained_logs import write_run

from claude_audit import chain
from claude_audit.chain import Chain, ChainState, line_hash, resume


def _chains(log: Path) -> list[dict[str, object]]:
    return [json.loads(ln)["claude_audit"]["chain"] for ln in log.read_bytes().splitlines()]


def test_each_line_names_the_hash_of_the_line_before() -> None:
    """stamp + advance: seq counts from 0, prev is the previous line's SHA-256, the first names the
    previous run's head and says where that came from."""
    c = Chain(ChainState("aa", 41, "f" * 64), resumed_from="state", segment="bb")
    first: dict[str, object] = {"claude_audit": {"x": 1}}
    c.stamp(first)
    assert first["claude_audit"] == {
        "x": 1,
        "chain": {
            "segment": "bb",
            "seq": 0,
            "prev": "f" * 64,
            "start": {"from": "state", "prev_segment": "aa", "prev_seq": 41},
        },
    }
    c.advance(b'{"a":1}\n')
    second: dict[str, object] = {}
    c.stamp(second)
    assert second == {"claude_audit": {"chain": {"segment": "bb", "seq": 1, "prev": line_hash(b'{"a":1}')}}}


def test_state_round_trip_and_garbage(tmp_path: Path) -> None:
    """The state file is written atomically and read back; a corrupt one reads as none."""
    s = ChainState("seg", 7, "a" * 64)
    assert s.save(tmp_path)
    assert ChainState.load(tmp_path) == s
    (tmp_path / chain.STATE_FILE).write_text('{"segment": "x", "seq": -1, "head": "zz"}')
    assert ChainState.load(tmp_path) is None
    assert not list(tmp_path.glob(".chain.json*"))


def test_resume_extends_from_lines_written_after_the_last_save(tmp_path: Path) -> None:
    """A crash after lines reached the file but before the state was saved: the next run continues from
    the file's last line, since it extends the saved head."""
    log, state = tmp_path / "audit.jsonl", tmp_path / "state"
    write_run(log, state, 5)
    saved = ChainState.load(state)
    assert saved is not None
    ChainState(saved.segment, saved.seq - 2, line_hash(log.read_bytes().splitlines()[-3])).save(state)
    c = resume(state, log)
    assert c.start["from"] == "log"
    assert c.head == line_hash(log.read_bytes().splitlines()[-1])


def test_resume_from_state_when_the_log_was_cut(tmp_path: Path) -> None:
    """The log no longer holds the saved head: the run continues from the saved state (verify then sees
    the cut)."""
    log, state = tmp_path / "audit.jsonl", tmp_path / "state"
    write_run(log, state, 5)
    saved = ChainState.load(state)
    log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:-2]))
    c = resume(state, log)
    assert c.start["from"] == "state"
    assert saved is not None and c.head == saved.head


def test_resume_across_a_rotation(tmp_path: Path) -> None:
    """The saved head sits in audit.jsonl.1 and a new file was started after it: still "log"."""
    log, state = tmp_path / "audit.jsonl", tmp_path / "state"
    write_run(log, state, 5)
    os.rename(log, tmp_path / "audit.jsonl.1")
    log.write_bytes(b"")
    assert resume(state, log).start["from"] == "log"


def test_resume_without_state(tmp_path: Path) -> None:
    """No state and no log: a new chain (prev null); no state but a chained log: continue from it."""
    log = tmp_path / "audit.jsonl"
    c = resume(tmp_path / "none", log)
    assert (c.start, c.head) == ({"from": "new"}, None)
    write_run(log, tmp_path / "state", 2)
    c = resume(tmp_path / "other", log)
    assert c.start["from"] == "log"
    assert _chains(log)[-1]["seq"] == c.start["prev_seq"]
