"""Forward-secure sealing of chain checkpoints (opt-in: `[integrity] key_file`). Sinks stage.

Every checkpoint is sealed with HMAC-SHA256 under the key of its epoch, and each checkpoint is its own
epoch: sealing epoch e uses key_e, then the key file is replaced by key_{e+1} = SHA-256(key_e) before
the checkpoint is written, so the key that sealed a checkpoint is gone from the host once the checkpoint
exists. Whoever takes the host later holds key_E for the current epoch E only: they cannot seal any
epoch before E, and since every epoch from 0 on must be present in the log exactly once, a cut or a
rewritten past shows as a missing or unsealable epoch. The verifier derives every key from key_0, which
`claude-audit integrity setup` prints once for the admin to keep off the host.

The key file (JSON, mode 0600): {"version": 1, "epoch": e, "key": hex(key_e), "fingerprint": F}, where
F (SHA-256 of key_0, first 16 hex digits) names the verification key without revealing it.

Pure except `Sealer.load`, `Sealer.seal` (which rewrites the key file) and `setup`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

KEY_BYTES: Final = 32
KEY_FILE_MAX_BYTES: Final = 4096


class SealError(Exception):
    """The key file cannot be used."""


def next_key(key: bytes) -> bytes:
    """key_{e+1} from key_e: one way."""
    return hashlib.sha256(b"claude-audit epoch key\0" + key).digest()


def fingerprint(key0: bytes) -> str:
    """Names the verification key (and so the sealed log it belongs to) without revealing it."""
    return hashlib.sha256(b"claude-audit fingerprint\0" + key0).hexdigest()[:16]


def seal_message(segment: str, seq: int, head: str, epoch: int, *, final: bool) -> bytes:
    """What a checkpoint's MAC covers: its place in the chain, head, epoch and whether it ends a run."""
    return f"claude-audit-seal-v1\0{segment}\0{seq}\0{head}\0{epoch}\0{int(final)}".encode()


def mac(key: bytes, segment: str, seq: int, head: str, *, epoch: int, final: bool) -> str:
    """The hex HMAC-SHA256 of a checkpoint under the key of its epoch."""
    return hmac.new(key, seal_message(segment, seq, head, epoch, final=final), hashlib.sha256).hexdigest()


@dataclass
class KeyState:
    """The key file's content: the current epoch and its key, and the fingerprint of key_0."""

    epoch: int
    key: bytes
    fingerprint: str

    def to_json(self) -> str:
        return json.dumps(
            {"version": 1, "epoch": self.epoch, "key": self.key.hex(), "fingerprint": self.fingerprint}
        )

    @staticmethod
    def from_json(data: bytes) -> KeyState:
        try:
            d = json.loads(data)
            key = bytes.fromhex(d["key"])
            state = KeyState(int(d["epoch"]), key, str(d["fingerprint"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SealError(f"malformed key file: {exc}") from None
        if len(key) != KEY_BYTES or state.epoch < 0 or d.get("version") != 1:
            raise SealError("malformed key file: wrong key size, epoch or version")
        return state


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def setup(path: Path, *, force: bool = False) -> bytes:
    """Create a fresh key file at epoch 0; returns key_0 (the verification key) for the admin. I/O."""
    if path.exists() and not force:
        raise SealError(f"{path} exists (a new key starts a new sealed log; use --force to replace it)")
    key0 = secrets.token_bytes(KEY_BYTES)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_atomic(path, KeyState(0, key0, fingerprint(key0)).to_json())
    return key0


class Sealer:
    """Seals checkpoints with the key file's current epoch key and moves the file one epoch on."""

    def __init__(self, path: Path, state: KeyState) -> None:
        self.path = path
        self.state = state
        self.failed = 0

    @staticmethod
    def load(path: Path) -> Sealer:
        """Open the key file (regular, not a symlink, owned by us, not readable by others). I/O."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise SealError(f"{path}: cannot open: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            if not (st.st_mode & 0o170000 == 0o100000):
                raise SealError(f"{path}: not a regular file")
            if st.st_uid != os.geteuid() or st.st_mode & 0o077:
                raise SealError(f"{path}: must be owned by uid {os.geteuid()} with mode 0600")
            data = os.read(fd, KEY_FILE_MAX_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > KEY_FILE_MAX_BYTES:
            raise SealError(f"{path}: too large for a key file")
        return Sealer(path, KeyState.from_json(data))

    def seal(self, segment: str, seq: int, head: str, *, final: bool) -> dict[str, Any]:
        """Seal one checkpoint with the current epoch, then erase that epoch's key (the file moves on)."""
        st = self.state
        sealed = {
            "epoch": st.epoch,
            "mac": mac(st.key, segment, seq, head, epoch=st.epoch, final=final),
            "fingerprint": st.fingerprint,
        }
        self.state = KeyState(st.epoch + 1, next_key(st.key), st.fingerprint)
        try:
            _write_atomic(self.path, self.state.to_json())
        except OSError:
            # The checkpoint is still written; the old key stays on disk until the next seal succeeds,
            # which weakens forward security for this epoch only. Counted and shown in status.
            self.failed += 1
        return sealed
