"""rulefiles.py: globs, file checks and bounds; one bad file never stops the others."""

from __future__ import annotations

import os
from pathlib import Path

from claude_audit.config import RulesConfig
from claude_audit.rulefiles import SHIPPED_GLOBS, load_files, load_rules, read_rule_file
from claude_audit.rules import MAX_RULE_TEXT_BYTES, Refusal

GOOD = """\
title: Good {n}
id: 00000000-0000-4000-8000-00000000000{n}
logsource:
    category: process_creation
    product: linux
level: low
detection:
    sel:
        Image|endswith: /tool{n}
    condition: sel
"""


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> Path:
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    path.chmod(mode)
    return path


def test_bad_files_are_refused_and_the_rest_load(tmp_path: Path) -> None:
    """Broken YAML, a group-writable file, a file over the size bound, non-UTF-8 and a FIFO are each
    refused with the reason; the good files around them load."""
    _write(tmp_path / "a.yml", GOOD.format(n=1))
    _write(tmp_path / "b.yml", "title: [broken\n")
    _write(tmp_path / "c.yml", GOOD.format(n=2), 0o664)
    _write(tmp_path / "d.yml", "#" * (MAX_RULE_TEXT_BYTES + 1))
    _write(tmp_path / "e.yml", b"title: \xff\n")
    os.mkfifo(tmp_path / "f.yml")
    _write(tmp_path / "g.yml", GOOD.format(n=3))
    loaded = load_files([str(tmp_path / "*.yml")])
    assert [r.title for r in loaded.ruleset.rules] == ["Good 1", "Good 3"]
    reasons = {Path(r.source).name: r.reason for r in loaded.refused}
    assert set(reasons) == {"b.yml", "c.yml", "d.yml", "e.yml", "f.yml"}
    assert "not a Sigma rule file" in reasons["b.yml"]
    assert "writable by group or others" in reasons["c.yml"]
    assert "larger than" in reasons["d.yml"]
    assert "not UTF-8" in reasons["e.yml"]
    assert "not a regular file" in reasons["f.yml"]
    assert loaded.files == 7


def test_file_of_another_owner_is_refused(tmp_path: Path) -> None:
    """A rule file owned by someone other than root or the daemon's user could switch a detection off."""
    p = _write(tmp_path / "x.yml", GOOD.format(n=1))
    got = read_rule_file(str(p), euid=12345) if os.geteuid() != 0 else None
    if got is None:
        os.chown(p, 12345, -1)
        got = read_rule_file(str(p))
    assert isinstance(got, Refusal) and "owned by uid 12345" in got.reason


def test_duplicate_ids_keep_the_first(tmp_path: Path) -> None:
    """Two rules with one id: the second is refused, naming the id."""
    _write(tmp_path / "a.yml", GOOD.format(n=1))
    _write(tmp_path / "b.yml", GOOD.format(n=1).replace("Good 1", "Copy"))
    loaded = load_files([str(tmp_path / "*.yml")])
    assert [r.title for r in loaded.ruleset.rules] == ["Good 1"]
    assert loaded.refused[0].reason == "a rule with this id is already loaded"


def test_config_selects_pack_and_paths(tmp_path: Path) -> None:
    """The shipped pack and the configured globs; disabled means no rules at all."""
    _write(tmp_path / "a.yml", GOOD.format(n=1))
    only_mine = load_rules(RulesConfig(shipped_pack=False, paths=[str(tmp_path / "*.yml")]))
    assert len(only_mine.ruleset) == 1
    both = load_rules(RulesConfig(paths=[str(tmp_path / "*.yml")]))
    assert len(both.ruleset) == 121
    assert len(load_rules(RulesConfig(enabled=False)).ruleset) == 0
    summary = both.summary()
    assert (summary["loaded"], summary["refused"]) == (121, 2)


def test_shipped_pack_carries_its_licence() -> None:
    """The vendored SigmaHQ rules come with the DRL 1.1 text and their source."""
    pack = Path(SHIPPED_GLOBS[0]).parent
    assert len(list(pack.glob("*.yml"))) == 122
    assert "Detection Rule License (DRL) 1.1" in (pack / "LICENSE.Detection.Rules.md").read_text()
    assert "8eaafff1f2845a696050e05e72ba1140ee190698" in (pack / "SOURCE.md").read_text()


def test_relative_rule_globs_are_config_errors() -> None:
    """`[rules] paths` must be absolute, like every path in the config."""
    import pytest

    from claude_audit.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"rules\.paths\.0: must be an absolute path"):
        parse_config({"rules": {"paths": ["rules.d/*.yml"]}})
