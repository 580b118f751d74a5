"""Boot systemd 252 as PID 1 in a private overlay root, for end-to-end tests of the service.

Never on the host root: systemd-tmpfiles at boot empties /tmp. The layout (FIELD_NOTES):
  unshare --pid --mount --fork --propagation private, then inside that namespace
  - a tmpfs holding overlay upper/work dirs, overlay(lowerdir=/) mounted as the new root,
  - fresh proc (for the new pid namespace), /sys and /dev bind-mounted recursively (so
    /sys/kernel/tracing, /sys/kernel/btf and the cgroup hierarchies are there), fresh tmpfs on /run
    and /tmp,
  - pivot_root into it and exec /lib/systemd/systemd --system --unit=claude-e2e.target,
    a minimal target that Requires= and After= systemd-journald.socket.
Everything written inside lands in the overlay's upper dir on that tmpfs and vanishes with the mount
namespace. The only host-side traces systemd can leave are cgroup directories; the ones that did
not exist before boot are removed (empty ones only) at teardown.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonl import read_records

TARGET = "claude-e2e.target"
TARGET_UNIT = """[Unit]
Description=claude-audit e2e minimal boot target
Requires=systemd-journald.socket systemd-journald.service
Wants=dbus.socket
After=systemd-journald.socket systemd-journald.service
Wants=sysinit.target
AllowIsolate=yes
"""

BOOT_SCRIPT = r"""
set -eu
B="$1"
L="$2"
shift 2
mount -t tmpfs -o mode=0755 tmpfs "$B"
mkdir -p "$B/upper" "$B/work" "$B/root"
mount -t overlay overlay -o "lowerdir=$L,upperdir=$B/upper,workdir=$B/work" "$B/root"
R="$B/root"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
# Host directories another root needs at the same path (the Claude Code CLI cache), read-only.
for d in "$@"; do
  mkdir -p "$R$d"
  mount --rbind "$d" "$R$d"
  mount -o remount,bind,ro "$R$d"
done
mkdir -p "$R/etc/systemd/system" "$R/oldroot"
# This machine image (a Docker-built one) ships /usr/sbin/policy-rc.d answering 101 ("action
# forbidden"), so deb-systemd-invoke in a package's postinst would never start a service. A booted
# Debian host has none: remove it from the overlay (a whiteout; the host's file stays).
rm -f "$R/usr/sbin/policy-rc.d"
# A clean host has no claude-audit state; the host's (a daemon run there with the default config writes
# /var/log/claude-audit and /var/lib/claude-audit) would leak in through the lower layer.
rm -rf "$R/var/log/claude-audit" "$R/var/lib/claude-audit" "$R/etc/claude-audit" "$R/run/claude-audit"
cat > "$R/etc/systemd/system/claude-e2e.target" <<'EOF'
@TARGET_UNIT@
EOF
cd "$R"
pivot_root . oldroot
umount -l /oldroot
rmdir /oldroot
exec /lib/systemd/systemd --system --unit=claude-e2e.target
"""

CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


def _cgroup_dirs() -> set[Path]:
    out: set[Path] = set()
    for root in CGROUP_ROOTS:
        if (root / "cgroup.procs").exists():
            out.update(p for p in root.rglob("*") if p.is_dir() and (p / "cgroup.procs").exists())
    return out


@dataclass
class SystemdEnv:
    pid: int
    """Host pid of the booted systemd (PID 1 inside)."""
    base: Path
    boot_seconds: float = 0.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def run(
        self,
        cmd: Sequence[str],
        *,
        check: bool = False,
        timeout: float = 120,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside (its mount and pid namespaces, its root and cwd /)."""
        base_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        base_env.update(env or {})
        full = ["nsenter", "-t", str(self.pid), "-m", "-p", "-r", "-w", "--", "env", "-i"]
        full += [f"{k}={v}" for k, v in base_env.items()] + list(cmd)
        return subprocess.run(
            full,
            capture_output=True,
            check=check,
            timeout=timeout,
            input=input.decode() if input is not None else None,
            text=True,
        )

    def sh(self, script: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["/bin/sh", "-c", script], **kw)

    def path(self, inside: str) -> Path:
        """Host path through which a path inside can be read (via /proc/<pid>/root)."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def copy_in(self, host_path: Path | str, inside: str, mode: int | None = None) -> None:
        data = Path(host_path).read_bytes()
        parent = os.path.dirname(inside)
        self.run(["mkdir", "-p", parent], check=True)
        self.write(inside, data, mode)

    def write(self, inside: str, data: bytes | str, mode: int | None = None) -> None:
        payload = data.encode() if isinstance(data, str) else data
        chmod = f' && chmod {mode:o} "$1"' if mode is not None else ""
        cmd = ["sh", "-c", 'cat > "$1"' + chmod, "w", inside]
        full = ["nsenter", "-t", str(self.pid), "-m", "-p", "-r", "-w", "--", *cmd]
        subprocess.run(full, input=payload, check=True, timeout=60, capture_output=True)

    def systemctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *args], check=check)

    def wait_active(self, unit: str, timeout: float = 60.0) -> str:
        """Wait until `unit` is active; raises with its status if it fails or times out."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.systemctl("is-active", unit).stdout.strip()
            if state == "active":
                return state
            if state == "failed":
                break
            time.sleep(0.2)
        status = self.systemctl("status", "--lines=50", unit).stdout
        raise AssertionError(f"{unit} is {state!r}, not active:\n{status}")

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "-P", prop, unit).stdout.rstrip("\n")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


@contextmanager
def booted_systemd(
    tmpdir: Path | str | None = None,
    timeout: float = 90.0,
    lower: Path | str = "/",
    binds: Sequence[Path | str] = (),
) -> Iterator[SystemdEnv]:
    """Boot systemd in a private overlay root; yield a SystemdEnv; power it off and clean up.

    `lower` is the overlay's lower layer: the host's root by default, or another distribution's root
    file system (distro_root.py). `binds` are host directories mounted read-only at the same path inside.
    """
    base = Path(tempfile.mkdtemp(prefix="claude-audit-systemd-")) if tmpdir is None else Path(tmpdir) / "sd"
    base.mkdir(parents=True, exist_ok=True)
    script = BOOT_SCRIPT.replace("@TARGET_UNIT@", TARGET_UNIT.strip())
    cgroups_before = _cgroup_dirs()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            "unshare", "--pid", "--mount", "--fork", "--propagation", "private", "--kill-child",
            "/bin/sh", "-c", script, "boot", str(base), str(lower), *(str(b) for b in binds),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "container": "claude-audit-e2e",
            "LANG": "C.UTF-8",
        },
    )  # fmt: skip
    env: SystemdEnv | None = None
    try:
        pid = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"boot namespace exited with {proc.returncode}: {err}")
            kids = _children(proc.pid)
            if kids:
                pid = kids[0]
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        break
                except OSError:
                    pass
            time.sleep(0.05)
        else:
            raise TimeoutError("systemd did not start")
        env = SystemdEnv(pid=pid, base=base, _proc=proc)
        while time.monotonic() < deadline:
            r = env.run(["systemctl", "is-system-running"], timeout=30)
            if r.stdout.strip() in ("running", "degraded"):
                break
            time.sleep(0.1)
        else:
            raise TimeoutError(f"systemd did not finish booting: {r.stdout.strip()}")
        env.boot_seconds = time.monotonic() - t0
        yield env
    finally:
        _teardown(proc, env, base, cgroups_before)


def _teardown(
    proc: subprocess.Popen[bytes], env: SystemdEnv | None, base: Path, cgroups_before: set[Path]
) -> None:
    if env is not None and proc.poll() is None:
        # Inside a pid namespace, PID 1's reboot() ends the namespace: systemd exits cleanly.
        subprocess.run(
            ["nsenter", "-t", str(env.pid), "-m", "-p", "-r", "-w", "systemctl", "poweroff", "--no-block"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    if proc.poll() is None:
        for kid in _children(proc.pid):
            with suppress(ProcessLookupError):
                os.kill(kid, signal.SIGKILL)  # PID 1 of the namespace: takes every process in it
        proc.kill()
        proc.wait(timeout=30)
    if proc.stderr:
        proc.stderr.close()
    # Empty cgroups systemd created on the host's hierarchies; deepest first.
    for cg in sorted(_cgroup_dirs() - cgroups_before, key=lambda p: len(p.parts), reverse=True):
        with suppress(OSError):
            cg.rmdir()
    shutil.rmtree(base, ignore_errors=True)


# --- helpers for the claude-audit package inside a booted systemd ---------------------------------------

NONINTERACTIVE = {"DEBIAN_FRONTEND": "noninteractive"}
AUDIT_LOG = "/var/log/claude-audit/audit.jsonl"


def build_deb(version: str | None = None, target: str = "bookworm-amd64") -> Path:
    """Build the .deb of one target (packaging/build-deb.sh; optionally another upstream version)."""
    return build_debs(version, [target])[0]


def build_debs(version: str | None = None, targets: Sequence[str] = ()) -> list[Path]:
    """Build the .debs of `targets` (all of `make deb`'s matrix when empty); return their paths."""
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    if version is not None:
        env["CLAUDE_AUDIT_DEB_VERSION"] = version
    out = subprocess.run(
        [str(repo / "packaging/build-deb.sh"), *targets], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise AssertionError(f"build-deb.sh {' '.join(targets)} failed:\n{out.stderr[-3000:]}")
    return [repo / line for line in out.stdout.split()]


def apt_install(env: SystemdEnv, deb: Path) -> float:
    """`apt-get install ./<deb>` inside; returns the seconds it took. Fails the test on error."""
    inside = f"/root/{deb.name}"
    env.copy_in(deb, inside)
    t0 = time.monotonic()
    r = env.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", inside], env=NONINTERACTIVE, timeout=600
    )
    took = time.monotonic() - t0
    if r.returncode != 0:
        raise AssertionError(f"apt-get install failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return took


def add_user(env: SystemdEnv, name: str = "agent") -> None:
    """A login user (home /home/<name>) inside, for Claude Code sessions that are not root's."""
    env.run(["sh", "-c", f"id {name} >/dev/null 2>&1 || useradd -m -s /bin/bash {name}"], check=True)


def claude_inside(
    env: SystemdEnv, claude_bin: Path, api_url: str, prompt: str, user: str = "agent"
) -> subprocess.Popen[str]:
    """Start `claude -p <prompt>` inside as `user` (HOME /home/<user>, cwd ~/cwd) without waiting.

    The booted systemd shares the host's network namespace (mount and pid namespaces only), so a fake
    API on the host's 127.0.0.1 is reachable; the CLI cache under the repository is visible through
    the overlay's lower layer (the host root).
    """
    from session import session_argv, session_env  # the e2e harness (tests/e2e)

    home = f"/home/{user}"
    with tempfile.TemporaryDirectory(prefix="claude-audit-e2e-env-") as scratch:  # session_env mkdirs
        senv = session_env(api_url, Path(scratch))
    senv.update(HOME=home, TMPDIR=f"{home}/tmp", PATH="/usr/local/bin:/usr/bin:/bin", USER=user, LOGNAME=user)
    script = 'mkdir -p "$HOME/tmp" "$HOME/cwd" && cd "$HOME/cwd" && exec "$@"'
    cmd = ["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in senv.items())]
    cmd += ["sh", "-c", script, "claude-session", *session_argv(claude_bin, prompt)]
    full = ["nsenter", "-t", str(env.pid), "-m", "-p", "-r", "-w", "--", *cmd]
    return subprocess.Popen(
        full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_until(what: str, pred: Any, timeout: float = 30.0, every: float = 0.2) -> Any:
    """Poll pred until it returns something truthy and return it; fail naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def read_log(env: SystemdEnv, inside: str = AUDIT_LOG) -> list[dict[str, Any]]:
    """Every record of the audit log inside the booted system (none if it does not exist yet)."""
    return read_records(env.path(inside))


def print_footprint(env: SystemdEnv, unit: str) -> None:
    """Print measured numbers for the README: the daemon's memory, its venv's size, the records' sizes."""
    pid = env.show(unit, "MainPID")
    status = env.path(f"/proc/{pid}/status").read_text()
    rss = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    venv_kb = env.run(["du", "-sk", "/usr/lib/claude-audit"]).stdout.split()[0]
    sizes = sorted(len(line) + 1 for line in env.path(AUDIT_LOG).read_bytes().splitlines())
    p99 = sizes[min(len(sizes) - 1, round(0.99 * (len(sizes) - 1)))]
    print(f"daemon VmRSS: {rss} kB; venv /usr/lib/claude-audit: {venv_kb} kB")
    print(f"records: {len(sizes)}, median {sizes[len(sizes) // 2]} B, p99 {p99} B, max {sizes[-1]} B")
