"""Kernel tier: boots Debian's kernels under QEMU and runs the daemon's tests inside each (as root)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# guest/ holds the tests that run inside a guest; on the host they are only run by the guest.
collect_ignore = [] if os.environ.get("CLAUDE_AUDIT_GUEST_OUT") else ["guest"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Root is a precondition of this tier (QEMU with the host's root as the guest's), not a reason to skip.
    if any("tests/kernels" in str(i.path) for i in items) and os.geteuid() != 0:
        raise pytest.UsageError("tests/kernels needs root (CI runs it as root)")
