"""Names of the rotated audit logs: `path`.1 (newest) ... `path`.N (oldest). Pure, but for `rotated`.

The writers (rotate.py when the daemon rotates, logrotate with the shipped file, which compresses
`path`.2 and older into `path`.N.gz) and the reader (follow.py) must agree on what a backup is called and
which is newer; this is the one place that says so.
"""

from __future__ import annotations

import os
from pathlib import Path


def backup_path(path: Path, n: int) -> Path:
    """The `n`-th backup of `path` (1 is the newest): audit.jsonl -> audit.jsonl.1."""
    return path.with_name(f"{path.name}.{n}")


def backup_number(base: str, name: str) -> int | None:
    """N if `name` is `base`.N for a number N written in ASCII digits, else None."""
    suffix = name.removeprefix(base + ".")
    if suffix == name or not (suffix.isascii() and suffix.isdigit()):
        return None
    return int(suffix)


def compressed_backup_number(base: str, name: str) -> int | None:
    """N if `name` is `base`.N.gz (logrotate's compressed backup), else None."""
    if not name.endswith(GZ_SUFFIX):
        return None
    return backup_number(base, name.removesuffix(GZ_SUFFIX))


GZ_SUFFIX = ".gz"


def rotated(path: Path) -> list[Path]:
    """The backups of `path` that exist now, newest (.1) first; gaps are skipped, not an end. I/O.

    Each number is either `path`.N or `path`.N.gz; if both exist (logrotate is compressing it right
    now, and the .gz may be incomplete), the plain file is the one listed.
    """
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    plain: dict[int, Path] = {}
    packed: dict[int, Path] = {}
    for name in names:
        if (n := backup_number(path.name, name)) is not None:
            plain[n] = path.parent / name
        elif (n := compressed_backup_number(path.name, name)) is not None:
            packed[n] = path.parent / name
    both = packed | plain
    return [both[n] for n in sorted(both)]
