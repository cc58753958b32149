"""``signals_blocked`` holds SIGINT/SIGTERM even when the OS hands them to another thread."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from qpipe.runs.lifecycle import signals_blocked


class _Killer:
    """A thread started *before* the block (like Polars' and numba's pools), so its signal mask
    is not the block's: the OS may deliver the process signal to it."""

    def __init__(self, signum: int) -> None:
        self.go = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(signum,), daemon=True)
        self.thread.start()

    def _run(self, signum: int) -> None:
        self.go.wait()
        os.kill(os.getpid(), signum)
        self.done.set()

    def fire(self) -> None:
        self.go.set()
        self.done.wait()


def test_a_signal_inside_the_block_is_held_and_raised_on_exit():
    reached_the_end = False
    killer = _Killer(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), signals_blocked():
        killer.fire()
        for _ in range(100):  # give Python every chance to run a handler here
            time.sleep(0.001)
        reached_the_end = True
    assert reached_the_end  # the record would have been written completely


def test_handlers_are_restored_and_nothing_is_raised_without_a_signal():
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    with signals_blocked():
        pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_held_sigterm_reaches_the_handler_that_was_installed(monkeypatch):
    seen: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append(signum))
    killer = _Killer(signal.SIGTERM)
    try:
        with signals_blocked():
            killer.fire()
            time.sleep(0.05)
            assert seen == []  # held
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)
