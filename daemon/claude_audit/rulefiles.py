"""Rule files: the globs of `[rules]` expanded, each file read under bounds and compiled. I/O.

Rule files are root's configuration, held to the same standard as the config file: a regular file
owned by root (or the daemon's user) and not writable by group or others, since whoever can edit a
rule can switch a detection off. Each file is read at most `rules.MAX_RULE_TEXT_BYTES`, globs expand
to at most `MAX_FILES` files, and a file that cannot be used is refused with its reason without
stopping the others.
"""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .config import RulesConfig
from .rules import MAX_RULE_TEXT_BYTES, CompiledRule, Refusal, RuleSet, compile_parsed, parse_text

PACK_DIR: Final = Path(__file__).resolve().parent / "rulepacks"
SHIPPED_GLOBS: Final = (str(PACK_DIR / "sigmahq" / "*.yml"), str(PACK_DIR / "claude-code" / "*.yml"))
MAX_FILES: Final = 10_000


@dataclass
class LoadedRules:
    """The outcome of loading: the rule set, what was refused and why, and counts."""

    ruleset: RuleSet
    refused: list[Refusal] = field(default_factory=list)
    files: int = 0
    skipped_other_logsource: int = 0

    def summary(self) -> dict[str, object]:
        """What daemon-started and `status` say about the rules."""
        return {
            "loaded": len(self.ruleset),
            "refused": len(self.refused),
            "files": self.files,
            "skipped_other_logsource": self.skipped_other_logsource,
            "refusals": [
                {"file": r.source, "id": r.rule_id, "title": r.title, "reason": r.reason}
                for r in self.refused
            ],
        }


def read_rule_file(path: str, euid: int | None = None) -> str | Refusal:  # noqa: PLR0911 - one per reason
    """The text of one rule file, or the reason it is refused."""
    euid = os.geteuid() if euid is None else euid
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (OSError, ValueError) as exc:
        return Refusal(path, None, None, f"cannot open: {exc}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Refusal(path, None, None, "not a regular file")
        if st.st_uid not in (0, euid):
            return Refusal(path, None, None, f"owned by uid {st.st_uid}, must be owned by root")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return Refusal(
                path, None, None, f"mode {stat.S_IMODE(st.st_mode):04o} is writable by group or others"
            )
        data = os.read(fd, MAX_RULE_TEXT_BYTES + 1)
    except OSError as exc:
        return Refusal(path, None, None, f"cannot read: {exc}")
    finally:
        os.close(fd)
    if len(data) > MAX_RULE_TEXT_BYTES:
        return Refusal(path, None, None, f"larger than {MAX_RULE_TEXT_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Refusal(path, None, None, f"not UTF-8 (byte {exc.start})")


def expand(globs: list[str]) -> tuple[list[str], list[Refusal]]:
    """Files named by the globs, sorted per glob, each once; more than MAX_FILES is refused."""
    out: list[str] = []
    seen: set[str] = set()
    for g in globs:
        for path in sorted(glob.glob(g)):
            if path in seen:
                continue
            seen.add(path)
            if len(out) >= MAX_FILES:
                return out, [
                    Refusal(g, None, None, f"more than {MAX_FILES} rule files; the rest were not read")
                ]
            out.append(path)
    return out, []


def load_rules(cfg: RulesConfig, euid: int | None = None) -> LoadedRules:
    """Every rule the config names, compiled; refusals collected, never raised."""
    if not cfg.enabled:
        return LoadedRules(RuleSet([]))
    globs = [*(SHIPPED_GLOBS if cfg.shipped_pack else ()), *cfg.paths]
    return load_files(globs, euid)


def load_files(globs: list[str], euid: int | None = None) -> LoadedRules:
    """Load the rule files the globs name (also used by tests and commands that take files)."""
    paths, refused = expand(globs)
    parsed = []
    for path in paths:
        text = read_rule_file(path, euid)
        if isinstance(text, Refusal):
            refused.append(text)
            continue
        parsed.append(parse_text(text, path))
    # Sigma filters (in any file) apply to the rules they name in every file: that is how a site tunes
    # a rule without editing it.
    got, bad, skipped = compile_parsed(parsed)
    refused += bad
    compiled: list[CompiledRule] = []
    ids: set[str] = set()
    for rule in got:
        if rule.id in ids:
            refused.append(Refusal(rule.source, rule.id, rule.title, "a rule with this id is already loaded"))
            continue
        ids.add(rule.id)
        compiled.append(rule)
    return LoadedRules(RuleSet(compiled), refused, len(paths), skipped)
