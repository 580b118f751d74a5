"""Daemon configuration: pydantic models, TOML loading, and the file-safety check.

Every default lives here and nowhere else; etc/config.toml documents them (a test keeps the two equal).
Models are strict (a TOML string is not an int, an int is not a bool) except that paths are given as
strings, and unknown keys are errors, so a typo cannot silently leave a default in force.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import bpf_layout as L
from .privacy import Privacy
from .redact import DEFAULT_REPLACEMENT, DEFAULT_RULES, FIELDS, Redactor, rule

DEFAULT_CONFIG_PATH: Final = Path("/etc/claude-audit/config.toml")

TASK_COMM_LEN: Final = 16
"""Size of the kernel's comm buffer, terminating NUL included."""
PID_MAX_LIMIT: Final = 4_194_304
"""Largest pid_max the kernel allows: more tracked processes than that cannot exist."""


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key (dotted) or line."""


def _power_of_two(v: int) -> int:
    if v <= 0 or v & (v - 1):
        raise ValueError("must be a power of two")
    return v


def _absolute(p: Path) -> Path:
    # The daemon runs with cwd "/", but a relative path in a root daemon's config is almost always a
    # mistake, and it would change meaning under `claude-audit check-config` run from elsewhere.
    if not p.is_absolute():
        raise ValueError("must be an absolute path")
    return p


def _absolute_or_off(s: str) -> str:
    if s and not s.startswith("/"):
        raise ValueError('must be an absolute path, or "" for none')
    return s


def _group_name(s: str) -> str:
    if any(c in s for c in ":\n/") or not s.isprintable():
        raise ValueError("must be a group name")
    return s


def _not_blank(s: str) -> str:
    if not s.strip():
        raise ValueError("must not be empty")
    return s


def _comm_name(s: str) -> str:
    if len(s.encode()) >= TASK_COMM_LEN:
        raise ValueError(f"must be at most {TASK_COMM_LEN - 1} bytes (the kernel truncates comm)")
    return _not_blank(s)


def _basename(s: str) -> str:
    if "/" in s:
        raise ValueError("must be a file name, not a path")
    return _not_blank(s)


PowerOfTwo = Annotated[int, AfterValidator(_power_of_two)]
AbsPath = Annotated[Path, Field(strict=False), AfterValidator(_absolute)]
AbsPathOrOff = Annotated[str, AfterValidator(_absolute_or_off)]
GroupName = Annotated[str, AfterValidator(_group_name)]
Glob = Annotated[str, AfterValidator(_not_blank)]
CommName = Annotated[str, AfterValidator(_comm_name)]
BaseName = Annotated[str, AfterValidator(_basename)]


class AuditLogConfig(BaseModel):
    """[audit_log]: the JSON-lines audit file and its rotation."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    path: AbsPath = Path("/var/log/claude-audit/audit.jsonl")
    # 0: logrotate owns rotation (the shipped /etc/logrotate.d/claude-audit) and the daemon only follows
    # the path; one owner, so the two can never rotate the same names.
    max_bytes: int = Field(default=0, ge=0)
    backups: int = Field(default=5, ge=0)
    flush_interval_seconds: float = Field(default=0.5, gt=0)
    # Readers' group of the directory and files ("" leaves the creator's group); a group that does not
    # exist is warned about and the log stays readable by root alone.
    group: GroupName = "claude-audit"
    schema_: Literal["ecs", "ocsf"] = Field(default="ecs", alias="schema")


class CaptureConfig(BaseModel):
    """[capture]: sizes of what the BPF program copies out of the kernel."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # Powers of two because the BPF program bounds its reads by masking with size - 1.
    argv_max_bytes: PowerOfTwo = Field(default=16_384, ge=512, le=1_048_576)
    filename_max_bytes: PowerOfTwo = Field(default=4096, ge=64, le=4096)
    ring_buffer_bytes: PowerOfTwo = Field(default=16_777_216, ge=65_536)
    max_tracked_processes: int = Field(default=65_536, ge=1024, le=PID_MAX_LIMIT)
    # Confirmed roots and kernel-adopted candidates have maps of their own, so a flood of processes
    # calling themselves "claude" can fill the candidates' map but never the one real sessions go to.
    max_session_roots: int = Field(default=4096, ge=16, le=PID_MAX_LIMIT)
    max_pending_roots: int = Field(default=1024, ge=16, le=PID_MAX_LIMIT)

    @field_validator("ring_buffer_bytes")
    @classmethod
    def _event_fits(cls, v: int, info: ValidationInfo) -> int:
        # A ring smaller than one maximal event could never deliver it; fields validated earlier are
        # in info.data only if they were valid, so a bad argv size is reported once, on its own key.
        biggest = info.data.get("argv_max_bytes", 0) + info.data.get("filename_max_bytes", 0)
        if v <= biggest:
            raise ValueError(f"must be larger than argv_max_bytes + filename_max_bytes ({biggest})")
        return v


class DiscoveryConfig(BaseModel):
    """[discovery]: how Claude Code processes are recognised."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    scan_interval_seconds: float = Field(default=5.0, gt=0)
    executable_globs: list[Glob] = Field(
        default_factory=lambda: [
            "*/@anthropic-ai/claude-code/bin/claude.exe",
            "*/@anthropic-ai/claude-code/bin/claude",
            "*/.local/share/claude/versions/*",
            "*/.claude/local/claude",
        ]
    )
    script_globs: list[Glob] = Field(
        default_factory=lambda: [
            "*/@anthropic-ai/claude-code/cli.js",
            "*/@anthropic-ai/claude-code/cli.mjs",
            # npm's links to cli.js: the script path node was given, before the process renames itself
            "*/node_modules/.bin/claude",
        ]
    )
    interpreter_names: list[BaseName] = Field(default_factory=lambda: ["node", "bun"])
    comm_names: list[CommName] = Field(default_factory=lambda: ["claude", "claude.exe"])
    # Kernel triggers per user and second beyond which that user's candidates wait for the next scan.
    candidates_per_uid_per_second: int = Field(default=20, ge=1, le=100_000)


class JournalConfig(BaseModel):
    """[journal]: the copy of each record sent to journald."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    enabled: bool = True
    socket_path: AbsPath = Path("/run/systemd/journal/socket")
    # Which fields each journald entry carries (the whole record is AUDIT_RECORD).
    process_args: bool = False
    command: bool = True
    audit_record: bool = True
    message_text_chars: int = Field(default=256, ge=0, le=4096)


_RULE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def _rule_id(s: str) -> str:
    if not _RULE_ID.fullmatch(s):
        raise ValueError("must be 1 to 64 of a-z, 0-9, '-', '_' (starting with a letter or digit)")
    return s


RedactField = Literal["argv", "command", "executable"]
assert set(FIELDS) == {"argv", "command", "executable"}


def _all_fields() -> list[RedactField]:
    return ["argv", "command", "executable"]


class RedactRuleConfig(BaseModel):
    """One [[redact]] table: a secret shape of the site's own, applied before any sink."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: Annotated[str, AfterValidator(_rule_id)]
    pattern: Annotated[str, AfterValidator(_not_blank)]
    replacement: str = DEFAULT_REPLACEMENT
    programs: list[BaseName] = Field(default_factory=list)
    fields: list[RedactField] = Field(default_factory=_all_fields, min_length=1)

    @model_validator(mode="after")
    def _compiles(self) -> RedactRuleConfig:
        # Compiled here so that a bad expression stops the load (and a reload) naming the rule.
        try:
            rule(self.id, self.pattern, programs=self.programs, fields=self.fields)
        except re.error as e:
            raise ValueError(f"rule {self.id!r}: invalid regular expression: {e}") from None
        except ValueError as e:
            raise ValueError(f"rule {self.id!r}: {e}") from None
        return self


class PrivacyConfig(BaseModel):
    """[privacy]: what is recorded at all, and how much of it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    default_rules: bool = True
    root_prompt: Literal["keep", "hash", "drop"] = "keep"
    record_cwd: bool = True
    record_session_name: bool = True
    command_excerpt_chars: int = Field(default=256, ge=0, le=1_048_576)


AbsGlob = Annotated[str, AfterValidator(_not_blank), AfterValidator(lambda s: str(_absolute(Path(s))))]


class RulesConfig(BaseModel):
    """[rules]: Sigma rules evaluated over every exec record (alerts in the same log and journald)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    enabled: bool = True
    shipped_pack: bool = True
    paths: list[AbsGlob] = Field(default_factory=lambda: ["/etc/claude-audit/rules.d/*.yml"])


class DaemonConfig(BaseModel):
    """[daemon]: process-wide settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    queue_max_events: int = Field(default=262_144, ge=1024)
    poll_interval_seconds: float = Field(default=0.02, gt=0, le=1.0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    state_dir: AbsPath = Path("/var/lib/claude-audit")
    runtime_dir: AbsPath = Path("/run/claude-audit")
    # A SIEM tells a dead or masked daemon from a quiet host only by a record that comes regardless.
    heartbeat_interval_seconds: float = Field(default=300.0, gt=0, le=86_400)
    # "" (TOML has no null) means no textfile.
    prometheus_textfile: AbsPathOrOff = ""


class IntegrityConfig(BaseModel):
    """[integrity]: the audit log's hash chain checkpoints and their optional forward-secure sealing."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    checkpoint_interval_seconds: float = Field(default=60.0, ge=1.0, le=86_400.0)
    key_file: AbsPath | None = None


DENY_PATH_MAX_BYTES: Final = L.DENY_PATH_KEY_LEN - 1
"""Longest path or path prefix a deny rule may name: the kernel's key holds 255 bytes of path, and an
exact path is stored with its NUL."""
DENY_PROGRAM_MAX_BYTES: Final = L.DENY_NAME_LEN - 1
DENY_ARGS_MAX_BYTES: Final = L.DENY_ARGS_LEN - 1
"""Most bytes of leading arguments a rule may require, each argument counted with its NUL."""
DENY_USERS_MAX: Final = L.DENY_USERS
MAX_DENY_RULES: Final = L.ENFORCE_MAX_RULES
DENY_RULES_PER_KEY: Final = L.DENY_SLOTS
"""Most rules the kernel checks per lookup: the program name and the path (exact or longest prefix) are
looked up separately, and each lookup yields at most this many rules."""
_DENY_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _no_nul(s: str) -> str:
    if "\0" in s:
        raise ValueError("must not contain a NUL byte")
    return s


def _deny_path(s: str) -> str:
    if not s.startswith("/"):
        raise ValueError("must be an absolute path (the kernel compares the path as given to execve)")
    if len(s.encode()) > DENY_PATH_MAX_BYTES:
        raise ValueError(f"must be at most {DENY_PATH_MAX_BYTES} bytes")
    return _no_nul(s)


def _deny_program(s: str) -> str:
    if len(s.encode()) > DENY_PROGRAM_MAX_BYTES:
        raise ValueError(f"must be at most {DENY_PROGRAM_MAX_BYTES} bytes")
    return _no_nul(_basename(s))


def _deny_rule_id(s: str) -> str:
    if not _DENY_RULE_ID.match(s):
        raise ValueError("must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return s


def _uid(u: int | str) -> int | str:
    # A name is resolved when the rules are loaded; an unknown one is an error now, not a rule that
    # silently matches nobody.
    if isinstance(u, int):
        if not 0 <= u < 2**32 - 1:
            raise ValueError("must be a uid between 0 and 4294967294")
        return u
    try:
        pwd.getpwnam(u)
    except KeyError:
        raise ValueError(f"no such user {u!r}") from None
    return u


DenyPath = Annotated[str, AfterValidator(_deny_path)]
DenyProgram = Annotated[str, AfterValidator(_deny_program)]
RuleId = Annotated[str, AfterValidator(_deny_rule_id)]
UserRef = Annotated[int | str, AfterValidator(_uid)]


class DenyRule(BaseModel):
    """One [[enforce.deny]] rule: which program, optionally with which leading arguments, for whom."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: RuleId
    reason: Annotated[str, AfterValidator(_not_blank), Field(max_length=1000)]
    program: DenyProgram | None = None
    path: DenyPath | None = None
    path_prefix: DenyPath | None = None
    args: list[Annotated[str, AfterValidator(_no_nul)]] = Field(default_factory=list)
    users: list[UserRef] = Field(default_factory=list, max_length=DENY_USERS_MAX)

    @model_validator(mode="after")
    def _one_target(self) -> DenyRule:
        given = [k for k in ("program", "path", "path_prefix") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("needs exactly one of program, path or path_prefix")
        if sum(len(a.encode()) + 1 for a in self.args) > DENY_ARGS_MAX_BYTES:
            raise ValueError(f"args: at most {DENY_ARGS_MAX_BYTES} bytes, each argument with its NUL")
        return self

    def uids(self) -> list[int]:
        """The users this rule is limited to, as uids (empty: everyone)."""
        return [u if isinstance(u, int) else pwd.getpwnam(u).pw_uid for u in self.users]


class EnforceConfig(BaseModel):
    """[enforce]: programs the kernel refuses to Claude Code sessions and their descendants."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    mode: Literal["off", "dry-run", "enforce"] = "off"
    deny: list[DenyRule] = Field(default_factory=list, max_length=MAX_DENY_RULES)

    @model_validator(mode="after")
    def _ids_unique_and_keys_fit(self) -> EnforceConfig:
        seen: set[str] = set()
        for r in self.deny:
            if r.id in seen:
                raise ValueError(f"deny: rule id {r.id!r} is used twice")
            seen.add(r.id)
        for key, rules in deny_rule_groups(self.deny).items():
            if len(rules) > DENY_RULES_PER_KEY:
                raise ValueError(
                    f"deny: {len(rules)} rules apply to {key[0]} {key[1]!r}, "
                    f"at most {DENY_RULES_PER_KEY} can (counting the shorter path prefixes that cover it)"
                )
        return self


DenyKey = tuple[Literal["program", "path"], str]
"""("program", name) or ("path", text): the kernel's two lookups. An exact path is the path text followed
by a NUL, so exact paths and prefixes share one longest-prefix map."""


def deny_rule_groups(rules: list[DenyRule]) -> dict[DenyKey, list[int]]:
    """Map key -> indexes of the rules the kernel must check when that key is the best match.

    The kernel's prefix map returns only the longest matching entry, so each entry also lists the rules
    of every shorter prefix that covers it: a path that matches several prefixes is checked against all.
    """
    groups: dict[DenyKey, list[int]] = {}
    prefixes: list[tuple[str, int]] = []
    for i, r in enumerate(rules):
        if r.program is not None:
            groups.setdefault(("program", r.program), []).append(i)
        elif r.path is not None:
            groups.setdefault(("path", r.path + "\0"), []).append(i)
        else:
            assert r.path_prefix is not None
            groups.setdefault(("path", r.path_prefix), []).append(i)
            prefixes.append((r.path_prefix, i))
    for (kind, text), members in groups.items():
        if kind != "path":
            continue
        for prefix, i in prefixes:
            if text != prefix and text.startswith(prefix) and i not in members:
                members.append(i)
        members.sort()
    return groups


class Config(BaseModel):
    """The whole configuration file."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    audit_log: AuditLogConfig = Field(default_factory=AuditLogConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    journal: JournalConfig = Field(default_factory=JournalConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    redact: list[RedactRuleConfig] = Field(default_factory=list)
    integrity: IntegrityConfig = Field(default_factory=IntegrityConfig)
    enforce: EnforceConfig = Field(default_factory=EnforceConfig)

    @field_validator("redact")
    @classmethod
    def _unique_ids(cls, v: list[RedactRuleConfig]) -> list[RedactRuleConfig]:
        ids = [r.id for r in v]
        shipped = {r.id for r in DEFAULT_RULES}
        dup = sorted({i for i in ids if ids.count(i) > 1 or i in shipped})
        if dup:
            raise ValueError(f"rule ids must be unique and differ from the shipped rules' ids: {dup}")
        return v


def privacy_policy(cfg: Config, key: bytes) -> Privacy:
    """The record stage's privacy policy from [privacy] and [[redact]]; `key` keys the hashes."""
    rules = list(DEFAULT_RULES) if cfg.privacy.default_rules else []
    rules += [
        rule(r.id, r.pattern, replacement=r.replacement, programs=r.programs, fields=r.fields)
        for r in cfg.redact
    ]
    hasher = Redactor(rules, key)
    p = cfg.privacy
    return Privacy(
        redactor=hasher if rules else None,
        root_prompt=p.root_prompt,
        record_cwd=p.record_cwd,
        record_session_name=p.record_session_name,
        command_excerpt_chars=p.command_excerpt_chars,
        prompt_hasher=hasher,
    )


def config_digest(config: Config) -> str:
    """ "sha256:<hex>" of the effective settings (defaults included, comments and key order not), so
    hosts running the same policy report the same digest whatever their file looks like."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose value differs between two configs, sorted."""
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    return sorted(
        f"{section}.{key}"
        for section in b
        for key in b[section]
        if a.get(section, {}).get(key) != b[section][key]
    )


def format_validation_error(err: ValidationError, source: Path | str) -> str:
    """One "source: dotted.key: message" line per problem pydantic found, joined with "; "."""
    parts = []
    for e in err.errors(include_url=False):
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{source}: {key}: {msg}")
    return "; ".join(parts)


def parse_config(data: dict[str, Any], source: Path | str = "<config>") -> Config:
    """Validate an already-parsed TOML document; ConfigError names each offending dotted key."""
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def load_config(path: Path | None) -> Config:
    """Load and validate the TOML config file.

    `None` means DEFAULT_CONFIG_PATH. A missing file at the default path gives the defaults (the package
    runs without any config); a missing file anywhere else was asked for by name and is an error.
    Syntax errors name the file, line and column; invalid values name the dotted key.
    """
    path = DEFAULT_CONFIG_PATH if path is None else path
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if path == DEFAULT_CONFIG_PATH:
            return Config()
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        # tomllib's message ends "(at line L, column C)".
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    return parse_config(data, path)


def check_file_safety(path: Path, *, euid: int | None = None) -> None:
    """Raise ConfigError unless `path` is a regular file owned by root or `euid`, not group/other writable.

    `euid` defaults to the process's effective uid. The config decides what is audited: a file that
    someone else could edit would let them switch the audit off, so the daemon refuses it.
    """
    euid = os.geteuid() if euid is None else euid
    try:
        st = path.stat()
    except OSError as e:
        raise ConfigError(f"{path}: cannot stat: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file")
    if st.st_uid not in (0, euid):
        raise ConfigError(f"{path}: owned by uid {st.st_uid}, must be owned by root or uid {euid}")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{path}: mode {stat.S_IMODE(st.st_mode):04o} is writable by group or others; "
            "run: chmod go-w " + str(path)
        )
