"""A small reader for the kernel's BTF: struct member offsets, enum values, tracepoint prototypes.

The BPF program must read kernel structs at the running kernel's offsets, and the only headers on these
machines are for another kernel, so the daemon takes every offset it uses from /sys/kernel/btf/vmlinux.
The format is documented in the kernel's Documentation/bpf/btf.rst; only the type section is needed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")

BTF_MAGIC = 0xEB9F

KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

# Bytes of kind-specific data after the 12-byte common header: (fixed, per vlen item).
_TRAILER: dict[int, tuple[int, int]] = {
    KIND_INT: (4, 0),
    KIND_PTR: (0, 0),
    KIND_ARRAY: (12, 0),
    KIND_STRUCT: (0, 12),
    KIND_UNION: (0, 12),
    KIND_ENUM: (0, 8),
    KIND_FWD: (0, 0),
    KIND_TYPEDEF: (0, 0),
    KIND_VOLATILE: (0, 0),
    KIND_CONST: (0, 0),
    KIND_RESTRICT: (0, 0),
    KIND_FUNC: (0, 0),
    KIND_FUNC_PROTO: (0, 8),
    KIND_VAR: (4, 0),
    KIND_DATASEC: (0, 12),
    KIND_FLOAT: (0, 0),
    KIND_DECL_TAG: (4, 0),
    KIND_TYPE_TAG: (0, 0),
    KIND_ENUM64: (0, 12),
}

# Kinds that only qualify or rename another type: followed to reach a struct or union.
_ALIASES = {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG}


class BtfError(Exception):
    """The BTF data is malformed, or a requested type or member is not in it."""


class _Type(NamedTuple):
    kind: int
    name_off: int
    size_or_type: int
    vlen: int
    kind_flag: bool
    data_off: int  # where the kind-specific data starts in the blob


class Btf:
    """Parsed BTF type section; answers member-offset questions about structs and unions."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BtfError("BTF data too short for a header")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BtfError(f"bad BTF magic {magic:#x} (big-endian BTF is not supported)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._data = data
        self._types_start = hdr_len + type_off
        self._strs_start = hdr_len + str_off
        self._strs_end = self._strs_start + str_len
        # Where each type's header starts, by type id (0 is void). vmlinux has ~130,000 types and the
        # daemon walks them all at start: only positions are kept, headers are decoded when looked up
        # (building an object per type made start-up 2-3x slower, which matters most under emulation).
        self._type_pos: list[int] = [-1]
        self._structs: dict[str, int] = {}
        self._enums: dict[str, int] = {}
        self._typedefs: dict[str, int] = {}
        self._parse(self._types_start, self._types_start + type_len)

    @classmethod
    def load(cls, path: Path = VMLINUX_BTF) -> Btf:
        """Read and parse a BTF file (by default the running kernel's)."""
        return cls(path.read_bytes())

    def _parse(self, pos: int, end: int) -> None:
        data = self._data
        header = struct.Struct("<II").unpack_from
        positions = self._type_pos
        append = positions.append
        named = {KIND_STRUCT: self._structs, KIND_UNION: self._structs, KIND_ENUM: self._enums}
        named |= {KIND_ENUM64: self._enums, KIND_TYPEDEF: self._typedefs}
        while pos < end:
            name_off, info = header(data, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            trailer = _TRAILER.get(kind)
            if trailer is None:
                raise BtfError(f"unknown BTF kind {kind} at byte {pos}")
            if name_off and kind in named:
                # The first definition wins: vmlinux holds one of each named struct.
                named[kind].setdefault(self._name(name_off), len(positions))
            append(pos)
            pos += 12 + trailer[0] + trailer[1] * vlen

    def _type(self, type_id: int) -> _Type | None:
        pos = self._type_pos[type_id]
        if pos < 0:
            return None
        name_off, info, size_or_type = struct.unpack_from("<III", self._data, pos)
        return _Type((info >> 24) & 0x1F, name_off, size_or_type, info & 0xFFFF, info >= 0x80000000, pos + 12)

    def _name(self, off: int) -> str:
        start = self._strs_start + off
        end = self._data.index(b"\0", start, self._strs_end)
        return self._data[start:end].decode()

    def _resolve(self, type_id: int) -> _Type | None:
        t = self._type(type_id)
        while t is not None and t.kind in _ALIASES:
            t = self._type(t.size_or_type)
        return t

    def struct_size(self, struct_name: str) -> int:
        """Size in bytes of a named struct or union."""
        tid = self._structs.get(struct_name)
        if tid is None:
            raise BtfError(f"struct {struct_name} not found in BTF")
        t = self._type(tid)
        assert t is not None
        return t.size_or_type

    def member_offset(self, struct_name: str, member: str) -> int:
        """Byte offset of `member` in `struct_name`, looking inside anonymous structs and unions."""
        tid = self._structs.get(struct_name)
        if tid is None:
            raise BtfError(f"struct {struct_name} not found in BTF")
        bits = self._find_member(tid, member)
        if bits is None:
            raise BtfError(f"{struct_name}.{member} not found in BTF")
        if bits % 8:
            raise BtfError(f"{struct_name}.{member} is a bitfield (bit offset {bits})")
        return bits // 8

    def _find_member(self, type_id: int, member: str) -> int | None:
        t = self._resolve(type_id)
        if t is None or t.kind not in (KIND_STRUCT, KIND_UNION):
            return None
        for i in range(t.vlen):
            name_off, mtype, moff = struct.unpack_from("<III", self._data, t.data_off + 12 * i)
            mtype = int(mtype)
            # With kind_flag set the top 8 bits hold a bitfield size, the rest the bit offset.
            bit_off = int(moff & 0xFFFFFF if t.kind_flag else moff)
            if name_off and self._name(name_off) == member:
                return bit_off
            if not name_off:
                inner = self._find_member(mtype, member)
                if inner is not None:
                    return bit_off + inner
        return None

    def enum_names(self, enum_name: str) -> frozenset[str]:
        """The value names of a named enum (e.g. every helper in `bpf_func_id` this kernel has)."""
        tid = self._enums.get(enum_name)
        if tid is None:
            raise BtfError(f"enum {enum_name} not found in BTF")
        t = self._type(tid)
        assert t is not None
        step = 8 if t.kind == KIND_ENUM else 12
        return frozenset(
            self._name(struct.unpack_from("<I", self._data, t.data_off + step * i)[0]) for i in range(t.vlen)
        )

    def typedef_func_params(self, typedef_name: str) -> int:
        """Parameter count of the function a typedef'd pointer points to.

        The kernel declares each tracepoint's raw arguments as `typedef void (*btf_trace_<name>)(void *,
        <TP_PROTO args>)`, so this tells which arguments a raw tracepoint gets on this kernel.
        """
        tid = self._typedefs.get(typedef_name)
        if tid is None:
            raise BtfError(f"{typedef_name} not found in BTF")
        t = self._resolve(tid)
        if t is not None and t.kind == KIND_PTR:
            t = self._resolve(t.size_or_type)
        if t is None or t.kind != KIND_FUNC_PROTO:
            raise BtfError(f"{typedef_name} is not a function pointer")
        return t.vlen


@dataclass(frozen=True, slots=True)
class KernelFact:
    """One kernel struct fact the BPF program uses: its -D macro and where BTF has it."""

    macro: str
    struct_name: str
    member: str | None  # None: the size of the struct


# The one list of kernel struct layout the BPF program depends on; each row becomes -D<macro>=<bytes>.
KERNEL_FACTS: tuple[KernelFact, ...] = (
    KernelFact("OFF_TASK_PID", "task_struct", "pid"),
    KernelFact("OFF_TASK_TGID", "task_struct", "tgid"),
    KernelFact("OFF_TASK_REAL_PARENT", "task_struct", "real_parent"),
    KernelFact("OFF_TASK_GROUP_LEADER", "task_struct", "group_leader"),
    KernelFact("OFF_TASK_MM", "task_struct", "mm"),
    KernelFact("OFF_TASK_START_BOOTTIME", "task_struct", "start_boottime"),
    KernelFact("OFF_TASK_EXIT_CODE", "task_struct", "exit_code"),
    KernelFact("OFF_TASK_SIGNAL", "task_struct", "signal"),
    KernelFact("OFF_TASK_THREAD_PID", "task_struct", "thread_pid"),
    KernelFact("OFF_SIGNAL_LIVE", "signal_struct", "live"),
    KernelFact("OFF_MM_ARG_START", "mm_struct", "arg_start"),
    KernelFact("OFF_MM_ARG_END", "mm_struct", "arg_end"),
    KernelFact("OFF_BPRM_FILENAME", "linux_binprm", "filename"),
    KernelFact("OFF_PID_LEVEL", "pid", "level"),
    KernelFact("OFF_PID_NUMBERS", "pid", "numbers"),
    KernelFact("SIZEOF_UPID", "upid", None),
    KernelFact("OFF_UPID_NR", "upid", "nr"),
    KernelFact("OFF_UPID_NS", "upid", "ns"),
    KernelFact("OFF_PIDNS_NS", "pid_namespace", "ns"),
    KernelFact("OFF_NS_COMMON_INUM", "ns_common", "inum"),
    KernelFact("OFF_TASK_CRED", "task_struct", "cred"),
    KernelFact("OFF_CRED_EUID", "cred", "euid"),
    KernelFact("OFF_CRED_EGID", "cred", "egid"),
    KernelFact("OFF_CRED_SUID", "cred", "suid"),
    KernelFact("OFF_CRED_SGID", "cred", "sgid"),
    KernelFact("OFF_CRED_CAP_EFFECTIVE", "cred", "cap_effective"),
)


@dataclass(frozen=True, slots=True)
class KernelOffsets:
    """The value of every KERNEL_FACTS row on one kernel, by macro name."""

    values: dict[str, int]

    @classmethod
    def from_btf(cls, btf: Btf) -> KernelOffsets:
        """Look up each fact; raises BtfError naming the first member this kernel lacks."""
        return cls(
            {
                f.macro: btf.struct_size(f.struct_name)
                if f.member is None
                else btf.member_offset(f.struct_name, f.member)
                for f in KERNEL_FACTS
            }
        )

    def __getitem__(self, macro: str) -> int:
        return self.values[macro]

    def cflags(self) -> list[str]:
        """The -D compiler flags the BPF source expects."""
        return [f"-D{macro}={value}" for macro, value in self.values.items()]
