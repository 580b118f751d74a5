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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import bpf_layout as L
from .btf import Btf
from .enforce import CompiledRules, Mode, RuleInfo, compile_rules, state_word
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

COMPILER_LIBRARIES = (b"libLLVM", b"libclang")
"""Shared libraries BCC's compiler lives in: used once at start, and most of the daemon's memory after."""
MADV_DONTNEED = 4
MADV_PAGEOUT = 21  # Linux 5.4; older kernels refuse it (EINVAL) and the pages simply stay


@dataclass(frozen=True, slots=True)
class LibraryMapping:
    """One mapping of a compiler library in /proc/PID/smaps."""

    start: int
    end: int
    writable: bool
    anonymous_kb: int
    """Pages of it this process wrote (copy-on-write: relocations, data): they exist nowhere else."""

    @property
    def only_file_pages(self) -> bool:
        """Every resident page is an unmodified copy of the file, and none can become otherwise."""
        return not self.writable and self.anonymous_kb == 0


def compiler_mappings(smaps: bytes) -> list[LibraryMapping]:
    """Each mapping of the compiler's libraries in a /proc/PID/smaps text. Pure."""
    out: list[LibraryMapping] = []
    current: list[Any] | None = None
    for line in smaps.splitlines():
        fields = line.split(None, 5)
        if fields and b"-" in fields[0] and len(fields) >= 5:
            current = None
            if len(fields) == 6 and any(lib in fields[5] for lib in COMPILER_LIBRARIES):
                start, _, end = fields[0].partition(b"-")
                current = [int(start, 16), int(end, 16), b"w" in fields[1], -1]
                out.append(LibraryMapping(*current))
        elif current is not None and fields[:1] == [b"Anonymous:"] and len(fields) >= 2:
            current[3] = int(fields[1])
            out[-1] = LibraryMapping(*current)
    # A mapping whose Anonymous line was not seen is treated as holding written pages.
    return out


def release_compiler_memory(smaps_path: Path = Path("/proc/self/smaps")) -> int:
    """After the program is loaded: hand back what compiling it left resident; returns mappings released.

    Compiling touches ~90 MB of LLVM and clang code and leaves ~45 MB of freed heap that glibc keeps: 2/3
    of the daemon's RSS, for code that never runs again. malloc_trim returns the free heap. A read-only
    mapping holding only file pages is dropped with MADV_DONTNEED (a page touched again is read back from
    the file, as at start); any other mapping of the libraries (relocated data) gets MADV_PAGEOUT, which
    keeps content and only asks the kernel to reclaim what it can. Nothing written is ever discarded.
    Best effort: a libc or kernel without either leaves the memory as it was.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.malloc_trim(0)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        done = 0
        for m in compiler_mappings(smaps_path.read_bytes()):
            advice = MADV_DONTNEED if m.only_file_pages else MADV_PAGEOUT
            done += libc.madvise(m.start, m.end - m.start, advice) == 0
        return done
    except (OSError, AttributeError, ValueError):
        return 0


class SensorConfig(Protocol):
    """What `SensorSettings.from_config` reads: the [capture] and [discovery] sections of config.Config."""

    @property
    def capture(self) -> Any:
        """config.CaptureConfig."""
        ...

    @property
    def discovery(self) -> Any:
        """config.DiscoveryConfig."""
        ...


@dataclass(frozen=True)
class SensorSettings:
    """What the BPF program is compiled with. Defaults are config.py's (one place); tests pass their own."""

    argv_max_bytes: int
    filename_max_bytes: int
    ring_buffer_bytes: int
    max_tracked_processes: int
    max_session_roots: int
    max_pending_roots: int
    candidates_per_uid_per_second: int
    candidate_comms: tuple[str, ...]
    bpf_dir: Path = L.BPF_DIR

    @classmethod
    def from_config(cls, config: SensorConfig, bpf_dir: Path = L.BPF_DIR) -> SensorSettings:
        """The settings a config.Config gives (its [capture] sizes and [discovery] triggers)."""
        c, d = config.capture, config.discovery
        return cls(
            argv_max_bytes=c.argv_max_bytes,
            filename_max_bytes=c.filename_max_bytes,
            ring_buffer_bytes=c.ring_buffer_bytes,
            max_tracked_processes=c.max_tracked_processes,
            max_session_roots=c.max_session_roots,
            max_pending_roots=c.max_pending_roots,
            candidates_per_uid_per_second=d.candidates_per_uid_per_second,
            candidate_comms=tuple(d.comm_names),
            bpf_dir=bpf_dir,
        )


def program_state(fdinfos: Mapping[str, bytes], expected: int) -> dict[str, Any]:
    """Summarise the kernel's fdinfo of each raw tracepoint link (name -> text). Pure.

    "attached" when every expected program has a link holding a program, else "degraded".
    """
    attached = sorted(name for name, info in fdinfos.items() if b"\nprog_id:" in b"\n" + info)
    return {
        "state": "attached" if len(attached) >= expected else "degraded",
        "programs_attached": len(attached),
        "programs_expected": expected,
        "attached": attached,
    }


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
            f"-DMAX_ROOTS={settings.max_session_roots}",
            f"-DMAX_PENDING_ROOTS={settings.max_pending_roots}",
            f"-DCANDIDATES_PER_UID_PER_SEC={settings.candidates_per_uid_per_second}",
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
        self.pending_roots = self.bpf[b"pending_root_map"]
        self.rejected = self.bpf[b"rejected_map"]
        self.roots_full = 0
        """add_root calls refused because target_pid_map was full (the kernel counts its own)."""
        self.track_full = 0
        """track calls refused because tracked_map was full."""
        self.tracked = self.bpf[b"tracked_map"]
        self.counters = self.bpf[b"counters"]
        comms = self.bpf[b"candidate_comms"]
        for name in settings.candidate_comms:
            comms[L.CommKey(name.encode()[: L.COMM_LEN - 1])] = ctypes.c_uint8(1)
        self.enforce_state = self.bpf[b"enforce_state"]
        self.deny_prefix = self.bpf[b"deny_prefix"]
        self.deny_name = self.bpf[b"deny_name"]
        self.deny_rules = self.bpf[b"deny_rules"]
        self.enforce_mode: Mode = "off"
        self.enforce_tables: dict[int, CompiledRules] = {}
        """Generation -> its rules; the inactive one is kept so records made just before a switch resolve."""
        self._active_generation = 1
        self.bpf[b"events"].open_ring_buffer(self._on_event)
        release_compiler_memory()

    def kernel_facts(self) -> dict[str, str]:
        """What the daemon-started record says about the kernel: its release and what differs by kernel."""
        return {"release": platform.release(), "exit_detection": self.kernel.exit_detection}

    def program_state(self) -> dict[str, Any]:
        """Which of the BPF programs are attached now, as the kernel reports each link
        (/proc/self/fdinfo of the raw tracepoint link: a program id means attached)."""
        fdinfos: dict[str, bytes] = {}
        for tp, fd in dict(self.bpf.raw_tracepoint_fds).items():
            name = tp.decode(errors="replace") if isinstance(tp, bytes) else str(tp)
            try:
                with open(f"/proc/self/fdinfo/{int(fd)}", "rb") as f:
                    fdinfos[name] = f.read(4096)
            except OSError:
                fdinfos[name] = b""
        return program_state(fdinfos, len(PROBES))

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

    # -- enforcement (enforce_state, deny_prefix, deny_name, deny_rules) ------------------------------
    def apply_enforcement(
        self, mode: Mode, groups: dict[tuple[Any, str], list[int]], rules: Any
    ) -> CompiledRules:
        """Make `rules` (with config.deny_rule_groups(rules)) the kernel's rules in `mode`, atomically.

        The new rules go into the inactive generation, one word switches mode and generation, then the
        old generation's entries are removed. "off" switches first and leaves no entry at all. The caller
        passes the effective mode (enforce.effective_mode): this does not check the kernel can kill.
        """
        new_generation = 1 - self._active_generation
        self._clear_generation(new_generation)
        compiled = compile_rules(groups, rules, new_generation)
        if mode != "off":
            for rk, rv in compiled.rule_entries:
                self.deny_rules[ctypes.c_int(rk)] = rv
            for nk, nv in compiled.name_entries:
                self.deny_name[nk] = nv
            for pk, pv in compiled.prefix_entries:
                self.deny_prefix[pk] = pv
        self.enforce_state[ctypes.c_int(0)] = ctypes.c_uint32(state_word(mode, new_generation))
        old = self._active_generation
        self._active_generation = new_generation
        self.enforce_mode = mode
        self.enforce_tables[new_generation] = compiled
        self._clear_generation(old)
        if mode == "off":
            self._clear_generation(new_generation)
        return compiled

    def _clear_generation(self, generation: int) -> None:
        old = self.enforce_tables.get(generation)
        if old is None:
            return
        for nk, _ in old.name_entries:
            with contextlib.suppress(KeyError):
                del self.deny_name[nk]
        for pk, _ in old.prefix_entries:
            with contextlib.suppress(KeyError):
                del self.deny_prefix[pk]
        for rk, _ in old.rule_entries:
            self.deny_rules[ctypes.c_int(rk)] = L.DenyRule()

    def deny_rule(self, generation: int, index: int) -> RuleInfo | None:
        """The rule a kernel decision names (generation and index from the exec record), if known."""
        table = self.enforce_tables.get(generation)
        if table is None or index >= len(table.rules):
            return None
        return table.rules[index]

    def kernel_deny_entries(self) -> int:
        """How many deny keys the kernel holds now (0 after "off")."""
        return len(list(self.deny_name.keys())) + len(list(self.deny_prefix.keys()))

    # -- session roots (target_pid_map, pending_root_map) --------------------------------------------
    def add_root(self, pid: int, start_ticks: int, pending: bool = False) -> bool:
        """Make pid a session root, confirmed unless pending; False (counted) if its map is full.

        A confirmed root replaces the pending entry the kernel may have made for it.
        """
        entry = L.RootInfo(start_ticks=start_ticks, flags=L.TRACK_PENDING_ROOT if pending else 0)
        table = self.pending_roots if pending else self.roots
        try:
            table[ctypes.c_uint32(pid)] = entry
        except Exception:  # bcc raises a bare Exception ("Argument list too long") when the map is full
            self.roots_full += 1
            return False
        if not pending:
            with contextlib.suppress(KeyError):
                del self.pending_roots[ctypes.c_uint32(pid)]
        return True

    def remove_root(self, pid: int) -> None:
        """Stop treating pid as a session root, pending or confirmed (its tracked descendants stay)."""
        for table in (self.roots, self.pending_roots):
            with contextlib.suppress(KeyError):
                del table[ctypes.c_uint32(pid)]

    def reject_root(self, pid: int, start_ticks: int) -> int:
        """A pending root is not Claude Code: drop it and its tracked descendants, and have the kernel
        ignore it until it execs something new. Returns how many tracked entries were removed."""
        self.remove_root(pid)
        return self.untrack_session(pid, start_ticks)

    def root_pids(self) -> dict[int, tuple[int, int]]:
        """pid -> (start_ticks, flags) of every root in the kernel maps, pending ones included."""
        out = {int(k.value): (int(v.start_ticks), int(v.flags)) for k, v in self.pending_roots.items()}
        out.update({int(k.value): (int(v.start_ticks), int(v.flags)) for k, v in self.roots.items()})
        return out

    # -- tracked descendants (tracked_map) ------------------------------------------------------------
    def track(self, pid: int, entry: L.TrackedProc) -> bool:
        """Insert or replace a tracked-process entry; False if the map is full."""
        try:
            self.tracked[ctypes.c_uint32(pid)] = entry
        except Exception:  # bcc raises a bare Exception when the map is full
            self.track_full += 1
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
        # One batched syscall per chunk instead of two per entry: 10 000 entries in 0.035 s, not 0.19 s.
        # It runs at each scan and each rejected candidate, so a flood of candidates stays cheap.
        try:
            pairs = list(self.tracked.items_lookup_batch())
        except Exception:  # kernels before 5.6 have no batch lookup; bcc raises a bare Exception
            pairs = list(self.tracked.items())
        return [(int(getattr(k, "value", k)), L.TrackedProc.from_buffer_copy(bytes(v))) for k, v in pairs]

    def untrack_session(self, root: int, root_start_ticks: int) -> int:
        """Remove every tracked entry of a rejected pending root; returns how many.

        The root is also remembered in the kernel's rejected_map, so renaming itself again does not make
        it a candidate again (a new exec does). Only the daemon's rejection path calls this.
        """
        with contextlib.suppress(Exception):  # LRU map: an update never fails for lack of room
            self.rejected[ctypes.c_uint32(root)] = ctypes.c_uint64(root_start_ticks)
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
