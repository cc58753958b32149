"""What the key folder remembers about each ledger: its journal and its last signed head.

Both live in ``<key folder>/ledgers/`` under a name derived from the ledger's absolute path, so
someone who can write the runs folder cannot change them:

- the **journal** (``<id>.journal``): one ``"<seq> <hash>"`` line per record a qpipe writer
  appended, written just before the record itself (so it is never missing one; an entry whose
  record never arrived is an interrupted append). It tells a record qpipe wrote from a forged
  one, and is compacted at each checkpoint.
- the **head** (``<id>.head.json``): the last checkpoint (seq, hash), the byte length of the
  ledger up to and including it and the SHA-256 of those bytes, signed. It catches records cut
  from the end and any edit before the checkpoint, in one fast pass over the bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qpipe._canonical import canonical_json
from qpipe._fs import fsync_dir, write_bytes_atomic
from qpipe.errors import LedgerError
from qpipe.ledger.keys import ensure_key_dir, key_dir, load_key

__all__ = ["LedgerHead", "LedgerTrust", "hash_bytes", "prefix_digest"]

_BLOCK = 1 << 20
_KEYED: set[Path] = set()  # key folders whose key this process has made sure of


def hash_bytes(fd: int, start: int, end: int, h: Any = None) -> Any:
    """``h`` (a new SHA-256 by default) updated with bytes ``[start, end)`` of the file ``fd``."""
    h = h if h is not None else hashlib.sha256()
    offset = start
    while offset < end:
        chunk = os.pread(fd, min(_BLOCK, end - offset), offset)
        if not chunk:
            break
        h.update(chunk)
        offset += len(chunk)
    return h


def prefix_digest(fd: int, end: int) -> str:
    """SHA-256 hex of the first ``end`` bytes of the open file ``fd``."""
    return str(hash_bytes(fd, 0, end).hexdigest())


@dataclass(frozen=True, slots=True)
class LedgerHead:
    """The last signed checkpoint of one ledger, as the key folder keeps (and exports) it."""

    ledger: str
    seq: int  # the checkpoint record's seq
    hash: str  # its hash
    end: int  # bytes of the ledger up to and including the checkpoint line
    prefix_sha256: str  # SHA-256 of those bytes
    key_id: str
    public_key: str
    signature: str = ""

    def message(self) -> bytes:
        """The bytes the signature covers: every field but ``signature``, canonical."""
        body = {k: v for k, v in asdict(self).items() if k != "signature"}
        return canonical_json(body).encode("utf-8")

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class LedgerTrust:
    """The key folder's state for the ledger at ``ledger_path`` (journal and signed head)."""

    def __init__(self, ledger_path: Path, folder: Path | None = None) -> None:
        self.folder = folder or key_dir()
        absolute = Path(os.path.realpath(ledger_path.parent)) / ledger_path.name
        self.ledger = str(absolute)
        ident = hashlib.sha256(self.ledger.encode("utf-8")).hexdigest()[:32]
        self.journal_path = self.folder / "ledgers" / f"{ident}.journal"
        self.head_path = self.folder / "ledgers" / f"{ident}.head.json"

    def _ensure(self) -> None:
        ensure_key_dir(self.folder)
        ensure_key_dir(self.folder / "ledgers")

    def note(self, seq: int, digest: str) -> None:
        """Journal a record about to be appended, durably: the ledger fsyncs each record, so a
        journal line lost to a power cut would leave a durable record no writer vouches for, and
        the next run would refuse the ledger as forged.

        The first write also creates the signing key, so a ledger qpipe writes is signed from
        its first record on (never mistaken for an unsigned legacy ledger).
        """
        self._ensure()
        if self.folder not in _KEYED:
            load_key(self.folder)
            _KEYED.add(self.folder)
        created = not self.journal_path.exists()
        try:
            fd = os.open(
                self.journal_path,
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
            )
        except OSError as exc:
            msg = f"cannot write the ledger journal `{self.journal_path}`: {exc.strerror or exc}"
            raise LedgerError(msg) from None
        try:
            os.write(fd, f"{seq} {digest}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.journal_path.parent)

    def journal(self) -> dict[int, set[str]]:
        """``{seq: {hash, ...}}`` of every journaled record (stale intents included)."""
        entries: dict[int, set[str]] = {}
        try:
            text = self.journal_path.read_text(encoding="ascii", errors="replace")
        except OSError:
            return entries
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit() and len(parts[1]) == 64:
                entries.setdefault(int(parts[0]), set()).add(parts[1])
        return entries

    def compact(self, upto_seq: int) -> None:
        """Drop journal entries a checkpoint at ``upto_seq`` now vouches for."""
        keep = [
            f"{seq} {digest}\n"
            for seq, digests in sorted(self.journal().items())
            if seq > upto_seq
            for digest in sorted(digests)
        ]
        # atomic and durable: a compacted journal cut short by a power loss would drop entries
        # for records after the checkpoint (a journal that reverts whole only holds more: fine)
        with contextlib.suppress(OSError):
            write_bytes_atomic(self.journal_path, "".join(keep).encode("ascii"))

    def read_head(self) -> LedgerHead | None:
        """The last signed head, or None when this ledger was never signed here."""
        try:
            raw = self.head_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            msg = f"cannot read the ledger head `{self.head_path}`: {exc.strerror or exc}"
            raise LedgerError(msg) from None
        try:
            return LedgerHead(**json.loads(raw))
        except (ValueError, TypeError):
            msg = f"the ledger head `{self.head_path}` is corrupt; restore it or remove it"
            raise LedgerError(msg) from None

    def forget(self) -> LedgerHead | None:
        """Drop this ledger's head and journal (its owner removed or replaced it on purpose)."""
        head = self.read_head()
        for path in (self.head_path, self.journal_path):
            path.unlink(missing_ok=True)
        return head

    def write_head(self, head: LedgerHead) -> None:
        self._ensure()
        text = json.dumps(head.to_json(), indent=1, sort_keys=True) + "\n"
        write_bytes_atomic(self.head_path, text.encode("ascii"))
