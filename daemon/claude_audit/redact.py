"""Secret redaction of audit records, before any sink sees them. Pure (the hash key is an input).

A rule is a compiled regular expression with an id, an optional scope (program names, record fields)
and a replacement. The part of a match that is replaced is the named group `secret` when the pattern
has one, else the whole match; the rest of the match is context (`Bearer `, `--password=`) and stays.
The replacement may name `{rule}` (the rule's id) and `{hash}`: a keyed hash (HMAC-SHA256, first 8
bytes as 16 hex digits) of the replaced text, so equal secrets read the same without being readable;
the key never leaves the host (`load_or_create_key`).

Every rule is run on the original text and the matched spans are merged before anything is replaced,
so a replacement is never matched again and overlapping rules never leave a piece of a secret behind.
argv is matched as its elements joined by NUL, so a rule sees `--password` and the next element
together (`\\x00` in a pattern is the element boundary); replacing never changes the number of
elements (a NUL inside a replaced span is kept).

Bounded work: inputs are bounded by the capture limits (argv_max_bytes), the shipped patterns have no
nested or unbounded prefix quantifiers (each scan from a start position ends at a character the
pattern cannot take, so a record costs time linear in its size; tests/unit/test_redact.py times
pathological inputs), and each shipped rule first checks for a literal it needs (`hints`), so a record
without any costs a few substring tests. A record gets `claude_audit.redacted`:
`{"rules": [ids], "fields": [dotted fields], "hashes": [16-hex keyed hashes]}` and the flag `redacted`.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import hashlib
import hmac
import os
import re
import shlex
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

FIELDS: Final = ("argv", "command", "executable")
"""What a rule can be limited to: process.args (and a root's args), claude.command, process.executable."""

DEFAULT_REPLACEMENT: Final = "[REDACTED:{rule}:{hash}]"
HASH_HEX_CHARS: Final = 16
KEY_BYTES: Final = 32
KEY_FILE: Final = "redact.key"
CONTEXT_WINDOW: Final = 1024
CACHE_MAX: Final = 1024
"""Redacted claude.command texts remembered: a tool call's command repeats on each of its execs."""

# Characters that end an unquoted secret: whitespace, quotes, NUL (argv element boundary), shell
# separators. Everything else (including '=' and '/') can be part of one.
_V = r"[^\s'\"\x00;&|<>`()]"
_QUOTED = r"(?:\"[^\"\x00\n]*\"|'[^'\x00\n]*'|" + _V + r"+)"
_SEP = r"(?:[=:]|\s+|\x00)"
_SEGMENT_END = re.compile(r"[\n;&|]")
_MARKER = re.compile(r"\[REDACTED:[a-z0-9_-]{1,64}:[0-9a-f]{16}\]")
"""The default replacement as written: matched again (a log checked after the daemon redacted it),
it is not a secret."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One redaction rule, compiled."""

    id: str
    pattern: re.Pattern[str]
    replacement: str = DEFAULT_REPLACEMENT
    programs: frozenset[str] = frozenset()
    """Basenames of the executable (or argv[0]) the rule is limited to; empty: every program."""
    fields: frozenset[str] = frozenset(FIELDS)
    hints: tuple[str, ...] = ()
    """Literals of which the text must contain one for the pattern to be tried (speed); one without a
    capital letter is looked for in the lower-cased text, one with a capital in the text as it is."""
    context: re.Pattern[str] | None = None
    """If set, a match counts only if a match of `context` starts before it in the same shell command
    (no newline, ';', '&' or '|' between them) and at most CONTEXT_WINDOW characters before it."""

    @property
    def group(self) -> str | int:
        """The group that is replaced: `secret` if the pattern names it, else the whole match."""
        return "secret" if "secret" in self.pattern.groupindex else 0


def rule(
    id_: str,
    pattern: str,
    *,
    replacement: str = DEFAULT_REPLACEMENT,
    programs: Iterable[str] = (),
    fields: Iterable[str] = FIELDS,
    hints: Sequence[str] = (),
    flags: int = 0,
    context: re.Pattern[str] | None = None,
) -> Rule:
    """Compile a rule; re.error for a bad pattern, ValueError for an unknown field."""
    fields_set = frozenset(fields)
    unknown = fields_set - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; known: {list(FIELDS)}")
    compiled = re.compile(pattern, flags)
    if compiled.fullmatch("") is not None:
        # A rule that matches nothing at all would "redact" empty strings everywhere.
        raise ValueError("pattern matches the empty string")
    return Rule(id_, compiled, replacement, frozenset(programs), fields_set, tuple(hints), context)


_I = re.IGNORECASE
_HTTP_CLIENT = re.compile(r"\b(?:curl|wget|http|https|xh|aria2c)\b")
_MYSQL_CLIENT = re.compile(r"\b(?:mysql[a-z]{0,16}|mariadb[a-z-]{0,16})\b")
DEFAULT_RULES: Final[tuple[Rule, ...]] = (
    # -H "Authorization: Bearer x", "Proxy-Authorization: Basic x", "Authorization: token x"
    rule(
        "auth-header",
        r"\b(?:proxy-)?authorization\s*:\s*(?:[a-z]{1,16}\s+)?(?P<secret>" + _V + r"+)",
        hints=("authorization",),
        flags=_I,
    ),
    # "Bearer x" anywhere (curl --oauth2-bearer, httpie, headers split differently)
    rule(
        "bearer-token",
        r"(?:\bbearer|--oauth2-bearer)(?:\s+|\x00|=)(?P<secret>[A-Za-z0-9._~+/-]{8,}=*)",
        hints=("bearer",),
        flags=_I,
    ),
    # curl -u user:pass, --user user:pass: only after an HTTP client's name in the same command
    # (docker -u 1000:1000 is no secret)
    rule(
        "basic-auth-user",
        r"(?<=[\s\x00'\"])(?:-u|-U|--user|--proxy-user)(?:\s+|\x00|=)?['\"]?[^\s:'\"\x00]{1,256}:(?P<secret>"
        + _V
        + r"+)",
        hints=("curl", "wget", "http", "xh", "aria2c"),
        context=_HTTP_CLIENT,
    ),
    # scheme://user:password@host
    rule(
        "url-userinfo",
        r"\b[a-z][a-z0-9+.-]{0,31}://[^\s/@:'\"\x00]{0,256}:(?P<secret>[^\s/@'\"\x00]+)@",
        hints=("://",),
        flags=_I,
    ),
    # --password=x, --password x, --token x, --api-key=x, --client-secret x
    rule(
        "secret-option",
        r"(?<![\w-])--?(?:[a-z0-9]{1,32}[-_]){0,4}"
        r"(?:password|passwd|passphrase|token|secret|api[-_]?key|access[-_]?key|private[-_]?key)"
        + _SEP
        + r"(?!-)(?P<secret>"
        + _QUOTED
        + r")",
        hints=("pass", "token", "secret", "key"),
        flags=_I,
    ),
    # mysql -psecret / mariadb-dump -psecret (the password glued to -p), after the client's name
    rule(
        "mysql-password",
        r"(?<=[\s\x00'\"])-p(?P<secret>" + _V + r"+)",
        hints=("mysql", "mariadb"),
        context=_MYSQL_CLIENT,
    ),
    # NAME=value where NAME holds TOKEN, SECRET, PASSWORD, _KEY, _PWD: env assignments, query
    # strings, .env lines. AWS_SECRET_ACCESS_KEY=..., GITHUB_TOKEN=..., ?access_token=..., MYSQL_PWD=
    rule(
        "secret-assignment",
        r"\b[A-Za-z0-9_]{0,64}(?:token|secret|password|passwd|_pwd|_key|apikey)"
        r"[A-Za-z0-9_]{0,64}=(?P<secret>" + _QUOTED + r")",
        hints=("token", "secret", "pass", "_pwd", "key"),
        flags=_I,
    ),
    # AWS access key ids (a hint with a capital letter is looked for case-sensitively)
    rule("aws-access-key", r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b", hints=("A",)),
    rule(
        "github-token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
        hints=("gh", "github_pat_"),
    ),
    rule("gitlab-token", r"\bgl(?:pat|ptt|dt|rt|cbt|oas)-[A-Za-z0-9_-]{20,255}", hints=("gl",)),
    rule("slack-token", r"\bxox[abposre]-[A-Za-z0-9-]{10,255}", hints=("xox",)),
    rule(
        "slack-webhook",
        r"hooks\.slack\.com/services/(?P<secret>[A-Za-z0-9/_-]{20,255})",
        hints=("slack",),
        flags=_I,
    ),
    rule("anthropic-key", r"\bsk-ant-[A-Za-z0-9_-]{20,255}", hints=("sk-",)),
    rule("openai-key", r"\bsk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,255}", hints=("sk-",)),
    # The body up to the next "-----" (END, or the next BEGIN): linear, and a key cut off by the argv
    # cap is still hidden.
    rule(
        "private-key",
        r"-----BEGIN (?:[A-Z0-9]{1,16} ){0,4}PRIVATE KEY(?: BLOCK)?-----(?P<secret>(?:[^-]|-(?!----))+)",
        hints=("private key",),
    ),
)


@dataclass(frozen=True, slots=True)
class Hit:
    """One replaced span: the rule(s) that matched it, the field it was in, the keyed hash of its text."""

    rules: tuple[str, ...]
    field: str
    hash: str


@dataclass(slots=True)
class Redacted:
    """What redacting a record did (empty: nothing matched)."""

    hits: list[Hit] = field(default_factory=list)

    def summary(self) -> dict[str, list[str]]:
        """The `claude_audit.redacted` object."""
        rules = sorted({r for h in self.hits for r in h.rules})
        fields = sorted({h.field for h in self.hits})
        hashes = list(dict.fromkeys(h.hash for h in self.hits))
        return {"rules": rules, "fields": fields, "hashes": hashes}


def _context_test(context: re.Pattern[str], text: str) -> Callable[[int], bool]:
    """A test of "a match of `context` starts before position p, in p's shell command, within
    CONTEXT_WINDOW": both kinds of position are found once (linear), each test is a bisection."""
    starts = [m.start() for m in context.finditer(text)]
    ends = [m.start() for m in _SEGMENT_END.finditer(text)]

    def accept(p: int) -> bool:
        i = bisect.bisect_left(starts, p)
        if i == 0:
            return False
        c = starts[i - 1]
        j = bisect.bisect_left(ends, p)
        return p - c <= CONTEXT_WINDOW and (j == 0 or ends[j - 1] < c)

    return accept


class Redactor:
    """Applies rules to text and to whole records. `key` keys the hashes; same key, same hashes."""

    def __init__(self, rules: Sequence[Rule], key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("hash key must be at least 16 bytes")
        self.rules = tuple(rules)
        self._key = key
        self._cache: dict[str | tuple[str, frozenset[str]], tuple[str, tuple[Hit, ...]]] = {}
        # Each distinct hint is looked for once per text, whichever rules share it.
        self._lower_hints = tuple(sorted({h for r in self.rules for h in r.hints if h == h.lower()}))
        self._exact_hints = tuple(sorted({h for r in self.rules for h in r.hints if h != h.lower()}))
        self._unhinted = any(not r.hints for r in self.rules)
        self._scoped = any(r.programs for r in self.rules)

    def keyed_hash(self, secret: str) -> str:
        """16 hex digits of HMAC-SHA256(key, secret)."""
        mac = hmac.new(self._key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return mac.hexdigest()[:HASH_HEX_CHARS]

    def hints_in(self, text: str) -> frozenset[str]:
        """The rules' hints that `text` contains."""
        lowered = text.lower()
        found = {h for h in self._lower_hints if h in lowered}
        found.update(h for h in self._exact_hints if h in text)
        return frozenset(found)

    def _applicable(self, fld: str, programs: set[str] | None, hints: frozenset[str]) -> list[Rule]:
        out = []
        for r in self.rules:
            if fld not in r.fields:
                continue
            if r.programs and (programs is None or not (r.programs & programs)):
                continue
            if r.hints and hints.isdisjoint(r.hints):
                continue
            out.append(r)
        return out

    def redact_text(
        self, text: str, fld: str, programs: set[str] | None = None, hints: frozenset[str] | None = None
    ) -> tuple[str, list[Hit]]:
        """`text` with every span a rule matches replaced, and what was replaced (in text order).

        `hints` (from `hints_in` on this text or a text containing it) saves looking for them again."""
        rules = self._applicable(fld, programs, self.hints_in(text) if hints is None else hints)
        if not rules:
            return text, []
        spans: list[tuple[int, int, Rule]] = []
        for r in rules:
            g = r.group
            accept = _context_test(r.context, text) if r.context is not None else None
            for m in r.pattern.finditer(text):
                start, end = m.span(g)
                if start < 0 or end <= start or (accept is not None and not accept(m.start())):
                    continue
                if _MARKER.fullmatch(text, start, end):
                    continue
                spans.append((start, end, r))
        if not spans:
            return text, []
        spans.sort(key=lambda s: (s[0], -s[1]))
        merged: list[tuple[int, int, list[Rule]]] = []
        for start, end, r in spans:
            if merged and start < merged[-1][1]:
                last = merged[-1]
                merged[-1] = (last[0], max(last[1], end), last[2] if r in last[2] else [*last[2], r])
            else:
                merged.append((start, end, [r]))
        out: list[str] = []
        hits: list[Hit] = []
        pos = 0
        for start, end, rs in merged:
            secret = text[start:end]
            digest = self.keyed_hash(secret)
            first = rs[0]
            repl = first.replacement.replace("{rule}", first.id).replace("{hash}", digest)
            # Never merge or split argv elements: the NULs of a replaced span stay.
            repl = repl.replace("\x00", "") + "\x00" * secret.count("\x00")
            out.append(text[pos:start])
            out.append(repl)
            pos = end
            hits.append(Hit(tuple(x.id for x in rs), fld, digest))
        out.append(text[pos:])
        return "".join(out), hits

    def redact_args(
        self, args: Sequence[str], programs: set[str] | None, hints: frozenset[str] | None = None
    ) -> tuple[list[str], list[Hit]]:
        """argv elements redacted as one NUL-joined text (so `--password` `x` is seen together)."""
        joined = "\x00".join(args)
        new, hits = self.redact_text(joined, "argv", programs, hints)
        if not hits:
            return list(args), []
        parts = new.split("\x00")
        assert len(parts) == len(args)
        return parts, hits

    def redact_command(self, command: str, programs: set[str] | None) -> tuple[str, list[Hit]]:
        """claude.command redacted; the same command (repeated on each exec of a tool call) is cached."""
        key = (command, frozenset(programs)) if programs else command
        cached = self._cache.get(key)
        if cached is None:
            new, hits = self.redact_text(command, "command", programs)
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            cached = self._cache[key] = (new, tuple(hits))
        return cached[0], list(cached[1])

    def redact_record(self, rec: dict[str, Any]) -> Redacted:
        """Redact the record in place: process.args (and command_line, raw copies), process.executable
        (and name), claude.command. Adds `claude_audit.redacted` and the `redacted` flag if anything
        was replaced."""
        result = Redacted()
        proc = rec.get("process")
        if isinstance(proc, dict):
            self._redact_process(rec, proc, result)
        claude = rec.get("claude")
        if isinstance(claude, dict) and isinstance(claude.get("command"), str):
            programs = _programs(proc) if self._scoped else None
            new_cmd, hits = self.redact_command(claude["command"], programs)
            if hits:
                result.hits += hits
                claude["command"] = new_cmd
        if result.hits:
            audit = rec.setdefault("claude_audit", {})
            audit["redacted"] = result.summary()
            flags = audit.get("flags")
            audit["flags"] = sorted({*flags, "redacted"}) if isinstance(flags, list) else ["redacted"]
        return result

    def _redact_process(self, rec: dict[str, Any], proc: dict[str, Any], result: Redacted) -> None:
        args = proc.get("args")
        exe = proc.get("executable")
        if not isinstance(exe, str):
            exe = None
        # One look for the hints over executable and argv together: most records have none.
        try:
            text = "\x00".join([exe or "", *args]) if isinstance(args, list) else exe or ""
        except TypeError:  # an argv element that is not text: not a record this module builds
            args, text = None, exe or ""
        if not isinstance(args, list):
            args = None
        hints = self.hints_in(text)
        if not hints and not self._unhinted:
            return
        programs = _programs(proc) if self._scoped else None
        if args is not None:
            new_args, hits = self.redact_args(args, programs, hints)
            if hits:
                result.hits += hits
                proc["args"] = new_args
                if "command_line" in proc:
                    proc["command_line"] = shlex.join(new_args)
                raw_args = _raw(rec, "args")
                if isinstance(raw_args, list) and len(raw_args) == len(args):
                    redone = [
                        r if a == b else _b64(b) for r, a, b in zip(raw_args, args, new_args, strict=True)
                    ]
                    _set_raw(rec, "args", redone)
        if exe is not None:
            new_exe, hits = self.redact_text(exe, "executable", programs, hints)
            if hits:
                result.hits += hits
                proc["executable"] = new_exe
                if "name" in proc:
                    proc["name"] = new_exe.rsplit("/", 1)[-1]
                if _raw(rec, "executable") is not None:
                    _set_raw(rec, "executable", _b64(new_exe))


def _programs(proc: Mapping[str, Any] | None) -> set[str]:
    """Basenames a program-scoped rule is compared with: the executable's and argv[0]'s."""
    names: set[str] = set()
    if isinstance(proc, Mapping):
        exe = proc.get("executable")
        if isinstance(exe, str):
            names.add(exe.rsplit("/", 1)[-1])
        args = proc.get("args")
        if isinstance(args, list) and args and isinstance(args[0], str):
            names.add(args[0].rsplit("/", 1)[-1])
    return names


def _raw(rec: dict[str, Any], key: str) -> Any:
    raw = rec.get("raw")
    if not isinstance(raw, dict):
        return None
    rp = raw.get("process")
    return rp.get(key) if isinstance(rp, dict) else None


def _set_raw(rec: dict[str, Any], key: str, value: Any) -> None:
    rec["raw"]["process"][key] = value


def _b64(text: str) -> str:
    # A redacted element's exact bytes would hold the secret: its raw copy becomes the redacted text.
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode("ascii")


def read_key(state_dir: Path) -> bytes | None:
    """The daemon's hash key if this user can read it (root), else None; never creates one."""
    try:
        fd = os.open(state_dir / KEY_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    return data if len(data) == KEY_BYTES else None


def load_or_create_key(state_dir: Path) -> bytes:
    """The hash key in `state_dir`/redact.key: made once (32 random bytes, mode 0600), then reused so
    that hashes stay comparable across restarts. A key file that is not a root-owned regular 0600 file
    of the right size is replaced, as the state directory is root's alone."""
    path = state_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        pass
    except OSError:
        _remove(path)
    else:
        try:
            st = os.fstat(fd)
            data = os.read(fd, KEY_BYTES + 1)
        finally:
            os.close(fd)
        if (
            st.st_uid == os.geteuid()
            and (st.st_mode & 0o077) == 0
            and stat.S_ISREG(st.st_mode)
            and len(data) == KEY_BYTES
        ):
            return data
        _remove(path)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = os.urandom(KEY_BYTES)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
