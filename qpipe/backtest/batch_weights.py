"""Target weights for many trials: signals once per signal set, weights once per weight set.

A sweep's trials differ in a few keys. The features and signals depend only on the strategy's
feature and signal params (:func:`signal_key`), the weights on those plus ``[allocation]``
(:func:`weights_key`), and the backtest keys (costs, window, ...) only on the weights. So
:class:`SignalSet` runs the strategy's features and signal stages once (the same Polars stages a
run uses), and :meth:`SignalSet.weights` turns them into dense target weights per weight set:

- ``top_n`` without volatility targeting is done in numpy from the dense signal matrix: per
  rebalance date the candidates (finite signals) ordered by (signal descending, symbol), the
  first ``top_n`` at ``1 / count``, clipped to ``max_weight``, scaled down if the ordered sum
  exceeds ``gross_leverage`` -- the operations of :func:`qpipe.stages.allocation.allocate` in
  the same order, so the weights are the same floats (``tests/unit/backtest`` compares them);
- every other scheme runs the allocation stage itself on the cached frames.

Dense weights are ``(rows, matrix)``: the panel rows of the rebalance dates and one row of
weights per rebalance date (0 for a symbol without weight), as :func:`simulate` builds them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from qpipe.backtest.panel import Panel
from qpipe.config import ThreadSafeConfig
from qpipe.stages.allocation import LIMIT_SLACK, rebalance_dates
from qpipe.strategy import build_strategy

__all__ = ["SignalSet", "signal_key", "weights_key"]


def _step_key(step: Any) -> str:
    return f"{step.stage.name}:{sorted(step.params.items())!r}"


def signal_key(cfg: ThreadSafeConfig) -> str:
    """What the features and signals depend on (trials with equal keys share them)."""
    feat, sig, _ = build_strategy(cfg).steps
    return f"{_step_key(feat)}|{_step_key(sig)}"


def weights_key(cfg: ThreadSafeConfig) -> str:
    """What the target weights depend on (trials with equal keys share them)."""
    alloc = build_strategy(cfg).steps[2]
    return f"{signal_key(cfg)}|{_step_key(alloc)}"


class SignalSet:
    """The features and signals of one signal set over a panel, and weights derived from them."""

    def __init__(self, cfg: ThreadSafeConfig, prices: pl.DataFrame, panel: Panel) -> None:
        self.panel = panel
        pipe = build_strategy(cfg)
        env = pipe.until("signals").apply_lazy({"prices": prices.lazy()})
        self.features = env["features"].collect()
        self.signals = env["signals"].collect()
        self._dense: np.ndarray | None = None
        self._reb: dict[tuple[str, int], np.ndarray] = {}

    def dense_signals(self) -> np.ndarray:
        """Signals as a (dates x symbols) matrix over the panel; NaN = null or no row."""
        if self._dense is None:
            p = self.panel
            s = self.signals
            rows = np.searchsorted(p.days, s["date"].cast(pl.Int32).to_numpy().astype(np.int64))
            cols = s["symbol"].cast(pl.Enum(p.symbols)).to_physical().to_numpy()
            out = np.full(p.shape, np.nan)
            out[rows, cols] = s["signal"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            self._dense = out
        return self._dense

    def rebalance_rows(self, rule: str, every_k: int) -> np.ndarray:
        """Panel rows of the rebalance dates (the allocation stage's own schedule)."""
        key = (rule, every_k)
        if key not in self._reb:
            dates = rebalance_dates(self.signals.lazy().select("date"), rule, every_k)  # type: ignore[arg-type]
            days = dates.collect()["date"].cast(pl.Int32).to_numpy().astype(np.int64)
            self._reb[key] = np.searchsorted(self.panel.days, days)
        return self._reb[key]

    def weights(self, cfg: ThreadSafeConfig) -> tuple[np.ndarray, np.ndarray]:
        """Dense target weights (rebalance rows, one weight row each) for ``cfg``."""
        a = cfg.allocation
        if a.scheme == "top_n" and a.target_vol <= 0:
            return self._top_n(cfg)
        alloc = build_strategy(cfg).steps[2]
        (frame,) = alloc.call(self.signals.lazy(), self.features.lazy())
        return self._densify(frame.collect())

    def _top_n(self, cfg: ThreadSafeConfig) -> tuple[np.ndarray, np.ndarray]:
        a = cfg.allocation
        rows = self.rebalance_rows(a.rebalance, a.every_k)
        sig = self.dense_signals()
        out = np.zeros((rows.size, sig.shape[1]))
        for k, r in enumerate(rows):
            cand = np.flatnonzero(np.isfinite(sig[r]))
            if cand.size == 0:
                continue  # an all-cash rebalance
            # stable sort of -signal keeps ascending symbol order among ties
            chosen = cand[np.argsort(-sig[r, cand], kind="stable")[: a.top_n]]
            w = min(1.0 / chosen.size, a.max_weight)
            gross = np.cumsum(np.full(chosen.size, w))[-1]  # in order, as ordered_sum does
            if gross > a.gross_leverage + LIMIT_SLACK:
                w = w * (a.gross_leverage / gross)
            out[k, chosen] = w
        return rows, out

    def _densify(self, weights: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        p = self.panel
        days = weights["date"].cast(pl.Int32).to_numpy().astype(np.int64)
        pos = np.searchsorted(p.days, days)
        rows = np.unique(pos)
        row_of = np.full(p.days.size, -1, np.int64)
        row_of[rows] = np.arange(rows.size)
        cols = weights["symbol"].cast(pl.Enum(p.symbols)).to_physical().to_numpy()
        out = np.zeros((rows.size, p.shape[1]))
        out[row_of[pos], cols] = weights["weight"].cast(pl.Float64).to_numpy()
        return rows, out
