"""The compiler's mappings are found in a /proc/PID/smaps text, and releasing them is harmless."""

from __future__ import annotations

from pathlib import Path

from claude_audit.sensor import LibraryMapping, compiler_mappings, release_compiler_memory

SMAPS = b"""\
55d0c0a00000-55d0c0a2a000 r--p 00000000 fe:01 1311 /usr/bin/python3.11
Rss:                 168 kB
Anonymous:             0 kB
7f1a40000000-7f1a40021000 rw-p 00000000 00:00 0
Anonymous:           132 kB
7f1a50000000-7f1a5054e000 r--p 00000000 fe:01 2210 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Rss:                4000 kB
Anonymous:             0 kB
7f1a5054e000-7f1a53a8f000 r-xp 0054e000 fe:01 2210 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Anonymous:             0 kB
7f1a53a8f000-7f1a53c00000 r--p 0358f000 fe:01 2210 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Anonymous:          1460 kB
7f1a53c00000-7f1a53c20000 rw-p 03700000 fe:01 2210 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Anonymous:            80 kB
7f1a60000000-7f1a61c00000 r-xp 00000000 fe:01 2305 /usr/lib/llvm-14/lib/libclang-cpp.so.14
Rss:                 900 kB
7f1a62000000-7f1a62100000 r-xp 00000000 fe:01 2400 /usr/lib/x86_64-linux-gnu/libbcc.so.0.26.0
Anonymous:             0 kB
7ffc8a5e1000-7ffc8a602000 rw-p 00000000 00:00 0 [stack]
"""


def test_only_llvm_and_clang_mappings_are_chosen() -> None:
    """Every mapping of libLLVM and libclang-cpp, in order; python, libbcc, the heap and the stack are not."""
    assert [(m.start, m.end) for m in compiler_mappings(SMAPS)] == [
        (0x7F1A50000000, 0x7F1A5054E000),
        (0x7F1A5054E000, 0x7F1A53A8F000),
        (0x7F1A53A8F000, 0x7F1A53C00000),
        (0x7F1A53C00000, 0x7F1A53C20000),
        (0x7F1A60000000, 0x7F1A61C00000),
    ]


def test_only_unwritten_read_only_mappings_may_be_dropped() -> None:
    """Code and read-only data may be dropped; relocated (written) pages, writable data, and a mapping
    whose Anonymous line is missing must keep their content."""
    got = [m.only_file_pages for m in compiler_mappings(SMAPS)]
    assert got == [True, True, False, False, False]
    assert LibraryMapping(0, 4096, writable=False, anonymous_kb=-1).only_file_pages is False


def test_anonymous_and_short_lines_are_ignored() -> None:
    """Lines without a path (anonymous memory) or cut short never count as compiler mappings."""
    assert compiler_mappings(b"7f1a40000000-7f1a40021000 rw-p 00000000 00:00 0\nbroken\n\n") == []


def test_release_survives_mappings_that_are_gone_and_a_missing_smaps_file(tmp_path: Path) -> None:
    """A listed mapping that no longer exists is refused by the kernel and not counted; an unreadable smaps
    file releases nothing; neither raises (the daemon calls this once at start, best effort)."""
    smaps = tmp_path / "smaps"
    # The top of the address space below the kernel's: never mapped in a user process.
    smaps.write_bytes(
        b"7ffffffe0000-7ffffffff000 r-xp 00000000 fe:01 2210 /usr/lib/libLLVM-14.so.1\nAnonymous: 0 kB\n"
    )
    assert release_compiler_memory(smaps) == 0
    assert release_compiler_memory(tmp_path / "missing") == 0
