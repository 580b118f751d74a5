"""Builds small BTF blobs by hand for the tests of btf.py and kernel.py."""

from __future__ import annotations

import struct

from claude_audit.btf import KIND_ENUM, KIND_FUNC_PROTO


class Builder:
    """Builds a tiny BTF blob by hand, the way the kernel lays it out."""

    def __init__(self) -> None:
        self.types = b""
        self.strs = b"\0"
        self.count = 0

    def name(self, s: str) -> int:
        if not s:
            return 0
        off = len(self.strs)
        self.strs += s.encode() + b"\0"
        return off

    def add(
        self,
        kind: int,
        name: str,
        size_or_type: int,
        *,
        members: tuple[tuple[str, int, int], ...] | list[tuple[str, int, int]] = (),
        extra: bytes = b"",
        kind_flag: bool = False,
    ) -> int:
        info = (kind << 24) | len(members) | (1 << 31 if kind_flag else 0)
        self.types += struct.pack("<III", self.name(name), info, size_or_type) + extra
        for mname, mtype, bits in members:
            self.types += struct.pack("<III", self.name(mname), mtype, bits)
        self.count += 1
        return self.count

    def blob(self) -> bytes:
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strs))
        return hdr + self.types + self.strs

    def enum(self, name: str, values: list[str]) -> int:
        """A 4-byte enum whose entries are numbered from 0."""
        extra = b"".join(struct.pack("<Ii", self.name(v), i) for i, v in enumerate(values))
        info = (KIND_ENUM << 24) | len(values)
        self.types += struct.pack("<III", self.name(name), info, 4) + extra
        self.count += 1
        return self.count

    def func_proto(self, params: list[int]) -> int:
        """A void function prototype taking parameters of the given type ids."""
        extra = b"".join(struct.pack("<II", 0, t) for t in params)
        self.types += struct.pack("<III", 0, (KIND_FUNC_PROTO << 24) | len(params), 0) + extra
        self.count += 1
        return self.count
