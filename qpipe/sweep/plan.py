"""Chunks: which trials one task evaluates, sized from measured speed.

A :class:`Chunk` is a tiny description: its index and spans of *execution positions*
(see :meth:`qpipe.sweep.grid.Grid.trial_at`). A task expands it with the grid it already has,
so what travels per task does not grow with the number of trials or the universe.

:class:`ChunkPlanner` hands out chunks lazily. It starts small, and after each finished chunk
sets the next size so that a task takes about :attr:`ChunkPlanner.aim` seconds (inside the
0.2-2 s band: long enough that per-task overhead is small, short enough for a live progress
line, fine-grained retries and little lost work on an interrupt). Near the end it shrinks
chunks so that every worker still has work. Positions whose trial is already done (a resumed
sweep) are skipped.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["Chunk", "ChunkPlanner"]


@dataclass(frozen=True)
class Chunk:
    """Chunk ``index``: execution positions ``[start, stop)`` for each span."""

    index: int
    spans: tuple[tuple[int, int], ...]

    @property
    def size(self) -> int:
        return sum(stop - start for start, stop in self.spans)

    def positions(self) -> Iterator[int]:
        for start, stop in self.spans:
            yield from range(start, stop)


class ChunkPlanner:
    """Lazily cut positions ``0..n-1`` (minus the done ones) into chunks of adaptive size.

    Parameters
    ----------
    n
        Number of trials (execution positions).
    is_done
        ``position -> bool``: skip a position whose trial already has a result.
    first_index
        Index of the first chunk (a resumed sweep continues the numbering).
    workers
        Tasks that can run at once; the tail is cut so that each still gets work.
    aim, band
        Target seconds per task, and the band (low, high) a measured chunk should land in.
    initial, max_size
        Trials in the first chunk (before any measurement) and the largest chunk.
    """

    def __init__(
        self,
        n: int,
        is_done: Callable[[int], bool] | None = None,
        *,
        first_index: int = 0,
        workers: int = 1,
        aim: float = 0.6,
        band: tuple[float, float] = (0.2, 2.0),
        initial: int = 8,
        max_size: int = 4096,
    ) -> None:
        self.n = n
        self.is_done = is_done or (lambda _: False)
        self.next_index = first_index
        self.workers = max(1, workers)
        self.aim, self.band = aim, band
        self.size = max(1, initial)
        self.max_size = max_size
        self.seconds_per_trial: float | None = None
        self._measured = 0
        self._lock = threading.Lock()
        self._cursor = 0
        self.remaining = sum(1 for p in range(n) if not self.is_done(p)) if is_done else n

    def observe(self, trials: int, seconds: float) -> None:
        """A chunk of ``trials`` took ``seconds`` in its task: size the next ones from it.

        The first measurement is discarded when a later one exists (it pays for warm-up:
        imports, JIT compilation, the first panel map).
        """
        if trials <= 0 or seconds <= 0:
            return
        with self._lock:
            self._measured += 1
            rate = seconds / trials
            if self.seconds_per_trial is None or self._measured == 2:
                self.seconds_per_trial = rate
            else:  # smooth: one slow chunk (a busy machine) should not collapse the size
                self.seconds_per_trial = 0.7 * self.seconds_per_trial + 0.3 * rate
            wanted = self.aim / self.seconds_per_trial
            if self._measured == 1:  # warm-up may be in it: grow on it, never shrink
                wanted = max(wanted, self.size)
            grown = min(wanted, self.size * 8.0)  # grow at most 8x per measurement
            self.size = int(max(1, min(self.max_size, math.floor(grown))))

    def _next_size(self) -> int:
        tail = math.ceil(self.remaining / (2 * self.workers)) if self.workers > 1 else self.size
        return max(1, min(self.size, tail))

    def __iter__(self) -> Iterator[Chunk]:
        while True:
            chunk = self.take()
            if chunk is None:
                return
            yield chunk

    def take(self) -> Chunk | None:
        """The next chunk, or None when every position was handed out."""
        with self._lock:
            want = self._next_size()
            spans: list[tuple[int, int]] = []
            got = 0
            while got < want and self._cursor < self.n:
                p = self._cursor
                self._cursor += 1
                if self.is_done(p):
                    continue
                if spans and spans[-1][1] == p:
                    spans[-1] = (spans[-1][0], p + 1)
                else:
                    spans.append((p, p + 1))
                got += 1
            if not spans:
                return None
            self.remaining -= got
            chunk = Chunk(self.next_index, tuple(spans))
            self.next_index += 1
            return chunk
