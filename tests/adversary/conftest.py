"""Adversary tier: the real daemon, as root, against attacks run by an unprivileged user (and the agent)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE.parent / "e2e"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Root is a precondition of this tier (BPF, setpriv to another user, mount namespaces), not a skip.
    if items and os.geteuid() != 0:
        raise pytest.UsageError("tests/adversary needs root (CI runs it as root)")
