"""The kernel sensor: compile and attach the BPF program, and give typed access to its maps and ring.

Startup order matters for "no gap": probes are attached first, so that from then on every fork of a
tracked process is tracked by the kernel; only then are sessions seeded from /proc (sessions.py).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import bpf_layout as L
from .btf import Btf
from .kernel import TRACEPOINTS, KernelSupport, kernel_support

# Raw tracepoints only: their arguments (TP_PROTO) are stable across the supported kernels, where the
# trace-event formats are not, and they need no tracefs (see the BPF source).
PROBES = tuple(f"raw_tracepoint:{tp}" for tp in TRACEPOINTS)


class SensorError(Exception):
    """The BPF program could not be compiled, loaded or attached (message says why)."""


@dataclass
class RingQueue:
    """Bounded queue between the ring-buffer callback and the main loop; overflow is counted, never silent."""

    max_events: int
    items: collections.deque[bytes] = field(default_factory=collections.deque)
    dropped: int = 0

    def push(self, raw: bytes) -> None:
        """Queue one record, or count it as dropped when the queue is full."""
        if len(self.items) >= self.max_events:
            self.dropped += 1
            return
        self.items.append(raw)

    def drain(self) -> list[bytes]:
        """Take every queued record, oldest first."""
        out = list(self.items)
        self.items.clear()
        return out


def boot_to_wall_offset_ns() -> int:
    """Epoch ns minus boot-time ns, to convert bpf_ktime_get_boot_ns() to wall-clock time."""
    # Bracket one clock with the other and take the midpoint so the offset error is sub-microsecond.
    b1 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    w = time.time_ns()
    b2 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    return w - (b1 + b2) // 2


def possible_cpus() -> int:
    """Number of possible CPUs (the index range of bpf_get_smp_processor_id())."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
        last = text.split(",")[-1].split("-")[-1]
        return int(last) + 1
    except (OSError, ValueError):
        return os.cpu_count() or 64


def view_pidns_inum(proc: Path = Path("/proc")) -> int:
    """0 if this process is in the initial pid namespace, else the inode of its pid namespace.

    Records carry the pids of the namespace whose /proc the daemon reads; the BPF program then
    translates every kernel pid into that namespace (see view_pid in the BPF source).
    """
    mine = os.stat(proc / "self" / "ns" / "pid").st_ino
    # The initial pid namespace has a fixed inode number (PROC_PID_INIT_INO in the kernel).
    return 0 if mine == PROC_PID_INIT_INO else mine


PROC_PID_INIT_INO = 0xEFFFFFFC


@dataclass(frozen=True)
class SensorSettings:
    """What the BPF program is compiled with (from config [capture])."""

    argv_max_bytes: int = 16384
    filename_max_bytes: int = 4096
    ring_buffer_bytes: int = 16 * 1024 * 1024
    max_tracked_processes: int = 65536
    candidate_comms: tuple[str, ...] = ("claude", "claude.exe")
    bpf_dir: Path = L.BPF_DIR


class Sensor:
    """Owns the loaded BPF program. Create, then `close()` (or use as a context manager)."""

    def __init__(self, settings: SensorSettings, queue: RingQueue, btf: Btf | None = None) -> None:
        try:
            from bcc import BPF  # Debian's python3-bpfcc; imported late so unit tests need no root
        except ImportError as exc:  # pragma: no cover - depends on the host
            raise SensorError(f"cannot import bcc ({exc}): install python3-bpfcc") from exc
        self.settings = settings
        self.queue = queue
        try:
            self.kernel: KernelSupport = kernel_support(btf or Btf.load())
        except (OSError, ValueError) as exc:
            raise SensorError(f"cannot read kernel BTF: {exc}") from exc
        if self.kernel.missing:
            raise SensorError(
                f"kernel {platform.release()} lacks what the BPF program needs: "
                + "; ".join(self.kernel.missing)
            )
        pages = max(1, settings.ring_buffer_bytes // os.sysconf("SC_PAGE_SIZE"))
        src = settings.bpf_dir / "claude_audit.bpf.c"
        cflags = [
            *self.kernel.cflags(),
            f"-I{settings.bpf_dir}",
            f"-DARGS_MAX={settings.argv_max_bytes}",
            f"-DFILENAME_MAX_LEN={settings.filename_max_bytes}",
            f"-DMAX_TRACKED={settings.max_tracked_processes}",
            f"-DRING_PAGES={pages}",
            f"-DNR_CPUS_POSSIBLE={possible_cpus()}",
            f"-DVIEW_PIDNS_INUM={view_pidns_inum()}",
            "-Wno-unused-function",
        ]
        try:
            self.bpf: Any = BPF(src_file=str(src).encode(), cflags=cflags)
        except Exception as exc:  # bcc raises bare Exception on compile/load failure
            raise SensorError(f"cannot load {src}: {exc}") from exc
        self.attached = list(PROBES)  # RAW_TRACEPOINT_PROBE programs attach at load
        self.roots = self.bpf[b"target_pid_map"]
        self.tracked = self.bpf[b"tracked_map"]
        self.counters = self.bpf[b"counters"]
        comms = self.bpf[b"candidate_comms"]
        for name in settings.candidate_comms:
            comms[L.CommKey(name.encode()[: L.COMM_LEN - 1])] = ctypes.c_uint8(1)
        self.bpf[b"events"].open_ring_buffer(self._on_event)

    def kernel_facts(self) -> dict[str, str]:
        """What the daemon-started record says about the kernel: its release and what differs by kernel."""
        return {"release": platform.release(), "exit_detection": self.kernel.exit_detection}

    def _on_event(self, _ctx: Any, data: Any, size: int) -> None:
        # Only copy the bytes and queue them: everything else happens in the main loop.
        self.queue.push(ctypes.string_at(data, size))

    def poll(self, timeout_ms: int) -> None:
        """Wait up to timeout_ms for ring-buffer records and queue them.

        Exec records do not wake the poll (see the BPF source), so the ring is also read after the wait.
        """
        self.bpf.ring_buffer_poll(timeout_ms)
        self.bpf.ring_buffer_consume()

    def consume(self) -> None:
        """Queue whatever is in the ring now, without waiting."""
        self.bpf.ring_buffer_consume()

    def counter_totals(self) -> list[int]:
        """Kernel counters summed over CPUs, indexed by bpf_layout.COUNTER_*."""
        totals = []
        for i in range(L.COUNTER_MAX):
            per_cpu = self.counters[ctypes.c_int(i)]
            totals.append(sum(int(v) for v in per_cpu))
        return totals

    # -- session roots (target_pid_map) ---------------------------------------------------------------
    def add_root(self, pid: int, start_ticks: int, pending: bool = False) -> None:
        """Make pid a session root (confirmed unless pending)."""
        flags = L.TRACK_PENDING_ROOT if pending else 0
        self.roots[ctypes.c_uint32(pid)] = L.RootInfo(start_ticks=start_ticks, flags=flags)

    def remove_root(self, pid: int) -> None:
        """Stop treating pid as a session root (its tracked descendants are not touched)."""
        with contextlib.suppress(KeyError):
            del self.roots[ctypes.c_uint32(pid)]

    def root_pids(self) -> dict[int, tuple[int, int]]:
        """pid -> (start_ticks, flags) of every root in the kernel map."""
        return {int(k.value): (int(v.start_ticks), int(v.flags)) for k, v in self.roots.items()}

    # -- tracked descendants (tracked_map) ------------------------------------------------------------
    def track(self, pid: int, entry: L.TrackedProc) -> bool:
        """Insert or replace a tracked-process entry; False if the map is full."""
        try:
            self.tracked[ctypes.c_uint32(pid)] = entry
        except Exception:  # bcc raises a bare Exception when the map is full
            return False
        return True

    def tracked_entry(self, pid: int) -> L.TrackedProc | None:
        """The tracked-map entry for pid, if any."""
        try:
            v = self.tracked[ctypes.c_uint32(pid)]
        except KeyError:
            return None
        return L.TrackedProc.from_buffer_copy(bytes(v))

    def tracked_items(self) -> Iterable[tuple[int, L.TrackedProc]]:
        """Every tracked-map entry (a snapshot; the kernel keeps changing it)."""
        return [(int(k.value), L.TrackedProc.from_buffer_copy(bytes(v))) for k, v in self.tracked.items()]

    def untrack_session(self, root: int, root_start_ticks: int) -> int:
        """Remove every tracked entry of one session (a rejected pending root); returns how many."""
        n = 0
        for pid, e in self.tracked_items():
            if e.root == root and e.root_start_ticks == root_start_ticks:
                try:
                    del self.tracked[ctypes.c_uint32(pid)]
                    n += 1
                except KeyError:
                    pass
        return n

    def close(self) -> None:
        """Detach every probe and free the program."""
        bpf = getattr(self, "bpf", None)
        if bpf is not None:
            bpf.cleanup()
            self.bpf = None

    def __enter__(self) -> Sensor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
