"""Target weights for many trials: signals once per signal set, weights once per weight set.

A sweep's trials differ in a few keys. The features and signals depend only on the strategy's
feature and signal params (``TrialConfig.signal_key``), the weights on those plus
``[allocation]`` (``TrialConfig.weights_key``), and the backtest keys (costs, window, ...)
only on the weights. So
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

import functools

import numpy as np
import polars as pl

from qpipe.backtest._batch_kernel import momentum_scores
from qpipe.backtest.batch_config import TrialConfig
from qpipe.backtest.panel import Panel
from qpipe.stages.allocation import LIMIT_SLACK, rebalance_dates
from qpipe.strategy import build_strategy

__all__ = ["SignalSet", "fast_scores"]


def fast_scores(cfg: TrialConfig) -> bool:
    """Whether the top-N order can come from :func:`momentum_scores` instead of the stages.

    A ``rank`` signal is a strictly increasing function of the feature on each date (average
    ranks of distinct values differ by >= 1/(n-1)), and ``raw`` is the feature itself, so both
    order the candidates (and tie them) exactly as the momentum feature does. Not with a
    point-in-time universe (``data.membership``): its ``members_only`` step is a stage.
    """
    s = cfg.strategy
    members = bool(cfg.sections["data"]["membership"])
    return s.kind == "momentum" and s.signal in ("rank", "raw") and not members


@functools.lru_cache(maxsize=4096)
def _top_n_weight(count: int, max_weight: float, gross_leverage: float) -> float:
    """The weight of each of ``count`` names: ``allocate``'s top-N arithmetic, in its order."""
    if count == 0:
        return 0.0  # an all-cash rebalance
    w = min(1.0 / count, max_weight)
    gross = np.cumsum(np.full(count, w))[-1]  # added in order, as ordered_sum does
    if gross > gross_leverage + LIMIT_SLACK:
        w = w * (gross_leverage / gross)
    return float(w)


class SignalSet:
    """The features and signals of one signal set over a panel, and weights derived from them.

    The Polars stages run only when a weight set needs the frames (any scheme but a plain
    top-N, or a signal :func:`fast_scores` does not cover).
    """

    def __init__(self, cfg: TrialConfig, prices: pl.DataFrame, panel: Panel) -> None:
        self.cfg = cfg
        self.prices = prices
        self.panel = panel
        self._frames: tuple[pl.DataFrame, pl.DataFrame] | None = None
        self._scores: np.ndarray | None = None
        self._reb: dict[tuple[str, int], np.ndarray] = {}
        self._ranked: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The features and signals frames, as the strategy stages make them (cached)."""
        if self._frames is None:
            pipe = build_strategy(self.cfg.full())
            env = pipe.until("signals").apply_lazy({"prices": self.prices.lazy()})
            self._frames = (env["features"].collect(), env["signals"].collect())
        return self._frames

    def scores(self) -> np.ndarray:
        """(dates x symbols) values that order each date's candidates as the signal does.

        NaN where the signal is null (or the symbol has no price).
        """
        if self._scores is None:
            if fast_scores(self.cfg):
                s = self.cfg.strategy
                self._scores = momentum_scores(self.panel.close, s.lookback, s.skip)
            else:
                self._scores = self._dense_signals()
        return self._scores

    def _dense_signals(self) -> np.ndarray:
        p = self.panel
        s = self.frames()[1]
        rows = np.searchsorted(p.days, s["date"].cast(pl.Int32).to_numpy().astype(np.int64))
        cols = s["symbol"].cast(pl.Enum(p.symbols)).to_physical().to_numpy()
        out = np.full(p.shape, np.nan)
        out[rows, cols] = s["signal"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        return out

    def rebalance_rows(self, rule: str, every_k: int) -> np.ndarray:
        """Panel rows of the rebalance dates (the allocation stage's own schedule)."""
        key = (rule, every_k)
        if key not in self._reb:
            # the signal dates are the price dates, i.e. the panel's
            day_frame = pl.LazyFrame({"date": self.panel.days.astype(np.int32)})
            dates = day_frame.select(pl.col("date").cast(pl.Date))
            chosen = rebalance_dates(dates, rule, every_k).collect()  # type: ignore[arg-type]
            days = chosen["date"].cast(pl.Int32).to_numpy().astype(np.int64)
            self._reb[key] = np.searchsorted(self.panel.days, days)
        return self._reb[key]

    def weights(self, cfg: TrialConfig) -> tuple[np.ndarray, np.ndarray]:
        """Dense target weights (rebalance rows, one weight row each) for ``cfg``."""
        a = cfg.allocation
        if a.scheme == "top_n" and a.target_vol <= 0:
            return self._top_n(cfg)
        alloc = build_strategy(cfg.full()).steps[-1]  # the allocation is the last step
        features, signals = self.frames()
        (frame,) = alloc.call(signals.lazy(), features.lazy())
        return self._densify(frame.collect())

    def ranked(self, rule: str, every_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per rebalance date, the candidates (finite signal) best first, ties by symbol.

        ``(order, count)``: ``order`` is (rebalance dates x symbols), row k holding the columns
        of date k's ``count[k]`` candidates first (the rest -1). Computed once per schedule and
        shared by every ``top_n`` of the signal set.
        """
        key = ("ranked", rule, every_k)
        if key not in self._ranked:
            sig = self.scores()
            rows = self.rebalance_rows(rule, every_k)
            order = np.full((rows.size, sig.shape[1]), -1, np.int64)
            count = np.zeros(rows.size, np.int64)
            for k, r in enumerate(rows):
                cand = np.flatnonzero(np.isfinite(sig[r]))
                # stable sort of -signal keeps ascending symbol order among ties
                order[k, : cand.size] = cand[np.argsort(-sig[r, cand], kind="stable")]
                count[k] = cand.size
            self._ranked[key] = (order, count)
        return self._ranked[key]

    def _top_n(self, cfg: TrialConfig) -> tuple[np.ndarray, np.ndarray]:
        a = cfg.allocation
        rows = self.rebalance_rows(a.rebalance, a.every_k)
        order, count = self.ranked(a.rebalance, a.every_k)
        chosen = order[:, : a.top_n]
        held = np.minimum(count, a.top_n)
        weight_of = {n: _top_n_weight(int(n), a.max_weight, a.gross_leverage) for n in set(held)}
        values = np.array([weight_of[n] for n in held])
        out = np.zeros((rows.size, self.panel.shape[1]))
        k, j = np.nonzero(chosen >= 0)
        out[k, chosen[k, j]] = values[k]
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
