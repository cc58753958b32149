"""PSR, DSR, MinTRL and PBO: hand-derived cases, independent implementations, properties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import assume, event, given, settings, target
from hypothesis import strategies as st

from qpipe.errors import QpipeError, ResearchError
from qpipe.stats import (
    EULER_GAMMA,
    deflated_sharpe,
    expected_max_sharpe,
    min_track_record,
    pbo,
    probabilistic_sharpe,
    sharpe_moments,
)

# --- an independent normal distribution: erfc and bisection, not statistics.NormalDist -------


def phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def phi_inv(p: float) -> float:
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if phi(mid) < p else (lo, mid)
    return (lo + hi) / 2


def psr_ref(sr, sr_star, t, g3, g4):
    return phi((sr - sr_star) * math.sqrt(t - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))


# --- hand-derived cases ----------------------------------------------------------------------


def test_psr_hand_case_at_the_975_quantile():
    # γ4 = 1, γ3 = 0: the shape term is 1; (SR − 0)·√100 = 1.959963985 = Φ⁻¹(0.975)
    assert probabilistic_sharpe(0.1959963985, 0.0, 101, 0.0, 1.0) == pytest.approx(0.975, abs=1e-9)


def test_psr_hand_case_normal_returns():
    # SR = 0.1, T = 101, normal (γ4 = 3): z = 1 / √(1 + 0.5·0.01) = 0.997509336
    z = 1 / math.sqrt(1.005)
    assert z == pytest.approx(0.997509336, abs=1e-9)
    assert probabilistic_sharpe(0.1, 0.0, 101) == pytest.approx(phi(z), abs=1e-14)
    # PSR at its own SR is one half, whatever the shape
    assert probabilistic_sharpe(0.07, 0.07, 50, -1.0, 9.0) == 0.5


def test_expected_max_sharpe_hand_cases():
    # N = 2: Φ⁻¹(1/2) = 0, so SR0 = γ·Φ⁻¹(1 − 1/(2e))·√V
    z = phi_inv(1 - 1 / (2 * math.e))
    assert z == pytest.approx(0.9004526, abs=1e-7)
    assert expected_max_sharpe(2, 4.0) == pytest.approx(2 * EULER_GAMMA * z, abs=1e-12)
    assert expected_max_sharpe(1000, 0.0) == 0.0
    z1, z2 = phi_inv(1 - 1 / 100), phi_inv(1 - 1 / (100 * math.e))
    want = 0.1 * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)
    assert expected_max_sharpe(100, 0.01) == pytest.approx(want, abs=1e-12)


def test_expected_max_sharpe_is_close_to_the_simulated_maximum():
    # The formula approximates E[max of N iid N(0, V)]; at N = 1,000 it is within 2 %.
    rng = np.random.default_rng(1)
    sim = rng.standard_normal((4000, 1000)).max(axis=1).mean()
    assert expected_max_sharpe(1000, 1.0) == pytest.approx(sim, rel=0.02)


def test_deflated_sharpe_is_psr_at_sr0():
    sr0 = expected_max_sharpe(240, 0.002)
    assert deflated_sharpe(0.12, 240, 0.002, 1260, -0.3, 5.0) == pytest.approx(
        psr_ref(0.12, sr0, 1260, -0.3, 5.0), abs=1e-14
    )


def test_min_track_record_hand_case_and_round_trip():
    # shape term 1, (Φ⁻¹(0.95) / SR)² = 100
    assert min_track_record(0.16448536269514722, 0.0, 0.0, 1.0) == pytest.approx(101.0, abs=1e-9)
    assert min_track_record(0.05, 0.05) == math.inf
    # at T = MinTRL the PSR is exactly 1 − α (T − 1 enters the PSR)
    t = min_track_record(0.08, 0.01, -0.5, 6.0, alpha=0.1)
    z = (0.08 - 0.01) * math.sqrt(t - 1) / math.sqrt(1 + 0.5 * 0.08 + 5 / 4 * 0.08**2)
    assert phi(z) == pytest.approx(0.9, abs=1e-12)


def test_sharpe_moments_against_hand_values():
    r = np.array([0.01, -0.02, 0.03, 0.0])
    sr, g3, g4, t = sharpe_moments(r)
    d = r - r.mean()
    m2 = (d**2).mean()
    assert t == 4
    assert sr == pytest.approx(r.mean() / math.sqrt((d**2).sum() / 3), abs=1e-15)
    assert g3 == pytest.approx((d**3).mean() / m2**1.5, abs=1e-12)
    assert g4 == pytest.approx((d**4).mean() / m2**2, abs=1e-12)
    assert sharpe_moments([0.01] * 5) == (0.0, 0.0, 3.0, 5)


# --- properties -------------------------------------------------------------------------------

shape = st.tuples(st.floats(-2.0, 2.0), st.floats(0.0, 20.0)).map(
    lambda s: (s[0], 1.0 + s[0] ** 2 + s[1])  # γ4 >= 1 + γ3², as for any distribution
)


def _increasing_in_sr(sr, sr_star, g3, g4):
    # d PSR / d SR > 0 exactly where 1 − γ3·(SR + SR*)/2 + (γ4 − 1)/4·SR·SR* > 0
    return 1 - g3 * (sr + sr_star) / 2 + (g4 - 1) / 4 * sr * sr_star > 0


@settings(deadline=None, max_examples=300)
@given(
    st.floats(-1.0, 1.0), st.floats(-1.0, 1.0), st.floats(-0.3, 0.3), st.integers(2, 10_000), shape
)
def test_psr_is_monotone_in_sr(sr1, sr2, sr_star, t, sh):
    g3, g4 = sh
    lo, hi = sorted((sr1, sr2))
    assume(_increasing_in_sr(lo, sr_star, g3, g4) and _increasing_in_sr(hi, sr_star, g3, g4))
    # PSR is defined where the Sharpe ratio's variance is positive (a two-point distribution,
    # γ4 = 1 + γ3², has zero variance at SR = 2/γ3: an error, tested elsewhere)
    assume(all(1 - g3 * x + (g4 - 1) / 4 * x * x > 1e-9 for x in (lo, hi)))
    target(hi - lo)
    a = probabilistic_sharpe(lo, sr_star, t, g3, g4)
    b = probabilistic_sharpe(hi, sr_star, t, g3, g4)
    assert a <= b + 1e-15
    assert a == pytest.approx(psr_ref(lo, sr_star, t, g3, g4), abs=1e-13)


@settings(deadline=None, max_examples=300)
@given(
    st.floats(-0.5, 0.5), st.floats(-0.5, 0.5), st.integers(2, 5000), st.integers(1, 5000), shape
)
def test_psr_is_monotone_in_t(sr, sr_star, t, dt_, sh):
    g3, g4 = sh
    assume(1 - g3 * sr + (g4 - 1) / 4 * sr**2 > 0)
    a = probabilistic_sharpe(sr, sr_star, t, g3, g4)
    b = probabilistic_sharpe(sr, sr_star, t + dt_, g3, g4)
    event("sr > sr*" if sr > sr_star else "sr <= sr*")
    if sr > sr_star:
        assert b >= a  # more evidence for a real edge
    else:
        assert b <= a  # more evidence against it


@settings(deadline=None, max_examples=300)
@given(
    st.floats(-0.5, 0.5),
    st.integers(2, 100_000),
    st.floats(0.0, 0.1),
    st.integers(2, 5000),
    shape,
)
def test_dsr_is_at_most_psr_at_zero(sr, n_trials, var, t, sh):
    g3, g4 = sh
    assume(1 - g3 * sr + (g4 - 1) / 4 * sr**2 > 0)
    assert expected_max_sharpe(n_trials, var) >= 0.0
    assert deflated_sharpe(sr, n_trials, var, t, g3, g4) <= probabilistic_sharpe(sr, 0.0, t, g3, g4)


# --- PBO ---------------------------------------------------------------------------------------


def pbo_bruteforce(r: np.ndarray, s: int):
    """CSCV with loops: concatenate the blocks, np.std, count ranks one by one."""
    t, n = r.shape
    blocks = np.array_split(np.arange(t), s)
    lambdas, is_best, oos_best = [], [], []
    for chosen in itertools.combinations(range(s), s // 2):
        ins = np.concatenate([blocks[b] for b in chosen])
        out = np.concatenate([blocks[b] for b in range(s) if b not in chosen])
        sr_is = [r[ins, j].mean() / r[ins, j].std(ddof=1) for j in range(n)]
        sr_oos = [r[out, j].mean() / r[out, j].std(ddof=1) for j in range(n)]
        best = max(range(n), key=lambda j: (sr_is[j], -j))
        v = sr_oos[best]
        rank = sum(1 for x in sr_oos if x < v) + (sum(1 for x in sr_oos if x == v) + 1) / 2
        w = rank / (n + 1)
        lambdas.append(math.log(w / (1 - w)))
        is_best.append(sr_is[best])
        oos_best.append(v)
    lam = np.array(lambdas)
    return lam, np.array(is_best), np.array(oos_best)


@settings(deadline=None, max_examples=60)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([2, 4, 6, 8]),
    st.integers(2, 9),
    st.integers(0, 3),
)
def test_pbo_matches_a_bruteforce_cscv(seed, s, n, n_dupes):
    rng = np.random.default_rng(seed)
    t = int(rng.integers(max(s, 4) * 2, 90))
    r = rng.normal(0.001, 0.01, (t, n)) + rng.normal(0, 0.002, n)
    # duplicated trials make exact ties, which must be averaged
    r = np.hstack([r, r[:, rng.integers(0, n, n_dupes)]])
    got = pbo(r, s)
    lam, sr_is, sr_oos = pbo_bruteforce(r, s)
    event(f"ties: {n_dupes > 0}")
    np.testing.assert_allclose(got.lambdas, lam, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.is_sharpe, sr_is, rtol=1e-9)
    np.testing.assert_allclose(got.oos_sharpe, sr_oos, rtol=1e-9)
    assert 0.0 <= got.pbo <= 1.0
    assert got.pbo == np.mean(lam <= 0)
    assert got.prob_oos_loss == np.mean(sr_oos < 0)
    assert got.lambdas.size == math.comb(s, s // 2)


def test_pbo_hand_case_two_trials_two_blocks():
    # Trial A wins the first half and loses the second; B the opposite. With S = 2 there are
    # two halvings; each time the IS winner is the OOS loser: rank 1 of 2, ω = 1/3, λ = ln(1/2).
    a = np.array([0.02, 0.01, 0.03, -0.01, -0.02, -0.015])
    b = np.array([-0.01, -0.03, -0.015, 0.02, 0.01, 0.04])
    got = pbo(np.column_stack([a, b]), 2)
    np.testing.assert_allclose(got.lambdas, [math.log(0.5)] * 2)
    assert got.pbo == 1.0
    assert got.prob_oos_loss == 1.0

    def sr(x):
        return x.mean() / x.std(ddof=1)

    x = [sr(a[:3]), sr(b[3:])]  # the IS winners' IS Sharpes, halving by halving
    y = [sr(a[3:]), sr(b[:3])]  # and the same trials out of sample
    np.testing.assert_allclose(got.is_sharpe, x)
    np.testing.assert_allclose(got.oos_sharpe, y)
    assert got.slope == pytest.approx((y[1] - y[0]) / (x[1] - x[0]))


def test_pbo_is_low_for_a_real_edge_and_accepts_a_frame():
    rng = np.random.default_rng(3)
    r = rng.normal(0.0, 0.01, (800, 20))
    r[:, 7] += 0.003  # one trial has a real edge in every block
    got = pbo(pl.DataFrame(r, schema=[f"t{i}" for i in range(20)]), 8)
    assert got.pbo == 0.0
    assert got.prob_oos_loss == 0.0
    d = got.to_dict()
    assert d["n_halvings"] == 70 and d["n_trials"] == 20 and d["n_obs"] == 800
    with pytest.raises(ValueError):
        got.lambdas[0] = 1.0  # read-only


# --- bad input: one line naming the parameter and its limit -------------------------------------


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: expected_max_sharpe(1, 0.1), ["`n_trials`", ">= 2"]),
        (lambda: deflated_sharpe(0.1, 1, 0.1, 100), ["`n_trials`", ">= 2"]),
        (lambda: expected_max_sharpe(10, -1.0), ["`sr_variance`", ">= 0"]),
        (lambda: probabilistic_sharpe(0.1, 0.0, 1), ["`n_obs`", ">= 2"]),
        (lambda: probabilistic_sharpe(0.1, 0.0, 10, 0.0, 0.5), ["`kurtosis`", ">= 1 + skew²"]),
        (lambda: probabilistic_sharpe(0.1, 0.0, 10, 2.0, 4.0), ["`kurtosis`", "= 5"]),
        (lambda: probabilistic_sharpe(1.0, 0.0, 10, 2.0, 5.0), ["variance is 0"]),
        (lambda: probabilistic_sharpe(math.nan, 0.0, 10), ["`sr`", "finite"]),
        (lambda: min_track_record(0.1, 0.0, alpha=1.5), ["`alpha`", "(0, 1)"]),
        (lambda: pbo(np.zeros((100, 4)) + 0.01, 15), ["`n_blocks`", "even"]),
        (lambda: pbo(np.ones((10, 4)), 16), ["`n_blocks`", "<= t"]),
        (lambda: pbo(np.ones((100, 1)), 4), [">= 2 trials"]),
        (lambda: pbo(np.ones(100), 4), ["t x n"]),
        (lambda: pbo(np.full((100, 3), np.nan), 4), ["finite"]),
        (lambda: sharpe_moments([0.1]), [">= 2 returns"]),
    ],
)
def test_bad_input_is_one_line_research_error(call, words):
    with pytest.raises(ResearchError) as info:
        call()
    text = str(info.value)
    assert isinstance(info.value, QpipeError)
    assert "\n" not in text
    for w in words:
        assert w in text.lower() or w in text
