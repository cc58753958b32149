"""The Arrow store.

Every frame qpipe keeps is an *uncompressed Arrow IPC file*, written atomically (temp file in the
store, fsync, rename) and named by the SHA-256 of its bytes: ``<root>/<aa>/<digest>.arrow``. What
flows through the rest of the system is a :class:`DatasetRef` (path, digest, schema, rows): a few
hundred bytes whatever the data size.

Opening a ref maps the file (``pyarrow.memory_map``) and wraps its buffers as a Polars frame
without reading them into heap memory. ``pl.read_ipc``/``pl.scan_ipc`` were measured to copy the
whole file in Polars 2.1, so they are not used here; ``tests/unit/store/test_arrow.py`` guards this.

Files are written in few, large record batches (opening costs ~0.1 ms per batch) and with a fixed
batch size, so equal frames give byte-identical files, hence equal digests, on every engine.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from qpipe._fs import atomic_writer, file_digest, fsync_dir, refuse_symlink, safe_subdir
from qpipe.errors import (
    DataFormatError,
    OutOfMemoryError,
    PathSafetyError,
    QpipeError,
    StoreError,
    size_text,
)
from qpipe.store.layout import ensure_marker, entry_files

__all__ = ["BATCH_ROWS", "ArrowStore", "DatasetRef", "open_ipc", "write_ipc_atomic"]

BATCH_ROWS = 1 << 22  # ~4M rows per record batch: few batches, bounded batch size


@dataclass(frozen=True, slots=True)
class DatasetRef:
    """A reference to one stored dataset. Small, picklable, immutable; never holds data."""

    path: str
    digest: str
    rows: int
    schema: tuple[tuple[str, str], ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.schema)

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "digest": self.digest,
            "rows": self.rows,
            "schema": [list(s) for s in self.schema],
        }


def _to_arrow(frame: pl.DataFrame) -> pa.Table:
    # One contiguous chunk per column, then fixed-size batches: the file layout depends only on
    # the data, never on how the frame happened to be chunked. Strings stay in Polars' own
    # layout (Arrow string_view); the default large_string would be copied again on every open.
    return frame.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())


def write_ipc_atomic(frame: pl.DataFrame, path: str | Path) -> str:
    """Write ``frame`` as an uncompressed Arrow IPC file at ``path`` atomically; return its digest.

    The bytes go to a temp file beside ``path``, are fsynced, then renamed over it, so a reader
    (or a crash) never sees a partial file under the final name.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(target) as raw:
            table = _to_arrow(frame)
            with ipc.new_file(pa.PythonFile(raw, mode="w"), table.schema) as writer:
                writer.write_table(table, max_chunksize=BATCH_ROWS)
        return file_digest(target)
    except OSError as exc:
        msg = f"cannot write `{target}`: {exc.strerror or exc}"
        raise StoreError(msg) from None
    except MemoryError as exc:  # pyarrow's ArrowMemoryError too: a memory limit, not a bug
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = (
            f"out of memory writing `{target}` ({frame.height:,} rows, about "
            f"{size_text(frame.estimated_size())} in memory; {text}); free memory or raise the "
            "memory limit (`ulimit -v`)"
        )
        raise OutOfMemoryError(msg) from None


def open_ipc(path: str | Path) -> pl.DataFrame:
    """Open an Arrow IPC file as a Polars frame over a memory map (zero-copy)."""
    p = Path(path)
    try:
        source = pa.memory_map(str(p), "r")
        table = ipc.open_file(source).read_all()
    except FileNotFoundError:
        msg = f"arrow file `{p}` does not exist"
        raise DataFormatError(msg) from None
    except (pa.ArrowInvalid, OSError, MemoryError) as exc:
        raise _open_error(p, exc) from None
    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _open_error(path: Path, exc: BaseException) -> QpipeError:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    enomem = isinstance(exc, OSError) and exc.errno == errno.ENOMEM
    if isinstance(exc, MemoryError) or enomem or "cannot allocate memory" in text.lower():
        try:
            needed = f"needs {size_text(path.stat().st_size)} of address space"
        except OSError:
            needed = "size unknown"
        msg = (
            f"out of memory mapping `{path}` ({needed}; {text}); free memory or raise the "
            "memory limit (`ulimit -v`)"
        )
        return OutOfMemoryError(msg)
    msg = f"`{path}` is not a readable Arrow IPC file: {text}"
    return DataFormatError(msg)


def _same_bytes(a: Path, b: Path, block: int = 1 << 22) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(block), fb.read(block)
            if x != y:
                return False
            if not x:
                return True


def _schema_of(frame: pl.DataFrame) -> tuple[tuple[str, str], ...]:
    return tuple((name, str(dtype)) for name, dtype in frame.schema.items())


class ArrowStore:
    """A folder of content-addressed Arrow IPC files.

    Parameters
    ----------
    root
        The store folder; created if missing, and marked as a store (``.qpipe-store``). A
        symlink, or a folder that already holds other files, is refused. Entries never leave
        it: names are digests, and a ref whose path resolves outside ``root`` (``..``,
        symlinks) is refused.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()
        refuse_symlink(self.root, "store")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"cannot create store `{self.root}`: {exc.strerror or exc}"
            raise StoreError(msg) from None
        refuse_symlink(self.root, "store")  # also when it appeared meanwhile
        ensure_marker(self.root)

    def __repr__(self) -> str:
        return f"ArrowStore({str(self.root)!r})"

    def _entry_path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.arrow"

    def subfolder(self, name: str) -> Path:
        """The store's own folder ``name`` (created if missing): never a symlink, so nothing
        written into it can land outside the store.

        Raises
        ------
        PathSafetyError
            ``name`` is not a plain folder name, or the folder is a symlink or not a folder.
        """
        return safe_subdir(self.root, name, "store folder")

    def staging_file(self, prefix: str = "put.") -> Path:
        """A fresh temp file inside the store (same file system, so adopting it is a rename)."""
        staging = self.subfolder("tmp")
        try:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=".arrow", dir=staging)
        except OSError as exc:
            msg = f"cannot write in store `{self.root}`: {exc.strerror or exc}"
            raise StoreError(msg) from None
        os.close(fd)
        return Path(name)

    def adopt(self, tmp: Path, digest: str | None = None) -> DatasetRef:
        """Move a finished Arrow IPC file (from :meth:`staging_file`) to its content address.

        The entry becomes read-only (run folders hard-link it). An existing entry under the
        same name is never trusted blindly: see :meth:`_keep_existing`. A symlink squatting on
        the name is replaced, never followed.
        """
        try:
            digest = digest or file_digest(tmp)
            final = self.subfolder(digest[:2]) / f"{digest}.arrow"
            if self._keep_existing(final, tmp):
                tmp.unlink()
            else:
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
                fsync_dir(final.parent)
        except OSError as exc:
            reason = exc.strerror or exc
            msg = f"cannot write store entry for `{tmp.name}` in `{self.root}`: {reason}"
            raise StoreError(msg) from None
        finally:
            tmp.unlink(missing_ok=True)
        ref = self.ref_for(digest)
        if ref is None:
            msg = f"store `{self.root}` did not accept the entry `{final}`"
            raise StoreError(msg)
        return ref

    @staticmethod
    def _keep_existing(final: Path, fresh: Path) -> bool:
        """Whether the entry at ``final`` may stay instead of the ``fresh`` file (same digest).

        A damaged entry must never be reused, and ``fresh`` was just hashed, so:

        - no entry, a symlink or any non-file: no (``fresh`` takes the name);
        - an entry no run folder links to (one link): no; renaming ``fresh`` over it costs the
          same as deleting ``fresh`` and reads nothing, so the big intermediates (prices,
          features) are replaced, never checked;
        - an entry run folders share (several links, the small equity/weights/trades
          outputs): only if its size and every byte equal ``fresh``'s, so those links keep
          sharing one file. A damaged one is replaced; earlier run folders keep theirs.
        """
        try:
            st = os.lstat(final)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_nlink < 2:
            return False
        return st.st_size == os.stat(fresh).st_size and _same_bytes(final, fresh)

    def put(self, frame: pl.DataFrame | pl.LazyFrame) -> DatasetRef:
        """Write a frame (collecting a lazy one) and return its ref. Idempotent for equal data."""
        if isinstance(frame, pl.LazyFrame):
            frame = frame.collect()
        tmp = self.staging_file()
        try:
            digest = write_ipc_atomic(frame, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self.adopt(tmp, digest)

    def _checked_path(self, ref: DatasetRef) -> Path:
        p = Path(ref.path)
        if p.is_symlink():
            msg = f"store entry `{p}` is a symlink; the store never follows links"
            raise PathSafetyError(msg)
        resolved = p.resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            msg = f"ref path `{p}` is outside the store `{self.root}`"
            raise PathSafetyError(msg)
        return resolved

    def open(self, ref: DatasetRef) -> pl.DataFrame:
        """The stored frame, memory-mapped (no heap copy)."""
        return open_ipc(self._checked_path(ref))

    def scan(self, ref: DatasetRef) -> pl.LazyFrame:
        """The stored frame as a ``LazyFrame`` over the memory map."""
        return self.open(ref).lazy()

    def ref_for(self, digest: str) -> DatasetRef | None:
        """Rebuild the ref of an existing entry from its digest (or None)."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            return None  # never turn an arbitrary string into a path
        p = self._entry_path(digest)
        if not p.is_file() or p.is_symlink() or p.parent.is_symlink():
            return None
        frame = open_ipc(p)
        return DatasetRef(str(p), digest, frame.height, _schema_of(frame))

    def verify(self, ref: DatasetRef) -> None:
        """Raise :class:`StoreError` unless the file still hashes to ``ref.digest``."""
        p = self._checked_path(ref)
        if not p.exists():
            msg = f"store entry `{p}` is missing"
            raise StoreError(msg)
        actual = file_digest(p)
        if actual != ref.digest:
            msg = f"store entry `{p}` is corrupt: digest {actual[:12]} != {ref.digest[:12]}"
            raise StoreError(msg)

    def entries(self) -> list[Path]:
        """Every entry file (not temp files, never through a symlink)."""
        return entry_files(self.root)

    def digest_of(self, path: Path) -> str:
        return file_digest(path)
