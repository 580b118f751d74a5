"""lognames: what the rotated audit logs are called and which is newer."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_audit.lognames import backup_number, backup_path, rotated


def test_backup_path() -> None:
    """The n-th backup sits next to the log with ".n" appended to its whole name."""
    assert backup_path(Path("/var/log/claude-audit/audit.jsonl"), 3) == Path(
        "/var/log/claude-audit/audit.jsonl.3"
    )


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("audit.jsonl.1", 1),
        ("audit.jsonl.12", 12),
        ("audit.jsonl.007", 7),
        ("audit.jsonl", None),
        ("audit.jsonl.", None),
        ("audit.jsonl.tmp-1a2b", None),
        ("audit.jsonl.1.gz", None),
        ("audit.jsonl.-1", None),
        ("audit.jsonl.\u00b2", None),  # a superscript two is a digit to str.isdigit, not a backup number
        ("audit.jsonl.\u0661", None),  # Arabic-Indic one: likewise
        ("other.jsonl.1", None),
        ("xaudit.jsonl.1", None),
    ],
)
def test_backup_number(name: str, number: int | None) -> None:
    """Only `base`.N with N in ASCII digits is a backup; anything else is not ours to read or count."""
    assert backup_number("audit.jsonl", name) == number


def test_rotated_newest_first_with_gaps(tmp_path: Path) -> None:
    """Existing backups, .1 first, numerically ordered (.10 after .2); gaps and other names are skipped."""
    log = tmp_path / "audit.jsonl"
    for name in (
        "audit.jsonl",
        "audit.jsonl.10",
        "audit.jsonl.2",
        "audit.jsonl.1",
        "audit.jsonl.tmp-9",
        "x.1",
    ):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in rotated(log)] == ["audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.10"]


def test_rotated_includes_logrotates_gz_and_prefers_the_plain_file(tmp_path: Path) -> None:
    """logrotate's compressed backups are listed by number; while .N is being compressed (both exist,
    the .gz possibly incomplete) the plain file is the one read."""
    log = tmp_path / "audit.jsonl"
    names = ("audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.2.gz", "audit.jsonl.3.gz", "audit.jsonl.x.gz")
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in rotated(log)] == ["audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3.gz"]


def test_rotated_without_directory(tmp_path: Path) -> None:
    """A log whose directory does not exist has no backups (not an error)."""
    assert rotated(tmp_path / "missing" / "audit.jsonl") == []
