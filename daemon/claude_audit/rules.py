"""Sigma rules compiled into matchers over one exec's Sigma fields. Pure (no file access).

Rules are parsed with pySigma (the Sigma project's library); this module walks pySigma's condition
tree (`SigmaDetections.parsed_condition`, already resolved: selections, lists, `1 of`/`all of` with
wildcards, `not`, `and`/`or`, and values already transformed by the modifiers) and turns each rule into
a closure. Nothing is converted to a query string, and no backend is involved.

What a rule may use is an allow-list: a field, modifier or value type not in it refuses the rule with
the reason, never a silent partial rule. Regular expressions are compiled with RE2 (linear time): the
command lines they run over are written by the agent, so a backtracking engine would let it choose how
long each exec takes to check. A pattern RE2 cannot express (look-around, back-references) is refused.

Cost: each rule also gets a necessary condition (`Prefilter`): the executable's base names or literal
fragments, one of which must be present for the rule to match at all. `RuleSet.match` looks the
exec's base name up in a dict and finds every fragment of a field in one RE2 pass (linear in the
value's length whatever the number of fragments), and only evaluates the rules that pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import re2
from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.exceptions import SigmaError
from sigma.filters import SigmaFilter
from sigma.modifiers import (
    SigmaAllModifier,
    SigmaBase64Modifier,
    SigmaBase64OffsetModifier,
    SigmaCaseSensitiveModifier,
    SigmaContainsModifier,
    SigmaEndswithModifier,
    SigmaExistsModifier,
    SigmaRegularExpressionDotAllFlagModifier,
    SigmaRegularExpressionIgnoreCaseFlagModifier,
    SigmaRegularExpressionModifier,
    SigmaRegularExpressionMultilineFlagModifier,
    SigmaStartswithModifier,
    SigmaWindowsDashModifier,
)
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    Placeholder,
    SigmaCasedString,
    SigmaExists,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

LOGSOURCE: Final = ("process_creation", "linux")
"""(category, product) of the rules evaluated; other rules in the same files are skipped, not refused."""

FIELDS: Final[Mapping[str, str]] = {
    "Image": "process.executable",
    "CommandLine": "process.args joined by single spaces (as Sysmon for Linux writes it)",
    "ParentImage": "process.executable of the parent's exec, when the parent's exec was recorded",
    "ParentCommandLine": "CommandLine of the parent's exec, when the parent's exec was recorded",
    "User": "user name of process.user.id (the uid as a number when it has no name)",
    "ProcessId": "process.pid",
    "ParentProcessId": "process.parent.pid",
    "ClaudeCommand": "claude.command",
    "ClaudeOrigin": "claude.origin",
    "ClaudeSessionId": "claude.session_id",
    "ClaudeVersion": "claude.version",
    "ClaudeInvocationDepth": "execs between this one and the tool call's shell (0: the shell itself)",
}
"""Sigma field -> where its value comes from (README's field mapping table says the same)."""

UNAVAILABLE_FIELDS: Final[Mapping[str, str]] = {
    "CurrentDirectory": "the exec's working directory is not captured (the kernel event carries none, "
    "and /proc read later can show a directory changed since)",
    "LogonId": "Linux has no logon id in the exec event",
    "ParentUser": "the parent's user is not captured",
    "OriginalFileName": "Windows PE metadata",
    "Hashes": "executables are not hashed",
}
"""Fields used by public rules that the exec record cannot give, each with the reason a rule using it
is refused."""

ALLOWED_MODIFIERS: Final = frozenset(
    {
        SigmaContainsModifier,
        SigmaStartswithModifier,
        SigmaEndswithModifier,
        SigmaAllModifier,
        SigmaBase64Modifier,
        SigmaBase64OffsetModifier,
        SigmaWindowsDashModifier,
        SigmaCaseSensitiveModifier,
        SigmaRegularExpressionModifier,
        SigmaRegularExpressionIgnoreCaseFlagModifier,
        SigmaRegularExpressionMultilineFlagModifier,
        SigmaRegularExpressionDotAllFlagModifier,
        SigmaExistsModifier,
    }
)

MAX_RULE_TEXT_BYTES: Final = 1_048_576
"""Largest rule file read (rules are root's config, but a mistake must not exhaust memory)."""
MAX_RULES_PER_FILE: Final = 1000
MAX_VALUES_PER_RULE: Final = 10_000
"""Most leaf values one rule may compile to (base64offset and windash multiply them)."""
MAX_REGEX_CHARS: Final = 4096

LEVELS: Final = ("informational", "low", "medium", "high", "critical")

Fields = Mapping[str, str]
"""One exec as Sigma sees it: field name -> value (absent when unknown)."""


class Unsupported(Exception):
    """The rule uses something this evaluator does not do; the message says what."""


class _Lowered(dict[str, str | None]):
    """Field name -> lower-cased value (None: no such value), each made on first lookup."""

    __slots__ = ("raw",)

    def __init__(self, values: Fields) -> None:
        super().__init__()
        self.raw = values

    def __missing__(self, name: str) -> str | None:
        raw = self.raw.get(name)
        low = None if raw is None else raw.lower()
        self[name] = low
        return low


class Event:
    """The Sigma fields of one exec, with lower-cased copies made on first use (case-insensitive
    matching is the default, and most fields are never looked at by any candidate rule)."""

    __slots__ = ("low", "values")

    def __init__(self, values: Fields) -> None:
        self.values = values
        self.low = _Lowered(values)

    def lower(self, name: str) -> str | None:
        """The field's value lower-cased, or None when the exec has no such value."""
        return self.low[name]


Matcher = Callable[[Event], bool]


@dataclass(frozen=True, slots=True)
class Prefilter:
    """A necessary condition: the rule can match only if the exec's image base name is one of
    `basenames`, or one of `fragments` (field, lower-case literal) is in that field. Both empty: no
    necessary condition was found and the rule is evaluated for every exec."""

    basenames: frozenset[str] = frozenset()
    fragments: frozenset[tuple[str, str]] = frozenset()

    @property
    def size(self) -> int:
        """How many alternatives; 0 means none."""
        return len(self.basenames) + len(self.fragments)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready to run, with what an alert says about it."""

    id: str
    title: str
    level: str
    description: str
    tags: tuple[str, ...]
    references: tuple[str, ...]
    authors: tuple[str, ...]
    source: str
    matcher: Matcher = field(repr=False, compare=False)
    prefilter: Prefilter = field(default_factory=Prefilter)
    fields: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Refusal:
    """A rule (or a file) that was not loaded, and why."""

    source: str
    rule_id: str | None
    title: str | None
    reason: str


# -- values ---------------------------------------------------------------------------------------------


def _string_parts(s: SigmaString) -> list[str | SpecialChars]:
    parts: list[str | SpecialChars] = []
    for p in s.s:
        if isinstance(p, Placeholder):
            raise Unsupported(f"placeholder %{p.name}% (the expand modifier) is not supported")
        if isinstance(p, str) and parts and isinstance(parts[-1], str):
            parts[-1] += p
        else:
            parts.append(p)
    return parts


def _wildcard_regex(parts: Sequence[str | SpecialChars]) -> str:
    out = []
    for p in parts:
        if p is SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        elif p is SpecialChars.WILDCARD_SINGLE:
            out.append(".")
        else:
            out.append(re.escape(str(p)))
    return "".join(out)


Simple = tuple[str, str, bool, str]
"""(field, test, cased, literal) of a leaf that is one string test: "eq", "contains", "startswith" or
"endswith". Siblings of one `or`/`and` with the same field, test and case are merged into one check
(`str.endswith` takes a tuple; a list of `contains` becomes one loop), which is most of the cost saved."""


def _getter(name: str, cased: bool) -> Callable[[Event], str | None]:
    if cased:
        return lambda ev: ev.values.get(name)
    return lambda ev: ev.low[name]


def _string_leaf(name: str, s: SigmaString) -> tuple[Matcher, frozenset[str], Simple | None]:
    """A matcher for one Sigma string (wildcards * and ?), its literal fragments (lower case), and its
    simple form when it has one."""
    cased = isinstance(s, SigmaCasedString)
    parts = _string_parts(s)
    if not cased:
        parts = [p.lower() if isinstance(p, str) else p for p in parts]
    literals = frozenset(p.lower() for p in parts if isinstance(p, str) and p)
    star = SpecialChars.WILDCARD_MULTI
    simple: Simple | None = None
    if all(isinstance(p, str) for p in parts):
        simple = (name, "eq", cased, "".join(str(p) for p in parts))
    elif len(parts) == 3 and parts[0] is star and parts[2] is star and isinstance(parts[1], str):
        simple = (name, "contains", cased, parts[1])
    elif len(parts) == 2 and isinstance(parts[0], str) and parts[1] is star:
        simple = (name, "startswith", cased, parts[0])
    elif len(parts) == 2 and parts[0] is star and isinstance(parts[1], str):
        simple = (name, "endswith", cased, parts[1])
    if simple is not None:
        return _simple_matcher(simple[:3], (simple[3],), any_of=True), literals, simple
    get = _getter(name, cased)
    if parts == [star]:
        return (lambda ev: get(ev) is not None), frozenset(), None
    # Anything else (wildcards inside, '?'): RE2, anchored at both ends, '.' also matching newlines.
    rx = re2.compile("(?s)" + _wildcard_regex(parts))
    return (lambda ev: (v := get(ev)) is not None and rx.fullmatch(v) is not None), literals, None


def _simple_matcher(key: tuple[str, str, bool], lits: tuple[str, ...], *, any_of: bool) -> Matcher:  # noqa: PLR0911 - one per test
    """One check for several literals of the same field, test and case: any of them (or all)."""
    name, test, cased = key
    get = _getter(name, cased)
    if test == "eq":
        if any_of:
            pool = frozenset(lits)
            return lambda ev: get(ev) in pool
        first = lits[0]
        return lambda ev: all(x == first for x in lits) and get(ev) == first
    if test in ("startswith", "endswith"):
        if any_of:
            tup = tuple(lits)
            if test == "startswith":
                return lambda ev: (v := get(ev)) is not None and v.startswith(tup)
            return lambda ev: (v := get(ev)) is not None and v.endswith(tup)
        if test == "startswith":
            return lambda ev: (v := get(ev)) is not None and all(v.startswith(x) for x in lits)
        return lambda ev: (v := get(ev)) is not None and all(v.endswith(x) for x in lits)
    if len(lits) == 1:
        only = lits[0]
        return lambda ev: (v := get(ev)) is not None and only in v
    if any_of:

        def contains_any(ev: Event) -> bool:
            v = get(ev)
            if v is None:
                return False
            for x in lits:  # noqa: SIM110 - a generator costs more per exec than this loop
                if x in v:
                    return True
            return False

        return contains_any

    def contains_all(ev: Event) -> bool:
        v = get(ev)
        if v is None:
            return False
        for x in lits:  # noqa: SIM110 - a generator costs more per exec than this loop
            if x not in v:
                return False
        return True

    return contains_all


_RE_FLAGS: Final = {
    SigmaRegularExpressionFlag.IGNORECASE: "i",
    SigmaRegularExpressionFlag.MULTILINE: "m",
    SigmaRegularExpressionFlag.DOTALL: "s",
}


def _regex_matcher(name: str, value: SigmaRegularExpression) -> Matcher:
    pattern = value.regexp.to_plain() if isinstance(value.regexp, SigmaString) else str(value.regexp)
    if len(pattern) > MAX_REGEX_CHARS:
        raise Unsupported(f"regular expression longer than {MAX_REGEX_CHARS} characters")
    flags = "".join(sorted(_RE_FLAGS[f] for f in value.flags))
    try:
        rx = re2.compile(f"(?{flags})" + pattern if flags else pattern)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise Unsupported(
            f"regular expression {pattern!r} needs a feature RE2 lacks ({detail}); matching must stay "
            "linear in the command line's length"
        ) from None
    # Sigma's `re` is a search: unanchored unless the pattern anchors itself.
    return lambda ev: (v := ev.values.get(name)) is not None and rx.search(v) is not None


@dataclass
class _Budget:
    values: int = 0

    def take(self) -> None:
        self.values += 1
        if self.values > MAX_VALUES_PER_RULE:
            raise Unsupported(f"more than {MAX_VALUES_PER_RULE} values after modifiers")


@dataclass(frozen=True)
class _Node:
    matcher: Matcher
    prefilter: Prefilter | None
    """None: no necessary condition (e.g. under `not`, or a regular expression)."""
    simple: Simple | None = None


def _value_node(name: str, value: Any, budget: _Budget) -> _Node:  # noqa: PLR0911 - one return per value type
    budget.take()
    if isinstance(value, SigmaExpansion):
        nodes = [_value_node(name, v, budget) for v in value.values]
        return _any(nodes)
    if isinstance(value, SigmaString):
        m, literals, simple = _string_leaf(name, value)
        if name == "Image" and (base := _exact_basename(value)):
            return _Node(m, Prefilter(basenames=frozenset({base})), simple)
        if not literals:
            return _Node(m, None, simple)
        return _Node(m, Prefilter(fragments=frozenset({(name, max(literals, key=len))})), simple)
    if isinstance(value, SigmaRegularExpression):
        return _Node(_regex_matcher(name, value), None)
    if isinstance(value, SigmaNumber):
        text = str(value.number)
        return _Node(lambda ev: ev.values.get(name) == text, Prefilter(fragments=frozenset({(name, text)})))
    if isinstance(value, SigmaNull):
        return _Node(lambda ev: not ev.values.get(name), None)
    if isinstance(value, SigmaExists):
        want = value.exists
        return _Node(lambda ev: (name in ev.values) == want, None)
    raise Unsupported(f"value type {type(value).__name__} ({value}) is not supported")


def _exact_basename(s: SigmaString) -> str | None:
    """The base name a path pattern pins down (lower case): `*/curl` or `/usr/bin/curl` give "curl";
    None when a wildcard follows the last '/'."""
    parts = _string_parts(s)
    last = parts[-1] if parts else None
    if not isinstance(last, str) or "/" not in last:
        return None
    return last.rsplit("/", 1)[-1].lower() or None


def _merged(nodes: Sequence[_Node], *, any_of: bool) -> tuple[Matcher, ...]:
    """The nodes' matchers, with simple leaves of the same field, test and case merged into one."""
    groups: dict[tuple[str, str, bool], list[str]] = {}
    out: list[Matcher] = []
    for n in nodes:
        if n.simple is None:
            out.append(n.matcher)
        else:
            groups.setdefault(n.simple[:3], []).append(n.simple[3])
    # Merged checks first: they are the cheap ones, and `or`/`and` stop at the first answer.
    merged = [_simple_matcher(key, tuple(lits), any_of=any_of) for key, lits in groups.items()]
    return (*merged, *out)


def _any(nodes: Sequence[_Node]) -> _Node:
    matchers = _merged(nodes, any_of=True)
    if any(n.prefilter is None for n in nodes):
        pre = None
    else:
        pre = Prefilter(
            frozenset().union(*(n.prefilter.basenames for n in nodes if n.prefilter)),
            frozenset().union(*(n.prefilter.fragments for n in nodes if n.prefilter)),
        )
    if len(matchers) == 1:
        return _Node(matchers[0], pre, nodes[0].simple if len(nodes) == 1 else None)

    def any_matches(ev: Event) -> bool:
        for m in matchers:  # noqa: SIM110 - a generator costs more per exec than this loop
            if m(ev):
                return True
        return False

    return _Node(any_matches, pre)


def _all(nodes: Sequence[_Node]) -> _Node:
    matchers = _merged(nodes, any_of=False)
    # The strongest necessary condition of a conjunction is any one of its parts': take the one the
    # index serves best (base names are a dict lookup; fewer fragments are fewer scans).
    candidates = [n.prefilter for n in nodes if n.prefilter is not None and n.prefilter.size]
    pre = min(candidates, key=lambda p: (len(p.fragments), len(p.basenames))) if candidates else None
    if len(matchers) == 1:
        return _Node(matchers[0], pre, nodes[0].simple if len(nodes) == 1 else None)

    def all_match(ev: Event) -> bool:
        for m in matchers:  # noqa: SIM110 - a generator costs more per exec than this loop
            if not m(ev):
                return False
        return True

    return _Node(all_match, pre)


def _condition_node(item: Any, budget: _Budget, used: set[str]) -> _Node:
    if isinstance(item, ConditionAND):
        return _all([_condition_node(a, budget, used) for a in item.args])
    if isinstance(item, ConditionOR):
        return _any([_condition_node(a, budget, used) for a in item.args])
    if isinstance(item, ConditionNOT):
        inner = _condition_node(item.args[0], budget, used).matcher
        return _Node(lambda ev: not inner(ev), None)
    if isinstance(item, ConditionFieldEqualsValueExpression):
        name = item.field
        if name in UNAVAILABLE_FIELDS:
            raise Unsupported(f"field {name}: {UNAVAILABLE_FIELDS[name]}")
        if name not in FIELDS:
            raise Unsupported(
                f"field {name} is not one this daemon provides (see the README's field mapping)"
            )
        used.add(name)
        return _value_node(name, item.value, budget)
    if isinstance(item, ConditionValueExpression):
        raise Unsupported("keyword (field-less) detection is not supported")
    if isinstance(item, ConditionItem):
        raise Unsupported(f"condition element {type(item).__name__} is not supported")
    raise Unsupported(f"condition element {type(item).__name__} is not supported")


def _check_modifiers(det: SigmaDetection | SigmaDetectionItem) -> None:
    if isinstance(det, SigmaDetection):
        for d in det.detection_items:
            _check_modifiers(d)
        return
    for mod in det.modifiers:
        if mod not in ALLOWED_MODIFIERS:
            name = mod.__name__.removeprefix("Sigma").removesuffix("Modifier")
            raise Unsupported(f"modifier {name} is not supported (field {det.field})")


def compile_rule(rule: SigmaRule, source: str) -> CompiledRule:
    """Compile one parsed process_creation rule; raises Unsupported (with the reason) or SigmaError."""
    for det in rule.detection.detections.values():
        _check_modifiers(det)
    budget = _Budget()
    used: set[str] = set()
    nodes = []
    for cond in rule.detection.parsed_condition:
        tree = cond.parse()
        if tree is None:
            raise Unsupported("the condition resolves to nothing")
        nodes.append(_condition_node(tree, budget, used))
    node = _any(nodes)
    level = rule.level.name.lower() if rule.level is not None else "medium"
    return CompiledRule(
        id=str(rule.id) if rule.id is not None else rule.title,
        title=rule.title,
        level=level,
        description=rule.description or "",
        tags=tuple(f"{t.namespace}.{t.name}" for t in rule.tags),
        references=tuple(str(r) for r in rule.references),
        authors=tuple(a.strip() for a in (rule.author or "").split(",") if a.strip()),
        source=source,
        matcher=node.matcher,
        prefilter=node.prefilter or Prefilter(),
        fields=frozenset(used),
    )


def _is_process_creation(rule: SigmaRule) -> bool:
    return (rule.logsource.category, rule.logsource.product) == LOGSOURCE


@dataclass
class Parsed:
    """One rule file parsed: its rules and Sigma filters (each with the file), refusals, rules skipped."""

    rules: list[tuple[SigmaRule, str]] = field(default_factory=list)
    filters: list[tuple[SigmaFilter, str]] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    skipped: int = 0


def parse_text(text: str, source: str) -> Parsed:
    """Parse one rule file's text (YAML, possibly several documents): its process_creation/linux rules
    and its Sigma filters; other log sources are counted as skipped; never raises."""
    out = Parsed()
    if len(text.encode(errors="replace")) > MAX_RULE_TEXT_BYTES:
        out.refused.append(Refusal(source, None, None, f"file larger than {MAX_RULE_TEXT_BYTES} bytes"))
        return out
    try:
        collection = SigmaCollection.from_yaml(text, collect_errors=True, collect_filters=True)
    except Exception as exc:  # a YAML or pySigma error of any kind stops this file only
        out.refused.append(Refusal(source, None, None, f"not a Sigma rule file: {type(exc).__name__}: {exc}"))
        return out
    items = [*collection.rules, *collection.filters]
    if len(items) > MAX_RULES_PER_FILE:
        out.refused.append(Refusal(source, None, None, f"more than {MAX_RULES_PER_FILE} rules in one file"))
        return out
    for rule in items:
        rid = str(rule.id) if rule.id is not None else None
        if rule.errors:
            out.refused.append(Refusal(source, rid, rule.title, "; ".join(str(e) for e in rule.errors)))
        elif isinstance(rule, SigmaFilter):
            out.filters.append((rule, source))
        elif not isinstance(rule, SigmaRule):
            out.refused.append(Refusal(source, rid, rule.title, "correlation rules are not supported"))
        elif not _is_process_creation(rule):
            out.skipped += 1
        else:
            out.rules.append((rule, source))
    return out


def compile_parsed(files: Iterable[Parsed]) -> tuple[list[CompiledRule], list[Refusal], int]:
    """Apply every Sigma filter of every file to the rules it names, then compile each rule.
    Returns (compiled, refused, skipped: rules of other log sources)."""
    files = list(files)
    filters = [f for p in files for f in p.filters]
    compiled: list[CompiledRule] = []
    refused = [r for p in files for r in p.refused]
    for p in files:
        for parsed_rule, source in p.rules:
            rule = parsed_rule
            rid = str(rule.id) if rule.id is not None else None
            try:
                for flt, flt_source in filters:
                    try:
                        rule = cast(SigmaRule, flt.apply_on_rule(rule))
                    except Exception as exc:  # a filter that cannot apply refuses the rule, not the set
                        why = f"filter {flt.title!r} ({flt_source}) does not apply: {exc}"
                        raise Unsupported(why) from None
                compiled.append(compile_rule(rule, source))
            except Unsupported as exc:
                refused.append(Refusal(source, rid, rule.title, str(exc)))
            except SigmaError as exc:
                refused.append(Refusal(source, rid, rule.title, f"invalid rule: {exc}"))
            except Exception as exc:  # pySigma's tree on input it did not expect: this rule only
                why = f"cannot compile: {type(exc).__name__}: {exc}"
                refused.append(Refusal(source, rid, rule.title, why))
    return compiled, refused, sum(p.skipped for p in files)


def load_text(text: str, source: str) -> tuple[list[CompiledRule], list[Refusal], int]:
    """Parse and compile one rule file's text on its own (its filters apply to its rules)."""
    return compile_parsed([parse_text(text, source)])


SEGMENT: Final = "\x01"
"""Starts each field's segment in the one text the prefilter's RE2 set scans. A value that contains it
can only make more rules candidates (a fragment seen in the wrong field), never fewer: the prefilter
stays a necessary condition."""


class RuleSet:
    """Compiled rules with their prefilter index; `match` gives the rules one exec matches, in load
    order."""

    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        by_base: dict[str, list[int]] = {}
        by_fragment: dict[tuple[str, str], list[int]] = {}
        always: list[int] = []
        for i, r in enumerate(self.rules):
            if not r.prefilter.size:
                always.append(i)
            for b in r.prefilter.basenames:
                by_base.setdefault(b, []).append(i)
            for frag in r.prefilter.fragments:
                by_fragment.setdefault(frag, []).append(i)
        self._by_base = {k: tuple(v) for k, v in by_base.items()}
        # Every field with fragments gets a tag; one RE2 pass over all tagged values finds every fragment.
        self._frag_fields: tuple[str, ...] = tuple(sorted({name for name, _ in by_fragment}))
        tags = {name: f"{SEGMENT}{i:02d}" for i, name in enumerate(self._frag_fields)}
        self._tags = tuple(tags[name] for name in self._frag_fields)
        self._frag_ids: tuple[tuple[int, ...], ...] = tuple(tuple(ids) for ids in by_fragment.values())
        self._frag_set = (
            _literal_set(
                [f"{re.escape(tags[name])}[^{SEGMENT}]*{re.escape(lit)}" for name, lit in by_fragment]
            )
            if by_fragment
            else None
        )
        self._always = tuple(always)
        self.fields: frozenset[str] = frozenset().union(*(r.fields for r in self.rules))

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def unfiltered(self) -> int:
        """Rules with no necessary condition, evaluated for every exec."""
        return len(self._always)

    def candidates(self, ev: Event) -> list[int]:
        """Indexes of the rules whose necessary condition this exec meets, in load order."""
        found: list[int] = list(self._always)
        low = ev.low
        image = low["Image"]
        if image is not None:
            found += self._by_base.get(image[image.rfind("/") + 1 :], ())
        if self._frag_set is not None:
            parts = []
            for tag, name in zip(self._tags, self._frag_fields, strict=True):
                v = low[name]
                if v is not None:
                    parts.append(tag)
                    parts.append(v)
            frag_ids = self._frag_ids
            for hit in self._frag_set.Match("".join(parts)) or ():
                found += frag_ids[hit]
        if len(found) > 1:
            found = sorted(set(found))
        return found

    def match(self, values: Fields) -> list[CompiledRule]:
        """The rules this exec matches."""
        ev = Event(values)
        rules = self.rules
        return [rules[i] for i in self.candidates(ev) if rules[i].matcher(ev)]


def _literal_set(patterns: list[str]) -> Any:
    """An RE2 set that finds which of `patterns` occur in a text, in one pass."""
    rx_set = re2.Set.SearchSet(re2.Options())
    for p in patterns:
        rx_set.Add("(?s)" + p)
    rx_set.Compile()
    return rx_set
