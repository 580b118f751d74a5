"""Install pinned releases of the real Claude Code CLI from the npm registry for end-to-end tests.

Each version lives in its own npm prefix, ``<cache_dir>/<version>/``, so several versions sit side by
side. An install goes into a temporary sibling directory, is checked by running ``claude --version``,
and is then renamed into place, so a half-finished install is never mistaken for a good one. An
exclusive lock file serialises concurrent installs of the same version (e.g. parallel test workers).

Run as a script to pre-fill the cache: ``python tests/e2e/claude_cli.py [VERSION ...]``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGE = "@anthropic-ai/claude-code"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = REPO_ROOT / ".e2e-cache" / "claude"

# The two release families the daemon must recognise:
#  - 2.1.x ships a native ELF (bin/claude.exe, 399 MB) through a platform optional dependency
#    (@anthropic-ai/claude-code-linux-x64) that its postinstall hard-links over a placeholder:
#    never install with --ignore-scripts or --omit=optional;
#  - 2.0.x is cli.js run by the machine's node (>= 18).
NATIVE_VERSION = "2.1.331"
NODE_VERSION = "2.0.77"
VERSIONS = (NATIVE_VERSION, NODE_VERSION)

_STAMP = ".claude-audit-e2e-installed"


class InstallError(RuntimeError):
    pass


def claude_bin_path(prefix: Path) -> Path:
    return prefix / "node_modules" / ".bin" / "claude"


def is_installed(version: str, cache_dir: Path = DEFAULT_CACHE_DIR) -> bool:
    prefix = Path(cache_dir) / version
    return (prefix / _STAMP).is_file() and claude_bin_path(prefix).exists()


def cli_version(claude_bin: Path, timeout: float = 60) -> str:
    """Run ``claude --version`` with a throw-away HOME; return its first output line."""
    with tempfile.TemporaryDirectory(prefix="claude-audit-e2e-ver-") as home:
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": home,
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        proc = subprocess.run(
            [str(claude_bin), "--version"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        raise InstallError(f"{claude_bin} --version exited {proc.returncode}: {proc.stderr.strip()[:2000]}")
    return proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""


def install_claude(version: str, cache_dir: Path = DEFAULT_CACHE_DIR, *, npm: str = "npm") -> Path:
    """Install ``@anthropic-ai/claude-code@<version>`` into ``<cache_dir>/<version>``; return its bin link.

    Idempotent: an existing verified install is reused without touching the network.
    """
    cache_dir = Path(cache_dir)
    prefix = cache_dir / version
    if is_installed(version, cache_dir):
        return claude_bin_path(prefix)
    if shutil.which(npm) is None:
        raise InstallError(f"{npm!r} not found on PATH (Debian 12: apt-get install nodejs npm)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_installed(version, cache_dir):  # another process finished it while we waited
            return claude_bin_path(prefix)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.staging-", dir=cache_dir))
        try:
            staging.chmod(0o755)  # mkdtemp makes 0700; tests may run the CLI as another user
            env = dict(os.environ)
            # Keep npm's tarball cache inside the e2e cache: nothing lands in ~/.npm.
            env["npm_config_cache"] = str(cache_dir / ".npm-cache")
            env["npm_config_update_notifier"] = "false"
            cmd = [
                npm,
                "install",
                "--prefix",
                str(staging),
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--loglevel=error",
                f"{PACKAGE}@{version}",
            ]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
            if proc.returncode != 0:
                raise InstallError(f"npm install {PACKAGE}@{version} failed: {proc.stderr.strip()[-4000:]}")
            got = cli_version(claude_bin_path(staging))
            if not got.startswith(version):
                raise InstallError(f"installed {version} but `claude --version` says {got!r}")
            (staging / _STAMP).write_text(f"{got}\n")
            if prefix.exists():  # a broken earlier attempt
                shutil.rmtree(prefix)
            staging.rename(prefix)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return claude_bin_path(prefix)


def _du(path: Path) -> int:
    seen: dict[tuple[int, int], int] = {}  # the native package hard-links bin/claude.exe to its binary
    for root, _dirs, files in os.walk(path):
        for f in files:
            st = Path(root, f).lstat()
            seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values())


def main(argv: list[str]) -> int:
    for version in argv or list(VERSIONS):
        t0 = time.monotonic()
        cached = is_installed(version)
        link = install_claude(version)
        dt = time.monotonic() - t0
        size = _du(link.parents[2]) / 1e6
        print(
            f"{version}: {link} -> {os.path.realpath(link)} "
            f"({'cached' if cached else 'installed'} in {dt:.1f}s, {size:.0f} MB) [{cli_version(link)}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
