"""pass@k: the estimator's defining properties, checked against exact arithmetic."""

import itertools
from fractions import Fraction
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rlvr.harness.report.passk import default_ks, pass_at_k, passk_curve


@st.composite
def n_c(draw, max_n=1024):
    n = draw(st.integers(1, max_n))
    return n, draw(st.integers(0, n))


def exact(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(comb(n - c, k), comb(n, k))


def test_worked_number_from_the_spec():
    # 1 - C(14, 8) / C(16, 8) = 1 - 3003 / 12870 = 0.76667 for n=16, c=2, k=8
    assert pass_at_k(16, 2, 8) == pytest.approx(0.766666666, abs=1e-8)


@given(n_c())
def test_k1_is_the_fraction_correct(nc):
    n, c = nc
    assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-15)


@given(n_c())
def test_k_equals_n_is_any_correct(nc):
    n, c = nc
    assert pass_at_k(n, c, n) == float(c > 0)


@given(n_c(max_n=300))
def test_non_decreasing_in_k(nc):
    n, c = nc
    curve = pass_at_k(n, c, np.arange(1, n + 1))
    assert np.all(np.diff(curve) >= -1e-15)


@given(st.integers(1, 10).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.booleans(), min_size=n, max_size=n))),
       st.data())
def test_equals_enumeration_of_all_k_subsets(n_outcomes, data):
    n, outcomes = n_outcomes
    k = data.draw(st.integers(1, n))
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k(n, sum(outcomes), k) == pytest.approx(brute, abs=1e-12)


@settings(max_examples=200)
@given(n_c(), st.data())
def test_matches_exact_rational_arithmetic_up_to_1024(nc, data):
    n, c = nc
    k = data.draw(st.integers(1, n))
    assert abs(pass_at_k(n, c, k) - float(exact(n, c, k))) <= 1e-12


def test_extreme_cells_at_1024_against_fractions():
    for n, c, k in [(1024, 1, 1), (1024, 1, 1023), (1024, 1023, 1), (1024, 512, 512), (1024, 3, 2),
                    (1024, 1, 512), (1000, 7, 999), (1024, 0, 5)]:
        assert abs(pass_at_k(n, c, k) - float(exact(n, c, k))) <= 1e-12, (n, c, k)


def test_vectorised_shapes_and_values():
    n = np.array([16, 16, 8])
    c = np.array([2, 0, 8])
    ks = np.array([1, 4, 8])
    table = pass_at_k(n, c, ks)
    assert table.shape == (3, 3)
    for i in range(3):
        for j in range(3):
            assert table[i, j] == pytest.approx(float(exact(int(n[i]), int(c[i]), int(ks[j]))), abs=1e-12)
    assert pass_at_k(n, c, 4).shape == (3,)
    assert pass_at_k(16, 2, ks).shape == (3,)
    assert isinstance(pass_at_k(16, 2, 4), float)


@pytest.mark.parametrize("n,c,k,match", [
    (4, 1, 5, "exceeds n"),
    (4, 5, 1, "c must be <= n"),
    (-1, 0, 1, "non-negative"),
    (4, -1, 1, "non-negative"),
    (4, 1, 0, "k must be >= 1"),
    (4, 1.5, 1, "integers"),
    (4.2, 1, 1, "integers"),
    ("4", 1, 1, "integers"),
    ([8, 2], [1, 1], 4, "exceeds n"),
])
def test_bad_input_raises_value_error(n, c, k, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(n, c, k)


def test_integral_floats_are_accepted():
    assert pass_at_k(16.0, 2.0, 8.0) == pass_at_k(16, 2, 8)


@pytest.mark.parametrize("n,expected", [(1, [1]), (8, [1, 2, 4, 8]), (10, [1, 2, 4, 8, 10]),
                                        (1024, [2 ** i for i in range(11)])])
def test_default_ks(n, expected):
    assert default_ks(n) == expected


def test_curve_mean_and_interval():
    n = np.full(40, 16)
    c = np.arange(40) % 5
    curve = passk_curve(n, c, iterations=500, seed=3)
    assert curve.ks == [1, 2, 4, 8, 16]
    assert curve.mean[0] == pytest.approx(c.mean() / 16)
    assert curve.mean == pytest.approx(pass_at_k(n, c, np.array(curve.ks)).mean(axis=0).tolist())
    for lo, m, hi in zip(curve.lo, curve.mean, curve.hi, strict=True):
        assert lo <= m <= hi and hi - lo > 0
    again = passk_curve(n, c, iterations=500, seed=3)
    assert again == curve  # seeded
    assert passk_curve(n, c, iterations=500, seed=4).lo != curve.lo


def coverage(confidence: float, reps: int, seed: int) -> tuple[float, float]:
    """Share of `reps` synthetic benchmarks (60 problems, rates ~ Beta(0.5, 1.5), mean 0.25, 32 samples)
    whose interval of the mean pass@1 covers the population mean 0.25, and the mean interval width."""
    rng = np.random.default_rng(seed)
    covered, width = 0, 0.0
    for _ in range(reps):
        c = rng.binomial(32, rng.beta(0.5, 1.5, size=60))
        cur = passk_curve(np.full(60, 32), c, ks=[1], confidence=confidence, iterations=400,
                          seed=int(rng.integers(1 << 30)))
        covered += cur.lo[0] <= 0.25 <= cur.hi[0]
        width += (cur.hi[0] - cur.lo[0]) / reps
    return covered / reps, width


def test_curve_interval_covers_the_truth_at_the_stated_rate():
    # The coverage must follow the stated level, not merely be high: at 50% an interval that ignored its
    # level (a fixed 95% one covers ~95%) falls far outside the band. Bands: +-4 binomial sd of 300 draws
    # around the nominal level, less 3 points for the percentile bootstrap's known undercoverage at 60
    # problems. The widths must scale as the normal quantiles z(0.75) / z(0.95) = 0.41 (the mean's
    # bootstrap distribution is close to normal at 60 problems).
    from statistics import NormalDist

    half, half_w = coverage(0.5, 300, 0)
    ninety, ninety_w = coverage(0.9, 300, 1)
    assert 0.5 - 0.03 - 4 * 0.029 <= half <= 0.5 + 4 * 0.029
    assert 0.9 - 0.03 - 4 * 0.017 <= ninety <= 0.9 + 4 * 0.017
    z = NormalDist().inv_cdf
    assert half_w / ninety_w == pytest.approx(z(0.75) / z(0.95), rel=0.15)
