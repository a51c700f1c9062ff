"""Training seeds as a dimension of the reports: runs grouped into arms x seeds, the two-level bootstrap
of an arm's mean, and the seed-aware paired difference between two arms with its minimum detectable effect.

**Arms and seeds.** A run's run.json may carry `arm` (the method's label without a seed suffix, e.g.
"grpo") and `train_seed` (the training seed, an int; null for a base model or when unknown). A run
without `arm` is its own arm, named by its label; a run without `train_seed` is one seed. Runs with
the same arm and distinct training seeds form one arm with several seeds (`group_arms`).

**An arm's mean and interval (tables, plots).** With S seeds and P problems, x[s, p] is seed s's
pass@k on problem p and the cell is the mean over seeds of the mean over problems. Its interval is a
two-level percentile bootstrap (Davison & Hinkley 1997, section 3.8): draw S seeds with replacement,
then, within each drawn seed, P problems with replacement, and take the mean. With few seeds the seed
level of any bootstrap is coarse (3 seeds give 10 distinct seed draws, and the resampled seed variance
is (S-1)/S of the sample's), so the interval is a description of the spread, not a test; the test is
`paired_difference`.

**The paired, seed-aware difference (`rlvr compare`, `rlvr plot --delta`).** The baseline arm has S_b
seeds, the candidate S_c, and both scored the same P problems. The estimate is

    D = mean_p d_p,   d_p = mean_s x^c[s, p] - mean_s x^b[s, p]        (paired over problems)

Model each side as x[s, p] = mu + a_p + b_s + e[s, p]: a problem effect a_p (shared by both sides and
removed by the pairing), a seed effect b_s (variance sigma_seed^2: one training run is better than
another on every problem) and a seed-by-problem residual e (variance sigma_e^2, including the sampling
noise of n samples). Then

    Var(D) = Var_p(d_p) / P + sigma_seed,c^2 / S_c + sigma_seed,b^2 / S_b,

because the spread of d_p over problems already holds the residuals averaged over seeds, but not the
seed effects, which move every problem of a seed together. Per side, sigma_seed^2 is estimated from
the two-way layout seeds x problems (the ANOVA estimator of a random seed effect):

    sigma_seed^2 = max(0, Var_s(m_s) - MS_res / P),   m_s = mean_p x[s, p],
    MS_res = sum_{s,p} (x[s,p] - m_s - xbar_p + xbar)^2 / ((S - 1)(P - 1)),

since Var_s(m_s) estimates sigma_seed^2 + sigma_e^2 / P. A side with one run has no estimable seed
variance and contributes 0 (right for an untrained base model; optimistic for a single trained run,
which is why the output says how many seeds each side has). The test statistic (D + tolerance) / SE
is referred to a t distribution with Welch-Satterthwaite degrees of freedom from the three components
(P - 1, S_c - 1, S_b - 1), so that with 3 seeds per side, where the seed term dominates, the test
pays for estimating it from 2 degrees of freedom. The "overall" row averages the tasks: the seed
effect is shared by a seed's tasks (the same checkpoint), problems are not.

*Why not resample seeds?* A two-level paired bootstrap (seeds within each side, one problem draw
shared by both sides) and a permutation of the seed runs between the arms were the alternatives. With
the 3 seeds per arm of a typical RLVR comparison, the permutation test has C(6, 3) = 20 relabellings of
3 + 3 runs, so its smallest one-sided p-value is 1/20 and no row can survive Holm's correction. The
bootstrap's seed level has 10 distinct draws and understates the seed variance by the factor (S-1)/S
(2/3 at 3 seeds), and it has no closed-form power. The variance-components t test states the seed and
problem components separately, pays for estimating the seed variance from few seeds through its
degrees of freedom, and gives the minimum detectable effect in closed form. Measured by
`python benchmarks/bench_compare_calibration.py` (3 seeds per arm, seed effects of N(0, 0.3^2) on the
logit scale, 2 tasks x 40 problems x 32 samples, 40 pairs, tolerance 2 points, Holm): 0/40 false alarms
on equal-quality arms (the two-level bootstrap: 0/40 too), a 17.4-point drop of pass@1 on one task
caught 37/40, and a drop equal to the mean printed MDE of that row (23.2 points) flagged on that row
37/40 (92%): at this design the printed MDE is conservative (80% is promised).

**Minimum detectable effect.** For a row tested at level a (alpha/m under Holm's correction, the level
its first step demands; alpha without correction), the drop that the design detects with 80% power is

    MDE = tolerance + (t_{1-a, df} + t_{0.80, df}) * SE,

the standard power formula for a one-sided test of a shift with estimated standard error SE (the
SE of the observed design, used as the SE under the alternative). A "not significant" row whose MDE
is 10 points says that a drop smaller than about 10 points could have been missed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from statistics import NormalDist

import numpy as np
from rlvr.harness.errors import UserError
from rlvr.harness.runs.store import Run

__all__ = ["Arm", "arm_name", "train_seed", "group_arms", "seed_matrix", "two_level_bootstrap",
           "SeedStats", "PairedDiff", "paired_difference", "pooled_difference", "t_quantile", "t_cdf",
           "mde"]


# ---- arms x seeds ------------------------------------------------------------------------------

def arm_name(run: Run) -> str:
    """The run's arm: run.json `arm`, else its label."""
    arm = run.info.get("arm")
    return str(arm) if arm not in (None, "") else run.label


def train_seed(run: Run) -> int | None:
    """The run's training seed (run.json `train_seed`), or None (a base model, or not recorded)."""
    seed = run.info.get("train_seed")
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"{run.path}/run.json: field 'train_seed' must be an integer or null, got {seed!r}")
    return seed


@dataclass
class Arm:
    """One arm: its runs per seed. `runs[i]` holds the runs of `seeds[i]` (several when one checkpoint
    was evaluated under several protocols, each run scoring other tasks)."""

    name: str
    seeds: list[int | None]
    runs: list[list[Run]]

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def task_runs(self, task: str) -> list[Run]:
        """The run of each seed that scored `task` (raises when a seed lacks it)."""
        out = []
        for seed, runs in zip(self.seeds, self.runs, strict=True):
            have = [r for r in runs if task in _tasks(r)]
            if not have:
                raise UserError(f"arm {self.name}: seed {seed} has no run that scored task {task} "
                                f"(every seed of an arm must score the same tasks)")
            out.append(have[0])
        return out

    def tasks(self) -> list[str]:
        seen: list[str] = []
        for runs in self.runs:
            for r in runs:
                seen += [t for t in _tasks(r) if t not in seen]
        return seen


def _tasks(run: Run) -> list[str]:
    from rlvr.harness.report.metrics import run_counts

    return list(run_counts(run))


def group_arms(runs: list[Run]) -> list[Arm]:
    """Group runs into arms (first-seen order). Runs of one arm with distinct training seeds become
    its seeds; runs with train_seed null stay arms of their own (as before seeds were recorded). Two
    runs of one arm and one seed are one checkpoint: they must score different tasks."""
    arms: list[Arm] = []
    for run in runs:
        name, seed = arm_name(run), train_seed(run)
        arm = next((a for a in arms if a.name == name and seed is not None
                    and all(s is not None for s in a.seeds)), None)
        if arm is None:
            arms.append(Arm(name, [seed], [[run]]))
            continue
        if seed in arm.seeds:
            twins = arm.runs[arm.seeds.index(seed)]
            clash = [t for r in twins for t in _tasks(r) if t in _tasks(run)]
            if clash:
                other = next(r for r in twins if clash[0] in _tasks(r))
                raise UserError(f"{other.path} and {run.path} are both arm {name} seed {seed} and both score "
                                f"task {clash[0]} (give each training seed once)")
            twins.append(run)
        else:
            arm.seeds.append(seed)
            arm.runs.append([run])
    return arms


def seed_matrix(runs: list[Run], task: str, ks: list[int], problems: list[str] | None = None) -> np.ndarray:
    """pass@k of each run (seed) on each problem of `task`: [S, P, K], problems in sorted order
    (`problems` picks and orders them). Problems with no judged sample in some run are an error:
    they cannot be averaged over seeds."""
    from rlvr.harness.report.metrics import run_counts
    from rlvr.harness.report.passk import pass_at_k

    out = []
    for run in runs:
        per = run_counts(run).get(task)
        if per is None:
            raise UserError(f"{run.path}: has no task {task}")
        ids = sorted(per) if problems is None else problems
        missing = [p for p in ids if p not in per or per[p][0] == 0]
        if missing:
            raise UserError(f"{run.path}: task {task} problem {missing[0]} has no judged sample")
        n = np.array([per[p][0] for p in ids])
        c = np.array([per[p][1] for p in ids])
        if max(ks) > n.min():
            raise UserError(f"{run.path}: task {task} has n={int(n.min())} judged samples for some problem, "
                            f"fewer than k={max(ks)}")
        out.append(pass_at_k(n, c, np.asarray(ks)))
    shapes = {m.shape for m in out}
    if len(shapes) > 1:
        raise UserError(f"task {task}: the seeds of one arm scored different numbers of problems")
    return np.stack(out)


# ---- the two-level bootstrap of an arm's mean ---------------------------------------------------

def two_level_bootstrap(x: np.ndarray, iterations: int, rng: np.random.Generator,
                        seed_draw: np.ndarray | None = None) -> np.ndarray:
    """Bootstrap means of x [S, P, K]: seeds with replacement, then problems with replacement within each
    drawn seed -> [B, K]. `seed_draw` [B, S] reuses one seed draw across tasks (the same checkpoints)."""
    s, p, _ = x.shape
    draw = rng.integers(0, s, size=(iterations, s)) if seed_draw is None else seed_draw
    out = np.empty((iterations, x.shape[2]))
    chunk = max(1, (1 << 21) // max(1, s * p))
    for start in range(0, iterations, chunk):
        stop = min(iterations, start + chunk)
        probs = rng.integers(0, p, size=(stop - start, s, p))
        picked = x[draw[start:stop, :, None], probs]          # [b, S, P, K]
        out[start:stop] = picked.mean(axis=(1, 2))
    return out


@dataclass
class SeedStats:
    """What a table or plot needs of a multi-seed arm, per task: per-seed means [S, K] and the
    two-level bootstrap means [B, K] (one seed draw shared by the tasks, so averages over tasks get
    the right interval)."""

    seeds: int
    per_seed: dict[str, np.ndarray] = field(default_factory=dict)
    boot: dict[str, np.ndarray] = field(default_factory=dict)

    def column(self, tasks: list[str], j: int, confidence: float) -> tuple[float, float, float]:
        """(lo, hi, per-seed std) of the mean over `tasks` of the k at index j."""
        a = (1 - confidence) / 2
        boot = np.mean([self.boot[t][:, j] for t in tasks], axis=0)
        per_seed = np.mean([self.per_seed[t][:, j] for t in tasks], axis=0)
        lo, hi = np.quantile(boot, [a, 1 - a])
        sd = float(per_seed.std(ddof=1)) if per_seed.size > 1 else 0.0
        return float(lo), float(hi), sd


def arm_stats(arm: Arm, ks: list[int], iterations: int = 2000, seed: int = 0,
              tasks: list[str] | None = None) -> tuple[dict[str, np.ndarray], SeedStats]:
    """Per task: the arm's mean pass@k over seeds [K], and its SeedStats."""
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, arm.n_seeds, size=(iterations, arm.n_seeds))
    stats = SeedStats(arm.n_seeds)
    means = {}
    for t in tasks or arm.tasks():
        x = seed_matrix(arm.task_runs(t), t, ks)
        stats.per_seed[t] = x.mean(axis=1)
        stats.boot[t] = two_level_bootstrap(x, iterations, rng, draw)
        means[t] = x.mean(axis=(0, 1))
    return means, stats


# ---- t distribution (no scipy in the core dependencies) -----------------------------------------

_GRID = np.linspace(0.0, math.pi / 2, 20001)


@lru_cache(maxsize=256)
def _t_table(df: float) -> np.ndarray:
    """Cumulative share of the half-density of t_df on `_GRID` (theta = atan(x / sqrt(df)))."""
    dens = np.cos(_GRID) ** (df - 1)
    cum = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(_GRID))])
    return cum / cum[-1]


def t_cdf(x: float, df: float) -> float:
    """CDF of Student's t with df >= 1 degrees of freedom (df > 1e6 or inf: the normal).

    With x = sqrt(df) tan(theta), the density in theta is proportional to cos(theta)^(df-1) on
    (-pi/2, pi/2), a bounded smooth integrand for df >= 1 that a fine trapezoid integrates to ~1e-8."""
    if not math.isfinite(df) or df > 1e6:
        return NormalDist().cdf(x)
    df = round(max(float(df), 1.0), 6)
    theta = math.atan(abs(x) / math.sqrt(df))
    half = float(np.interp(theta, _GRID, _t_table(df))) / 2
    return 0.5 + half if x >= 0 else 0.5 - half


def t_quantile(q: float, df: float) -> float:
    """Inverse of `t_cdf`."""
    if not 0 < q < 1:
        raise ValueError("q must be in (0, 1)")
    if not math.isfinite(df) or df > 1e6:
        return NormalDist().inv_cdf(q)
    df = round(max(float(df), 1.0), 6)
    theta = float(np.interp(abs(2 * q - 1), _t_table(df), _GRID))
    x = math.sqrt(df) * math.tan(theta)
    return x if q >= 0.5 else -x


# ---- the seed-aware paired difference ---------------------------------------------------------

def _seed_component(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x [S, P, K] -> (Var_s(m_s) [K], MS_res / P [K]); zeros for one seed."""
    s, p, k = x.shape
    if s < 2:
        return np.zeros(k), np.zeros(k)
    m = x.mean(axis=1)                                       # [S, K]
    var_m = m.var(axis=0, ddof=1)
    if p < 2:
        return var_m, np.zeros(k)
    resid = x - m[:, None, :] - x.mean(axis=0)[None] + x.mean(axis=(0, 1))
    ms_res = (resid ** 2).sum(axis=(0, 1)) / ((s - 1) * (p - 1))
    return var_m, ms_res / p


@dataclass(frozen=True)
class PairedDiff:
    """candidate - baseline per k ([K] arrays, in [0, 1] units) with its standard error, the variance
    components it is made of, and the Welch-Satterthwaite degrees of freedom."""

    diff: np.ndarray
    se: np.ndarray
    df: np.ndarray
    problem_var: np.ndarray      # Var_p(d_p) / P
    seed_var_b: np.ndarray       # sigma_seed^2 / S of the baseline (0 for one seed)
    seed_var_c: np.ndarray

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided interval D -/+ t_{(1+level)/2, df} SE."""
        t = np.array([t_quantile((1 + level) / 2, d) for d in self.df])
        return self.diff - t * self.se, self.diff + t * self.se

    def p_drop(self, tolerance: float) -> np.ndarray:
        """One-sided p-value of "the drop is no larger than `tolerance`" (H0: diff >= -tolerance)."""
        out = []
        for d, se, df in zip(self.diff, self.se, self.df, strict=True):
            if se <= 0:
                out.append(1.0 if d >= -tolerance - 1e-12 else 0.0)
            else:
                out.append(t_cdf((d + tolerance) / se, df))
        return np.array(out)


def _satterthwaite(parts: list[tuple[np.ndarray, int]]) -> np.ndarray:
    total = sum(v for v, _ in parts)
    denom = sum(np.where(d > 0, v ** 2 / max(d, 1), 0.0) for v, d in parts)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, total ** 2 / np.where(denom > 0, denom, 1.0), np.inf)
    return np.maximum(df, 1.0)


def pooled_difference(pairs: list[tuple[np.ndarray, np.ndarray]]) -> PairedDiff:
    """The seed-aware paired difference of the mean over tasks; one (baseline [S_b, P_t, K], candidate
    [S_c, P_t, K]) pair per task, the seeds in the same order in every task (they are the same runs).
    One pair is one task. See the module docstring for the formula."""
    tasks = len(pairs)
    sb, sc = pairs[0][0].shape[0], pairs[0][1].shape[0]
    diff = np.mean([c.mean(axis=(0, 1)) - b.mean(axis=(0, 1)) for b, c in pairs], axis=0)
    prob_parts = []
    for b, c in pairs:
        d = c.mean(axis=0) - b.mean(axis=0)                    # [P, K]
        p = d.shape[0]
        v = d.var(axis=0, ddof=1) / p if p > 1 else np.zeros(d.shape[1])
        prob_parts.append((v / tasks ** 2, p - 1))
    seeds = []
    for side, s in ((0, sb), (1, sc)):
        if s < 2:
            seeds.append((np.zeros_like(diff), 0))
            continue
        m = np.mean([pr[side].mean(axis=1) for pr in pairs], axis=0)      # per-seed mean over tasks [S, K]
        res = np.sum([_seed_component(pr[side])[1] for pr in pairs], axis=0) / tasks ** 2
        seeds.append((np.maximum(0.0, m.var(axis=0, ddof=1) - res) / s, s - 1))
    problem_var = np.sum([v for v, _ in prob_parts], axis=0)
    se = np.sqrt(problem_var + seeds[0][0] + seeds[1][0])
    df = _satterthwaite(prob_parts + seeds)
    return PairedDiff(diff, se, df, problem_var, seeds[0][0], seeds[1][0])


def paired_difference(base: np.ndarray, cand: np.ndarray) -> PairedDiff:
    """The seed-aware paired difference for one task: base [S_b, P, K], cand [S_c, P, K], the same
    problems in the same order."""
    if base.shape[1:] != cand.shape[1:]:
        raise ValueError(f"baseline {base.shape} and candidate {cand.shape} differ in problems or k")
    return pooled_difference([(base, cand)])


def mde(pd: PairedDiff, level: float, tolerance: float = 0.0, power: float = 0.8) -> np.ndarray:
    """The drop (positive, [0, 1] units) that a one-sided test at `level` detects with `power`:
    tolerance + (t_{1-level, df} + t_{power, df}) * SE (see the module docstring)."""
    return np.array([tolerance + (t_quantile(1 - level, d) + t_quantile(power, d)) * s
                     for s, d in zip(pd.se, pd.df, strict=True)])
