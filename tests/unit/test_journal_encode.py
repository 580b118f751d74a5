"""Pure parts of the journald sink: encoder, field names, record mapping."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from claude_audit.journal import (
    FieldChoice,
    JournalSink,
    encode_entry,
    journal_fields,
    normalise_field_name,
)


def test_simple_form_golden() -> None:
    assert encode_entry({"MESSAGE": "hello", "PRIORITY": "6"}) == b"MESSAGE=hello\nPRIORITY=6\n"


def test_empty_value_and_utf8() -> None:
    assert encode_entry({"A": "", "B": "caf\u00e9"}) == b"A=\nB=caf\xc3\xa9\n"


def test_binary_safe_form_for_newlines() -> None:
    got = encode_entry({"MESSAGE": "a\nb", "X": "y"})
    assert got == b"MESSAGE\n" + struct.pack("<Q", 3) + b"a\nb\n" + b"X=y\n"
    assert got == b"MESSAGE\n\x03\x00\x00\x00\x00\x00\x00\x00a\nb\nX=y\n"


def test_bytes_values_are_sent_verbatim() -> None:
    assert encode_entry({"RAW": b"\xff\x00z"}) == b"RAW=\xff\x00z\n"
    assert encode_entry({"RAW": b"\n"}) == b"RAW\n\x01\x00\x00\x00\x00\x00\x00\x00\n\n"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("MESSAGE", "MESSAGE"),
        ("claude_session_id", "CLAUDE_SESSION_ID"),
        ("process.pid", "PROCESS_PID"),
        ("_TRUSTED", "TRUSTED"),
        ("9LIVES", "LIVES"),
        ("__1_X", "X"),
        ("a-b c", "A_B_C"),
        ("K" * 80, "K" * 64),
    ],
)
def test_field_name_rules(name: str, expected: str) -> None:
    assert normalise_field_name(name) == expected


@pytest.mark.parametrize("name", ["", "_", "123", "_9_"])
def test_field_name_rejects_empty(name: str) -> None:
    with pytest.raises(ValueError, match="journald field name"):
        normalise_field_name(name)


def test_encode_normalises_names() -> None:
    assert encode_entry({"process.pid": "1"}) == b"PROCESS_PID=1\n"


RECORD = {
    "@timestamp": "2025-01-01T00:00:00.000000Z",
    "event": {"action": "exec"},
    "process": {
        "pid": 123,
        "parent": {"pid": 100},
        "executable": "/usr/bin/git",
        "args": ["git", "status"],
        "entity_id": "abc",
    },
    "user": {"id": "1000"},
    "claude": {
        "pid": 99,
        "session_id": "s-1",
        "origin": "tool",
        "command": "git status",
        "invocation": 100,
    },
    "claude_audit": {"flags": ["invalid_utf8"]},
}


def test_journal_fields_full() -> None:
    """With every optional field chosen, each structured field holds its record value."""
    f = journal_fields(RECORD, choice=FieldChoice(process_args=True))
    assert f["MESSAGE"] == "exec pid=123 ppid=100 session=s-1 origin=tool: git status"
    assert f["PRIORITY"] == "6"
    assert f["SYSLOG_IDENTIFIER"] == "claude-audit"
    assert f["CLAUDE_SESSION_ID"] == "s-1"
    assert f["CLAUDE_PID"] == "99"
    assert f["CLAUDE_INVOCATION"] == "100"
    assert f["CLAUDE_ORIGIN"] == "tool"
    assert f["CLAUDE_COMMAND"] == "git status"
    assert f["AUDIT_ACTION"] == "exec"
    assert f["PROCESS_PID"] == "123"
    assert f["PROCESS_PPID"] == "100"
    assert f["PROCESS_EXECUTABLE"] == "/usr/bin/git"
    assert json.loads(f["PROCESS_ARGS"]) == ["git", "status"]
    assert f["PROCESS_ENTITY_ID"] == "abc"
    assert f["USER_ID"] == "1000"
    assert json.loads(f["AUDIT_FLAGS"]) == ["invalid_utf8"]
    assert json.loads(f["AUDIT_RECORD"]) == RECORD
    assert f["AUDIT_RECORD"].isascii()
    for name in f:
        assert normalise_field_name(name) == name


def test_default_fields_hold_the_argv_once() -> None:
    """By default the argv is in AUDIT_RECORD only: no PROCESS_ARGS, and MESSAGE holds an excerpt."""
    long_cmd = "echo " + "x" * 1000
    rec = dict(RECORD) | {"claude": dict(RECORD["claude"]) | {"command": long_cmd}}
    f = journal_fields(rec)
    assert "PROCESS_ARGS" not in f
    assert f["MESSAGE"].endswith(": echo " + "x" * 251 + "\u2026")
    assert f["CLAUDE_COMMAND"] == long_cmd


def test_field_choice_leaves_fields_out() -> None:
    """Each switch of [journal] removes its field; message_text_chars 0 keeps the command out of MESSAGE."""
    f = journal_fields(RECORD, choice=FieldChoice(command=False, audit_record=False, message_text_chars=0))
    assert "CLAUDE_COMMAND" not in f and "AUDIT_RECORD" not in f and "PROCESS_ARGS" not in f
    assert f["MESSAGE"] == "exec pid=123 ppid=100 session=s-1 origin=tool"


def test_journal_fields_uses_given_line() -> None:
    """AUDIT_RECORD is the file's line as given, without its newline (bytes stay bytes: no re-encoding)."""
    f = journal_fields(RECORD, line=b'{"x":1}\n')
    assert f["AUDIT_RECORD"] == b'{"x":1}'
    assert journal_fields(RECORD, line='{"x":1}\n')["AUDIT_RECORD"] == '{"x":1}'


def test_journal_fields_omits_absent_and_falls_back() -> None:
    rec = {"event": {"action": "exec"}, "process": {"pid": 5, "args": ["ls", "-l\x1b"]}, "claude": {"pid": 4}}
    f = journal_fields(rec)
    assert f["MESSAGE"] == "exec pid=5 session=4: ls -l\\x1b"
    for absent in ("CLAUDE_SESSION_ID", "CLAUDE_COMMAND", "PROCESS_PPID", "USER_ID", "PROCESS_EXECUTABLE"):
        assert absent not in f


def test_message_neutralises_bidi_and_invisible_characters() -> None:
    """MESSAGE shows a command's bidi override, zero-width space and ESC as escapes, as `tail` does.

    journalctl prints MESSAGE to a terminal: a raw U+202E would make ``rm -rf / #txt.exe`` read
    backwards. The exact command stays in CLAUDE_COMMAND and AUDIT_RECORD.
    """
    command = "echo safe\u202e\u200b\x1b[2J\U000e0041"
    f = journal_fields({"event": {"action": "exec"}, "claude": {"command": command}})
    assert f["MESSAGE"] == "exec: echo safe\\u202e\\u200b\\x1b[2J\\U000e0041"
    assert f["CLAUDE_COMMAND"] == command


def test_priorities() -> None:
    """events-lost is a warning, an alert (a gap in what was watched) an error, the rest info; an explicit
    log.level wins."""
    assert journal_fields({"event": {"action": "events-lost"}})["PRIORITY"] == "4"
    assert journal_fields({"event": {"action": "daemon-start"}})["PRIORITY"] == "6"
    alert = {"event": {"action": "session-not-watched", "kind": "alert"}}
    assert journal_fields(alert)["PRIORITY"] == "3"
    assert journal_fields({"event": {"action": "unwatched-window", "kind": "alert"}})["PRIORITY"] == "3"
    assert journal_fields({"event": {"action": "unwatched-window", "kind": "event"}})["PRIORITY"] == "6"
    assert journal_fields({"event": {"action": "x"}, "log": {"level": "error"}})["PRIORITY"] == "3"
    assert journal_fields({"event": {"action": "x"}, "log": {"level": "warning"}})["PRIORITY"] == "4"


def test_message_is_bounded() -> None:
    """MESSAGE never exceeds 4096 characters, whatever the chosen excerpt length."""
    rec = {"event": {"action": "exec"}, "claude": {"command": "y" * 100_000}}
    assert len(journal_fields(rec, choice=FieldChoice(message_text_chars=4096))["MESSAGE"]) == 4096


def test_missing_socket_warns_once_and_retries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    sink = JournalSink(tmp_path / "absent", retry_interval=10.0, clock=lambda: now[0])
    for _ in range(5):
        assert sink.send({"MESSAGE": "x"}) is False
    assert sink.failed == 5 and sink.sent == 0
    now[0] = 20.0
    assert sink.send({"MESSAGE": "x"}) is False
    out = capsys.readouterr().out
    assert out.count("journald unavailable") == 1
    sink.close()


def test_send_to_a_journald_that_never_reads_does_not_block(tmp_path: Path) -> None:
    """A journald that stopped reading (its socket queue full) costs the sender nothing: sends return
    at once, the ones the socket cannot take are counted in dropped_busy, and sent + dropped = all."""
    import socket as socket_mod
    import time as time_mod

    from claude_audit.journal import JournalSink

    path = tmp_path / "journal.sock"
    server = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_DGRAM)
    server.bind(str(path))
    try:
        sink = JournalSink(path, sndbuf=65536)
        n = 5000
        t0 = time_mod.monotonic()
        results = [sink.send({"MESSAGE": "x" * 200, "N": str(i)}) for i in range(n)]
        elapsed = time_mod.monotonic() - t0
        sink.close()
    finally:
        server.close()
    assert sink.dropped_busy > 0
    assert sink.sent + sink.dropped_busy == n == len(results)
    assert results.count(True) == sink.sent
    assert elapsed < 5.0  # with the old blocking socket: 1 s per record once the queue is full


def test_queued_entries_arrive_in_order_in_batches(tmp_path: Path) -> None:
    """queue + flush: every entry arrives once, in order, byte for byte the single-send encoding; a queue
    longer than one sendmmsg batch goes in several; nothing is sent before flush."""
    import socket as socket_mod

    from claude_audit.journal import BATCH_MAX, JournalSink, encode_entry

    path = tmp_path / "journal.sock"
    server = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_DGRAM)
    server.bind(str(path))
    server.setsockopt(socket_mod.SOL_SOCKET, socket_mod.SO_RCVBUF, 4 << 20)
    server.settimeout(5)
    try:
        sink = JournalSink(path)
        n = BATCH_MAX - 1 + 20  # the 256th queued entry flushes a full batch by itself
        entries = [{"MESSAGE": f"m{i}", "MULTI": f"a\nb{i}"} for i in range(n)]
        for e in entries[:10]:
            sink.queue(e)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.recv(1 << 16)
        server.settimeout(5)
        for e in entries[10:]:
            sink.queue(e)
        sink.flush()
        got = [server.recv(1 << 16) for _ in range(n)]
        sink.close()
    finally:
        server.close()
    assert got == [encode_entry(e) for e in entries]
    assert (sink.sent, sink.failed, sink.dropped_busy) == (n, 0, 0)


def test_flush_to_a_journald_that_never_reads_counts_what_it_drops(tmp_path: Path) -> None:
    """A full socket queue: flush returns, and every entry is either sent or counted as dropped."""
    import socket as socket_mod

    from claude_audit.journal import JournalSink

    path = tmp_path / "journal.sock"
    server = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_DGRAM)
    server.bind(str(path))
    try:
        sink = JournalSink(path, sndbuf=65536)
        n = 3000
        for i in range(n):
            sink.queue({"MESSAGE": "x" * 200, "N": str(i)})
        sink.flush()
        sink.close()
    finally:
        server.close()
    assert sink.dropped_busy > 0
    assert sink.sent + sink.dropped_busy == n == sink.sent + sink.failed


def test_flush_sends_oversized_entries_by_memfd_between_datagrams(tmp_path: Path) -> None:
    """An entry above datagram_max in the middle of a batch goes as a sealed memfd, in its place."""
    import array
    import os
    import socket as socket_mod

    from claude_audit.journal import JournalSink, encode_entry

    path = tmp_path / "journal.sock"
    server = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    try:
        sink = JournalSink(path, datagram_max=1000)
        entries = [{"MESSAGE": "small1"}, {"MESSAGE": "big", "BIG": "z" * 5000}, {"MESSAGE": "small2"}]
        for e in entries:
            sink.queue(e)
        sink.flush()
        got = []
        for _ in entries:
            data, anc, _flags, _addr = server.recvmsg(1 << 16, socket_mod.CMSG_SPACE(4))
            if anc:
                fd = array.array("i", anc[0][2][:4])[0]
                data = os.pread(fd, 1 << 20, 0)
                os.close(fd)
            got.append(data)
        sink.close()
    finally:
        server.close()
    assert got == [encode_entry(e) for e in entries]
    assert (sink.sent, sink.memfd_sent, sink.failed) == (3, 1, 0)


def test_flush_to_a_missing_socket_fails_without_raising(tmp_path: Path) -> None:
    """No journald: the batch is counted as failed (not busy) and the sink waits for the retry interval."""
    from claude_audit.journal import JournalSink

    now = [0.0]
    sink = JournalSink(tmp_path / "absent", retry_interval=10.0, clock=lambda: now[0])
    for i in range(5):
        sink.queue({"MESSAGE": str(i)})
    sink.flush()
    assert (sink.sent, sink.failed, sink.dropped_busy) == (0, 5, 0)
    sink.queue({"MESSAGE": "again"})
    sink.flush()  # within the retry interval: not even tried
    assert sink.failed == 6
    sink.close()
