"""What every command shares: exit codes, the one-line error, the consoles.

Every failure a user can cause is a :class:`~qpipe.errors.QpipeError`; it is printed as one line
(``qpipe: error: ...``) with exit code 1 and no traceback unless ``--debug``. Ctrl-C (and SIGTERM)
exits 130 after the run is recorded as failed. Anything else is a bug: one line, exit 3, and
``--debug`` shows the traceback. A reader that closes the pipe (``| head``) only loses output
(:mod:`qpipe.cli._pipes`).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

from rich.console import Console

from qpipe.cli._pipes import pipe_safe_streams
from qpipe.errors import QpipeError, Terminated

__all__ = [
    "EXIT_BUG",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_USER_ERROR",
    "common_options",
    "err_console",
    "fail",
    "guarded",
    "out_console",
]

EXIT_USER_ERROR = 1
EXIT_BUG = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report it


def err_console(*, quiet: bool = False) -> Console:
    """Progress and notes go to stderr, so stdout stays for results."""
    return Console(stderr=True, quiet=quiet, highlight=False)


def out_console(*, wide: bool = False) -> Console:
    """Results on stdout; piped or captured output is not squeezed into 80 columns."""
    console = Console(highlight=False)
    if wide and not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, 160))
    return console


def fail(message: str) -> None:
    print(f"qpipe: error: {message}", file=sys.stderr)


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    msg = "terminated (SIGTERM)"
    raise Terminated(msg)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM unwinds like Ctrl-C (so the run is recorded as failed).

    Installed around the command only (never at import), and only from the main thread.
    """
    try:
        old = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def guarded(fn: Callable[[], int], *, debug: bool) -> int:
    """Run ``fn`` turning errors into one line and an exit code (tracebacks only with --debug)."""
    try:
        with pipe_safe_streams(), sigterm_as_interrupt():
            return fn()
    except Terminated:
        if debug:
            raise
        fail("terminated (SIGTERM); the run is recorded as failed in the ledger")
        return EXIT_TERMINATED
    except QpipeError as exc:
        if debug:
            raise
        fail(first_line(exc))
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        fail("interrupted; the run is recorded as failed in the ledger")
        return EXIT_INTERRUPTED
    except MemoryError as exc:  # the machine's limit, not a bug in qpipe nor the user's input
        if debug:
            raise
        detail = f" ({first_line(exc)})" if str(exc) else ""
        fail(f"out of memory{detail}; free memory, raise the limit, or use a smaller input")
        return EXIT_USER_ERROR
    except Exception as exc:
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        fail(
            f"internal error {type(exc).__name__}: {first} (re-run with --debug for the traceback)"
        )
        return EXIT_BUG


def common_options() -> argparse.ArgumentParser:
    """Options every ``python -m qpipe`` command takes; paths default as a run's do."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="FILE.toml", help="config whose [run]/[store] paths apply"
    )
    common.add_argument("--ledger", metavar="FILE", help="ledger file (default: <out>/audit.jsonl)")
    common.add_argument("--out", metavar="DIR", help="runs root (default: runs)")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    return common
