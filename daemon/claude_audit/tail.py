"""`claude-audit tail`: the human view of the audit log, one short line per record. The command.

`tail_main` glues `follow` (reading the rotating log) to `tailformat.render_line` (one record to one
safe line) and maps read errors to exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from .follow import follow
from .tailformat import render_line

if TYPE_CHECKING:
    from .config import Config

EX_OK: Final = 0
EX_NOINPUT: Final = 66
EX_IOERR: Final = 74
EX_NOPERM: Final = 77


def _origin_set(values: list[str] | None) -> set[str] | None:
    if not values:
        return None
    found = {o.strip().lower() for v in values for o in v.split(",") if o.strip()}
    return found or None


def _permission_message(path: Path) -> str:
    group = ""
    try:
        gid = os.stat(path).st_gid
        group = f" ({grp.getgrgid(gid).gr_name})"
    except (OSError, KeyError):
        pass
    return (
        f"claude-audit: permission denied reading {path}: "
        f"run as root or as a member of the log's group{group}"
    )


def _use_color(choice: str, out: TextIO) -> bool:
    if choice == "always":
        return True
    if choice == "never":
        return False
    isatty = getattr(out, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def tail_main(args: argparse.Namespace, config: Config, *, out: TextIO | None = None) -> int:
    """Run `claude-audit tail`: print the audit log one line per record until ^C (or its end, --no-follow).

    Reads args.file (default config.audit_log.path), args.session, args.origin (repeatable, also
    comma-separated, case-insensitive), args.no_follow, args.all and args.color. --no-follow prints the
    whole current file (with --all, the rotated ones first) and returns. Returns 0, 66 if the log does
    not exist, 77 if it cannot be read for lack of permission (with a hint), 74 on another read error.
    """
    stream = out if out is not None else sys.stdout
    path: Path = args.file if args.file is not None else config.audit_log.path
    color = _use_color(args.color, stream)
    origins = _origin_set(args.origin)
    session = args.session or None
    encoding = getattr(stream, "encoding", None) or "utf-8"
    no_follow = bool(args.no_follow)
    lines = follow(
        path,
        from_start=no_follow or bool(args.all),
        include_rotated=bool(args.all),
        stop=lambda: no_follow,
    )
    try:
        for line in lines:
            text = render_line(line, session, origins, color)
            if text is None:
                continue
            # A terminal that cannot show a character gets its \\uXXXX spelling instead of an error.
            stream.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")
            if not no_follow:
                stream.flush()  # a follower wants each line as it comes
        stream.flush()
    except KeyboardInterrupt:
        return EX_OK
    except BrokenPipeError:
        # The reader went away (tail | head): not an error. Keep the interpreter's final flush quiet.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
        return EX_OK
    except PermissionError:
        print(_permission_message(path), file=sys.stderr)
        return EX_NOPERM
    except FileNotFoundError:
        print(f"claude-audit: no audit log at {path} (is the daemon running?)", file=sys.stderr)
        return EX_NOINPUT
    except OSError as exc:
        print(f"claude-audit: cannot read {path}: {exc}", file=sys.stderr)
        return EX_IOERR
    finally:
        lines.close()
    return EX_OK


__all__ = ["tail_main"]
