"""Fixtures for driving the real Claude Code CLI (see claude_cli.py, fake_api.py, session.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from claude_cli import VERSIONS, install_claude
from fake_api import FakeAnthropicAPI
from session import session_dirs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Root is a precondition of this tier (namespaces, BPF, systemd), not a reason to skip.
    if items and os.geteuid() != 0:
        raise pytest.UsageError("tests/e2e needs root (CI runs it as root)")


@pytest.fixture(scope="session", params=VERSIONS)
def claude_bin(request: pytest.FixtureRequest) -> Path:
    """The `claude` link of each pinned release, installed into .e2e-cache/claude once."""
    if shutil.which("npm") is None:
        # make test installs npm (scripts/setup-host.sh); its absence is a broken set-up, not a skip
        pytest.fail("npm not on PATH: run `make test`, which installs it")
    return install_claude(request.param)


@pytest.fixture
def fake_api() -> Iterator[FakeAnthropicAPI]:
    with FakeAnthropicAPI() as api:
        yield api


@pytest.fixture
def e2e_dir() -> Iterator[Path]:
    """A temporary directory with home/ and cwd/, removed with what the CLI left in /tmp/claude."""
    with session_dirs() as base:
        yield base
