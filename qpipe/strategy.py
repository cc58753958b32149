"""Assemble a strategy pipeline from the ``[strategy]`` and ``[allocation]`` config tables.

Every strategy is three pure steps::

    prices ──features (shard=symbol)──► features ──signal (shard=date)──► signals
                                            │                                │
                                            └──────────allocate (no shard)───┴──► weights

``strategy.kind`` picks the feature and the signal:

- ``momentum``: ``mom = close[t-skip] / close[t-lookback] - 1``; signal ``strategy.signal`` of it.
- ``mean_reversion``: ``rev = -(close[t] / close[t-lookback] - 1)``; signal as above.
- ``low_volatility``: ``vol`` over ``strategy.vol_window``; signal of ``-vol``.
- ``ma_crossover``: ``ma_fast``, ``ma_slow``; signal 1 if fast > slow else 0 (-1 when not
  long-only); ``strategy.signal`` is not used.

The allocation step reads ``[allocation]`` (see :mod:`qpipe.stages.allocation`); the features
step adds ``risk_vol`` (vol over ``allocation.vol_window``) when the scheme is ``inverse_vol`` and
``ret`` when ``allocation.target_vol > 0``.

>>> from qpipe.config import ThreadSafeConfig
>>> pipe = build_strategy(ThreadSafeConfig.default())
>>> pipe.sources, pipe.outputs
(('prices',), ('features', 'signals', 'weights'))
>>> warmup_days(ThreadSafeConfig.default())
252
"""

from __future__ import annotations

from typing import Any

from qpipe.config import FrozenTable, ThreadSafeConfig
from qpipe.errors import ConfigError
from qpipe.stages.allocation import allocate
from qpipe.stages.base import Pipeline, Step
from qpipe.stages.features import FEATURE_COLUMNS, feature_warmup, features
from qpipe.stages.signals import cross_sectional, ma_crossover
from qpipe.stages.universe import members_only

__all__ = ["STRATEGY_KINDS", "build_strategy", "warmup_days"]

STRATEGY_KINDS = ("momentum", "mean_reversion", "ma_crossover", "low_volatility")

# kind -> (feature column scored, sign); ma_crossover has its own signal stage
_SCORES: dict[str, tuple[str, float]] = {
    "momentum": ("mom", 1.0),
    "mean_reversion": ("rev", 1.0),
    "low_volatility": ("vol", -1.0),
}


def _feature_columns(cfg: ThreadSafeConfig) -> tuple[str, ...]:
    kind, alloc = cfg.strategy.kind, cfg.allocation
    if kind == "ma_crossover":
        wanted = {"ma_fast", "ma_slow"}
    elif kind in _SCORES:
        wanted = {_SCORES[kind][0]}
    else:
        msg = f"`strategy.kind` must be one of {', '.join(STRATEGY_KINDS)}; got {kind!r}"
        raise ConfigError(msg)
    if alloc.scheme == "inverse_vol":
        wanted.add("risk_vol")
    if alloc.target_vol > 0:
        wanted.add("ret")
    return tuple(c for c in FEATURE_COLUMNS if c in wanted)


def _feature_params(cfg: ThreadSafeConfig) -> dict[str, Any]:
    s = cfg.strategy
    return {
        "lookback": s.lookback,
        "skip": s.skip,
        "fast": s.fast,
        "slow": s.slow,
        "vol_window": s.vol_window,
        "zscore_window": s.zscore_window,
        "risk_window": cfg.allocation.vol_window,
    }


def warmup_days(cfg: ThreadSafeConfig) -> int:
    """Trailing price rows a symbol needs before a date for the strategy's weights on that date.

    It is the longest look-back among the features the strategy uses and, with volatility
    targeting, the ``allocation.vol_window`` price dates of portfolio returns. The
    point-in-time audit keeps this much history before the dates it compares.
    """
    need = feature_warmup(_feature_columns(cfg), **_feature_params(cfg))
    if cfg.allocation.target_vol > 0:
        need = max(need, cfg.allocation.vol_window)
    return int(need)


def build_strategy(cfg: ThreadSafeConfig) -> Pipeline:
    """The features → signals → allocation pipeline the config describes.

    Parameters
    ----------
    cfg
        Reads ``[strategy]`` and ``[allocation]``.

    Returns
    -------
    Pipeline
        Source ``prices``; outputs ``features``, ``signals`` and ``weights``. Its ``meta`` holds
        ``kind`` and ``warmup_days``.
    """
    s, a = cfg.strategy, cfg.allocation
    feat: Step = features.bind(
        {"columns": _feature_columns(cfg), **_feature_params(cfg)},
        inputs=("prices",),
        outputs="features",
    )
    # A point-in-time universe: the signals of non-members are dropped before the allocation.
    sig_out = "all_signals" if cfg.data.membership else "signals"
    if s.kind == "ma_crossover":
        sig = ma_crossover.bind({"short": not a.long_only}, inputs=("features",), outputs=sig_out)
    else:
        column, sign = _SCORES[s.kind]
        sig = cross_sectional.bind(
            {"column": column, "method": s.signal, "sign": sign},
            inputs=("features",),
            outputs=sig_out,
        )
    alloc = allocate.bind(
        {
            "scheme": a.scheme,
            "top_n": a.top_n,
            "quantile": a.quantile,
            "rebalance": a.rebalance,
            "every_k": a.every_k,
            "max_weight": a.max_weight,
            "gross_leverage": a.gross_leverage,
            "long_only": a.long_only,
            "target_vol": a.target_vol,
            "vol_window": a.vol_window,
        },
        inputs=("signals", "features"),
        outputs="weights",
    )
    meta = FrozenTable({"kind": s.kind, "warmup_days": warmup_days(cfg)})
    if cfg.data.membership:
        members = members_only.bind(inputs=("all_signals", "prices"), outputs="signals")
        return Pipeline((feat, sig, members, alloc), name=f"strategy:{s.kind}", meta=meta)
    return Pipeline((feat, sig, alloc), name=f"strategy:{s.kind}", meta=meta)
