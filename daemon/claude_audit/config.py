"""Daemon configuration: pydantic models, TOML loading, and the file-safety check.

Every default lives here and nowhere else; etc/config.toml documents them (a test keeps the two equal).
Models are strict (a TOML string is not an int, an int is not a bool) except that paths are given as
strings, and unknown keys are errors, so a typo cannot silently leave a default in force.
"""

from __future__ import annotations

import os
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
)

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
Glob = Annotated[str, AfterValidator(_not_blank)]
CommName = Annotated[str, AfterValidator(_comm_name)]
BaseName = Annotated[str, AfterValidator(_basename)]


class AuditLogConfig(BaseModel):
    """[audit_log]: the JSON-lines audit file and its rotation."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    path: AbsPath = Path("/var/log/claude-audit/audit.jsonl")
    max_bytes: int = Field(default=104_857_600, gt=0)
    backups: int = Field(default=5, ge=0)
    flush_interval_seconds: float = Field(default=0.5, gt=0)
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


class DaemonConfig(BaseModel):
    """[daemon]: process-wide settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    queue_max_events: int = Field(default=262_144, ge=1024)
    poll_interval_seconds: float = Field(default=0.02, gt=0, le=1.0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    state_dir: AbsPath = Path("/var/lib/claude-audit")
    runtime_dir: AbsPath = Path("/run/claude-audit")


class IntegrityConfig(BaseModel):
    """[integrity]: the audit log's hash chain checkpoints and their optional forward-secure sealing."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    checkpoint_interval_seconds: float = Field(default=60.0, ge=1.0, le=86_400.0)
    key_file: AbsPath | None = None


class Config(BaseModel):
    """The whole configuration file."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    audit_log: AuditLogConfig = Field(default_factory=AuditLogConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    journal: JournalConfig = Field(default_factory=JournalConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    integrity: IntegrityConfig = Field(default_factory=IntegrityConfig)


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
