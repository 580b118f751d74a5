"""What the BPF program needs of the running kernel, checked against the kernel's own BTF before compiling.

The kernel's BTF describes itself: `enum bpf_func_id` lists every BPF helper it implements, `enum
bpf_map_type` every map type, and `btf_trace_<tracepoint>` typedefs give each tracepoint's raw arguments.
So whether this kernel can run the program is answered without loading anything, and a kernel that
lacks something is named with the thing it lacks (the daemon at start and `claude-audit doctor` say the
same). Everything listed here is in every Linux 5.8 and later; the oldest kernel the project supports is
5.14 (RHEL 9), so on a supported kernel nothing is missing and there is no reduced mode to fall back to.
"""

from __future__ import annotations

from dataclasses import dataclass

from .btf import Btf, BtfError, KernelOffsets

# Raw tracepoint -> (TP_PROTO arguments the program reads, what it needs them for).
TRACEPOINTS: dict[str, tuple[int, str]] = {
    "sched_process_fork": (2, "tracking descendants"),
    "sched_process_exec": (3, "exec records"),
    "sched_process_exit": (1, "session ends"),
    "task_rename": (2, "sessions of Claude Code that rename themselves"),
}

# Helper -> the first Linux release that has it (for the message when it is missing).
HELPERS: dict[str, str] = {
    "map_lookup_elem": "3.19",
    "map_update_elem": "3.19",
    "map_delete_elem": "3.19",
    "get_smp_processor_id": "4.1",
    "get_current_uid_gid": "4.2",
    "get_current_comm": "4.2",
    "get_current_cgroup_id": "4.18",
    "probe_read_kernel": "5.5",
    "probe_read_kernel_str": "5.5",
    "probe_read_user": "5.5",
    "ringbuf_output": "5.8",
    "ringbuf_reserve": "5.8",
    "ringbuf_submit": "5.8",
    "ktime_get_boot_ns": "5.8",
}

# Helpers only enforce mode needs: a kernel without them runs the daemon with rules in dry-run (records
# only), and the daemon says so at start.
ENFORCE_HELPERS: dict[str, str] = {"send_signal": "5.3"}

MAP_TYPES: dict[str, str] = {
    "HASH": "3.19",
    "LPM_TRIE": "4.11",
    "LRU_HASH": "4.10",
    "ARRAY": "3.19",
    "PERCPU_ARRAY": "4.6",
    "RINGBUF": "5.8",
}
PROG_TYPES: dict[str, str] = {"RAW_TRACEPOINT": "4.17"}

# sched_process_exit gained `bool group_dead` in 2025; before that, group death is read from the task.
EXIT_GROUP_DEAD_PARAMS = 3  # void *__data, struct task_struct *p, bool group_dead


@dataclass(frozen=True, slots=True)
class KernelSupport:
    """What the running kernel offers the BPF program: missing pieces (each a sentence) and cflags."""

    missing: tuple[str, ...]
    offsets: KernelOffsets | None
    exit_has_group_dead: bool
    cannot_kill: tuple[str, ...] = ()
    """Why enforce mode cannot kill on this kernel (each a sentence); empty when it can."""

    @property
    def can_kill(self) -> bool:
        """Whether a denied exec can be killed in the kernel (else rules run in dry-run)."""
        return not self.cannot_kill

    @property
    def exit_detection(self) -> str:
        """How the end of a session root's process is recognised on this kernel."""
        if self.exit_has_group_dead:
            return "sched_process_exit group_dead argument"
        return "task->signal->live at sched_process_exit"

    def cflags(self) -> list[str]:
        """The -D flags describing this kernel (offsets and tracepoint shape)."""
        if self.offsets is None:
            raise BtfError("; ".join(self.missing))
        return [
            *self.offsets.cflags(),
            f"-DEXIT_TP_HAS_GROUP_DEAD={int(self.exit_has_group_dead)}",
            f"-DENFORCE_CAN_KILL={int(self.can_kill)}",
        ]


def _missing_enum_items(btf: Btf, enum: str, prefix: str, wanted: dict[str, str], what: str) -> list[str]:
    try:
        have = btf.enum_names(enum)
    except BtfError as exc:
        return [f"{exc} (a kernel older than BPF itself?)"]
    return [
        f"BPF {what} {prefix}{name} (Linux {since} and later)"
        for name, since in wanted.items()
        if prefix + name not in have
    ]


def kernel_support(btf: Btf) -> KernelSupport:
    """Everything this kernel lacks for the BPF program, and the -D flags when it lacks nothing."""
    missing: list[str] = []
    params: dict[str, int] = {}
    for tp, (needed, purpose) in TRACEPOINTS.items():
        try:
            params[tp] = btf.typedef_func_params(f"btf_trace_{tp}")
        except BtfError:
            missing.append(f"tracepoint {tp}, needed for {purpose} (no btf_trace_{tp} in BTF)")
            continue
        if params[tp] - 1 < needed:
            missing.append(
                f"tracepoint {tp} passes {params[tp] - 1} arguments, {needed} needed for {purpose}"
            )
    missing += _missing_enum_items(btf, "bpf_func_id", "BPF_FUNC_", HELPERS, "helper")
    missing += _missing_enum_items(btf, "bpf_map_type", "BPF_MAP_TYPE_", MAP_TYPES, "map type")
    missing += _missing_enum_items(btf, "bpf_prog_type", "BPF_PROG_TYPE_", PROG_TYPES, "program type")
    offsets: KernelOffsets | None = None
    try:
        offsets = KernelOffsets.from_btf(btf)
    except BtfError as exc:
        missing.append(f"kernel struct member {exc}")
    cannot_kill = _missing_enum_items(btf, "bpf_func_id", "BPF_FUNC_", ENFORCE_HELPERS, "helper")
    return KernelSupport(
        cannot_kill=tuple(cannot_kill),
        missing=tuple(missing),
        offsets=offsets if not missing else None,
        exit_has_group_dead=params.get("sched_process_exit", 0) >= EXIT_GROUP_DEAD_PARAMS,
    )
