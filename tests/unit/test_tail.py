"""tail: the `claude-audit tail` command (arguments, colour choice, exit codes, following)."""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from builders import HOST, SESSION, T0, TOOL_INV, appender, exec_line_record

from claude_audit import cli, follow, tail
from claude_audit.config import load_config
from claude_audit.records import session_found
from claude_audit.tail import tail_main
from claude_audit.tailformat import render_line
from claude_audit.textenc import dumps_line

pytestmark = pytest.mark.usefixtures("utc_tz")


# -- the command --------------------------------------------------------------------------------------


def _args(path: Path | None, **kw: Any) -> argparse.Namespace:
    base: dict[str, Any] = {
        "file": path,
        "session": None,
        "origin": None,
        "no_follow": True,
        "all": False,
        "color": "never",
        "config": None,
    }
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """An audit log with a session, a tool call with a descendant, an internal command and a bad line."""
    internal = SESSION | {"invocation": "I", "invocation_pid": 4200, "origin": "internal"}
    recs = [
        session_found(T0, HOST, 1, claude=SESSION, how="startup", process_info={"pid": 4000}),
        exec_line_record(4100, [b"bash", b"-c", b"..."], SESSION | TOOL_INV),
        exec_line_record(4101, [b"make", b"-j2"], SESSION | TOOL_INV),
        exec_line_record(4200, [b"env"], internal),
        exec_line_record(
            5100, [b"ls"], {"pid": 5000, "session_entity_id": "F", "origin": "tool", "invocation_pid": 5100}
        ),
    ]
    p = tmp_path / "audit.jsonl"
    p.write_bytes(
        b"".join(dumps_line(r) for r in recs[:3])
        + b"{broken\n\xff\xfe\n[1,2]\n"
        + b"".join(dumps_line(r) for r in recs[3:])
    )
    return p


def test_tail_main_no_follow(log: Path) -> None:
    """--no-follow prints the whole current file, one line per record, bad lines marked, and returns 0."""
    out = io.StringIO()
    assert tail_main(_args(log), load_config(None), out=out) == 0
    assert out.getvalue().splitlines() == [
        "[02:11:10] 3f2a9c1e SESSION FOUND pid 4000 v2.1.3 (startup)",
        "[02:11:10] 3f2a9c1e TOOL        4100 | make test",
        "[02:11:10] 3f2a9c1e TOOL        4101 |   ↳ make -j2   (from: make test)",
        "[unparseable line]",
        "[unparseable line]",
        "[unparseable line]",
        "[02:11:10] 3f2a9c1e INTERNAL    4200 | env",
        "[02:11:10] pid:5000 TOOL        5100 | ls",
    ]


def test_tail_main_filters(log: Path) -> None:
    """--session and --origin (repeatable, comma-separated, any case) select records; bad lines still show."""
    out = io.StringIO()
    assert tail_main(_args(log, session="3f2a", origin=["TOOL"]), load_config(None), out=out) == 0
    lines = out.getvalue().splitlines()
    assert [line for line in lines if "|" in line] == [
        "[02:11:10] 3f2a9c1e TOOL        4100 | make test",
        "[02:11:10] 3f2a9c1e TOOL        4101 |   ↳ make -j2   (from: make test)",
    ]
    assert lines.count("[unparseable line]") == 3
    assert "SESSION FOUND" in lines[0]
    out = io.StringIO()
    tail_main(_args(log, origin=["tool,internal"]), load_config(None), out=out)
    assert sum("|" in line for line in out.getvalue().splitlines()) == 4


def test_tail_main_uses_config_path(log: Path) -> None:
    """Without --file the config's audit_log.path is read."""
    config = load_config(None)
    config = config.model_copy(update={"audit_log": config.audit_log.model_copy(update={"path": log})})
    out = io.StringIO()
    assert tail_main(_args(None), config, out=out) == 0
    assert "make test" in out.getvalue()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_tail_main_colour_choice(log: Path) -> None:
    """--color auto colours a terminal only; always and never force it."""
    for choice, stream, coloured in [
        ("auto", io.StringIO(), False),
        ("auto", _Tty(), True),
        ("always", io.StringIO(), True),
        ("never", _Tty(), False),
    ]:
        tail_main(_args(log, color=choice), load_config(None), out=stream)
        assert ("\x1b[" in stream.getvalue()) is coloured, choice


def test_tail_main_permission_denied(
    log: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreadable log gives a clear hint and exit status 77."""

    def denied(path: Path) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(follow, "_open", denied)
    assert tail_main(_args(log), load_config(None), out=io.StringIO()) == 77
    err = capsys.readouterr().err
    assert "run as root or as a member of the log's group" in err
    assert str(log) in err


def test_tail_main_missing_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log that does not exist is reported (exit 66), not waited for."""
    assert tail_main(_args(tmp_path / "none.jsonl"), load_config(None), out=io.StringIO()) == 66
    assert "no audit log" in capsys.readouterr().err


def test_tail_main_interrupt(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """^C while following ends quietly with status 0; the lines before it were printed."""

    def interrupted(*_a: Any, **_k: Any) -> Iterator[bytes]:
        yield log.read_bytes().splitlines()[1]
        raise KeyboardInterrupt

    monkeypatch.setattr(tail, "follow", interrupted)
    out = io.StringIO()
    assert tail_main(_args(log, no_follow=False), load_config(None), out=out) == 0
    assert out.getvalue() == "[02:11:10] 3f2a9c1e TOOL        4100 | make test\n"


def test_tail_main_follows(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --no-follow, tail starts at the end and prints what is appended (here, until ^C)."""
    real = tail.follow
    appended = dumps_line(exec_line_record(4102, [b"cc", b"-c", b"x.c"], SESSION | TOOL_INV))
    calls = {"n": 0}

    def scripted(
        path: Path, from_start: bool, include_rotated: bool, stop: Callable[[], bool]
    ) -> Iterator[bytes]:
        assert (from_start, include_rotated) == (False, False)

        def step() -> bool:
            calls["n"] += 1
            if calls["n"] == 1:
                appender(path, appended)()
                return stop()
            raise KeyboardInterrupt

        return real(path, from_start, include_rotated, step, poll_interval=0)

    monkeypatch.setattr(tail, "follow", scripted)
    out = io.StringIO()
    assert tail_main(_args(log, no_follow=False), load_config(None), out=out) == 0
    assert out.getvalue() == "[02:11:10] 3f2a9c1e TOOL        4102 |   ↳ cc -c x.c   (from: make test)\n"


def test_render_line_on_ascii_terminal(log: Path) -> None:
    """A terminal that cannot show a character gets its backslash spelling, not an exception."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    tail_main(_args(log), load_config(None), out=stream)
    stream.flush()
    assert b"\\u21b3 make -j2" in raw.getvalue()
    assert render_line(b"\xff", None, None, False) == "[unparseable line]"


def test_cli_tail(log: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`claude-audit tail --file F --no-follow` runs tail_main through the real argument parser."""
    monkeypatch.setattr(cli, "DEFAULT_CONFIG_PATH", log.with_name("no-such-config.toml"))
    assert (
        cli.main(["tail", "--file", str(log), "--no-follow", "--color", "never", "--origin", "internal"]) == 0
    )
    assert "[02:11:10] 3f2a9c1e INTERNAL    4200 | env" in capsys.readouterr().out
