"""Claude Code awareness, in three modules; this one keeps the names the rest of the package imports.

* `shellwords`: the POSIX shell-word scanner;
* `origin`: the Bash tool wrapper's exact shape, the agent's command inside it, and the origin rules;
* `claude_identity`: the session registry file and the environment Claude Code gives its children.
"""

from __future__ import annotations

from .claude_identity import (
    ENV_KEYS,
    SESSION_FILE_MAX,
    SessionFileInfo,
    claude_env_info,
    claude_pid,
    parse_session_file,
    read_session_file,
    session_file_path,
)
from .origin import SHELL_NAMES, Origin, classify_origin, extract_command, is_tool_wrapper

__all__ = [
    "ENV_KEYS",
    "SESSION_FILE_MAX",
    "SHELL_NAMES",
    "Origin",
    "SessionFileInfo",
    "classify_origin",
    "claude_env_info",
    "claude_pid",
    "extract_command",
    "is_tool_wrapper",
    "parse_session_file",
    "read_session_file",
    "session_file_path",
]
