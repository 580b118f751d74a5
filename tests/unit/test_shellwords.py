"""shellwords: the shell-word scanner (words, operators, quote removal, static or not)."""

from __future__ import annotations

import pytest

from claude_audit.shellwords import Unrecognised, lex


def test_words_and_operators() -> None:
    """Redirections split into word, operator, word; `&&` and `||` are operators; quotes are removed."""
    toks = lex(b"a 'b c' 2>/dev/null && d || e")
    assert [(t.op, t.raw, t.value) for t in toks] == [
        (False, b"a", b"a"),
        (False, b"'b c'", b"b c"),
        (False, b"2", b"2"),
        (True, b">", None),
        (False, b"/dev/null", b"/dev/null"),
        (True, b"&&", None),
        (False, b"d", b"d"),
        (True, b"||", None),
        (False, b"e", b"e"),
    ]


@pytest.mark.parametrize("word", [b"$x", b"a$(id)", b"`id`", b"*.c", b"~/x", b"{a,b}", b'"$HOME"'])
def test_words_with_expansions_are_not_static(word: bytes) -> None:
    """A word whose value depends on the shell's state has value None."""
    assert lex(word)[0].value is None


def test_longest_operator_wins_and_comments_are_skipped() -> None:
    """`>|` is one operator, not `>` then `|`; a comment runs to the end of the line."""
    toks = lex(b"pwd -P >| f # a 'lone quote\nx")
    assert [t.raw for t in toks] == [b"pwd", b"-P", b">|", b"f", b"\n", b"x"]


@pytest.mark.parametrize("script", [b"'abc", b'"abc', b'a "b\\"'])
def test_unterminated_quotes_raise_unrecognised(script: bytes) -> None:
    """An unterminated quote is Unrecognised, never a guess."""
    with pytest.raises(Unrecognised):
        lex(script)


def test_linear_in_length() -> None:
    """A 1 MiB script of quotes and words is scanned (no quadratic blow-up on hostile input)."""
    toks = lex(b"'a' " * 262_144)
    assert len(toks) == 262_144
