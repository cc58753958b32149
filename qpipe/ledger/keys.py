"""The ledger's signing key and its folder, kept outside the runs folder.

The key folder is ``$QPIPE_KEY_DIR`` if set, else ``$XDG_STATE_HOME/qpipe`` or
``~/.local/state/qpipe``. It holds the user's Ed25519 key (``ledger_ed25519.key``, mode 0600,
created on first use) and, per ledger, its last signed head and its journal
(:mod:`qpipe.ledger.trust`). Whoever can write the runs folder but not this folder cannot sign.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qpipe._fs import fsync_dir
from qpipe.errors import LedgerError

__all__ = ["KEY_DIR_ENV", "SigningKey", "key_dir", "load_key", "public_key_id", "verify_signature"]

KEY_DIR_ENV = "QPIPE_KEY_DIR"
_KEY_FILE = "ledger_ed25519.key"
_PUB_FILE = "ledger_ed25519.pub"


def key_dir() -> Path:
    """The key folder: ``$QPIPE_KEY_DIR``, else the user's state folder ``.../qpipe``."""
    named = os.environ.get(KEY_DIR_ENV)
    if named:
        return Path(named).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "qpipe"


def public_key_id(public_hex: str) -> str:
    """A short name for a public key: the first 16 hex of its SHA-256."""
    return hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    """The user's Ed25519 key: ``sign`` bytes; ``public_hex`` and ``key_id`` name it."""

    _private: Any
    public_hex: str

    @property
    def key_id(self) -> str:
        return public_key_id(self.public_hex)

    def sign(self, message: bytes) -> str:
        """The hex Ed25519 signature of ``message``."""
        return str(self._private.sign(message).hex())


def verify_signature(public_hex: str, message: bytes, signature_hex: str) -> bool:
    """True when ``signature_hex`` is a valid Ed25519 signature of ``message``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _private_from(seed: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed)


def _public_hex(private: Any) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return str(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex())


def _create_key(path: Path) -> None:
    """Write a new random seed; it appears whole or not at all, and a concurrent creator wins.

    The seed goes to a private temp file that is then hard-linked to ``path`` (which fails if
    another process made the key first: we read theirs).
    """
    seed = os.urandom(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{seed[:4].hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, seed.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def ensure_key_dir(folder: Path) -> Path:
    """Create the key folder (mode 0700) if needed; a one-line LedgerError if it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        msg = (
            f"cannot create the ledger key folder `{folder}`: {exc.strerror or exc} "
            f"(set `{KEY_DIR_ENV}` to a writable folder outside the runs folder)"
        )
        raise LedgerError(msg) from None
    return folder


def load_key(folder: Path | None = None, *, create: bool = True) -> SigningKey | None:
    """The signing key in ``folder`` (default :func:`key_dir`); created when missing.

    With ``create=False`` a missing key gives None. A key file that is not a 32-byte hex seed,
    or is a symbolic link, is a LedgerError (never silently replaced).
    """
    folder = folder or key_dir()
    path = folder / _KEY_FILE
    if not path.exists() and not path.is_symlink():
        if not create:
            return None
        _create_key(ensure_key_dir(folder) / _KEY_FILE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            seed = bytes.fromhex(f.read().decode("ascii").strip())
        if len(seed) != 32:
            raise ValueError
    except (OSError, ValueError, UnicodeDecodeError):
        msg = f"ledger key `{path}` is unreadable or not an Ed25519 seed; restore it from a backup"
        raise LedgerError(msg) from None
    private = _private_from(seed)
    key = SigningKey(private, _public_hex(private))
    _write_public(folder / _PUB_FILE, key.public_hex)
    return key


def _write_public(path: Path, public_hex: str) -> None:
    """Keep the public key beside the key, for people who verify elsewhere (best effort)."""
    with contextlib.suppress(OSError):
        if path.is_symlink() or (path.exists() and path.read_text().strip() == public_hex):
            return
        path.write_text(public_hex + "\n")
