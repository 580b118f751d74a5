"""Where an invocation comes from: Claude Code's Bash tool wrapper, and the origin rules. Pure.

Labels are only given for the exact shapes Claude Code produces, checked piece by piece; anything else,
and anything that merely ends like a wrapper, is ``unknown``. The adversary writes hooks, status-line
commands and settings files, so a shape that is "close enough" would let it choose its own label.

Bash tool wrapper (what `extract_command` reads)
-------------------------------------------------
Each Bash tool call is a shell run directly by the Claude process (the session root), ``<shell> -c [-l]
SCRIPT`` with shell bash, zsh or sh, where SCRIPT is ``PREFIX && ... && eval WORD[ REDIR] && pwd -P >|
CWDFILE`` and every PREFIX segment is one Claude Code writes (`_PREFIX_SEGMENTS`, exact tokens):

* 2.1.x: ``source <snapshot> 2>/dev/null || true && \\builtin shopt -u extglob 2>/dev/null || true &&
  { \\builtin unalias -- 'which'; \\builtin unset -f -- 'which'; } >/dev/null 2>&1 || true && ...
  && eval WORD < /dev/null && pwd -P >| /tmp/claude-<hex>-cwd``, sometimes with the eval inside
  ``{ eval WORD < /dev/null; }``;
* 2.0.x: ``source <snapshot> && shopt -u extglob 2>/dev/null || true && eval WORD \\< /dev/null && pwd -P
  >| /tmp/claude-<hex>-cwd`` (the ``\\<`` comes from shell-quote quoting "<" as a word);
* the redirection is left out when the command holds a heredoc;
* <snapshot> is a static path ``.../shell-snapshots/snapshot-<shell>-<digits>-<id>.sh``.

WORD is the command as one shell word, read with the scanner in `shellwords`, so the result is exactly
the string ``eval`` receives, byte for byte (see docs/ORIGIN.md for 2.0.x's ``\\!`` and pipeline quirks).
A word whose value depends on expansions is not static: the answer is None rather than a guess.

Anything else gives None and is not ``tool``: a segment before the eval that Claude Code does not write
(``curl x | sh && eval 'git status' && pwd -P >| /tmp/claude-1-cwd``, a ``;`` list, a
CLAUDE_CODE_SHELL_PREFIX or CLAUDE_ENV_FILE prefix, whose content is the user's and so unverifiable),
or a shell whose parent is not the session root. 2.1.x's "carried command text" form, which passes the
command in an environment variable (``'eval' "... 'eval' $__CLAUDE_CC_COMMAND_TEXT"``), is a tool call
whose command cannot be known.

Origins (what `classify_origin` decides for a new invocation, a direct child of the session root)
-------------------------------------------------------------------------------------------------
``tool``
    A Bash tool call wrapper of exactly the shape above.
``internal``
    Claude Code's own work: the shell-snapshot login shell (script starting ``SNAPSHOT_FILE=<snapshot>``
    and ending with Claude Code's check that the file was written); the environment probe (``env`` with
    no arguments, or a shell running ``-c env``), the start-up probes (``sh -c`` running ``which
    bash``/``which zsh``, ``ldd /bin/ls 2>/dev/null`` or the ``ps aux | grep -E "code|cursor|..." | grep
    -v grep`` IDE check, whose pattern may only hold names: no ``$``, backquote or quote), ``git`` and
    ``uname`` run directly; and bundled tools: the Claude binary run under another name (``exec -a rg
    .../claude.exe``) or a program shipped inside the ``@anthropic-ai/claude-code`` package.
``unknown``
    Everything else: hooks, status line commands, MCP and LSP servers, and wrappers this module does not
    recognise.

There is no ``hook`` origin: hooks and status line commands are both run as ``/bin/sh -c <command>``
directly by the Claude process, the same shape Claude Code uses for some of its own probes, so argv and
the executable cannot tell them apart (docs/ORIGIN.md). A hook that copies a wrapper byte for byte is
labelled as the wrapper would be, with the command it really evaluates: argv cannot tell them apart,
and docs/GUARANTEES.md states it as a limit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Literal

from .shellwords import Token, Unrecognised, lex

Origin = Literal["tool", "internal", "unknown"]

SHELL_NAMES = frozenset({b"bash", b"zsh", b"sh"})

_CWD_FILE = re.compile(rb"(?:claude-[0-9A-Za-z_-]+-cwd|cwd-[0-9A-Za-z_-]+)\Z")
_SNAPSHOT_FILE = re.compile(rb"snapshot-(?:bash|zsh|sh)-[0-9]+-[0-9A-Za-z]+\.sh\Z")
# `sh -c` probes Claude Code runs at start-up (seen in the real 2.0.77 capture): shell lookup, the libc
# check, and the IDE detection pipeline. The IDE list holds names only: no expansion can hide inside.
_INTERNAL_SCRIPTS = re.compile(
    rb"(?:which (?:bash|zsh)"
    rb"|ldd /bin/ls 2>/dev/null"
    rb"|ps aux \| grep -E \"code\|cursor\|windsurf(?:\|[A-Za-z0-9_.-]+)*\" \| grep -v grep)\Z"
)
# How the snapshot shell script ends in every captured version: the check that the file was written.
_SNAPSHOT_TRAILER = re.compile(
    rb'if \[ ! -f "\$SNAPSHOT_FILE" \]; then\s+echo "Error: Snapshot file was not created at '
    rb'\$SNAPSHOT_FILE" >&2\s+exit 1\s+fi\s*\Z'
)
# Programs Claude Code execs directly (no shell) for its own context: git state, the kernel name.
_INTERNAL_PROGRAMS = frozenset({b"git", b"uname"})

Raws = tuple[bytes, ...]


def _raws(tokens: Sequence[Token]) -> Raws:
    return tuple(t.raw for t in tokens)


def _segments(script: bytes) -> list[list[Token]]:
    tokens = lex(script)
    segments: list[list[Token]] = [[]]
    for t in tokens:
        if t.op and t.raw == b"&&":
            segments.append([])
        else:
            segments[-1].append(t)
    return segments


def _template(script: bytes) -> Raws:
    (seg,) = _segments(script)
    return _raws(seg)


# Segments Claude Code puts before the eval, token for token (2.1.331 and 2.0.77 captures, and the
# 2.1.x carried-command form). `NAME` stands for the alias name of an unalias group.
_FIXED_PREFIXES = frozenset(
    {
        _template(b"\\builtin shopt -u extglob 2>/dev/null || true"),
        _template(b"shopt -u extglob 2>/dev/null || true"),
        _template(b"{ \\builtin typeset +x '__CLAUDE_CC_COMMAND_TEXT' 2>/dev/null || \\builtin true; }"),
        _template(
            b'{ \\builtin [ -n "${__CLAUDE_CC_COMMAND_TEXT:+1}" ] || '
            b"{ \\builtin echo '__CLAUDE_CC_COMMAND_TEXT?' >&2; \\builtin exit 126; }; }"
        ),
    }
)
_UNALIAS = _template(b"{ \\builtin unalias -- NAME; \\builtin unset -f -- NAME; } >/dev/null 2>&1 || true")
_ALIAS_NAME = re.compile(rb"'[A-Za-z_][A-Za-z0-9_]*'\Z")
_CARRIED_EVAL = _template(
    b"'eval' \"\\builtin 'unset' -v '__CLAUDE_CC_COMMAND_TEXT'; 'eval' $__CLAUDE_CC_COMMAND_TEXT\""
)


_PLAIN_PATH = re.compile(rb"/[A-Za-z0-9_./@+,:=-]+\Z")


def _is_snapshot_path(path: bytes | None) -> bool:
    # Plain characters only: in `SNAPSHOT_FILE=<path>` the shell would expand anything else.
    if path is None or _PLAIN_PATH.match(path) is None:
        return False
    head, name = os.path.split(path)
    return os.path.basename(head) == b"shell-snapshots" and _SNAPSHOT_FILE.match(name) is not None


def _is_prefix_segment(seg: list[Token]) -> bool:
    """Whether one `&&` segment before the eval is one that Claude Code writes."""
    raws = _raws(seg)
    if raws in _FIXED_PREFIXES:
        return True
    if seg and seg[0].raw == b"source" and len(seg) >= 2 and _is_snapshot_path(seg[1].value):
        # 2.0.x: `source SNAP`; 2.1.x: `source SNAP 2>/dev/null || true`
        return raws[2:] in ((), (b"2", b">", b"/dev/null", b"||", b"true"))
    if len(raws) == len(_UNALIAS):
        names = {raws[i] for i, r in enumerate(_UNALIAS) if r == b"NAME"}
        if len(names) == 1 and _ALIAS_NAME.match(next(iter(names))):
            return all(t in (r, b"NAME") for r, t in zip(raws, _UNALIAS, strict=True))
    return False


def _shell_script(argv: Sequence[bytes]) -> bytes | None:
    """SCRIPT of `<bash|zsh|sh> -c [-l] SCRIPT` (flags in either order), else None."""
    if len(argv) not in (3, 4) or os.path.basename(argv[0]) not in SHELL_NAMES:
        return None
    if sorted(argv[1:-1]) not in ([b"-c"], [b"-c", b"-l"]):
        return None
    return argv[-1]


def _is_cwd_report(seg: list[Token]) -> bool:
    """Whether a segment is `pwd -P >| <dir>/claude-<id>-cwd`, how every wrapper ends."""
    if len(seg) != 4 or [t.value for t in seg[:2]] != [b"pwd", b"-P"] or seg[2].raw != b">|":
        return False
    path = seg[3].value
    return path is not None and _CWD_FILE.match(os.path.basename(path)) is not None


def _is_eval_segment(seg: list[Token]) -> bool:
    """`eval WORD`, optionally `< /dev/null` (2.1.x) or `\\< /dev/null` (2.0.x) after it: nothing else."""
    if len(seg) < 2 or seg[0].raw != b"eval" or seg[1].op:
        return False
    rest = seg[2:]
    return not rest or (
        len(rest) == 2
        and rest[1].value == b"/dev/null"
        and ((rest[0].op and rest[0].raw == b"<") or rest[0].raw == b"\\<")
    )


def _wrapper(argv: Sequence[bytes]) -> list[Token] | None:
    """The eval segment (before `&& pwd -P >| <cwd file>`) of a Bash tool wrapper, else None."""
    script = _shell_script(argv)
    if script is None:
        return None
    try:
        segments = _segments(script)
    except Unrecognised:
        return None
    if len(segments) < 2 or not _is_cwd_report(segments[-1]):
        return None
    if not all(_is_prefix_segment(seg) for seg in segments[:-2]):
        return None  # something Claude Code does not write runs before the command
    seg = segments[-2]
    if _raws(seg) == _CARRIED_EVAL:
        return seg
    # `{ eval WORD < /dev/null; }` is the same call in a group (2.1.x, behind a feature flag).
    if len(seg) >= 3 and seg[0].raw == b"{" and seg[-1].raw == b"}" and seg[-2].raw == b";":
        seg = seg[1:-2]
    return seg if _is_eval_segment(seg) else None


def is_tool_wrapper(argv: Sequence[bytes]) -> bool:
    """Whether argv is a Claude Code Bash tool wrapper (even one whose command cannot be extracted)."""
    return _wrapper(argv) is not None


def extract_command(argv: Sequence[bytes]) -> bytes | None:
    """The agent's command inside a Bash tool wrapper's argv, byte-exact, or None if not recognised.

    None also for the carried-command form (the command is in a variable) and for a word whose value
    depends on expansions.
    """
    seg = _wrapper(argv)
    if seg is None or seg[0].raw != b"eval":
        return None
    return seg[1].value


def _is_claude_binary(exe: bytes, claude_exe: bytes | None) -> bool:
    if claude_exe is not None and exe == claude_exe:
        return True
    return (
        os.path.basename(exe) == b"claude.exe"
        or b"/.local/share/claude/versions/" in exe
        or b"/@anthropic-ai/claude-code/" in exe
    )


def classify_origin(
    argv: Sequence[bytes],
    exe: bytes,
    *,
    parent_is_root: bool,
    claude_exe: bytes | None = None,
) -> Origin:
    """The origin of a new invocation from its first exec: "tool", "internal" or "unknown".

    `exe` is the executed file (the exec's filename, or /proc's exe with " (deleted)" removed);
    `parent_is_root` tells whether the process is a direct child of the session's Claude process (if
    not, the answer is "unknown": no shape is Claude Code's own below another process);
    `claude_exe`, if known, is that Claude process's executable. The rules are in the module docstring.
    """
    if not parent_is_root:
        return "unknown"  # every shape below is one Claude Code runs itself, as the root's direct child
    if is_tool_wrapper(argv):
        return "tool"
    script = _shell_script(argv)
    if script is not None and _is_snapshot_script(script):
        return "internal"
    if _is_probe_or_bundled(argv, exe, script, claude_exe):
        return "internal"
    return "unknown"


def _is_snapshot_script(script: bytes) -> bool:
    """Claude Code's shell-snapshot script: `SNAPSHOT_FILE=<snapshot path>` first, its own check last."""
    first, _, _ = script.partition(b"\n")
    name, eq, path = first.partition(b"=")
    return (
        name == b"SNAPSHOT_FILE"
        and eq == b"="
        and _is_snapshot_path(path)
        and _SNAPSHOT_TRAILER.search(script[-400:]) is not None
    )


def _is_probe_or_bundled(
    argv: Sequence[bytes], exe: bytes, script: bytes | None, claude_exe: bytes | None
) -> bool:
    """Claude Code's environment and shell probes, and its bundled tools (for direct children only)."""
    if script is not None and (script.strip() == b"env" or _INTERNAL_SCRIPTS.match(script.strip())):
        return True
    if os.path.basename(exe) == b"env" and len(argv) == 1:
        return True
    name = os.path.basename(argv[0]) if argv else b""
    if script is None and name in _INTERNAL_PROGRAMS:
        return True
    return _is_claude_binary(exe, claude_exe) and name not in (b"claude", b"claude.exe")
