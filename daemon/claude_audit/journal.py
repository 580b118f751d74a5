"""journald sink: the native protocol (systemd.journal-fields(7), "Native Journal Protocol").

Pure parts: `normalise_field_name`, `encode_entry` (fields -> one datagram payload) and `journal_fields`
(one ECS audit record -> journald fields). I/O part: `JournalSink`, which sends datagrams to
/run/systemd/journal/socket and falls back to a sealed memfd passed with SCM_RIGHTS for records too
large for one datagram, exactly as sd_journal_sendv() does.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import functools
import json
import os
import re
import socket
import struct
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import structlog

from .textenc import neutralise

log = structlog.get_logger(__name__)

DEFAULT_SOCKET: Final = Path("/run/systemd/journal/socket")
MAX_FIELD_NAME: Final = 64
MESSAGE_MAX_CHARS: Final = 4096
"""MESSAGE is the human one-liner; the whole record is always in AUDIT_RECORD, so it is cut here."""

PRIORITY_ERR: Final = 3
PRIORITY_WARNING: Final = 4
PRIORITY_INFO: Final = 6
PRIORITY_DEBUG: Final = 7

_NAME_BAD = re.compile(r"[^A-Z0-9_]")

_SEALS: Final = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def normalise_field_name(name: str) -> str:
    """Return `name` as a valid journald field name, or raise ValueError if nothing valid remains.

    journald accepts only A-Z, 0-9 and '_', at most 64 characters, not starting with a digit; names
    starting with '_' are trusted fields that journald sets itself and drops from clients.
    Lower-case letters are upper-cased, every other invalid character becomes '_', leading '_' and
    digits are removed, and the result is cut to 64 characters.
    """
    norm = _NAME_BAD.sub("_", name.upper()).lstrip("_0123456789")[:MAX_FIELD_NAME]
    if not norm:
        raise ValueError(f"journald field name {name!r} has no valid characters")
    return norm


@functools.lru_cache(maxsize=256)
def _field_key(name: str) -> bytes:
    # The same few field names are sent with every record: normalise each once.
    return normalise_field_name(name).encode("ascii")


def encode_entry(fields: Mapping[str, str | bytes]) -> bytes:
    """Encode one journal entry as a native-protocol payload.

    Values without a newline are written `KEY=value\\n`; values with one use the binary-safe form
    `KEY\\n<little-endian u64 length><bytes>\\n`. Field names are normalised (`normalise_field_name`).
    """
    out = bytearray()
    for name, value in fields.items():
        key = _field_key(name)
        data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
        if b"\n" in data:
            out += key + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key + b"=" + data + b"\n"
    return bytes(out)


# ---------------------------------------------------------------------------------------------------
# ECS record -> journald fields


def _get(record: Mapping[str, Any], dotted: str) -> Any:
    """Look up "a.b.c" in nested dicts; a literal dotted key at any level is also accepted."""
    if dotted in record:
        return record[dotted]
    cur: Any = record
    for part in _path(dotted):
        # records are plain dicts; the ABC check is only the fallback (it is slow on the hot path)
        if not (type(cur) is dict or isinstance(cur, Mapping)) or part not in cur:
            return None
        cur = cur[part]
    return cur


@functools.lru_cache(maxsize=256)
def _path(dotted: str) -> tuple[str, ...]:
    return tuple(dotted.split("."))


def _scalar(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_WARNING_ACTIONS: Final = frozenset({"events-lost", "events_lost", "queue-overflow", "queue_overflow"})
_LEVELS: Final = {
    "critical": 2,
    "error": PRIORITY_ERR,
    "err": PRIORITY_ERR,
    "warning": PRIORITY_WARNING,
    "warn": PRIORITY_WARNING,
    "notice": 5,
    "info": PRIORITY_INFO,
    "debug": PRIORITY_DEBUG,
}

# journald field -> dotted path in the ECS record
_STRUCTURED: Final = (
    ("AUDIT_ACTION", "event.action"),
    ("CLAUDE_SESSION_ID", "claude.session_id"),
    ("CLAUDE_PID", "claude.pid"),
    ("CLAUDE_INVOCATION", "claude.invocation"),
    ("CLAUDE_ORIGIN", "claude.origin"),
    ("CLAUDE_COMMAND", "claude.command"),
    ("PROCESS_PID", "process.pid"),
    ("PROCESS_PPID", "process.parent.pid"),
    ("PROCESS_EXECUTABLE", "process.executable"),
    ("PROCESS_ENTITY_ID", "process.entity_id"),
    ("USER_ID", "user.id"),
    ("AUDIT_FLAGS", "claude_audit.flags"),
    ("AUDIT_RULE_ID", "rule.id"),
)


def _priority(record: Mapping[str, Any], action: str | None) -> int:
    level = _get(record, "log.level")
    if isinstance(level, str) and level.lower() in _LEVELS:
        return _LEVELS[level.lower()]
    if _get(record, "event.kind") == "alert":
        # A stretch of time or a process nobody watched (a crash's unwatched window, a session the
        # kernel's map refused): a gap in the audit, which an operator must see.
        return PRIORITY_ERR
    if action is not None:
        if action in _WARNING_ACTIONS or action.endswith(("-lost", "_lost", "warning")):
            return PRIORITY_WARNING
        if action.endswith(("error", "-failed", "_failed")):
            return PRIORITY_ERR
    return PRIORITY_INFO


def _message(record: Mapping[str, Any], action: str | None) -> str:
    parts = [action or "event"]
    for label, path in (("pid", "process.pid"), ("ppid", "process.parent.pid")):
        v = _scalar(_get(record, path))
        if v is not None:
            parts.append(f"{label}={v}")
    session = _scalar(_get(record, "claude.session_id")) or _scalar(_get(record, "claude.pid"))
    if session is not None:
        parts.append(f"session={session}")
    origin = _scalar(_get(record, "claude.origin"))
    if origin is not None:
        parts.append(f"origin={origin}")
    msg = " ".join(parts)
    command = _get(record, "claude.command")
    args = _get(record, "process.args")
    text: str | None = None
    if isinstance(command, str):
        text = command
    elif isinstance(args, list) and args:
        text = " ".join(str(a) for a in args)
    elif (m := _get(record, "message")) is not None:
        text = str(m)
    if text is not None:
        msg += ": " + text
    msg = neutralise(msg)
    if len(msg) > MESSAGE_MAX_CHARS:
        msg = msg[: MESSAGE_MAX_CHARS - 1] + "\u2026"
    return msg


def journal_fields(record: Mapping[str, Any], line: bytes | str | None = None) -> dict[str, str | bytes]:
    """Map one ECS audit record to journald fields.

    `line` is the record's JSON line as written to the audit file (pass it to avoid serialising twice);
    without it the record is serialised here with every non-ASCII character escaped. Fields whose
    source is absent from the record are omitted.
    """
    action = _scalar(_get(record, "event.action"))
    out: dict[str, str | bytes] = {
        "MESSAGE": _message(record, action),
        "PRIORITY": str(_priority(record, action)),
        "SYSLOG_IDENTIFIER": "claude-audit",
    }
    for name, path in _STRUCTURED:
        v = _scalar(_get(record, path))
        if v is not None:
            out[name] = v
    args = _get(record, "process.args")
    if isinstance(args, list):
        out["PROCESS_ARGS"] = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    ts = _scalar(_get(record, "@timestamp"))
    if ts is not None:
        out["AUDIT_TIMESTAMP"] = ts
    if line is None:
        out["AUDIT_RECORD"] = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
    else:
        # The file's line as it is (bytes: no decode and re-encode); it never holds a raw newline.
        out["AUDIT_RECORD"] = line.rstrip(b"\n") if isinstance(line, bytes) else line.rstrip("\n")
    return out


# ---------------------------------------------------------------------------------------------------
# I/O


class JournalSink:
    """Sends entries to journald over its native socket.

    Payloads up to `datagram_max` bytes go as one datagram; larger ones, or any the kernel refuses
    with EMSGSIZE/ENOBUFS, go as a sealed memfd, so entries of any size arrive.

    `send()` never raises for journald being absent or slow: it returns False and counts `failed`.
    If the socket is missing, one warning is logged and sends are skipped (counted as failed) until
    `retry_interval` seconds have passed, so a journald that starts later is picked up.

    `send()` never blocks either: the socket is non-blocking, so a journald that is slow or stopped
    (SIGSTOP, a full receive queue) costs the main loop nothing. A record the socket cannot take at once
    is dropped and counted in `dropped_busy`, which the daemon turns into an `events-lost` record with
    `where: "journal"`; the audit file has it.
    """

    def __init__(
        self,
        socket_path: Path = DEFAULT_SOCKET,
        *,
        retry_interval: float = 10.0,
        datagram_max: int = 256 * 1024,
        sndbuf: int = 8 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.socket_path = Path(socket_path)
        self.retry_interval = retry_interval
        self.datagram_max = datagram_max
        self.sndbuf = sndbuf
        self._clock = clock
        self.sent = 0
        self.failed = 0
        self.memfd_sent = 0
        self.dropped_busy = 0
        """Records dropped because journald's socket queue was full (journald slow or stopped)."""
        self._sock: socket.socket | None = None
        self._retry_at = 0.0
        self._warned = False
        self._unavailable = False

    # -- connection handling
    def _socket(self) -> socket.socket:
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
            # Like sd-journal: a large send buffer lets bursts of records queue without blocking.
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            self._sock = s
        return self._sock

    def _mark_unavailable(self, err: OSError) -> None:
        self._unavailable = True
        self._retry_at = self._clock() + self.retry_interval
        if not self._warned:
            self._warned = True
            log.warning(
                "journald unavailable; journal records skipped until it appears",
                socket=str(self.socket_path),
                error=os.strerror(err.errno) if err.errno else str(err),
                retry_interval_s=self.retry_interval,
            )

    # -- sending
    def send(self, fields: Mapping[str, str | bytes]) -> bool:
        """Send one entry. Returns True if journald accepted it."""
        if self._unavailable and self._clock() < self._retry_at:
            self.failed += 1
            return False
        payload = encode_entry(fields)
        try:
            self._send_payload(payload)
        except OSError as err:
            self.failed += 1
            if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.dropped_busy += 1
                if self.dropped_busy == 1:
                    log.warning("journald is not keeping up; records it cannot take are dropped and counted")
            elif err.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
                self._mark_unavailable(err)
            else:
                log.debug("journald send failed", error=str(err), size=len(payload))
            return False
        if self._unavailable:
            self._unavailable = False
            self._warned = False
            log.info("journald reachable again", socket=str(self.socket_path))
        self.sent += 1
        return True

    def _send_payload(self, payload: bytes) -> None:
        sock = self._socket()
        if len(payload) > self.datagram_max:
            # Huge datagrams need large contiguous kernel buffers and crowd journald's socket queue;
            # a sealed memfd costs one page-cache copy and has no size limit.
            self._send_memfd(sock, payload)
            return
        try:
            sock.sendto(payload, str(self.socket_path))
            return
        except OSError as err:
            if err.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
        self._send_memfd(sock, payload)

    def _send_memfd(self, sock: socket.socket, payload: bytes) -> None:
        """Pass the payload in a sealed memfd: journald reads any size this way."""
        fd = os.memfd_create("journal-claude-audit", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(payload)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            sock.sendmsg(
                [],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())],
                0,
                str(self.socket_path),
            )
            self.memfd_sent += 1
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> JournalSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
