"""Detection: Sigma rules run over each exec record, and an alert record for each match. Pure but for
the user-name lookup, which is injected.

It works on finished exec records (not kernel events), so the same code serves the daemon and any
reader of recorded JSON lines. The parent's image and command line come from the parent's own exec
record when this run saw it (a bounded table by pid); a parent that was not seen (it started before
the daemon, or outside the session, or its entry was evicted) leaves ParentImage/ParentCommandLine
unset and the alert carries the flag `parent_unknown`. A pid reused by a process that never exec'd
would keep its predecessor's entry; the entry is dropped when a new exec for that pid arrives, and
only entries of the same session are used, which bounds the window to a reuse within one session.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable, Mapping
from typing import Any, Final

from . import records
from .records import HostInfo
from .rules import CompiledRule, RuleSet

ALERT_DATASET: Final = "claude_audit.alert"
SEVERITY: Final = {"informational": 1, "low": 21, "medium": 47, "high": 73, "critical": 99}
"""event.severity per Sigma level (the numbers Elastic's detection rules use for the same levels)."""
LOG_LEVEL: Final = {
    "informational": "info",
    "low": "notice",
    "medium": "warning",
    "high": "error",
    "critical": "critical",
}
"""log.level per Sigma level: journald's PRIORITY follows it (critical 2 ... informational 6)."""
PARENTS_MAX: Final = 65_536
"""Execs remembered as possible parents (most recent first out when full): a bound, not a knob."""
USERS_MAX: Final = 1024


class UserNames:
    """uid -> user name, cached (bounded); the uid as text when it has no name."""

    def __init__(self, lookup: Callable[[int], str | None] | None = None) -> None:
        self._lookup = lookup or _passwd_name
        self._cache: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        name = self._cache.get(uid)
        if name is None:
            try:
                got = self._lookup(int(uid))
            except (ValueError, OverflowError):
                got = None
            name = got or uid
            if len(self._cache) >= USERS_MAX:
                self._cache.clear()
            self._cache[uid] = name
        return name


def _passwd_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _get(rec: Mapping[str, Any], *path: str) -> Any:
    cur: Any = rec
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


_CLAUDE_FIELDS: Final = (
    ("ClaudeCommand", "command"),
    ("ClaudeOrigin", "origin"),
    ("ClaudeSessionId", "session_id"),
    ("ClaudeVersion", "version"),
)


class Detector:
    """Rules over exec records: `check(rec)` -> the rules it matches and the Sigma fields used."""

    def __init__(
        self, rules: RuleSet, users: UserNames | None = None, parents_max: int = PARENTS_MAX
    ) -> None:
        self.rules = rules
        self.parents_max = parents_max
        self.users = users or UserNames()
        # pid -> (image, command line, session entity id, invocation depth) of its latest exec; a dict
        # keeps insertion order, so the oldest entry is the first one.
        self._seen: dict[int, tuple[str, str, Any, int | None]] = {}
        used = rules.fields
        self._want_ids = bool(used & {"ProcessId", "ParentProcessId"})
        self._want_user = "User" in used
        self._want_claude = tuple(f for f in _CLAUDE_FIELDS if f[0] in used)
        self.evaluated = 0
        self.matched = 0

    def fields(self, rec: Mapping[str, Any]) -> tuple[dict[str, str], bool]:
        """The Sigma fields of an exec record (those the rules use, and always Image and CommandLine),
        and whether its parent's exec was known. Also remembers this exec as a possible parent."""
        proc = rec.get("process") or {}
        claude = rec.get("claude") or {}
        args = proc.get("args")
        command_line = " ".join(args) if isinstance(args, list) else str(proc.get("command_line", ""))
        image = str(proc.get("executable", ""))
        values: dict[str, str] = {"Image": image, "CommandLine": command_line}
        pid = proc.get("pid")
        parent_obj = proc.get("parent")
        ppid = parent_obj.get("pid") if isinstance(parent_obj, Mapping) else None
        audit = rec.get("claude_audit")
        session = audit.get("session_entity_id") if isinstance(audit, Mapping) else None
        if self._want_ids or self._want_user or self._want_claude:
            self._optional(values, proc, claude, pid, ppid)
        parent = self._seen.get(ppid) if isinstance(ppid, int) else None
        if parent is not None and parent[2] != session:
            parent = None
        depth: int | None = None
        if isinstance(pid, int) and pid == claude.get("invocation_pid"):
            depth = 0
        elif parent is not None and parent[3] is not None:
            depth = parent[3] + 1
        if depth is not None:
            values["ClaudeInvocationDepth"] = str(depth)
        if parent is not None:
            values["ParentImage"] = parent[0]
            values["ParentCommandLine"] = parent[1]
        if isinstance(pid, int):
            seen = self._seen
            seen.pop(pid, None)
            seen[pid] = (image, command_line, session, depth)
            if len(seen) > self.parents_max:
                del seen[next(iter(seen))]
        return values, parent is not None

    def _optional(
        self, values: dict[str, str], proc: Mapping[str, Any], claude: Mapping[str, Any], pid: Any, ppid: Any
    ) -> None:
        if self._want_ids:
            if isinstance(pid, int):
                values["ProcessId"] = str(pid)
            if isinstance(ppid, int):
                values["ParentProcessId"] = str(ppid)
        if self._want_user:
            uid = _get(proc, "user", "id")
            if isinstance(uid, str):
                values["User"] = self.users(uid)
        for sigma, key in self._want_claude:
            v = claude.get(key)
            if isinstance(v, str):
                values[sigma] = v

    def check(self, rec: Mapping[str, Any]) -> tuple[list[CompiledRule], bool]:
        """Rules matched by one exec record, and whether its parent was known."""
        values, parent_known = self.fields(rec)
        self.evaluated += 1
        hits = self.rules.match(values) if len(self.rules) else []
        self.matched += len(hits)
        return hits, parent_known


def alert_record(
    exec_rec: Mapping[str, Any],
    rule: CompiledRule,
    host: HostInfo,
    seq: int,
    now_ns: int,
    *,
    parent_known: bool,
    ruleset: str = "sigma",
) -> dict[str, Any]:
    """The alert for one rule matching one exec: the rule, and the exec's process, user and claude
    context (same process.entity_id); `claude_audit.alert.exec_sequence` names the exec record."""
    rec = records.envelope(
        now_ns,
        host,
        seq,
        action="rule-match",
        dataset=ALERT_DATASET,
        category=["process"],
        type_=["start", "info"],
        kind="alert",
    )
    rec["event"]["severity"] = SEVERITY.get(rule.level, SEVERITY["medium"])
    rec["log"] = {"level": LOG_LEVEL.get(rule.level, "warning")}
    rule_obj: dict[str, Any] = {
        "id": rule.id,
        "name": rule.title,
        "description": rule.description,
        "ruleset": ruleset,
        "category": "process_creation",
    }
    if rule.references:
        rule_obj["reference"] = rule.references[0]
    if rule.authors:
        # The Detection Rule License asks that messages based on a rule's matches name its authors.
        rule_obj["author"] = list(rule.authors)
    rec["rule"] = rule_obj
    if rule.tags:
        rec["tags"] = list(rule.tags)
    for key in ("process", "user", "group", "claude"):
        if key in exec_rec:
            rec[key] = exec_rec[key]
    flags = [] if parent_known else ["parent_unknown"]
    rec["claude_audit"] = {
        "alert": {
            "level": rule.level,
            "rule_source": rule.source,
            "references": list(rule.references),
            "exec_sequence": _get(exec_rec, "event", "sequence"),
            "exec_timestamp": exec_rec.get("@timestamp"),
        },
        "flags": flags,
        "session_entity_id": _get(exec_rec, "claude_audit", "session_entity_id"),
    }
    return rec
