"""enforce: deny rules compiled into the kernel's map entries, the mode word, decision bits of a record."""

from __future__ import annotations

import ctypes
from typing import Any

from claude_audit import bpf_layout as L
from claude_audit.config import deny_rule_groups, parse_config
from claude_audit.enforce import (
    args_blob,
    compile_rules,
    decision_of,
    effective_mode,
    prefix_key,
    state_word,
)


def _rules(*rules: dict[str, Any]) -> Any:
    deny = [{"reason": f"reason {i}", "id": f"r{i}", **r} for i, r in enumerate(rules)]
    return parse_config({"enforce": {"mode": "enforce", "deny": deny}}).enforce.deny


def _compiled(generation: int, *rules: dict[str, Any]) -> Any:
    deny = _rules(*rules)
    return compile_rules(deny_rule_groups(deny), deny, generation)


def test_program_rule_becomes_a_name_key_and_a_rule_with_its_arguments() -> None:
    """`git push --force` is a deny_name key "git" pointing at a rule whose args are "push\\0--force\\0"."""
    c = _compiled(1, {"program": "git", "args": ["push", "--force"], "users": [1000, 0]})
    [(key, slots)] = c.name_entries
    assert (key.name, key.generation) == (b"git", 1)
    assert slots.count == 1 and slots.rules[0] == 0
    [(index, rule)] = c.rule_entries
    assert index == L.ENFORCE_MAX_RULES  # generation 1 lives in the second half of deny_rules
    assert rule.args_len == len(b"push\0--force\0")
    assert bytes(rule)[L.DenyRule.args.offset : L.DenyRule.args.offset + rule.args_len] == b"push\0--force\0"
    assert (rule.nusers, list(rule.users)[:2]) == (2, [1000, 0])
    assert c.prefix_entries == []
    assert c.rules[0].id == "r0" and c.rules[0].reason == "reason 0"


def test_exact_path_keeps_its_nul_and_a_prefix_does_not() -> None:
    """An exact path matches only the whole path: its key includes the NUL; a prefix's key stops before."""
    c = _compiled(0, {"path": "/usr/bin/npm"}, {"path_prefix": "/opt/tools/"})
    by_len = {k.prefixlen: bytes(k)[5 : 5 + k.prefixlen // 8 - 1] for k, _ in c.prefix_entries}
    assert by_len == {8 * (1 + 13): b"/usr/bin/npm\0", 8 * (1 + 11): b"/opt/tools/"}
    assert all(k.generation == 0 for k, _ in c.prefix_entries)


def test_prefix_key_carries_bytes_after_a_nul() -> None:
    """ctypes would stop at the NUL on assignment; the key must hold the path's bytes exactly."""
    k = prefix_key(1, b"/a\0")
    raw = bytes(k)
    assert raw[:4] == ctypes.c_uint32(32).value.to_bytes(4, "little")
    assert raw[4] == 1 and raw[5:8] == b"/a\0"


def test_args_blob_ends_every_word_with_nul() -> None:
    """Each leading argument is compared with its NUL, so "--force" cannot match "--force-with-lease"."""
    assert args_blob(["push", "--force"]) == b"push\0--force\0"
    assert args_blob([]) == b""


def test_mode_word_and_the_fallback_when_the_kernel_cannot_kill() -> None:
    """One word holds mode and generation; enforce becomes dry-run where bpf_send_signal is missing."""
    assert state_word("off", 0) == L.ENFORCE_OFF
    assert state_word("enforce", 1) == L.ENFORCE_KILL | 1 << L.ENFORCE_GENERATION_SHIFT
    assert state_word("dry-run", 0) == L.ENFORCE_DRY_RUN
    assert effective_mode("enforce", can_kill=False) == "dry-run"
    assert effective_mode("enforce", can_kill=True) == "enforce"
    assert effective_mode("off", can_kill=False) == "off"


def test_decision_bits_name_generation_and_rule() -> None:
    """exec_event.flags' decision and rule bits decode to (decision, generation, index)."""
    flags = L.EXEC_DENIED | ((1 << 8 | 42) << L.EXEC_DENY_RULE_SHIFT) | L.EXEC_IS_ROOT
    assert decision_of(flags) == ("denied", 1, 42)
    assert decision_of(L.EXEC_WOULD_DENY | (7 << L.EXEC_DENY_RULE_SHIFT)) == ("would-deny", 0, 7)
    assert decision_of(L.EXEC_IS_ROOT) is None
