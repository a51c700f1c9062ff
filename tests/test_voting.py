"""maj@k, G-Pass@k, mG-Pass@k and avg@n against brute-force enumeration of every k-subset."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rlvr.harness.report.passk import pass_at_k
from rlvr.harness.report.voting import avg_at_n, g_pass_at_k, maj_at_k, mg_pass_at_k, tau_threshold

NO_VOTE = None
CORRECT = "gold"


def brute_maj(labels: list, k: int) -> Fraction:
    """Mean over all k-subsets of the majority vote's expected correctness (uniform tie choice)."""
    total, count = Fraction(0), 0
    for subset in itertools.combinations(range(len(labels)), k):
        votes = Counter(labels[i] for i in subset if labels[i] is not NO_VOTE)
        count += 1
        if not votes:
            continue
        top = max(votes.values())
        tied = [a for a, v in votes.items() if v == top]
        if CORRECT in tied:
            total += Fraction(1, len(tied))
    return total / count


def brute_gpass(n: int, c: int, k: int, m: int) -> Fraction:
    labels = [1] * c + [0] * (n - c)
    hits = sum(sum(labels[i] for i in s) >= m for s in itertools.combinations(range(n), k))
    return Fraction(hits, math.comb(n, k))


def labels_of(correct: int, wrong: list[int], no_vote: int) -> list:
    return [CORRECT] * correct + [lab for i, b in enumerate(wrong) for lab in [f"w{i}"] * b] + [NO_VOTE] * no_vote


profiles = st.tuples(st.integers(0, 5), st.lists(st.integers(1, 4), max_size=4), st.integers(0, 3)).filter(
    lambda p: 1 <= p[0] + sum(p[1]) + p[2] <= 11)


@settings(max_examples=120, deadline=None)
@given(profiles)
def test_maj_at_k_equals_enumeration(profile):
    correct, wrong, no_vote = profile
    labels = labels_of(correct, wrong, no_vote)
    n = len(labels)
    ks = list(range(1, n + 1))
    got = maj_at_k(correct, wrong, no_vote, ks)
    for k, g in zip(ks, got, strict=True):
        assert g == pytest.approx(float(brute_maj(labels, k)), abs=1e-12), (profile, k)


def test_maj_at_k_ties_and_no_votes_by_hand():
    # one correct, one wrong: k=2 draws both -> a tie -> 1/2
    assert maj_at_k(1, [1], 0, [2])[0] == pytest.approx(0.5)
    # only no-vote samples drawn -> no majority -> 0; n=2 (1 correct, 1 silent), k=1: 1/2
    assert maj_at_k(1, [], 1, [1, 2]).tolist() == pytest.approx([0.5, 1.0])
    # no correct sample: 0 for every k
    assert maj_at_k(0, [3, 2], 1, [1, 3, 6]).tolist() == [0.0, 0.0, 0.0]
    # maj@1 is the share of correct samples (the vote of one sample): pass@1
    assert maj_at_k(3, [2, 2], 1, [1])[0] == pytest.approx(3 / 8)


def test_maj_at_k_large_n_is_finite_and_bounded():
    # n = 1024, the micro world's n: counts far past 2^1023 stay in range through the scaling
    got = maj_at_k(600, [200, 150, 40, 4], 30, [1, 16, 256, 1024])
    assert got[0] == pytest.approx(600 / 1024)
    assert np.all(np.isfinite(got)) and np.all((got >= 0) & (got <= 1))
    assert got[-1] == pytest.approx(1.0)      # all samples drawn: the correct class is the strict majority


def test_maj_at_k_rejects_bad_k():
    with pytest.raises(ValueError):
        maj_at_k(1, [1], 0, [3])
    with pytest.raises(ValueError):
        maj_at_k(1, [1], 0, [0])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 10).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))),
       st.sampled_from([0.1, 0.25, 0.3, 0.5, 0.75, 1.0]))
def test_g_pass_equals_enumeration(nck, tau):
    n, c, k = nck
    m = max(1, math.ceil(Fraction(str(tau)) * k))
    assert g_pass_at_k(n, c, k, tau) == pytest.approx(float(brute_gpass(n, c, k, m)), abs=1e-12)
    mg = sum(brute_gpass(n, c, k, i) for i in range(math.ceil(k / 2) + 1, k + 1)) * Fraction(2, k)
    assert mg_pass_at_k(n, c, k) == pytest.approx(float(mg), abs=1e-12)


def test_g_pass_limits():
    # tau small enough that m = 1: G-Pass@k is pass@k; tau = 1: every drawn sample correct, C(c,k)/C(n,k)
    for n, c, k in [(10, 3, 4), (16, 7, 8), (5, 5, 5), (9, 0, 3)]:
        assert g_pass_at_k(n, c, k, 1 / (2 * k)) == pytest.approx(pass_at_k(n, c, k), abs=1e-12)
        assert g_pass_at_k(n, c, k, 1.0) == pytest.approx(math.comb(c, k) / math.comb(n, k), abs=1e-12)
    assert tau_threshold(0.3, 10) == 3 and tau_threshold(0.5, 3) == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 20).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))), min_size=2,
                max_size=12))
def test_avg_at_n_is_the_mean_and_pass_at_1(problems):
    n = np.array([p[0] for p in problems])
    c = np.array([p[1] for p in problems])
    mean, se = avg_at_n(n, c)
    acc = [ci / ni for ni, ci in problems]
    assert mean == pytest.approx(sum(acc) / len(acc), abs=1e-12)
    assert mean == pytest.approx(float(pass_at_k(n, c, 1).mean()), abs=1e-12)
    m = sum(acc) / len(acc)
    assert se == pytest.approx(math.sqrt(sum((a - m) ** 2 for a in acc) / (len(acc) - 1) / len(acc)), abs=1e-12)
