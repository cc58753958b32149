"""Tier 2: the allocation audit, run once on the final target weights.

Structural checks are a handful of Polars expressions and joins over the weights and the price
keys (DESIGN.md, "Data conventions", weights). In order:

``finite``             every weight is a number (no null, NaN or inf)
``duplicate``          at most one row per (date, symbol)
``price_date``         every weights date is a price date (any row, even a zero weight)
``before_first_price`` no non-zero weight before a symbol's first price (or for a symbol that
                       has no price at all)
``unpriced``           no non-zero weight for a symbol without a price that day
``max_weight``         ``|w| <= allocation.max_weight + 1e-12``
``gross_leverage``     ``sum |w| <= allocation.gross_leverage + 1e-9`` per date
``long_only``          ``w >= 0`` when ``allocation.long_only``
``point_in_time``      see below; only with a ``strategy`` and ``validation.pit_cuts > 0``

**Point-in-time check** (:mod:`qpipe.validation.pit`). Weights for date t may use prices up to
close t only. For each of ``pit_cuts`` cut dates r (rebalance dates with positions, spread
evenly, the last one included) every step of the strategy is re-run on its own inputs from the
run, truncated after r and cut down to what its shard needs, and its output on the last
``pit_window`` rebalance dates up to r must equal the run's. A step that reads any later row
(``shift(-1)``, a centred window, a full-sample statistic, the next rebalance) changes its output
on r, whose future is missing from the truncated inputs. Because r is a true rebalance date, the
last truncated row is not a false month end.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from qpipe.config import ThreadSafeConfig
from qpipe.errors import AllocationAuditError
from qpipe.stages.base import Pipeline
from qpipe.validation._keys import PriceKeys
from qpipe.validation.notes import allocation_notes, price_jumps, price_notes
from qpipe.validation.pit import PIT_MARGIN, StageProof, check_point_in_time
from qpipe.validation.pit import _History as _History  # importable here as before

__all__ = [
    "CHECKS",
    "AuditReport",
    "Violation",
    "allocation_notes",
    "audit_allocation",
    "price_jumps",
    "price_keys",
    "price_notes",
]

CHECKS = (
    "finite",
    "duplicate",
    "price_date",
    "unknown_symbol",
    "before_first_price",
    "unpriced",
    "max_weight",
    "gross_leverage",
    "long_only",
    "point_in_time",
)
WEIGHT_TOL = 1e-12
GROSS_TOL = 1e-9
SHOW = 5  # violations quoted in the error message

# (date, symbol, check, value); symbol is None for per-date checks
Violation = tuple[dt.date | None, str | None, str, float | None]


@dataclass(frozen=True)
class AuditReport:
    """What the audit did and found.

    Attributes
    ----------
    passed
        True when there is no violation.
    checks
        Names of the checks that ran, in order.
    violations
        Every ``(date, symbol, check, value)`` found, grouped by check in :data:`CHECKS` order,
        then by date and symbol. ``value`` is the offending weight (``duplicate``: the row count,
        ``gross_leverage``: the gross, ``point_in_time``: audited minus recomputed weight).
    seconds
        Wall time of the whole audit.
    pit_cuts
        The cut dates the point-in-time check used (empty if it did not run).
    pit_seconds
        Wall time of the point-in-time check alone.
    pit_stages
        One :class:`~qpipe.validation.pit.StageProof` per strategy step (its digest, the rows
        re-run, its violations, or ``reused`` when an earlier proof of its digest was trusted).
    certificate_seq
        Set when the audit was skipped: the ledger ``seq`` of the passing audit whose
        certificate covers these inputs (see :mod:`qpipe.validation.certificate`).
    """

    passed: bool
    checks: tuple[str, ...]
    violations: tuple[Violation, ...]
    seconds: float
    pit_cuts: tuple[dt.date, ...] = ()
    pit_seconds: float = 0.0
    pit_stages: tuple[StageProof, ...] = ()
    certificate_seq: int | None = None

    @property
    def skipped(self) -> bool:
        """True when a validation certificate (ledger record ``certificate_seq``) stood in for
        the audit: the inputs, the code and the settings were audited before and passed."""
        return self.certificate_seq is not None

    def to_json(self, limit: int = 100) -> dict[str, Any]:
        """A JSON-safe summary for the ledger (the first ``limit`` violations)."""

        def num(v: float | None) -> float | str | None:
            if v is None or math.isfinite(v):
                return v
            return repr(v)

        return {
            "passed": self.passed,
            "checks": list(self.checks),
            "n_violations": len(self.violations),
            "violations": [
                [d.isoformat() if d else None, s, c, num(v)]
                for d, s, c, v in self.violations[:limit]
            ],
            "seconds": round(self.seconds, 6),
            "pit_cuts": [d.isoformat() for d in self.pit_cuts],
            "pit_seconds": round(self.pit_seconds, 6),
            "pit_stages": [p.to_json() for p in self.pit_stages],
            **({"skipped": True} if self.skipped else {}),
        }

    def raise_for_violations(self) -> None:
        """Raise :class:`AllocationAuditError` listing every violation, if there is any."""
        if self.violations:
            failed = [p.step for p in self.pit_stages if not p.passed]
            raise AllocationAuditError(_message(self.violations, failed), self.violations)


def _rows(frame: pl.DataFrame, check: str, value: str | None) -> list[Violation]:
    """Violations from a frame with `date`, `symbol` (maybe) and a value column."""
    dates = frame["date"].to_list()
    syms = frame["symbol"].to_list() if "symbol" in frame.columns else [None] * frame.height
    vals = frame[value].to_list() if value else [None] * frame.height
    out: list[Violation] = []
    for d, s, v in zip(dates, syms, vals, strict=True):
        out.append((d, s, check, math.nan if v is None else float(v)))
    return out


def _normalise(weights: pl.DataFrame, prices: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    for name, frame, cols in (
        ("weights", weights, ("date", "symbol", "weight")),
        ("prices", prices, ("date", "symbol")),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            names = ", ".join(f"`{c}`" for c in missing)
            msg = f"allocation audit: {name} lack column(s) {names}"
            raise AllocationAuditError(msg, ((None, None, "columns", None),))
    try:
        w = weights.select(
            pl.col("date").cast(pl.Date),
            pl.col("symbol").cast(pl.String),
            pl.col("weight").cast(pl.Float64),
        )
        p = prices.select(pl.col("date").cast(pl.Date), pl.col("symbol").cast(pl.String))
    except pl.exceptions.PolarsError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        msg = f"allocation audit: `date`/`symbol`/`weight` have unusable types ({first})"
        raise AllocationAuditError(msg, ((None, None, "columns", None),)) from None
    return w, p


def _structural(
    w: pl.DataFrame, facts: PriceKeys, cfg: ThreadSafeConfig
) -> dict[str, list[Violation]]:
    alloc = cfg.allocation
    weight = pl.col("weight")
    found: dict[str, list[Violation]] = {}
    order = ["date", "symbol"]

    bad = w.filter(weight.is_null() | ~weight.is_finite())
    found["finite"] = _rows(bad.sort(order), "finite", "weight")

    dup = w.group_by(order).agg(pl.len().cast(pl.Float64).alias("n")).filter(pl.col("n") > 1)
    found["duplicate"] = _rows(dup.sort(order), "duplicate", "n")

    price_dates = facts.dates.to_frame("date")
    off = w.join(price_dates, on="date", how="anti")
    found["price_date"] = _rows(off.sort(order), "price_date", "weight")

    # non-zero, finite weights on price dates: the ones that must have a price
    live = w.join(price_dates, on="date", how="semi").filter(weight.is_finite() & (weight != 0.0))
    live = live.join(facts.firsts.select("symbol", "_first"), on="symbol", how="left")
    unknown = pl.col("_first").is_null()  # the symbol has no price on any date
    found["unknown_symbol"] = _rows(live.filter(unknown).sort(order), "unknown_symbol", "weight")
    early = unknown | (pl.col("date") < pl.col("_first"))
    found["before_first_price"] = _rows(
        live.filter(early & ~unknown).sort(order), "before_first_price", "weight"
    )
    priced = live.filter(~early)
    hit = facts.has_price(priced)  # by position in the store's order
    if hit is not None:
        unpriced = priced.filter(~hit)
    else:  # only the price keys on the weights' dates can match: a small hash table
        near = facts.keys.join(priced.select("date").unique(), on="date", how="semi")
        unpriced = priced.join(near, on=order, how="anti")
    found["unpriced"] = _rows(unpriced.sort(order), "unpriced", "weight")

    fin = w.filter(weight.is_finite())
    cap = fin.filter(weight.abs() > alloc.max_weight + WEIGHT_TOL).with_columns(weight.abs())
    found["max_weight"] = _rows(cap.sort(order), "max_weight", "weight")

    # sorted before the sum so the gross is the same bits on every run
    gross = (
        fin.sort(order)
        .group_by("date", maintain_order=True)
        .agg(weight.abs().sum().alias("gross"))
        .filter(pl.col("gross") > alloc.gross_leverage + GROSS_TOL)
    )
    found["gross_leverage"] = _rows(gross.sort("date"), "gross_leverage", "gross")

    if alloc.long_only:
        found["long_only"] = _rows(fin.filter(weight < 0).sort(order), "long_only", "weight")
    return found


def price_keys(weights: pl.DataFrame, prices: pl.DataFrame) -> PriceKeys:
    """The price keys' facts the audit reads (raises like the audit on unusable columns)."""
    return PriceKeys.of(_normalise(weights, prices)[1])


def _pick_cuts(w: pl.DataFrame, n: int) -> list[dt.date]:
    active = w.filter(pl.col("weight") != 0.0)["date"].unique().sort().to_list()
    pool = active or w["date"].unique().sort().to_list()
    if not pool or n <= 0:
        return []
    m = len(pool)
    n = min(n, m)
    return sorted({pool[round(k * (m - 1) / n)] for k in range(1, n + 1)})


def _pit(
    w: pl.DataFrame,
    prices: pl.DataFrame,
    cfg: ThreadSafeConfig,
    strategy: Pipeline,
    intermediates: Mapping[str, pl.DataFrame] | None,
    proven: frozenset[str],
    window: int,
    facts: PriceKeys | None = None,
) -> tuple[list[dt.date], list[Violation], list[StageProof]]:
    from qpipe.strategy import warmup_days  # local: strategy imports the stages, not vice versa

    cuts = _pick_cuts(w, cfg.validation.pit_cuts)
    if not cuts:
        return [], [], []
    warm = int(strategy.meta.get("warmup_days", warmup_days(cfg))) + PIT_MARGIN
    px = prices.with_columns(pl.col("date").cast(pl.Date), pl.col("symbol").cast(pl.String))
    frames: dict[str, pl.DataFrame] = {strategy.sources[0]: px}
    if intermediates is not None:
        frames.update(intermediates)
    missing = [o for o in strategy.outputs if o not in frames and o != "weights"]
    if missing:  # not handed over by the run: recompute them once (tests, notebooks)
        env = strategy.apply_lazy({strategy.sources[0]: px.lazy()})
        frames.update(zip(missing, pl.collect_all([env[o] for o in missing]), strict=True))
    frames["weights"] = w
    a = cfg.allocation
    every_k = a.every_k if a.rebalance == "every_k" else None
    # the allocation's own history: the vol-targeting window (its schedule needs none: the
    # window ends on a true rebalance date, and every_k starts stay on the k-day grid)
    warm_all = int(strategy.meta.get("allocation_warmup", a.vol_window if a.target_vol > 0 else 0))
    found, proofs = check_point_in_time(
        strategy,
        frames,
        cuts,
        warm=warm,
        warm_all=warm_all + PIT_MARGIN,
        window=window,
        every_k=every_k,
        proven=proven,
        source_runs=facts.firsts if facts is not None and facts.ordered else None,
    )
    return cuts, found, proofs


def audit_allocation(
    weights: pl.DataFrame,
    prices: pl.DataFrame,
    cfg: ThreadSafeConfig,
    *,
    strategy: Pipeline | None = None,
    raise_on_violation: bool = True,
    pit_window: int = 3,
    intermediates: Mapping[str, pl.DataFrame] | None = None,
    proven: frozenset[str] = frozenset(),
    facts: PriceKeys | None = None,
) -> AuditReport:
    """Audit target weights against the prices and the config (Tier 2).

    Parameters
    ----------
    weights
        `date`, `symbol`, `weight` (long format, DESIGN.md).
    prices
        The prices the weights were made from (`date`, `symbol`, `close`, ...).
    cfg
        Reads ``allocation.max_weight``, ``gross_leverage``, ``long_only``, ``rebalance``,
        ``every_k`` and ``validation.pit_cuts``.
    strategy
        The pipeline that made the weights (source ``prices``, output ``weights``); enables the
        point-in-time check. ``None`` for external weights: that check is skipped.
    raise_on_violation
        Raise :class:`~qpipe.errors.AllocationAuditError` when anything is found (default);
        with ``False`` the report is returned either way.
    pit_window
        How many rebalance dates up to each cut are compared.
    intermediates
        The run's other strategy outputs by name (``features``, ``signals``): each step is
        re-run on these. Missing ones are recomputed once from ``prices`` (one strategy run).
    proven
        Step digests proven causal by an earlier audit (see
        :func:`qpipe.validation.certificate.proven_steps`); those steps are not re-run.
    facts
        :func:`price_keys` of these weights and prices, when the caller shares them.

    Returns
    -------
    AuditReport

    Raises
    ------
    AllocationAuditError
        With every violation in ``.violations``; the message gives the count and the first few.
    """
    start = time.perf_counter()
    w, keys = _normalise(weights, prices)
    facts = facts if facts is not None else PriceKeys.of(keys)
    found = _structural(w, facts, cfg)
    checks = [c for c in CHECKS if c in found]
    cuts: list[dt.date] = []
    proofs: list[StageProof] = []
    pit_seconds = 0.0
    clean = not found["duplicate"] and not found["finite"] and not found["price_date"]
    if strategy is not None and cfg.validation.pit_cuts > 0 and clean:
        t0 = time.perf_counter()
        cuts, found["point_in_time"], proofs = _pit(
            w, prices, cfg, strategy, intermediates, proven, pit_window, facts
        )
        checks.append("point_in_time")
        pit_seconds = time.perf_counter() - t0
    violations = tuple(v for c in CHECKS for v in found.get(c, []))
    report = AuditReport(
        passed=not violations,
        checks=tuple(checks),
        violations=violations,
        seconds=time.perf_counter() - start,
        pit_cuts=tuple(cuts),
        pit_seconds=pit_seconds,
        pit_stages=tuple(proofs),
    )
    if raise_on_violation:
        report.raise_for_violations()
    return report


def _message(violations: tuple[Violation, ...], pit_steps: list[str] | None = None) -> str:
    n = len(violations)
    by_check: dict[str, int] = {}
    for v in violations:
        by_check[v[2]] = by_check.get(v[2], 0) + 1
    counts = ", ".join(f"{c} {k}" for c, k in by_check.items())
    shown = "; ".join(
        f"`{c}` on {d.isoformat() if d else '?'}{f' `{s}`' if s else ''} ({v:.6g})"
        if v is not None
        else f"`{c}`"
        for d, s, c, v in violations[:SHOW]
    )
    more = f"; and {n - SHOW} more" if n > SHOW else ""
    limits = [
        f"`allocation.{c}`" for c in ("max_weight", "gross_leverage", "long_only") if c in by_check
    ]
    fix = f" (fix the weights or the limit {', '.join(limits)})" if limits else ""
    if pit_steps:
        names = ", ".join(f"`{s}`" for s in pit_steps)
        fix += f" (look-ahead in step{'s' if len(pit_steps) > 1 else ''} {names})"
    return (
        f"allocation audit found {n} violation{'s' if n > 1 else ''} ({counts}): {shown}{more}{fix}"
    )
