"""Output to a reader that went away (``runner.py | head -1``) must not fail the work.

A run's results are in its folder and the ledger; the terminal only shows them. When the
reader of stdout or stderr closes the pipe, the next write raises ``BrokenPipeError`` (and
rich turns that into ``SystemExit(1)``), which used to fail a finished run with exit 3, or
record a running one as failed. While a command runs, both streams are wrapped: the first
broken pipe points that stream's descriptor at ``/dev/null`` and later output is dropped, so
the command ends with its own exit code.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["PipeSafe", "pipe_safe_streams"]


class PipeSafe(io.TextIOBase):
    """A text stream that quietly stops writing once its pipe is broken."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self) -> None:
        self.broken = True
        # later writes and the interpreter's final flush land in /dev/null, not a traceback
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except ValueError:  # the wrapped stream was closed (a library kept a reference)
            return False

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.stream, "closed", False))

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", None) or "utf-8"

    def __getattr__(self, name: str) -> Any:  # errors, buffer, ...: the wrapped stream's
        return getattr(self.stream, name)


@contextlib.contextmanager
def pipe_safe_streams() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` wrapped in :class:`PipeSafe` while the block runs."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PipeSafe(out), PipeSafe(err)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
