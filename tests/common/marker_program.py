"""The static marker program the enforcement tests deny: its very first instructions append a byte to the
file its last argument names, so a marker file that exists proves the program ran an instruction."""

from __future__ import annotations

import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("enforce_marker.c")


def build_marker(out: Path) -> Path:
    """Compile the marker program to `out` (static, no libc: nothing runs before its first line)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    flags = ["-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-O2"]
    subprocess.run(["cc", *flags, "-o", str(out), str(SOURCE)], check=True)
    return out
