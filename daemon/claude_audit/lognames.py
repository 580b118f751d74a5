"""Names of the rotated audit logs: `path`.1 (newest) ... `path`.N (oldest). Pure, but for `rotated`.

The writer (rotate.py) and the reader (follow.py) must agree on what a backup is called and which is
newer; this is the one place that says so.
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


def rotated(path: Path) -> list[Path]:
    """The backups of `path` that exist now, newest (.1) first; gaps are skipped, not an end. I/O."""
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        n = backup_number(path.name, name)
        if n is not None:
            found.append((n, path.parent / name))
    return [p for _, p in sorted(found)]
