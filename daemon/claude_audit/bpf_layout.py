"""ctypes mirrors of the structs in bpf/claude_audit.h: the one place their layout is restated.

tests/unit/test_bpf_layout.py compiles the header with the host C compiler and checks every offset and
size here against it. exec_event ends in a variable-length data area (path, then argv) whose capacity is
set at compile time, so only its fixed header is mirrored.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

BPF_DIR = Path(__file__).resolve().parent.parent.parent / "bpf"
"""Where the BPF sources live in a source checkout; an installed package passes its own path."""

COMM_LEN = 16
CANDIDATE_FILENAME_LEN = 256

EVENT_EXEC = 1
EVENT_CANDIDATE = 2
EVENT_EXIT = 3

TRACK_PENDING_ROOT = 0x1
TRACK_SEEDED = 0x2
TRACK_RECOVERED = 0x4
EXEC_ARGS_TRUNCATED = 0x100
EXEC_FILENAME_TRUNCATED = 0x200
EXEC_ARGS_UNREADABLE = 0x400
EXEC_IS_ROOT = 0x800

CANDIDATE_EXEC = 1
CANDIDATE_RENAME = 2

COUNTER_RING_LOST = 0
COUNTER_TRACK_FULL = 1
COUNTER_CANDIDATE_LOST = 2
COUNTER_STALE_PID = 3
COUNTER_EXECS_SEEN = 4
COUNTER_ROOTS_FULL = 5
COUNTER_CANDIDATE_THROTTLED = 6
COUNTER_CANDIDATE_REJECTED_AGAIN = 7
COUNTER_DENIED = 8
COUNTER_WOULD_DENY = 9
COUNTER_DENY_RECORD_LOST = 10
COUNTER_MAX = 11

EXEC_WOULD_DENY = 0x1000
EXEC_DENIED = 0x2000
EXEC_DENY_RULE_SHIFT = 16
EXEC_DENY_RULE_MASK = 0x1FF

ENFORCE_OFF = 0
ENFORCE_DRY_RUN = 1
ENFORCE_KILL = 2
ENFORCE_GENERATION_SHIFT = 4
ENFORCE_MAX_RULES = 256
DENY_PATH_KEY_LEN = 255
DENY_NAME_LEN = 64
DENY_ARGS_LEN = 256
DENY_SLOTS = 16
DENY_USERS = 8


class RootInfo(ctypes.Structure):
    """Value of target_pid_map (struct root_info)."""

    _fields_ = [
        ("start_ticks", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class CandidateBudget(ctypes.Structure):
    """Value of candidate_budget (struct candidate_budget)."""

    _fields_ = [
        ("window_start_ns", ctypes.c_uint64),
        ("used", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class TrackedProc(ctypes.Structure):
    """Value of tracked_map (struct tracked_proc)."""

    _fields_ = [
        ("start_ticks", ctypes.c_uint64),
        ("root_start_ticks", ctypes.c_uint64),
        ("invocation_start_ticks", ctypes.c_uint64),
        ("root", ctypes.c_uint32),
        ("invocation", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class CommKey(ctypes.Structure):
    """Key of candidate_comms (struct comm_key)."""

    _fields_ = [("comm", ctypes.c_char * COMM_LEN)]


class DenyPrefixKey(ctypes.Structure):
    """Key of deny_prefix, an LPM trie (struct deny_prefix_key)."""

    _fields_ = [
        ("prefixlen", ctypes.c_uint32),
        ("generation", ctypes.c_uint8),
        ("path", ctypes.c_char * DENY_PATH_KEY_LEN),
    ]


class DenyNameKey(ctypes.Structure):
    """Key of deny_name (struct deny_name_key)."""

    _fields_ = [("name", ctypes.c_char * DENY_NAME_LEN), ("generation", ctypes.c_uint32)]


class DenySlots(ctypes.Structure):
    """Value of deny_prefix and deny_name (struct deny_slots)."""

    _fields_ = [("count", ctypes.c_uint32), ("rules", ctypes.c_uint32 * DENY_SLOTS)]


class DenyRule(ctypes.Structure):
    """Value of deny_rules (struct deny_rule)."""

    _fields_ = [
        ("args_len", ctypes.c_uint32),
        ("nusers", ctypes.c_uint32),
        ("users", ctypes.c_uint32 * DENY_USERS),
        ("args", ctypes.c_char * DENY_ARGS_LEN),
    ]


class ExecEventHeader(ctypes.Structure):
    """struct exec_event up to (not including) its data[] area."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("ppid", ctypes.c_uint32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("root", ctypes.c_uint32),
        ("invocation", ctypes.c_uint32),
        ("boot_ns", ctypes.c_uint64),
        ("start_ticks", ctypes.c_uint64),
        ("root_start_ticks", ctypes.c_uint64),
        ("invocation_start_ticks", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("filename_len", ctypes.c_uint32),
        ("args_len", ctypes.c_uint32),
        ("args_orig_len", ctypes.c_uint32),
        ("comm", ctypes.c_char * COMM_LEN),
        ("euid", ctypes.c_uint32),
        ("egid", ctypes.c_uint32),
        ("suid", ctypes.c_uint32),
        ("sgid", ctypes.c_uint32),
        ("cap_effective", ctypes.c_uint64),
        ("parent_start_ticks", ctypes.c_uint64),
    ]


class CandidateEventRaw(ctypes.Structure):
    """struct candidate_event."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("ppid", ctypes.c_uint32),
        ("reason", ctypes.c_uint32),
        ("boot_ns", ctypes.c_uint64),
        ("start_ticks", ctypes.c_uint64),
        ("comm", ctypes.c_char * COMM_LEN),
        ("filename", ctypes.c_char * CANDIDATE_FILENAME_LEN),
    ]


class ExitEventRaw(ctypes.Structure):
    """struct exit_event."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("root", ctypes.c_uint32),
        ("exit_code", ctypes.c_uint32),
        ("boot_ns", ctypes.c_uint64),
        ("start_ticks", ctypes.c_uint64),
    ]


EXEC_DATA_OFFSET = ctypes.sizeof(ExecEventHeader)
"""Offset of exec_event.data: the fixed header has no tail padding (it ends on an 8-byte boundary)."""

MIRRORS: dict[str, type[ctypes.Structure]] = {
    "root_info": RootInfo,
    "tracked_proc": TrackedProc,
    "candidate_budget": CandidateBudget,
    "comm_key": CommKey,
    "candidate_event": CandidateEventRaw,
    "exit_event": ExitEventRaw,
    "deny_prefix_key": DenyPrefixKey,
    "deny_name_key": DenyNameKey,
    "deny_slots": DenySlots,
    "deny_rule": DenyRule,
}
"""C struct name -> its full mirror (exec_event is checked through ExecEventHeader separately)."""
