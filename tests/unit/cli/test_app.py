"""The CLI's one-line errors and exit codes."""

from __future__ import annotations

import pytest

from qpipe.cli import EXIT_BUG, EXIT_USER_ERROR, guarded
from qpipe.cli._app import EXIT_TERMINATED
from qpipe.errors import ConfigError, Terminated


def _raising(exc: BaseException):
    def fn() -> int:
        raise exc

    return fn


@pytest.mark.parametrize(
    ("exc", "code", "start"),
    [
        (
            ConfigError("`backtest.cost_bps` must be >= 0"),
            EXIT_USER_ERROR,
            "qpipe: error: `backtest",
        ),
        (MemoryError(), EXIT_USER_ERROR, "qpipe: error: out of memory"),
        (Terminated("terminated (SIGTERM)"), EXIT_TERMINATED, "qpipe: error: terminated"),
        (ZeroDivisionError("x"), EXIT_BUG, "qpipe: error: internal error ZeroDivisionError"),
    ],
)
def test_each_failure_is_one_line_with_its_exit_code(capsys, exc, code, start) -> None:
    assert guarded(_raising(exc), debug=False) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(start), err


def test_debug_shows_the_traceback() -> None:
    with pytest.raises(MemoryError):
        guarded(_raising(MemoryError()), debug=True)
