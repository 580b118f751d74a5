"""What a record may carry: the privacy policy applied to each record before any sink. Pure.

In this order, on the finished record:
1. identity fields the site chose not to record (`claude.cwd`, `claude.name`) are removed;
2. the Claude Code process's prompt argument (`claude -p "<prompt>"`) is kept, replaced by its keyed
   hash, or dropped, as configured; this applies wherever that process's argv appears (session-found,
   session-not-watched, and the exec record of the Claude Code process itself);
3. secrets are redacted (redact.py) in argv, claude.command and the executable path;
4. on every record of a tool call but the one that shows it in full, `claude.command` is cut to an
   excerpt (`claude.command_chars` gives the full length, flag `command_excerpt`): the full text is
   on the invocation's first record, and every record names the invocation (`claude.invocation`).
Redaction comes before the excerpt, so a cut can never leave a secret unmatched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from .records import command_line
from .redact import Redactor

PromptPolicy = Literal["keep", "hash", "drop"]

PROMPT_DROPPED: Final = "[PROMPT]"
EXCERPT_MARK: Final = "\u2026"

# Claude Code options whose value is not a prompt (kept as they are), and those whose value is one.
_VALUE_OPTIONS: Final = frozenset(
    {
        "--model",
        "--fallback-model",
        "--allowedTools",
        "--allowed-tools",
        "--disallowedTools",
        "--disallowed-tools",
        "--tools",
        "--output-format",
        "--input-format",
        "--permission-mode",
        "--permission-prompt-tool",
        "--mcp-config",
        "--add-dir",
        "--session-id",
        "--resume",
        "-r",
        "--settings",
        "--setting-sources",
        "--max-turns",
        "--agents",
        "--agent",
        "--betas",
        "--plugin-dir",
        "--max-budget-usd",
        "--json-schema",
        "--debug-file",
        "--system-prompt-file",
        "--append-system-prompt-file",
    }
)
_PROMPT_OPTIONS: Final = frozenset({"--system-prompt", "--append-system-prompt"})
_SUBCOMMANDS: Final = frozenset(
    {"mcp", "config", "doctor", "update", "install", "migrate-installer", "setup-token", "plugin", "daemon"}
)
_INTERPRETERS: Final = frozenset({"node", "bun", "nodejs"})


def prompt_positions(args: Sequence[str]) -> list[int]:
    """Indexes of the prompt text in a Claude Code command line: positional arguments and the values of
    the system-prompt options. Unknown options are taken as flags, so a value they take counts as
    prompt: when in doubt, the text is treated as the user's words."""
    if not args:
        return []
    i = 1
    if args[0].rsplit("/", 1)[-1] in _INTERPRETERS:
        i = 2  # node /path/to/cli.js ...: the script is not a prompt
    if i < len(args) and args[i] in _SUBCOMMANDS:
        return []
    out: list[int] = []
    positional_only = False
    while i < len(args):
        a = args[i]
        if positional_only or not a.startswith("-") or a == "-":
            out.append(i)
        elif a == "--":
            positional_only = True
        elif "=" in a:
            if a.split("=", 1)[0] in _PROMPT_OPTIONS:
                out.append(i)
        elif a in _VALUE_OPTIONS:
            i += 1
        elif a in _PROMPT_OPTIONS:
            if i + 1 < len(args):
                out.append(i + 1)
            i += 1
        i += 1
    return out


@dataclass(frozen=True, slots=True)
class Privacy:
    """The privacy settings ([privacy] and [[redact]] of the config), ready to apply."""

    redactor: Redactor | None
    """None: no redaction at all (no default rules and no [[redact]] rules)."""
    root_prompt: PromptPolicy = "keep"
    record_cwd: bool = True
    record_session_name: bool = True
    command_excerpt_chars: int | None = None
    """None: claude.command in full on every record."""
    prompt_hasher: Redactor | None = None
    """Keys the prompt's hash (root_prompt = "hash"); the redactor's key when there is one."""

    def apply(self, rec: dict[str, Any], *, root_args: bool = False, full_command: bool = True) -> None:
        """Apply the policy to `rec` in place. `root_args`: its process.args are the Claude Code
        process's own; `full_command`: this record is the one that shows its tool call's command."""
        claude = rec.get("claude")
        if isinstance(claude, dict):
            if not self.record_cwd:
                claude.pop("cwd", None)
            if not self.record_session_name:
                claude.pop("name", None)
        proc = rec.get("process")
        if root_args and self.root_prompt != "keep" and isinstance(proc, dict):
            self._prompt(rec, proc)
        if self.redactor is not None:
            self.redactor.redact_record(rec)
        if not full_command and self.command_excerpt_chars is not None and isinstance(claude, dict):
            self._excerpt(rec, claude, self.command_excerpt_chars)

    def _prompt(self, rec: dict[str, Any], proc: dict[str, Any]) -> None:
        args = proc.get("args")
        if not (isinstance(args, list) and all(type(a) is str for a in args)):
            return
        positions = prompt_positions(args)
        if not positions:
            return
        new = list(args)
        for i in positions:
            a = new[i]
            opt, eq, value = a.partition("=") if a.startswith("-") else ("", "", a)
            if self.root_prompt == "hash" and self.prompt_hasher is not None:
                marker = f"[PROMPT:{self.prompt_hasher.keyed_hash(value)}]"
            else:
                marker = PROMPT_DROPPED
            new[i] = f"{opt}{eq}{marker}"
        proc["args"] = new
        if "command_line" in proc:
            proc["command_line"] = command_line(new)
        raw = rec.get("raw")
        if isinstance(raw, dict) and isinstance(raw.get("process"), dict):
            # The exact bytes would hold the prompt: the raw copy goes, the record keeps its flag.
            raw["process"].pop("args", None)
            if not raw["process"]:
                raw.pop("process")
            if not raw:
                rec.pop("raw")
        _flag(rec, "prompt_hashed" if self.root_prompt == "hash" else "prompt_dropped")

    @staticmethod
    def _excerpt(rec: dict[str, Any], claude: dict[str, Any], limit: int) -> None:
        cmd = claude.get("command")
        if not isinstance(cmd, str) or len(cmd) <= limit:
            return
        if limit == 0:
            del claude["command"]
        else:
            claude["command"] = cmd[:limit] + EXCERPT_MARK
        claude["command_chars"] = len(cmd)
        _flag(rec, "command_excerpt")


def _flag(rec: dict[str, Any], flag: str) -> None:
    audit = rec.setdefault("claude_audit", {})
    flags = audit.get("flags")
    audit["flags"] = sorted({*flags, flag}) if isinstance(flags, list) else [flag]
