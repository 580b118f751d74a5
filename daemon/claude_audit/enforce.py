"""Deny rules compiled into the kernel's map entries (docs/ENFORCE.md). Pure: the sensor writes them.

The kernel looks an exec up twice: by its path's last component in deny_name, and by the longest stored
prefix of its path in deny_prefix (an LPM trie; an exact-path rule is stored with the path's NUL, so it
matches only the whole path). Each hit lists the rules to check further (users, leading arguments) by
index. Every key carries a generation (0 or 1): the daemon fills the inactive one, then switches the
single word in enforce_state, so a reload changes every rule at once.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from . import bpf_layout as L

Mode = Literal["off", "dry-run", "enforce"]
KERNEL_MODES: dict[str, int] = {"off": L.ENFORCE_OFF, "dry-run": L.ENFORCE_DRY_RUN, "enforce": L.ENFORCE_KILL}


class Rule(Protocol):
    """What compile_rules reads of a config.DenyRule."""

    @property
    def id(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def args(self) -> list[str]: ...
    def uids(self) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """What a record says about the rule that made a decision."""

    id: str
    reason: str


@dataclass(frozen=True)
class CompiledRules:
    """One generation of rules as map entries, and the index -> rule table records are resolved with."""

    generation: int
    prefix_entries: list[tuple[L.DenyPrefixKey, L.DenySlots]]
    name_entries: list[tuple[L.DenyNameKey, L.DenySlots]]
    rule_entries: list[tuple[int, L.DenyRule]]
    """(deny_rules index, value): index is generation * ENFORCE_MAX_RULES + rule."""
    rules: tuple[RuleInfo, ...]


def effective_mode(configured: Mode, can_kill: bool) -> Mode:
    """The mode the kernel is given: "enforce" falls back to "dry-run" when it cannot kill."""
    return "dry-run" if configured == "enforce" and not can_kill else configured


def state_word(mode: Mode, generation: int) -> int:
    """enforce_state[0]: the kernel mode and the active generation in one word (switched atomically)."""
    return KERNEL_MODES[mode] | (generation & 1) << L.ENFORCE_GENERATION_SHIFT


def _slots(indexes: Sequence[int]) -> L.DenySlots:
    if len(indexes) > L.DENY_SLOTS:
        raise ValueError(f"{len(indexes)} rules for one key, at most {L.DENY_SLOTS}")
    s = L.DenySlots(count=len(indexes))
    for k, i in enumerate(indexes):
        s.rules[k] = i
    return s


def args_blob(args: Sequence[str]) -> bytes:
    """Leading arguments as the kernel compares them with argv[1..]: each word followed by its NUL."""
    return b"".join(a.encode() + b"\0" for a in args)


def prefix_key(generation: int, text: bytes) -> L.DenyPrefixKey:
    """deny_prefix key for a path prefix (an exact path is passed with its NUL)."""
    if len(text) > L.DENY_PATH_KEY_LEN:
        raise ValueError(f"path key of {len(text)} bytes, at most {L.DENY_PATH_KEY_LEN}")
    k = L.DenyPrefixKey(prefixlen=8 * (1 + len(text)), generation=generation)
    # ctypes' c_char arrays stop at a NUL on assignment, so the bytes go in through a buffer.
    ctypes.memmove(ctypes.addressof(k) + L.DenyPrefixKey.path.offset, text, len(text))
    return k


def compile_rules(
    groups: dict[tuple[Literal["program", "path"], str], list[int]], rules: Sequence[Rule], generation: int
) -> CompiledRules:
    """Map entries for `rules`, given config.deny_rule_groups(rules) (key -> rule indexes to check)."""
    if len(rules) > L.ENFORCE_MAX_RULES:
        raise ValueError(f"{len(rules)} rules, at most {L.ENFORCE_MAX_RULES}")
    prefix_entries = []
    name_entries = []
    for (kind, text), indexes in groups.items():
        if kind == "program":
            name = text.encode()
            if len(name) >= L.DENY_NAME_LEN:
                raise ValueError(f"program name {text!r} longer than {L.DENY_NAME_LEN - 1} bytes")
            name_entries.append((L.DenyNameKey(name=name, generation=generation), _slots(indexes)))
        else:
            prefix_entries.append((prefix_key(generation, text.encode()), _slots(indexes)))
    rule_entries = []
    for i, r in enumerate(rules):
        blob = args_blob(r.args)
        uids = r.uids()
        if len(blob) > L.DENY_ARGS_LEN or len(uids) > L.DENY_USERS:
            raise ValueError(f"rule {r.id}: arguments or users beyond the kernel's room")
        value = L.DenyRule(args_len=len(blob), nusers=len(uids))
        for k, uid in enumerate(uids):
            value.users[k] = uid
        ctypes.memmove(ctypes.addressof(value) + L.DenyRule.args.offset, blob, len(blob))
        rule_entries.append((generation * L.ENFORCE_MAX_RULES + i, value))
    return CompiledRules(
        generation=generation,
        prefix_entries=prefix_entries,
        name_entries=name_entries,
        rule_entries=rule_entries,
        rules=tuple(RuleInfo(r.id, r.reason) for r in rules),
    )


def decision_of(flags: int) -> tuple[str, int, int] | None:
    """From exec_event.flags: ("denied" or "would-deny", generation, rule index), or None."""
    if flags & L.EXEC_DENIED:
        decision = "denied"
    elif flags & L.EXEC_WOULD_DENY:
        decision = "would-deny"
    else:
        return None
    slot = (flags >> L.EXEC_DENY_RULE_SHIFT) & L.EXEC_DENY_RULE_MASK
    return decision, slot >> 8, slot & 0xFF
