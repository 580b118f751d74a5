"""`claude-audit hook pre-tool-use`: a Claude Code PreToolUse hook that tells the agent, before a Bash
tool call runs, that a command in it would be denied, and why (docs/ENFORCE.md).

A courtesy, not the enforcement: the hook runs as the agent's user, from settings the agent's user can
edit, and it reads the shell command with a small scanner (shellwords) that does not expand anything.
The kernel decides at the exec whatever the hook said. Every input here is the agent's: the hook reads
at most HOOK_INPUT_MAX_BYTES, and anything it cannot read it lets through (the kernel still applies).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any, Final

from .config import DenyRule, EnforceConfig
from .shellwords import Token, Unrecognised, lex

HOOK_INPUT_MAX_BYTES: Final = 1_048_576
_SEPARATORS: Final = frozenset(
    {b";", b"&", b"&&", b"||", b"|", b"|&", b"(", b")", b"\n", b";;", b";&", b";;&"}
)
_REDIRECTIONS: Final = frozenset(
    {b"<", b">", b">>", b">|", b"<>", b"&>", b"&>>", b">&", b"<&", b"<<<", b"<<", b"<<-"}
)
_PREFIX_WORDS: Final = frozenset(
    {b"exec", b"command", b"nohup", b"time", b"env", b"sudo", b"builtin", b"then", b"do", b"else", b"!", b"{"}
)


def simple_commands(script: bytes) -> list[list[bytes | None]]:
    """The words of each simple command (operators split them; redirections and their targets, leading
    assignments and a few prefix words are dropped). A word that needs expansion is None."""
    commands: list[list[bytes | None]] = [[]]
    tokens: Sequence[Token] = lex(script)
    skip_next = False
    for i, t in enumerate(tokens):
        if skip_next:
            skip_next = False
            continue
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if not t.op and t.raw.isdigit() and following is not None and following.raw in _REDIRECTIONS:
            continue  # the descriptor number of "2>file" (the scanner does not keep that it touches ">")
        if t.op:
            if t.raw in _REDIRECTIONS:
                skip_next = True
            elif t.raw in _SEPARATORS:
                commands.append([])
            continue
        words = commands[-1]
        v = t.value
        if not words and v is not None and (v in _PREFIX_WORDS or _is_assignment(v)):
            continue
        words.append(v)
    return [c for c in commands if c]


def _is_assignment(word: bytes) -> bool:
    name, eq, _ = word.partition(b"=")
    return (
        bool(eq)
        and bool(name)
        and (name[:1].isalpha() or name[:1] == b"_")
        and name.replace(b"_", b"").isalnum()
    )


def rule_for(
    words: Sequence[bytes | None], rules: Sequence[DenyRule], which: Callable[[str], str | None]
) -> DenyRule | None:
    """The first rule the command `words` would meet at its exec; `which` resolves a bare name on PATH."""
    first = words[0]
    if first is None:
        return None
    program = first.decode(errors="surrogateescape")
    path = program if "/" in program else which(program)
    name = program.rsplit("/", 1)[-1]
    for r in rules:
        if r.program is not None:
            hit = r.program == name
        elif r.path is not None:
            hit = path == r.path
        else:
            hit = path is not None and r.path_prefix is not None and path.startswith(r.path_prefix)
        want = [a.encode() for a in r.args]
        if hit and list(words[1 : 1 + len(want)]) == want:
            return r
    return None


def decide(payload: Any, enforce: EnforceConfig, which: Callable[[str], str | None]) -> dict[str, Any] | None:
    """The hook's answer for one PreToolUse event: a deny with the rule's reason, or None to say nothing."""
    if enforce.mode != "enforce" or not isinstance(payload, dict) or payload.get("tool_name") != "Bash":
        return None
    tool_input = payload.get("tool_input")
    command = tool_input.get("command") if isinstance(tool_input, dict) else None
    if not isinstance(command, str):
        return None
    try:
        commands = simple_commands(command.encode(errors="surrogateescape"))
    except Unrecognised:
        return None
    for words in commands:
        rule = rule_for(words, enforce.deny, which)
        if rule is not None:
            return {
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": "deny",
                    "permissionDecisionReason": (
                        f"claude-audit deny rule {rule.id}: {rule.reason} "
                        "(the kernel kills this program in Claude Code sessions)"
                    ),
                }
            }
    return None


def read_payload(fd: int) -> Any:
    """The hook's JSON input from `fd`, at most HOOK_INPUT_MAX_BYTES; None if larger or not JSON."""
    chunks: list[bytes] = []
    size = 0
    while size <= HOOK_INPUT_MAX_BYTES:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > HOOK_INPUT_MAX_BYTES:
        return None
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return None


def pre_tool_use(enforce: EnforceConfig, fd: int = 0) -> str | None:
    """Run the hook on stdin: the JSON line to print, or None (allow, say nothing)."""
    answer = decide(read_payload(fd), enforce, shutil.which)
    return json.dumps(answer) if answer is not None else None
