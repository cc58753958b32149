"""Statistics that know how many trials were tried: PSR, DSR, MinTRL and PBO (CSCV).

Conventions (Bailey & López de Prado): ``sr`` is the **per-period** Sharpe ratio (daily returns:
mean / std, not annualised; :func:`sharpe_moments` computes it with ``ddof=1`` like
``metrics.json``'s ``sharpe``, which is it times sqrt(252)); ``skew`` is γ3 and ``kurtosis`` is
γ4, the plain (not excess) kurtosis, 3 for normal returns; ``n_obs`` is T, the number of returns.

- PSR(SR*) = Φ( (SR − SR*)·√(T − 1) / √(1 − γ3·SR + (γ4 − 1)/4·SR²) )
- SR0 = √V · ((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e))), γ the Euler–Mascheroni constant,
  V the variance of the N trials' per-period Sharpe ratios
- DSR = PSR(SR0)
- MinTRL(SR*, α) = 1 + (1 − γ3·SR + (γ4 − 1)/4·SR²) · (Φ⁻¹(1 − α) / (SR − SR*))²
- PBO by combinatorially symmetric cross-validation: see :func:`pbo`.

Φ and Φ⁻¹ are :class:`statistics.NormalDist` (standard library; accurate to ~1e-15 here).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from qpipe.errors import ResearchError

__all__ = [
    "EULER_GAMMA",
    "PBOResult",
    "deflated_sharpe",
    "expected_max_sharpe",
    "min_track_record",
    "pbo",
    "probabilistic_sharpe",
    "sharpe_moments",
]

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()
_HALVINGS_PER_CHUNK = 1024  # bounds PBO's working memory to ~8 matrices of 1024 x N floats


def _finite(name: str, value: float) -> float:
    x = float(value)
    if not math.isfinite(x):
        msg = f"`{name}` must be a finite number, got {value!r}"
        raise ResearchError(msg)
    return x


def _shape_term(sr: float, skew: float, kurtosis: float) -> float:
    """1 − γ3·SR + (γ4 − 1)/4·SR², the non-normality factor of the Sharpe ratio's variance."""
    skew, kurtosis = _finite("skew", skew), _finite("kurtosis", kurtosis)
    if kurtosis < 1.0 + skew * skew - 1e-12:
        msg = (
            f"`kurtosis` is γ4 (not excess; 3 if normal) and must be >= 1 + skew² = "
            f"{1.0 + skew * skew:.6g}, got {kurtosis}"
        )
        raise ResearchError(msg)
    term = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if term <= 0.0:  # only a two-point distribution with sr = 2 / skew gets here
        msg = f"the sharpe ratio's variance is 0 at sr={sr}, skew={skew}, kurtosis={kurtosis}"
        raise ResearchError(msg)
    return term


def probabilistic_sharpe(
    sr: float, sr_star: float, n_obs: int, skew: float = 0.0, kurtosis: float = 3.0
) -> float:
    """Probability that the true Sharpe ratio exceeds ``sr_star``, given ``sr`` over ``n_obs``.

    >>> round(probabilistic_sharpe(0.1959963985, 0.0, 101, skew=0.0, kurtosis=1.0), 6)
    0.975
    """
    sr, sr_star = _finite("sr", sr), _finite("sr_star", sr_star)
    if n_obs < 2:
        msg = f"`n_obs` must be >= 2, got {n_obs}"
        raise ResearchError(msg)
    z = (sr - sr_star) * math.sqrt(n_obs - 1) / math.sqrt(_shape_term(sr, skew, kurtosis))
    return _NORMAL.cdf(z)


def expected_max_sharpe(n_trials: int, sr_variance: float) -> float:
    """SR0: the expected maximum per-period Sharpe ratio of ``n_trials`` unskilled trials.

    >>> round(expected_max_sharpe(2, 1.0), 6)
    0.519755
    """
    if isinstance(n_trials, bool) or n_trials < 2:
        msg = f"`n_trials` must be >= 2 for the deflated sharpe ratio, got {n_trials}"
        raise ResearchError(msg)
    v = _finite("sr_variance", sr_variance)
    if v < 0:
        msg = f"`sr_variance` must be >= 0, got {v}"
        raise ResearchError(msg)
    n = float(n_trials)
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n * math.e))
    return math.sqrt(v) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def deflated_sharpe(
    sr: float,
    n_trials: int,
    sr_variance: float,
    n_obs: int,
    skew: float = 0.0,
    kurtosis: float = 3.0,
) -> float:
    """PSR against SR0, the best Sharpe ratio ``n_trials`` unskilled trials would show."""
    return probabilistic_sharpe(
        sr, expected_max_sharpe(n_trials, sr_variance), n_obs, skew, kurtosis
    )


def min_track_record(
    sr: float, sr_star: float, skew: float = 0.0, kurtosis: float = 3.0, alpha: float = 0.05
) -> float:
    """Minimum track record length (observations) for PSR(``sr_star``) to reach 1 − ``alpha``.

    ``math.inf`` when ``sr <= sr_star``: no track record is long enough.

    >>> round(min_track_record(0.16448536269514722, 0.0, skew=0.0, kurtosis=1.0), 6)
    101.0
    """
    sr, sr_star = _finite("sr", sr), _finite("sr_star", sr_star)
    alpha = _finite("alpha", alpha)
    if not 0.0 < alpha < 1.0:
        msg = f"`alpha` must be in (0, 1), got {alpha}"
        raise ResearchError(msg)
    term = _shape_term(sr, skew, kurtosis)
    if sr <= sr_star:
        return math.inf
    return 1.0 + term * (_NORMAL.inv_cdf(1.0 - alpha) / (sr - sr_star)) ** 2


def sharpe_moments(returns: Any) -> tuple[float, float, float, int]:
    """``(sr, skew, kurtosis, n_obs)`` of a return series, NaNs dropped.

    ``sr`` = mean / std(ddof=1); skew and kurtosis are the population moment ratios
    m3 / m2^1.5 and m4 / m2² (kurtosis not excess). A constant series has ``sr`` 0 and the
    normal shape (0, 3).
    """
    r = np.asarray(returns, dtype=np.float64).ravel()
    r = r[~np.isnan(r)]
    if r.size < 2:
        msg = f"a sharpe ratio needs >= 2 returns, got {r.size}"
        raise ResearchError(msg)
    d = r - r.mean()
    m2 = float(np.mean(d**2))
    if m2 <= 0.0:
        return 0.0, 0.0, 3.0, int(r.size)
    sr = float(r.mean()) / float(np.std(r, ddof=1))
    return sr, float(np.mean(d**3)) / m2**1.5, float(np.mean(d**4)) / m2**2, int(r.size)


@dataclass(frozen=True, slots=True, eq=False)
class PBOResult:
    """The result of :func:`pbo`.

    ``lambdas``, ``is_sharpe`` and ``oos_sharpe`` have one entry per halving (read-only): the
    logit of the IS-best trial's relative OOS rank, and that trial's per-period Sharpe in and
    out of sample. ``slope``/``intercept`` fit ``oos_sharpe`` on ``is_sharpe`` (OLS).
    """

    pbo: float
    lambdas: np.ndarray
    is_sharpe: np.ndarray
    oos_sharpe: np.ndarray
    slope: float
    intercept: float
    prob_oos_loss: float
    n_blocks: int
    n_trials: int
    n_obs: int

    def to_dict(self) -> dict[str, Any]:
        """Scalars only (for the ledger and metrics); the arrays stay on the object."""

        def clean(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "pbo": self.pbo,
            "slope": clean(self.slope),
            "intercept": clean(self.intercept),
            "prob_oos_loss": self.prob_oos_loss,
            "n_blocks": self.n_blocks,
            "n_trials": self.n_trials,
            "n_obs": self.n_obs,
            "n_halvings": int(self.lambdas.size),
        }


def _as_matrix(returns: Any) -> np.ndarray:
    if hasattr(returns, "to_numpy"):
        returns = returns.to_numpy()
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        msg = f"`returns` must be a T x N matrix (days x trials), got {r.ndim} dimension(s)"
        raise ResearchError(msg)
    if not np.isfinite(r).all():
        msg = "`returns` must be finite (drop failed trials, fill days before a trial starts)"
        raise ResearchError(msg)
    return r


def _sharpe(s: np.ndarray, q: np.ndarray, n: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Per-period Sharpe (ddof=1) from sums ``s`` and sums of squares ``q`` of returns minus
    ``shift`` over ``n`` days. A zero std gives ±inf by the sign of the mean (0 if it is 0)."""
    mean_c = s / n
    var = np.maximum(q - s * mean_c, 0.0) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (mean_c + shift) / np.sqrt(var)
    out[np.isnan(out)] = 0.0
    return out


def _relative_ranks(oos: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Rank (1 = worst, ties averaged) of column ``best[h]`` within row h of ``oos``."""
    v = oos[np.arange(oos.shape[0]), best][:, None]
    below = np.count_nonzero(oos < v, axis=1)
    equal = np.count_nonzero(oos == v, axis=1)
    return below + (equal + 1) / 2.0


def pbo(returns: Any, n_blocks: int = 16) -> PBOResult:
    """Probability of backtest overfitting by combinatorially symmetric cross-validation.

    Step by step: split the T x N matrix of trial returns into ``n_blocks`` (S, even)
    contiguous blocks (the first ``T % S`` one day longer); for each of the C(S, S/2)
    halvings the chosen blocks, kept in time order, are in-sample and the rest out-of-sample;
    n* is the trial with the best in-sample Sharpe (first on ties); ω = rank of n* among the N
    out-of-sample Sharpes (1 = worst, ties averaged) / (N + 1); λ = ln(ω / (1 − ω)).
    PBO is the share of halvings with λ <= 0.

    Fast path: per-block sums and sums of squares (of returns minus each trial's mean, for
    accuracy) make every half's Sharpe a matrix product; halvings run in chunks of 1024.
    """
    r = _as_matrix(returns)
    t, n = r.shape
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int | np.integer):
        msg = f"`n_blocks` must be an even integer, got {n_blocks!r}"
        raise ResearchError(msg)
    if n_blocks < 2 or n_blocks % 2:
        msg = f"`n_blocks` (S) must be even and >= 2, got {n_blocks}"
        raise ResearchError(msg)
    if n_blocks > t or t < 4:
        msg = f"`n_blocks` (S={n_blocks}) must be <= T, the number of returns ({t}; at least 4)"
        raise ResearchError(msg)
    if n < 2:
        msg = f"pbo needs >= 2 trials (columns of `returns`), got {n}"
        raise ResearchError(msg)
    shift = r.mean(axis=0)
    centred = r - shift
    edges = np.cumsum([0] + [len(b) for b in np.array_split(np.arange(t), n_blocks)])
    sums = np.add.reduceat(centred, edges[:-1], axis=0)  # S x N
    squares = np.add.reduceat(centred * centred, edges[:-1], axis=0)
    counts = np.diff(edges).astype(np.float64)
    combos = np.array(list(itertools.combinations(range(n_blocks), n_blocks // 2)), dtype=np.intp)
    lambdas, is_best, oos_best = [], [], []
    for lo in range(0, len(combos), _HALVINGS_PER_CHUNK):
        member = np.zeros((min(_HALVINGS_PER_CHUNK, len(combos) - lo), n_blocks))
        np.put_along_axis(member, combos[lo : lo + _HALVINGS_PER_CHUNK], 1.0, axis=1)
        rest = 1.0 - member
        n_is, n_oos = (member @ counts)[:, None], (rest @ counts)[:, None]
        sr_is = _sharpe(member @ sums, member @ squares, n_is, shift)
        sr_oos = _sharpe(rest @ sums, rest @ squares, n_oos, shift)
        best = np.argmax(sr_is, axis=1)
        omega = _relative_ranks(sr_oos, best) / (n + 1)
        lambdas.append(np.log(omega / (1.0 - omega)))
        is_best.append(sr_is[np.arange(len(best)), best])
        oos_best.append(sr_oos[np.arange(len(best)), best])
    return _pbo_result(
        np.concatenate(lambdas), np.concatenate(is_best), np.concatenate(oos_best), n_blocks, n, t
    )


def _pbo_result(
    lam: np.ndarray, sr_is: np.ndarray, sr_oos: np.ndarray, n_blocks: int, n: int, t: int
) -> PBOResult:
    ok = np.isfinite(sr_is) & np.isfinite(sr_oos)
    slope, intercept = math.nan, math.nan
    if np.count_nonzero(ok) >= 2 and np.ptp(sr_is[ok]) > 0:
        slope, intercept = (float(c) for c in np.polyfit(sr_is[ok], sr_oos[ok], 1))
    for a in (lam, sr_is, sr_oos):
        a.setflags(write=False)
    return PBOResult(
        pbo=float(np.count_nonzero(lam <= 0.0)) / lam.size,
        lambdas=lam,
        is_sharpe=sr_is,
        oos_sharpe=sr_oos,
        slope=slope,
        intercept=intercept,
        prob_oos_loss=float(np.count_nonzero(sr_oos < 0.0)) / sr_oos.size,
        n_blocks=int(n_blocks),
        n_trials=int(n),
        n_obs=int(t),
    )
