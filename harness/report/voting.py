"""Exact per-problem estimators beside pass@k: maj@k, G-Pass@k, mG-Pass@k and avg@n.

All of them read the n stored samples of one problem the way unbiased pass@k does (Chen et al. 2021): the
score of k samples drawn uniformly without replacement from the n, averaged over all C(n, k) subsets. They
are computed exactly (no sampling of subsets), and `tests/test_voting.py` checks each against a brute-force
enumeration of every k-subset.

**maj@k** (majority voting, self-consistency; Wang et al. 2022). A problem's judged samples fall into
answer classes: the correct samples (one class: the verifier holds each equal to the gold answer), the
wrong answers grouped by the task's own equivalence (`Task.answer_key`), and the samples with no
extracted answer, which cast no vote. For a k-subset let X_i be the number of its samples in class i and
M = max_i X_i. The subset scores 0 when it holds no vote (M = 0); otherwise the majority answer is a
uniform choice among the T classes with X_i = M, so the subset scores 1/T when the correct class is among
them and 0 when not (a tie counts as the expected value of that choice, which makes the score a function
of the subset alone). maj@k is the mean score over all k-subsets.

Exact computation. Write c for the correct class's size, b_1..b_m for the wrong classes and u for the
samples without a vote (n = c + sum b + u). Condition on x = X_0 >= 1, the correct samples drawn. The
subset scores 1/(1+t) exactly when every wrong class holds at most x of its samples and t of them hold
exactly x. A wrong class with b_i < x can never reach x: those classes and the no-vote samples, U_x samples
in all, enter only through (1+z)^{U_x}. For each class with b_i >= x the generating polynomial is

    sum_{j<x} C(b_i, j) z^j  +  C(b_i, x) z^x w,

where z counts drawn samples and w counts classes tied at x. With D_x(z, w) the product of these and of
(1+z)^{U_x},

    maj@k = sum_{x=1}^{min(c,k)} C(c, x) * sum_t [z^{k-x} w^t] D_x(z, w) / (1 + t)  /  C(n, k).

The product is a dynamic programme over (drawn samples s <= k - x, ties t); at most (n - c) / x classes
have b_i >= x, so one x costs O(k * x * T_x^2) with T_x <= (n - c) / x, and all x together about
O(k * n^2 * log n) in the worst case, far less for real answer profiles. One pass serves every k.
All terms are positive (no cancellation). The counts are held in float64 scaled by 2^{-N/2} for N samples
(C(N, s) 2^{-N/2} lies in [2^{-N/2}, 2^{N/2}], inside float64's range for N up to 2000; larger n is
refused), so the relative error is a few hundred ulps at most: below 1e-12 in the tests.

**G-Pass@k_tau** (Liu et al. 2024, "Are Your LLMs Capable of Stable Reasoning?", arXiv 2412.13147; the
official code is open-compass/GPassK): the probability that at least m = max(1, ceil(tau * k)) of the k
drawn samples are correct,

    G-Pass@k_tau = sum_{j=m}^{c} C(c, j) C(n-c, k-j) / C(n, k),

a hypergeometric tail; tau -> 0 gives pass@k and tau = 1 gives C(c, k) / C(n, k). **mG-Pass@k** is
2 * integral_{0.5}^{1} G-Pass@k_tau d tau = (2/k) * sum_{i=ceil(k/2)+1}^{k} G-Pass@k_{i/k}, as the paper
and its code define it (so mG-Pass@1 = 0: no threshold lies above 1/2 and at most 1). Both are sums of
positive hypergeometric probabilities computed from log-factorials (relative error about 1e-12).

**avg@n**: the mean over problems of c/n, the accuracy of all n samples, which is exactly unbiased pass@1;
its standard error over problems is std(c/n, ddof=1) / sqrt(P).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from fractions import Fraction

import numpy as np

__all__ = ["maj_at_k", "g_pass_at_k", "mg_pass_at_k", "g_pass_table", "avg_at_n", "MAX_VOTE_N", "tau_threshold"]

MAX_VOTE_N = 2000          # the scaled float64 counts stay in range up to here (see the module doc)
_HALF_LOG2 = 0.5 * math.log(2.0)


def _scaled_binom_row(total: int, upto: int) -> np.ndarray:
    """C(total, j) * 2^{-total/2} for j = 0..upto (zero past total), from log-gamma."""
    j = np.arange(upto + 1, dtype=np.float64)
    out = np.zeros(upto + 1, dtype=np.float64)
    live = j <= total
    jl = j[live]
    lg = (math.lgamma(total + 1) - np.array([math.lgamma(v + 1) for v in jl])
          - np.array([math.lgamma(total - v + 1) for v in jl]))
    out[live] = np.exp(lg - total * _HALF_LOG2)
    return out


def _check_votes(correct: int, wrong: Sequence[int], no_vote: int) -> int:
    for name, v in (("correct", correct), ("no_vote", no_vote), *(("wrong", b) for b in wrong)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} counts must be non-negative integers, got {v!r}")
    n = int(correct) + int(sum(wrong)) + int(no_vote)
    if n > MAX_VOTE_N:
        raise ValueError(f"maj@k is computed for n <= {MAX_VOTE_N} samples per problem, got n={n}")
    return n


def maj_at_k(correct: int, wrong: Sequence[int], no_vote: int, ks: Iterable[int]) -> np.ndarray:
    """Exact maj@k of one problem for every k in `ks` (see the module doc) -> float array [K].

    correct: samples judged correct (one answer class); wrong: the size of each class of wrong answers
    (zeros are ignored); no_vote: judged samples without an extracted answer. Raises ValueError for k < 1
    or k > n."""
    ks = [int(k) for k in ks]
    wrong = [int(b) for b in wrong if b]
    n = _check_votes(correct, wrong, no_vote)
    if any(k < 1 or k > n for k in ks):
        raise ValueError(f"k must be in 1..n={n}, got {ks}")
    out = np.zeros(len(ks), dtype=np.float64)
    if correct == 0 or not ks:
        return out
    kmax = max(ks)
    total = np.zeros(kmax + 1, dtype=np.float64)       # total[k] = scaled sum over x of the winning weight
    c_row = _scaled_binom_row(correct, min(correct, kmax))
    for x in range(1, min(correct, kmax) + 1):
        smax = kmax - x
        big = [b for b in wrong if b >= x]
        rest = n - correct - sum(big)
        # poly[t, s]: scaled ways to draw s samples from the classes so far, with t classes at exactly x
        poly = _scaled_binom_row(rest, smax)[None, :]
        for b in big:
            row = _scaled_binom_row(b, x)       # C(b, j) 2^{-b/2}, j = 0..x
            below, at = row[:x], row[x]
            new = np.zeros((poly.shape[0] + 1, smax + 1), dtype=np.float64)
            for t in range(poly.shape[0]):
                new[t] += np.convolve(poly[t], below)[:smax + 1]
                if smax >= x:
                    new[t + 1, x:] += poly[t, :smax + 1 - x] * at
            poly = new
        weights = (poly / (1.0 + np.arange(poly.shape[0]))[:, None]).sum(axis=0)     # [s]
        total[x:] += c_row[x] * weights[:kmax + 1 - x]
    for i, k in enumerate(ks):
        out[i] = total[k] / _scaled_binom_row(n, k)[k]
    return np.minimum(out, 1.0)


def tau_threshold(tau: float, k: int) -> int:
    """m = max(1, ceil(tau * k)): the correct samples G-Pass@k_tau asks for among k (tau read as the
    decimal it was written as, so 0.3 * 10 is 3, not 4)."""
    if not (0.0 < tau <= 1.0):
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    return max(1, math.ceil(Fraction(str(tau)) * k))


@functools.lru_cache(maxsize=8)
def _log_factorials(upto: int) -> np.ndarray:
    """log(j!) for j = 0..upto."""
    return np.array([math.lgamma(j + 1) for j in range(upto + 1)], dtype=np.float64)


def _hyper_pmf(n: int, c: int, k: int) -> np.ndarray:
    """P(X = j) for j = 0..k, X the correct samples among k drawn without replacement from n with c
    correct: C(c, j) C(n-c, k-j) / C(n, k), from log-factorials (zero where the draw is impossible)."""
    lf = _log_factorials(max(1024, n))
    j = np.arange(max(0, k - (n - c)), min(c, k) + 1)
    log_p = (lf[c] - lf[j] - lf[c - j] + lf[n - c] - lf[k - j] - lf[n - c - k + j]
             - (lf[n] - lf[k] - lf[n - k]))
    out = np.zeros(k + 1, dtype=np.float64)
    out[j] = np.exp(log_p)
    return out


def _check_nck(n: int, c: int, k: int) -> None:
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")


def _g_and_mg(n: int, c: int, k: int, taus: Sequence[float]) -> tuple[list[float], float]:
    """G-Pass@k at each tau and mG-Pass@k of one problem.

    mG-Pass@k = (2/k) sum_{i=l+1}^{k} P(X >= i) with l = ceil(k/2) is summed as (2/k) sum_j P(X = j) *
    max(0, j - l) (each j counted once per i in l+1..j), one pass over the probabilities. The terms are
    positive and each comes from log-factorials with a relative error of about 1e-12 for n up to a few
    thousand, which bounds the error of the sums."""
    pmf = _hyper_pmf(n, c, k)
    g = [float(min(1.0, pmf[tau_threshold(tau, k):].sum())) for tau in taus]
    low = math.ceil(k / 2)
    j = np.arange(k + 1)
    mg = float(min(1.0, 2.0 / k * float((pmf * np.maximum(0, j - low)).sum())))
    return g, mg


def g_pass_at_k(n: int, c: int, k: int, tau: float) -> float:
    """G-Pass@k_tau of one problem with c correct among n samples (see the module doc)."""
    n, c, k = int(n), int(c), int(k)
    _check_nck(n, c, k)
    return _g_and_mg(n, c, k, [tau])[0][0]


def mg_pass_at_k(n: int, c: int, k: int) -> float:
    """mG-Pass@k = (2/k) * sum_{i=ceil(k/2)+1}^{k} G-Pass@k_{i/k} of one problem (see the module doc)."""
    n, c, k = int(n), int(c), int(k)
    _check_nck(n, c, k)
    return _g_and_mg(n, c, k, [])[1]


def g_pass_table(n, c, ks: Sequence[int], taus: Sequence[float]) -> tuple[dict[float, np.ndarray], np.ndarray]:
    """Per-problem G-Pass@k at each tau ({tau: [P, K]}) and mG-Pass@k ([P, K]) for arrays n, c [P]."""
    n_arr, c_arr = np.asarray(n).ravel(), np.asarray(c).ravel()
    g = {tau: np.zeros((n_arr.size, len(ks))) for tau in taus}
    mg = np.zeros((n_arr.size, len(ks)))
    cache: dict[tuple[int, int, int], tuple[list[float], float]] = {}
    for i, (ni, ci) in enumerate(zip(n_arr.tolist(), c_arr.tolist(), strict=True)):
        for j, k in enumerate(ks):
            key = (int(ni), int(ci), int(k))
            if key not in cache:
                _check_nck(*key)
                cache[key] = _g_and_mg(*key, taus)
            vals, m = cache[key]
            for tau, v in zip(taus, vals, strict=True):
                g[tau][i, j] = v
            mg[i, j] = m
    return g, mg


def avg_at_n(n, c) -> tuple[float, float | None]:
    """(avg@n, its standard error over problems) from per-problem n and c arrays; the error is None for
    a single problem."""
    n_arr, c_arr = np.asarray(n, dtype=np.float64), np.asarray(c, dtype=np.float64)
    if n_arr.size == 0 or np.any(n_arr <= 0):
        raise ValueError("avg@n needs at least one problem, each with n >= 1")
    acc = c_arr / n_arr
    se = float(acc.std(ddof=1) / math.sqrt(acc.size)) if acc.size > 1 else None
    return float(acc.mean()), se
