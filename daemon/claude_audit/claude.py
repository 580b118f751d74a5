"""Claude Code awareness: the agent's command inside a Bash tool call, the origin of an invocation, and
Claude Code's own session registry and environment. Pure: bytes and mappings in, values out.

Bash tool wrapper (what `extract_command` reads)
-------------------------------------------------
Each Bash tool call is a shell run directly by the Claude process, ``<shell> -c [-l] SCRIPT`` with shell
bash, zsh or sh, where SCRIPT is ``PREFIX && ... && eval WORD[ REDIR] && pwd -P >| CWDFILE``:

* 2.1.x: ``source <snapshot> 2>/dev/null || true && \\builtin shopt -u extglob ... && { \\builtin unalias
  -- 'which'; ... } >/dev/null 2>&1 || true && eval WORD < /dev/null && pwd -P >| /tmp/claude-<hex>-cwd``,
  sometimes with the eval inside ``{ eval WORD < /dev/null; }``;
* 2.0.x: ``source <snapshot> && shopt -u extglob 2>/dev/null || true && eval WORD \\< /dev/null && pwd -P
  >| /tmp/claude-<hex>-cwd`` (the ``\\<`` comes from shell-quote quoting "<" as a word);
* the redirection is left out when the command holds a heredoc.

WORD is the command as one shell word. Depending on the version and the command it is single-quoted
with ``'\\''`` or ``'"'"'`` for each embedded quote, double-quoted with backslash escapes, or a bare word
with backslash escapes (shell-quote and Claude Code's own quoting pick among these). The word is read
with a small shell-word scanner that applies POSIX quoting rules, so the result is exactly the string
``eval`` receives, byte for byte. Some consequences, all documented in docs/ORIGIN.md:

* 2.0.x's double-quoted form escapes ``!`` as ``\\!``, which bash keeps inside double quotes: the result
  then holds ``\\!``, because that is what the shell evaluated;
* 2.0.x rewrites a pipeline to insert ``< /dev/null`` after its first command; the result is the
  rewritten text, again because that is what ran;
* a word whose value depends on expansions (``$``, backquotes, globs, a leading ``~``, braces) is not
  static: the answer is None rather than a guess.

Anything that does not have exactly this shape gives None (never a guess): e.g. a CLAUDE_CODE_SHELL_PREFIX
wrapping the whole script, or 2.1.x's "carried command text" form that passes the command in an
environment variable instead of argv (``'eval' "... 'eval' $__CLAUDE_CC_COMMAND_TEXT"``).

Origins (what `classify_origin` decides for a new invocation)
-------------------------------------------------------------
``tool``
    A Bash tool call wrapper: the script ends in ``eval ... && pwd -P >| <dir>/claude-<id>-cwd`` (or the
    sandbox's ``cwd-<id>``), including the forms whose command cannot be extracted.
``internal``
    Claude Code's own work: the shell-snapshot login shell (script starting ``SNAPSHOT_FILE=`` and naming
    a ``shell-snapshots`` file); and, for direct children of the session root only, the environment
    probe (``env`` with no arguments, or a shell running ``-c env``), the start-up probes (``sh -c``
    running ``which bash``/``which zsh``, ``ldd /bin/ls 2>/dev/null`` or the ``ps aux | grep -E
    "code|cursor|windsurf|..." | grep -v grep`` IDE check; git and uname run directly), and bundled
    tools: the Claude binary run under another name (``exec -a rg .../claude.exe``: argv[0] is rg, bfs,
    ugrep, ...) or a program shipped inside the
    ``@anthropic-ai/claude-code`` package (2.0.x's vendor/ripgrep).
``unknown``
    Everything else: hooks, status line commands, MCP and LSP servers, and wrappers this module does not
    recognise.

There is no ``hook`` origin: hooks and status line commands are both run as ``/bin/sh -c <command>``
directly by the Claude process, the same shape Claude Code uses for some of its own probes, so argv and
the executable cannot tell them apart. Their environment does not either: hooks get CLAUDE_PROJECT_DIR,
but so does the status line command in 2.1.x, and it has been reported missing from hooks (GitHub
anthropics/claude-code#33815). A status line command reads JSON on stdin, which the daemon never sees.
Descendants inherit the origin of their invocation; the daemon does that.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Origin = Literal["tool", "internal", "unknown"]

SHELL_NAMES = frozenset({b"bash", b"zsh", b"sh"})

_CWD_FILE = re.compile(rb"(?:claude-[0-9A-Za-z_-]+-cwd|cwd-[0-9A-Za-z_-]+)\Z")
# `sh -c` probes Claude Code runs at start-up (seen in the real 2.0.77 capture): shell lookup, the libc
# check, and the IDE detection pipeline.
_INTERNAL_SCRIPTS = re.compile(
    rb"(?:which (?:bash|zsh)"
    rb"|ldd /bin/ls 2>/dev/null"
    rb"|ps aux \| grep -E \"code\|cursor\|windsurf\|[^\"]*\" \| grep -v grep)\Z"
)
# Programs Claude Code execs directly (no shell) for its own context: git state, the kernel name.
_INTERNAL_PROGRAMS = frozenset({b"git", b"uname"})
_AI_AGENT = re.compile(r"claude-code_([^_\s]+)_agent\Z")

# Operators a shell recognises outside quotes; longest first so ">|" is not read as ">" then "|".
_OPERATORS = (
    b"<<<", b"<<-", b"&>>", b";;&",
    b"&&", b"||", b";;", b";&", b"|&", b">>", b">|", b">&", b"<&", b"<<", b"<>", b"&>",
    b";", b"&", b"|", b"(", b")", b"<", b">", b"\n",
)  # fmt: skip
_OPERATOR_START = frozenset(b";&|()<>\n")
_BLANKS = frozenset(b" \t")


class _Unrecognised(Exception):
    """The script does not have a shape this module understands."""


@dataclass(frozen=True, slots=True)
class _Token:
    op: bool
    raw: bytes
    value: bytes | None
    """The word after quote removal; None for operators and for words that need expansion."""


def _double_quoted(s: bytes, i: int, out: bytearray) -> tuple[int, bool]:
    """Read "..." whose opening quote is s[i-1]; return (index after the closing quote, static)."""
    static = True
    n = len(s)
    while True:
        if i >= n:
            raise _Unrecognised("unterminated double quote")
        c = s[i]
        if c == 0x22:
            return i + 1, static
        if c == 0x5C and i + 1 < n:
            # Inside double quotes a backslash escapes only $ ` " \ and newline; before anything else
            # it is an ordinary character (shell-quote's \! stays \!).
            nxt = s[i + 1]
            if nxt in b'$`"\\':
                out.append(nxt)
                i += 2
                continue
            if nxt == 0x0A:  # line continuation: both bytes vanish
                i += 2
                continue
        elif c in b"$`":
            static = False
        out.append(c)
        i += 1


def _backslashed(s: bytes, i: int, out: bytearray) -> int:
    """Read an unquoted backslash at s[i]: it quotes the next byte; before a newline both vanish."""
    if i + 1 >= len(s):
        out.append(0x5C)
        return i + 1
    if s[i + 1] != 0x0A:
        out.append(s[i + 1])
    return i + 2


def _read_word(s: bytes, i: int) -> tuple[int, bytes | None]:
    """Read one shell word starting at s[i]; return (end, value), value None if not static."""
    start, n = i, len(s)
    out = bytearray()
    static = True
    bare_brace = False
    while i < n:
        c = s[i]
        if c in _BLANKS or c in _OPERATOR_START:
            break
        if c == 0x27:  # '...': everything literal up to the next quote
            j = s.find(b"'", i + 1)
            if j < 0:
                raise _Unrecognised("unterminated single quote")
            out += s[i + 1 : j]
            i = j + 1
        elif c == 0x22:
            i, quoted_static = _double_quoted(s, i + 1, out)
            static = static and quoted_static
        elif c == 0x5C:
            i = _backslashed(s, i, out)
        else:
            # Unquoted, these make the word's value depend on the shell's state (parameters, command
            # output, files, home directory, brace expansion): not static, so never reported as known.
            if c in b"$`*?[" or (c == 0x7E and i == start):
                static = False
            bare_brace = bare_brace or c in b"{}"
            out.append(c)
            i += 1
    raw = s[start:i]
    if bare_brace and raw not in (b"{", b"}"):  # "{" and "}" alone are reserved words, not expansions
        static = False
    return i, (bytes(out) if static else None)


def _lex(script: bytes) -> list[_Token]:
    """Split a shell script into words and operators (enough of the grammar for Claude's wrappers)."""
    tokens: list[_Token] = []
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        if c in _BLANKS:
            i += 1
        elif c == 0x23:  # '#' at the start of a word: a comment to the end of the line
            j = script.find(b"\n", i)
            i = n if j < 0 else j
        elif c in _OPERATOR_START:
            op = next(o for o in _OPERATORS if script.startswith(o, i))
            tokens.append(_Token(True, op, None))
            i += len(op)
        else:
            end, value = _read_word(script, i)
            tokens.append(_Token(False, script[i:end], value))
            i = end
    return tokens


def _shell_script(argv: Sequence[bytes]) -> bytes | None:
    """SCRIPT of `<bash|zsh|sh> -c [-l] SCRIPT` (flags in either order), else None."""
    if len(argv) not in (3, 4) or os.path.basename(argv[0]) not in SHELL_NAMES:
        return None
    if sorted(argv[1:-1]) not in ([b"-c"], [b"-c", b"-l"]):
        return None
    return argv[-1]


def _is_cwd_report(seg: list[_Token]) -> bool:
    """Whether a segment is `pwd -P >| <dir>/claude-<id>-cwd`, how every wrapper ends."""
    if len(seg) != 4 or [t.value for t in seg[:2]] != [b"pwd", b"-P"] or seg[2].raw != b">|":
        return False
    path = seg[3].value
    return path is not None and _CWD_FILE.match(os.path.basename(path)) is not None


def _wrapper(argv: Sequence[bytes]) -> list[_Token] | None:
    """The tokens of the segment before `&& pwd -P >| <cwd file>` in a Bash tool wrapper, else None."""
    script = _shell_script(argv)
    if script is None:
        return None
    try:
        tokens = _lex(script)
    except _Unrecognised:
        return None
    segments: list[list[_Token]] = [[]]
    for t in tokens:
        if t.op and t.raw == b"&&":
            segments.append([])
        else:
            segments[-1].append(t)
    if len(segments) < 2 or not _is_cwd_report(segments[-1]):
        return None
    before = segments[-2]
    # `{ eval WORD < /dev/null; }` is the same call in a group (2.1.x, behind a feature flag).
    if len(before) >= 3 and before[0].raw == b"{" and before[-1].raw == b"}" and before[-2].raw == b";":
        before = before[1:-2]
    if not before or before[0].value != b"eval":
        return None
    return before


def is_tool_wrapper(argv: Sequence[bytes]) -> bool:
    """Whether argv is a Claude Code Bash tool wrapper (even one whose command cannot be extracted)."""
    return _wrapper(argv) is not None


def extract_command(argv: Sequence[bytes]) -> bytes | None:
    """The agent's command inside a Bash tool wrapper's argv, byte-exact, or None if not recognised."""
    seg = _wrapper(argv)
    # The plain `eval` word: 2.1.x's carried-command form uses `'eval'` and a variable, not a literal.
    if seg is None or len(seg) < 2 or seg[0].raw != b"eval" or seg[1].op or seg[1].value is None:
        return None
    rest = seg[2:]
    if rest and not (
        len(rest) == 2
        and rest[1].value == b"/dev/null"
        and ((rest[0].op and rest[0].raw == b"<") or rest[0].raw == b"\\<")
    ):
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
    `parent_is_root` tells whether the process is a direct child of the session's Claude process;
    `claude_exe`, if known, is that Claude process's executable. The rules are in the module docstring.
    """
    if is_tool_wrapper(argv):
        return "tool"
    script = _shell_script(argv)
    if script is not None and script.lstrip().startswith(b"SNAPSHOT_FILE=") and b"shell-snapshots" in script:
        return "internal"
    if parent_is_root and _is_probe_or_bundled(argv, exe, script, claude_exe):
        return "internal"
    return "unknown"


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


# -- ~/.claude/sessions/<pid>.json --------------------------------------------------------------------

_MAX_SESSION_FILE = 1 << 20
_MAX_TEXT = 4096


@dataclass(frozen=True, slots=True)
class SessionFileInfo:
    """What Claude Code's session registry file says about a running session (user-written: enrichment)."""

    pid: int
    proc_start: int
    session_id: str | None = None
    cwd: str | None = None
    started_at_ms: int | None = None
    version: str | None = None
    kind: str | None = None
    entrypoint: str | None = None
    name: str | None = None
    status: str | None = None

    def claude_fields(self) -> dict[str, Any]:
        """The `claude.*` fields this file provides, labelled with their source."""
        fields: dict[str, Any] = {
            k: v
            for k, v in (
                ("session_id", self.session_id),
                ("cwd", self.cwd),
                ("started_at_ms", self.started_at_ms),
                ("version", self.version),
                ("kind", self.kind),
                ("entrypoint", self.entrypoint),
                ("name", self.name),
            )
            if v is not None
        }
        fields["identity_source"] = "session_file"
        return fields


def _text(obj: Mapping[str, Any], key: str) -> str | None:
    v = obj.get(key)
    return v if isinstance(v, str) and len(v) <= _MAX_TEXT else None


def _int(v: object) -> int | None:
    # bool is an int in Python but never a pid or a time in this file.
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and v.isascii() and v.isdigit():
        return int(v)
    return None


def _json_object(data: bytes) -> dict[str, Any] | None:
    """A JSON object from bytes, or None for anything else (too big, malformed, another JSON type)."""
    if len(data) > _MAX_SESSION_FILE:
        return None
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return obj if isinstance(obj, dict) else None


def parse_session_file(data: bytes, expected_pid: int, expected_start_ticks: int) -> SessionFileInfo | None:
    """Parse ~/.claude/sessions/<pid>.json; None unless it is well-formed and names this very process.

    pid must equal expected_pid and procStart (stat field 22, a string in the file) expected_start_ticks,
    so a file left over from an earlier process with a reused pid is ignored. Optional keys may be
    missing or of the wrong type (then they are left out); garbage never raises.
    """
    obj = _json_object(data)
    if (
        obj is None
        or _int(obj.get("pid")) != expected_pid
        or _int(obj.get("procStart")) != expected_start_ticks
    ):
        return None
    return SessionFileInfo(
        pid=expected_pid,
        proc_start=expected_start_ticks,
        session_id=_text(obj, "sessionId"),
        cwd=_text(obj, "cwd"),
        started_at_ms=_int(obj.get("startedAt")),
        version=_text(obj, "version"),
        kind=_text(obj, "kind"),
        entrypoint=_text(obj, "entrypoint"),
        name=_text(obj, "name"),
        status=_text(obj, "status"),
    )


# -- environment --------------------------------------------------------------------------------------

ENV_KEYS = (
    "CLAUDE_CODE_SESSION_ID",
    "CLAUDE_PID",
    "CLAUDE_CODE_ENTRYPOINT",
    "AI_AGENT",
    "CLAUDE_CODE_EXECPATH",
    "CLAUDECODE",
)


def claude_env_info(environ: Mapping[bytes, bytes]) -> dict[str, str]:
    """The Claude Code variables present in an environment, decoded (invalid UTF-8 as U+FFFD).

    Adds "version", parsed from AI_AGENT=claude-code_<version>_agent when it has that shape. The real
    2.1.331 writes the version with dashes (``claude-code_2-1-331_agent``); an all-numeric dashed
    version is given back dotted ("2.1.331"), anything else as written.
    """
    info = {k: environ[k.encode()].decode("utf-8", "replace") for k in ENV_KEYS if k.encode() in environ}
    m = _AI_AGENT.match(info.get("AI_AGENT", ""))
    if m:
        version = m.group(1)
        info["version"] = version.replace("-", ".") if re.fullmatch(r"\d+(?:-\d+)+", version) else version
    return info
