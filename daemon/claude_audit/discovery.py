"""Which processes are Claude Code, and which of them are session roots. Pure: works on ProcInfo values.

A process is Claude Code when one of these holds (`is_claude` returns the rule's name):

``executable``
    Its executable (the /proc/<pid>/exe target, with the kernel's " (deleted)" suffix removed, so an
    upgrade that replaced the file mid-session still counts) matches one of `executable_globs`. This covers
    the native 2.1.x binary (npm's ``.../@anthropic-ai/claude-code/bin/claude.exe``, comm "claude") and
    the self-installed ``~/.local/share/claude/versions/<version>`` (comm is the version string), including
    ``claude daemon`` and its ``--bg-spare`` / ``--bg-pty-host`` helpers.
``script``
    Its executable's basename is an interpreter (`interpreter_names`: node, bun) and one of its first
    `SCRIPT_ARGS` arguments matches one of `script_globs`: ``node [flags] .../cli.js`` before it
    overwrote its title.
``renamed-interpreter``
    Its executable's basename is an interpreter, its comm is one of `comm_names`, and its whole cmdline
    is exactly a comm name plus padding. This is 2.0.x after ``process.title = "claude"``: node rewrites
    the argv area to the title and fills the rest with NUL bytes (checked on a real 2.0.77 and on node 20:
    ``claude`` followed by 86 NULs); space padding is accepted too, since other runtimes pad that way.

comm alone never decides: any program can call itself "claude" with prctl(PR_SET_NAME); without the
executable evidence above it is not Claude Code. Globs are fnmatch patterns matched on the whole path,
where ``*`` also matches ``/``, compared as bytes (paths need not be UTF-8).

The work per process is bounded whatever it holds: the exe link and comm decide first, and only an
interpreter's cmdline is looked at, its first `procfs.CMDLINE_HEAD` bytes and first `SCRIPT_ARGS`
arguments at most (a ``node`` with 150 000 arguments costs what a ``node`` with 2 does).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .procfs import DELETED_SUFFIX, ProcInfo

_EMPTY: Mapping[int, int] = {}

SCRIPT_ARGS = 8
"""Arguments of an interpreter searched for the script: argv[0], a few runtime flags, the script."""


class DiscoverySettings(Protocol):
    """What `Matchers.from_config` needs: the [discovery] section of the config, or anything alike."""

    @property
    def executable_globs(self) -> Sequence[str]:
        """fnmatch patterns for Claude Code executables."""
        ...

    @property
    def script_globs(self) -> Sequence[str]:
        """fnmatch patterns for Claude Code scripts run by an interpreter."""
        ...

    @property
    def interpreter_names(self) -> Sequence[str]:
        """Basenames of interpreters that run Claude Code scripts."""
        ...

    @property
    def comm_names(self) -> Sequence[str]:
        """comm values a renamed interpreter running Claude Code takes."""
        ...


@dataclass(frozen=True, slots=True)
class Matchers:
    """The discovery patterns, frozen for use in the pure functions of this module."""

    executable_globs: tuple[str, ...]
    script_globs: tuple[str, ...]
    interpreter_names: tuple[str, ...]
    comm_names: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: DiscoverySettings) -> Matchers:
        """Build from a config section (e.g. `config.discovery`) having the four list attributes."""
        return cls(
            executable_globs=tuple(cfg.executable_globs),
            script_globs=tuple(cfg.script_globs),
            interpreter_names=tuple(cfg.interpreter_names),
            comm_names=tuple(cfg.comm_names),
        )


def strip_deleted(exe: bytes) -> bytes:
    """The executable path without the " (deleted)" suffix the kernel adds for an unlinked file."""
    return exe[: -len(DELETED_SUFFIX)] if exe.endswith(DELETED_SUFFIX) else exe


def _matches(path: bytes, globs: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, os.fsencode(g)) for g in globs)


def _is_title(cmdline: bytes, names: Sequence[str]) -> bool:
    # The whole argv area is the title plus padding: a real `node claude` (argv "node\0claude\0") or a
    # process whose first argument merely starts with "claude" does not qualify.
    # Only the head is read: a title padded beyond it is judged by the padding that was read.
    title = cmdline.rstrip(b"\0 ")
    return any(title == os.fsencode(n) for n in names)


def is_claude(info: ProcInfo, m: Matchers) -> str | None:
    """Why `info` is a Claude Code process ("executable", "script", "renamed-interpreter"), or None."""
    if info.exe is None:
        return None  # no executable evidence (kernel thread, unreadable): comm alone never decides
    exe = strip_deleted(info.exe)
    if _matches(exe, m.executable_globs):
        return "executable"
    base = os.path.basename(exe)
    if not any(base == os.fsencode(n) for n in m.interpreter_names):
        return None
    head = info.cmdline_head
    if any(_matches(arg, m.script_globs) for arg in head.split(b"\0", SCRIPT_ARGS)[:SCRIPT_ARGS] if arg):
        return "script"
    if any(info.comm == os.fsencode(n) for n in m.comm_names) and _is_title(head, m.comm_names):
        return "renamed-interpreter"
    return None


def exec_path_is_claude(resolved_path: bytes, m: Matchers) -> str | None:
    """Why an exec'd file (symlinks resolved) is Claude Code's binary or script, or None.

    Used for kernel triggers: the path the kernel saw exec'd is evidence even when /proc no longer shows
    it (the process is already gone, or is still `/usr/bin/env node` on its way to running the script).
    """
    path = strip_deleted(resolved_path)
    if _matches(path, m.executable_globs):
        return "executable"
    if _matches(path, m.script_globs):
        return "script"
    return None


def find_roots(
    infos: Mapping[int, ProcInfo],
    m: Matchers,
    tracked_elsewhere: Mapping[int, int] = _EMPTY,
) -> list[ProcInfo]:
    """Claude Code processes that start a session, ascending by pid.

    A Claude process is left out when another Claude process is among its ancestors (following ppid
    within `infos`): a nested ``claude`` run by a tool call, or a session run by ``claude daemon``,
    belongs to the outer session. It is also left out when the kernel already tracks its pid as part of
    another session (`tracked_elsewhere`: pid -> session root), which catches a nested claude that
    double-forked away from its parent and so has no Claude ancestor any more.
    """
    claude = {pid for pid, info in infos.items() if is_claude(info, m) is not None}
    roots: list[ProcInfo] = []
    for pid in sorted(claude):
        if pid in tracked_elsewhere:
            continue
        seen = {pid}
        parent = infos[pid].ppid
        nested = False
        while parent in infos and parent not in seen:  # a non-atomic snapshot may hold a ppid cycle
            if parent in claude:
                nested = True
                break
            seen.add(parent)
            parent = infos[parent].ppid
        if not nested:
            roots.append(infos[pid])
    return roots
