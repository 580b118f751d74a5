"""A small POSIX shell-word scanner: enough of the shell grammar to read Claude Code's Bash tool wrapper.

`lex` splits a script into words and operators. A word's value is what the shell makes of it after
quote removal ('...', "...", backslashes, line continuations), byte for byte, or None when the value
depends on the shell's state (parameters, command substitution, globs, a leading ~, brace expansion):
such a word is never reported as known. Anything the scanner cannot read (an unterminated quote)
raises `Unrecognised`. Pure; the work is linear in the script's length.
"""

from __future__ import annotations

from dataclasses import dataclass

# Operators a shell recognises outside quotes; longest first so ">|" is not read as ">" then "|".
_OPERATORS = (
    b"<<<", b"<<-", b"&>>", b";;&",
    b"&&", b"||", b";;", b";&", b"|&", b">>", b">|", b">&", b"<&", b"<<", b"<>", b"&>",
    b";", b"&", b"|", b"(", b")", b"<", b">", b"\n",
)  # fmt: skip
_OPERATOR_START = frozenset(b";&|()<>\n")
_BLANKS = frozenset(b" \t")


class Unrecognised(Exception):
    """The script does not have a shape this module understands."""


@dataclass(frozen=True, slots=True)
class Token:
    """One word or operator of a script, with its raw bytes."""

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
            raise Unrecognised("unterminated double quote")
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
                raise Unrecognised("unterminated single quote")
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


def lex(script: bytes) -> list[Token]:
    """Split a shell script into words and operators (enough of the grammar for Claude's wrappers)."""
    tokens: list[Token] = []
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
            tokens.append(Token(True, op, None))
            i += len(op)
        else:
            end, value = _read_word(script, i)
            tokens.append(Token(False, script[i:end], value))
            i = end
    return tokens
