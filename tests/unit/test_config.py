"""config: defaults, validation messages, TOML loading, the shipped sample file, file safety."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from claude_audit import config
from claude_audit.config import (
    Config,
    ConfigError,
    IntegrityConfig,
    check_file_safety,
    load_config,
    parse_config,
)

SAMPLE = Path(__file__).resolve().parents[2] / "etc" / "config.toml"
# Commented-out settings start with "#" directly followed by the setting; prose starts with "# ".
_SETTING_LINE = re.compile(r"^#(?=[^\s#])")


def _uncommented_sample() -> dict[str, Any]:
    text = SAMPLE.read_text()
    return tomllib.loads("\n".join(_SETTING_LINE.sub("", line) for line in text.splitlines()))


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for attr, field in model.model_fields.items():
        name = field.alias or attr  # the TOML key (audit_log.schema: "schema" is taken on BaseModel)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys |= _model_keys(ann, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _doc_keys(doc: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for name, value in doc.items():
        if isinstance(value, dict):
            keys |= _doc_keys(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    return str(exc.value)


def test_defaults() -> None:
    """The documented defaults, spot-checked on each table."""
    c = Config()
    assert c.audit_log.path == Path("/var/log/claude-audit/audit.jsonl")
    assert c.audit_log.max_bytes == 0  # logrotate owns rotation
    assert c.capture.argv_max_bytes == 16_384
    assert c.discovery.interpreter_names == ["node", "bun"]
    assert c.journal.enabled is True
    assert c.daemon.log_level == "info"


def test_models_are_frozen() -> None:
    """Config objects cannot be changed after loading."""
    c = Config()
    with pytest.raises(ValueError, match="frozen"):
        c.audit_log.backups = 1


def test_sample_file_parses_to_defaults() -> None:
    """etc/config.toml as shipped (all commented) and with every setting uncommented both give defaults."""
    assert parse_config(tomllib.loads(SAMPLE.read_text()), SAMPLE) == Config()
    # TOML has no null: an opt-in path (integrity.key_file) is shown with an example value.
    opt_in = Config().model_copy(
        update={"integrity": IntegrityConfig(key_file=Path("/var/lib/claude-audit/seal.key"))}
    )
    assert parse_config(_uncommented_sample(), SAMPLE) == opt_in


def test_sample_file_documents_every_key() -> None:
    """Every key of the model is in etc/config.toml and every key there is in the model."""
    assert _doc_keys(_uncommented_sample()) == _model_keys(Config)


def test_sample_file_explains_every_key() -> None:
    """Each commented setting (first line of it) is directly preceded by a line of prose."""
    lines = SAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^#[a-z_]+ = ", line):
            assert lines[i - 1].startswith("# "), line


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"audit_log": {"max_bytes": -1}}, "audit_log.max_bytes: Input should be greater than or equal to 0"),
        ({"audit_log": {"backups": -1}}, "audit_log.backups: Input should be greater than or equal to 0"),
        ({"audit_log": {"max_bytes": "10"}}, "audit_log.max_bytes: Input should be a valid integer"),
        ({"audit_log": {"path": "audit.jsonl"}}, "audit_log.path: must be an absolute path"),
        ({"audit_log": {"maxbytes": 1}}, "audit_log.maxbytes: Extra inputs are not permitted"),
        ({"bogus": {}}, "bogus: Extra inputs are not permitted"),
        ({"capture": {"argv_max_bytes": 3000}}, "capture.argv_max_bytes: must be a power of two"),
        ({"capture": {"argv_max_bytes": 256}}, "capture.argv_max_bytes: Input should be greater than or"),
        ({"capture": {"filename_max_bytes": 8192}}, "capture.filename_max_bytes: Input should be less"),
        ({"capture": {"ring_buffer_bytes": 98304}}, "capture.ring_buffer_bytes: must be a power of two"),
        (
            {"capture": {"ring_buffer_bytes": 65536, "argv_max_bytes": 65536}},
            "capture.ring_buffer_bytes: must be larger than argv_max_bytes + filename_max_bytes (69632)",
        ),
        ({"capture": {"max_tracked_processes": 100}}, "capture.max_tracked_processes: Input should be"),
        ({"discovery": {"comm_names": ["a" * 16]}}, "discovery.comm_names.0: must be at most 15 bytes"),
        ({"discovery": {"interpreter_names": ["/usr/bin/node"]}}, "discovery.interpreter_names.0: must be a"),
        ({"discovery": {"script_globs": "x"}}, "discovery.script_globs: Input should be a valid list"),
        ({"journal": {"enabled": 1}}, "journal.enabled: Input should be a valid boolean"),
        ({"daemon": {"log_level": "trace"}}, "daemon.log_level: Input should be 'debug', 'info'"),
        ({"daemon": {"queue_max_events": 10}}, "daemon.queue_max_events: Input should be greater than or"),
    ],
)
def test_errors_name_the_dotted_key(data: dict[str, Any], expected: str) -> None:
    """Each invalid value is reported with its dotted key and pydantic's reason."""
    assert expected in _error(data)


def test_every_error_is_reported() -> None:
    """Two bad keys give two messages, so one run of check-config shows everything to fix."""
    msg = _error({"audit_log": {"max_bytes": -1, "backups": -1}})
    assert "audit_log.max_bytes" in msg
    assert "audit_log.backups" in msg


def test_valid_overrides_and_int_for_float() -> None:
    """Valid values are taken; a TOML integer is accepted where seconds are a float."""
    c = parse_config(
        {"audit_log": {"flush_interval_seconds": 2, "path": "/x/a.jsonl"}, "capture": {"argv_max_bytes": 512}}
    )
    assert c.audit_log.flush_interval_seconds == 2.0
    assert c.audit_log.path == Path("/x/a.jsonl")
    assert c.capture.argv_max_bytes == 512


def test_load_file(tmp_path: Path) -> None:
    """A given file is read and validated."""
    p = _write(tmp_path, '[daemon]\nlog_level = "debug"\n')
    assert load_config(p).daemon.log_level == "debug"


def test_load_names_file_and_line_on_syntax_error(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the line."""
    p = _write(tmp_path, "[daemon]\nlog_level = \n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(p))}: invalid TOML: .*line 2"):
        load_config(p)


def test_load_names_file_and_key_on_invalid_value(tmp_path: Path) -> None:
    """A validation error from a file names the file and the dotted key."""
    p = _write(tmp_path, "[audit_log]\nmax_bytes = -1\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(p))}: audit_log.max_bytes: "):
        load_config(p)


def test_load_rejects_non_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError, not a crash."""
    p = tmp_path / "config.toml"
    p.write_bytes(b'# \xff\n[daemon]\nlog_level = "info"\n')
    with pytest.raises(ConfigError, match=r"not UTF-8 \(byte 2\)"):
        load_config(p)


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    """A config path given by name must exist."""
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


def test_missing_default_file_gives_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no path and nothing at the default path, the defaults apply."""
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    assert load_config(None) == Config()


def test_none_reads_the_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no path, a file present at the default path is used."""
    p = _write(tmp_path, "[audit_log]\nbackups = 2\n")
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", p)
    assert load_config(None).audit_log.backups == 2


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    """A directory where the file should be is reported, not raised as OSError."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_safe_file_passes(tmp_path: Path) -> None:
    """A 0644 file owned by the current user is accepted."""
    p = _write(tmp_path, "")
    p.chmod(0o644)
    check_file_safety(p)


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_group_or_other_writable_is_refused(tmp_path: Path, mode: int) -> None:
    """Write permission for group or others makes the file unsafe."""
    p = _write(tmp_path, "")
    p.chmod(mode)
    with pytest.raises(ConfigError, match=f"mode {mode:04o} is writable by group or others"):
        check_file_safety(p)


def test_foreign_owner_is_refused(tmp_path: Path) -> None:
    """A file owned by neither root nor the daemon's uid is refused."""
    p = _write(tmp_path, "")
    if os.geteuid() == 0:
        os.chown(p, 12345, -1)
        euid = 0
    else:
        euid = os.geteuid() + 1
    with pytest.raises(ConfigError, match="owned by uid"):
        check_file_safety(p, euid=euid)


def test_non_regular_and_missing_are_refused(tmp_path: Path) -> None:
    """A directory or a missing path is not a safe config file."""
    with pytest.raises(ConfigError, match="not a regular file"):
        check_file_safety(tmp_path)
    with pytest.raises(ConfigError, match="cannot stat"):
        check_file_safety(tmp_path / "nope")


def _deny(**rule: Any) -> dict[str, Any]:
    return {"enforce": {"mode": "enforce", "deny": [{"id": "r1", "reason": "because", **rule}]}}


def test_enforce_is_off_by_default_with_no_rules() -> None:
    """Prevention is opt-in: the defaults load no rule."""
    assert Config().enforce.mode == "off"
    assert Config().enforce.deny == []


def test_deny_rule_in_the_issue_shape_loads() -> None:
    """The documented shape (program + args + reason) is accepted as written."""
    c = parse_config(_deny(program="npm", args=["publish"], users=["root", 1000]))
    rule = c.enforce.deny[0]
    assert (rule.program, rule.args, rule.uids()) == ("npm", ["publish"], [0, 1000])


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({}, "enforce.deny.0: Value error, needs exactly one of program, path or path_prefix"),
        ({"program": "git", "path": "/usr/bin/git"}, "needs exactly one of program, path or path_prefix"),
        ({"program": "/usr/bin/git"}, "enforce.deny.0.program: must be a file name, not a path"),
        ({"program": "x" * 64}, "enforce.deny.0.program: must be at most 63 bytes"),
        ({"path": "bin/git"}, "enforce.deny.0.path: must be an absolute path"),
        ({"path_prefix": "/" + "x" * 254}, "enforce.deny.0.path_prefix: must be at most 254 bytes"),
        ({"program": "git", "args": ["a\0b"]}, "enforce.deny.0.args.0: must not contain a NUL byte"),
        ({"program": "git", "args": ["x" * 300]}, "args: at most 255 bytes"),
        ({"program": "git", "users": ["no-such-user-here"]}, "enforce.deny.0.users.0: no such user"),
        ({"program": "git", "users": [-1]}, "enforce.deny.0.users.0: must be a uid"),
        ({"program": "git", "id": "has space"}, "enforce.deny.0.id: must be 1 to 64 letters"),
        ({"program": "git", "reason": " "}, "enforce.deny.0.reason: must not be empty"),
        ({"program": "git", "action": "kill"}, "enforce.deny.0.action: Extra inputs are not permitted"),
    ],
)
def test_bad_deny_rules_name_the_key(rule: dict[str, Any], expected: str) -> None:
    """Each invalid rule is refused with the dotted key of what is wrong."""
    assert expected.removeprefix("enforce.deny.0: Value error, ") in _error(_deny(**rule))
    assert "enforce.deny.0" in _error(_deny(**rule))


def test_bad_mode_and_duplicate_ids_are_refused() -> None:
    """The mode is one of three words; two rules cannot share an id (records name rules by id)."""
    assert "enforce.mode: Input should be 'off', 'dry-run' or 'enforce'" in _error(
        {"enforce": {"mode": "on"}}
    )
    two = {"id": "same", "reason": "r", "program": "a"}
    assert "rule id 'same' is used twice" in _error({"enforce": {"deny": [two, {**two, "program": "b"}]}})


def test_rules_per_kernel_key_are_bounded_counting_covering_prefixes() -> None:
    """More rules than the kernel checks per lookup on one path (own and covering prefixes): an error."""
    rules = [{"id": f"p{i}", "reason": "r", "path_prefix": "/opt/" + "x" * i} for i in range(17)]
    assert "17 rules apply to path '/opt/" in _error({"enforce": {"deny": rules}})
    assert parse_config({"enforce": {"deny": rules[:16]}}).enforce.deny[15].id == "p15"


def test_rule_groups_close_over_shorter_prefixes() -> None:
    """A longest-prefix hit also checks every shorter prefix rule and exact paths carry their NUL."""
    c = parse_config(
        {
            "enforce": {
                "deny": [
                    {"id": "opt", "reason": "r", "path_prefix": "/opt/"},
                    {"id": "tool", "reason": "r", "path": "/opt/tools/x"},
                    {"id": "tools", "reason": "r", "path_prefix": "/opt/tools/"},
                    {"id": "name", "reason": "r", "program": "x"},
                ]
            }
        }
    )
    assert config.deny_rule_groups(c.enforce.deny) == {
        ("path", "/opt/"): [0],
        ("path", "/opt/tools/x\0"): [0, 1, 2],
        ("path", "/opt/tools/"): [0, 2],
        ("program", "x"): [3],
    }


def test_config_digest_follows_settings_not_text() -> None:
    """Same settings give the same digest (however written); any changed value changes it."""
    from claude_audit.config import changed_keys, config_digest

    a = parse_config({})
    b = parse_config({"audit_log": {"backups": 5}})  # the default, spelled out
    c = parse_config({"audit_log": {"backups": 6}, "capture": {"argv_max_bytes": 4096}})
    assert config_digest(a) == config_digest(b)
    assert config_digest(a) != config_digest(c) and config_digest(a).startswith("sha256:")
    assert changed_keys(a, c) == ["audit_log.backups", "capture.argv_max_bytes"]
    assert changed_keys(a, b) == []


def test_prometheus_textfile_is_absolute_or_off() -> None:
    """The metrics file is "" (none) or an absolute path; a relative one names the key."""
    assert parse_config({}).daemon.prometheus_textfile == ""
    ok = parse_config({"daemon": {"prometheus_textfile": "/var/lib/prometheus/node-exporter/c.prom"}})
    assert ok.daemon.prometheus_textfile.endswith("c.prom")
    with pytest.raises(ConfigError, match=r"daemon\.prometheus_textfile: must be an absolute path"):
        parse_config({"daemon": {"prometheus_textfile": "c.prom"}})
    with pytest.raises(ConfigError, match=r"daemon\.heartbeat_interval_seconds"):
        parse_config({"daemon": {"heartbeat_interval_seconds": 0}})
