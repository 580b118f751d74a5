"""sealing: one-way epoch keys, the key file's checks, and the key erased as each epoch is used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from claude_audit import sealing
from claude_audit.sealing import KeyState, Sealer, SealError


def test_setup_then_each_seal_moves_the_file_one_epoch(tmp_path: Path) -> None:
    """setup writes epoch 0 (mode 0600); each seal uses key_e and leaves only key_{e+1} in the file."""
    kf = tmp_path / "k" / "seal.key"
    key0 = sealing.setup(kf)
    assert os.stat(kf).st_mode & 0o777 == 0o600
    sealer = Sealer.load(kf)
    first = sealer.seal("s", 3, "h" * 64, final=False)
    assert first["epoch"] == 0
    assert first["mac"] == sealing.mac(key0, "s", 3, "h" * 64, epoch=0, final=False)
    on_disk = KeyState.from_json(kf.read_bytes())
    assert (on_disk.epoch, on_disk.key) == (1, sealing.next_key(key0))
    assert key0.hex() not in kf.read_text()
    second = sealer.seal("s", 5, "i" * 64, final=True)
    assert second["mac"] == sealing.mac(sealing.next_key(key0), "s", 5, "i" * 64, epoch=1, final=True)
    assert second["fingerprint"] == sealing.fingerprint(key0)


def test_setup_refuses_to_replace_a_key(tmp_path: Path) -> None:
    """A second setup would silently start a new sealed history: refused without force."""
    kf = tmp_path / "seal.key"
    sealing.setup(kf)
    with pytest.raises(SealError, match="exists"):
        sealing.setup(kf)
    assert sealing.setup(kf, force=True)


def test_key_file_must_be_private(tmp_path: Path) -> None:
    """A key file others can read, a symlink, or garbage is refused."""
    kf = tmp_path / "seal.key"
    sealing.setup(kf)
    os.chmod(kf, 0o644)
    with pytest.raises(SealError, match="0600"):
        Sealer.load(kf)
    os.chmod(kf, 0o600)
    link = tmp_path / "link.key"
    link.symlink_to(kf)
    with pytest.raises(SealError, match="cannot open"):
        Sealer.load(link)
    kf.write_text("{}")
    with pytest.raises(SealError, match="malformed"):
        Sealer.load(kf)


def test_final_flag_and_epoch_are_covered() -> None:
    """The MAC changes with the epoch and the final flag, so neither can be edited."""
    k = b"k" * 32
    base = sealing.mac(k, "s", 1, "h", epoch=2, final=False)
    assert base != sealing.mac(k, "s", 1, "h", epoch=3, final=False)
    assert base != sealing.mac(k, "s", 1, "h", epoch=2, final=True)
