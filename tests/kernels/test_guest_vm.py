"""Tests for guest_vm.py's pure parts: choosing the kernel package and writing the initramfs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from guest_vm import KERNELS, GuestError, KernelFiles, build_initramfs, newest_package

SEARCH = """\
linux-image-6.1.0-9-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.1.0-56-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.1.0-56-rt-amd64-unsigned - Linux 6.1 for 64-bit PCs, PREEMPT_RT
linux-image-6.1.0-56-amd64 - Linux 6.1 for 64-bit PCs (signed)
linux-image-6.12.117+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.99+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.117+deb12-rt-amd64-unsigned - Linux 6.12 for 64-bit PCs, PREEMPT_RT
"""


def test_newest_package_per_kernel() -> None:
    """Each pattern picks its own build (not the rt or signed one), newest by number, not by text."""
    chosen = {k.name: newest_package(k.package_pattern, SEARCH) for k in KERNELS}
    assert chosen == {
        "debian12-6.1": "linux-image-6.1.0-56-amd64-unsigned",
        "debian12-6.1-rt": "linux-image-6.1.0-56-rt-amd64-unsigned",
        "debian12-6.12": "linux-image-6.12.117+deb12-amd64-unsigned",
    }


def test_no_matching_package_is_an_error() -> None:
    """Apt lists without the kernel say so, naming the pattern."""
    with pytest.raises(GuestError, match="no package matching"):
        newest_package(KERNELS[0].package_pattern, "linux-image-5.10.0-1-amd64 - old\n")


def test_initramfs_is_a_cpio_that_cpio_reads(tmp_path: Path) -> None:
    """The initramfs lists /init, busybox, the modules (xz ones decompressed) and their load order."""
    import lzma

    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "9p.ko").write_bytes(b"\x7fELF plain")
    (mods / "overlay.ko.xz").write_bytes(lzma.compress(b"\x7fELF packed"))
    kernel = KernelFiles(
        "6.1.0-test",
        tmp_path / "vmlinuz",
        {"9p": mods / "9p.ko", "overlay": mods / "overlay.ko.xz"},
        tmp_path / "none",
    )
    out = tmp_path / "initrd.cpio"
    build_initramfs(kernel, out)
    names = subprocess.run(["cpio", "-it"], input=out.read_bytes(), capture_output=True, check=True).stdout
    assert {"init", "bin/busybox", "modules/9p.ko", "modules/overlay.ko", "modules.order"} <= set(
        names.decode().split()
    )
    extract = tmp_path / "x"
    extract.mkdir()
    subprocess.run(["cpio", "-id"], input=out.read_bytes(), cwd=extract, capture_output=True, check=True)
    assert (extract / "modules" / "overlay.ko").read_bytes() == b"\x7fELF packed"
    assert (extract / "modules.order").read_text().split() == ["9p", "overlay"]
