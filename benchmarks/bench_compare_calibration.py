"""How often does `rlvr compare` flag a regression between two runs of equal quality?

    python benchmarks/bench_compare_calibration.py [--pairs 60] [--seed-pairs 40] [--tolerance 2.0]
                                                   [--quick] [--json PATH]

Single-seed test: each pair is two synthetic runs (2 tasks x 40 problems x 64 samples) drawn from the
same per-problem success rates with different seeds: any flagged row is a false alarm. Printed for
Holm's correction (the default) and without correction, plus the detection rate for a candidate whose
rates on one task are scaled by 0.4 (a real regression).

Seed-aware test (`rlvr compare` with 3 runs per side, harness/report/seeds.py): each arm is 3 training
seeds, and each seed moves every problem's success rate by one draw of N(0, 0.3^2) on the logit scale
(an arm's seeds differ by a few points of pass@1, as RL runs do). Equal-quality arms give the false
alarm rate (2 tasks x 40 problems x 32 samples). Two planted regressions on task x (every seed of the
candidate moved by a logit shift): a large one (shift -1.5), and one whose expected pass@1 drop equals
the mean MDE that `rlvr compare` printed for the row (x, pass@1) on the equal pairs, where the
observed power of that row should be near the 80% the MDE promises. For the record of the design choice
(harness/report/seeds.py), the equal pairs are also judged by the alternative it rejects: a two-level
paired bootstrap (seeds resampled within each side, one problem draw shared by both sides), with the
same one-sided p, tolerance and Holm correction.

Time: the full run took 8.3 min of wall time on a 2-core machine shared by 8 busy sessions; --quick took
4.2 min there (49 s of CPU time).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RATES = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9] * 5


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--tolerance", type=float, default=2.0)
    ap.add_argument("--seed-pairs", type=int, default=40, help="pairs of 3-seed arms for the seed-aware test")
    ap.add_argument("--quick", action="store_true", help="20 pairs of each kind (a smoke run, not for results/)")
    ap.add_argument("--json", help="also write the counts here")
    a = ap.parse_args(argv)
    if a.quick:
        a.pairs, a.seed_pairs = min(a.pairs, 20), min(a.seed_pairs, 20)

    from rlvr.harness.provenance import collect, write_measurements
    from rlvr.harness.report.compare import compare_runs

    from tests.runfactory import bernoulli_outcomes, make_run

    provenance = collect(None if argv is None else ["benchmarks/bench_compare_calibration.py", *argv])   # of the code that runs (taken before it runs)
    tmp = Path(tempfile.mkdtemp(prefix="compare-calibration-"))
    flagged = {"holm": 0, "none": 0}
    detected = {"holm": 0, "none": 0}
    for s in range(a.pairs):
        base = make_run(tmp / f"a{s}", {"x": bernoulli_outcomes(RATES, 64, 1000 + s),
                                        "y": bernoulli_outcomes(RATES, 64, 5000 + s)}, metrics=False)
        same = make_run(tmp / f"b{s}", {"x": bernoulli_outcomes(RATES, 64, 2000 + s),
                                        "y": bernoulli_outcomes(RATES, 64, 7000 + s)}, metrics=False)
        worse = make_run(tmp / f"c{s}", {"x": bernoulli_outcomes([r * 0.4 for r in RATES], 64, 3000 + s),
                                         "y": bernoulli_outcomes(RATES, 64, 8000 + s)}, metrics=False)
        for corr in flagged:
            flagged[corr] += bool(compare_runs(str(base), str(same), a.tolerance, correction=corr).regressions)
            detected[corr] += bool(compare_runs(str(base), str(worse), a.tolerance, correction=corr).regressions)
    for corr in flagged:
        print(f"correction={corr:<5} false alarms on equal-quality pairs: {flagged[corr]}/{a.pairs} "
              f"({100 * flagged[corr] / a.pairs:.0f}%), planted regression detected: {detected[corr]}/{a.pairs}")
    results = {corr: {"pairs": a.pairs, "false_alarms": flagged[corr], "regressions_detected": detected[corr]}
               for corr in flagged}
    results["seeds"] = seeded(tmp, a.seed_pairs, a.tolerance)
    if a.json:
        write_measurements(a.json, vars(a), results, provenance)
    return 0


SEEDS, SPREAD, N_SEED = 3, 0.3, 32
ARMS = ["base", "same", "large", "atmde"]


def expected_pass1(shift: float) -> float:
    """E over a seed's draw of the mean pass@1 of RATES moved by N(shift, SPREAD^2) on the logit scale."""
    import numpy as np

    z = np.random.default_rng(12345).standard_normal(20000)[:, None] * SPREAD + shift
    r = np.clip(np.array(RATES), 1e-6, 1 - 1e-6)
    return float((1 / (1 + np.exp(-(np.log(r / (1 - r)) + z)))).mean())


def seed_bootstrap_flags(base: list[str], cand: list[str], tolerance: float, seed: int,
                         iterations: int = 2000) -> bool:
    """The alternative design: a two-level paired bootstrap (resample each side's seeds, and the problems
    with one draw shared by both sides), one-sided p = share of resampled differences >= -tolerance,
    Holm over the (task, k) rows and the overall rows. True when any row is flagged."""
    import numpy as np
    from rlvr.harness.report.compare import holm
    from rlvr.harness.report.passk import default_ks
    from rlvr.harness.report.seeds import seed_matrix
    from rlvr.harness.runs.store import Run

    rng = np.random.default_rng(seed)
    rb, rc = [Run.open(p) for p in base], [Run.open(p) for p in cand]
    ks = default_ks(N_SEED)
    boots = []
    for task in ("x", "y"):
        xb, xc = seed_matrix(rb, task, ks), seed_matrix(rc, task, ks)
        p = xb.shape[1]
        sb = rng.integers(0, xb.shape[0], (iterations, xb.shape[0]))
        sc = rng.integers(0, xc.shape[0], (iterations, xc.shape[0]))
        pr = rng.integers(0, p, (iterations, p))
        mb = xb[sb[:, :, None], pr[:, None, :]].mean(axis=(1, 2))      # [B, K]
        mc = xc[sc[:, :, None], pr[:, None, :]].mean(axis=(1, 2))
        boots.append(mc - mb)
    boots.append(np.mean(boots, axis=0))                                 # overall (seed draws differ per task here)
    tol = tolerance / 100
    pvals = np.concatenate([(np.count_nonzero(b >= -tol, axis=0) + 1) / (iterations + 1) for b in boots])
    return bool(holm(pvals, 0.05).any())


def seeded(tmp: Path, pairs: int, tolerance: float) -> dict:
    import numpy as np
    from rlvr.harness.report.compare import compare_seeded

    from tests.runfactory import bernoulli_outcomes, make_run, seed_rates

    def arm(name: str, s: int, shift: float = 0.0) -> list[str]:
        out = []
        for j in range(SEEDS):
            key = ARMS.index(name) * 100_000 + s * 100 + j
            out.append(str(make_run(tmp / f"{name}{s}_{j}", {
                "x": bernoulli_outcomes(seed_rates(RATES, SPREAD, 2 * key, shift), N_SEED, 2 * key + 1),
                "y": bernoulli_outcomes(seed_rates(RATES, SPREAD, 3 * key), N_SEED, 3 * key + 1)},
                metrics=False, arm=name, train_seed=j)))
        return out

    def row(res, task="x", k=1):
        return next(r for r in res.rows if r.task == task and r.k == k)

    alarms, mdes, large, bases, boot_alarms = 0, [], 0, [], 0
    for s in range(pairs):
        base = arm("base", s)
        bases.append(base)
        same = arm("same", s)
        res = compare_seeded(base, same, tolerance)
        alarms += bool(res.regressions)
        boot_alarms += seed_bootstrap_flags(base, same, tolerance, seed=s)
        mdes.append(row(res).mde)
        large += bool(compare_seeded(base, arm("large", s, -1.5), tolerance).regressions)
    mde = float(np.mean(mdes))
    # the logit shift whose expected pass@1 drop on task x is the mean printed MDE (bisection)
    target, lo, hi = expected_pass1(0.0) - mde, -6.0, 0.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_pass1(mid) < target else (lo, mid)
    shift = (lo + hi) / 2
    at_mde_row = at_mde_any = 0
    for s in range(pairs):
        res = compare_seeded(bases[s], arm("atmde", s, shift), tolerance)
        at_mde_row += row(res).regression
        at_mde_any += bool(res.regressions)
    out = {"pairs": pairs, "seeds_per_arm": SEEDS, "seed_spread_logit": SPREAD, "samples": N_SEED,
           "false_alarms": alarms, "false_alarm_rate": alarms / pairs,
           "large_regression_shift": -1.5, "large_regression_drop_pass1_points":
               round(100 * (expected_pass1(0.0) - expected_pass1(-1.5)), 2),
           "large_regressions_detected": large,
           "mean_mde_x_pass1_points": round(100 * mde, 2),
           "mde_regression_shift": round(shift, 4),
           "mde_regression_drop_pass1_points": round(100 * (expected_pass1(0.0) - expected_pass1(shift)), 2),
           "mde_row_detected": at_mde_row, "mde_row_power": at_mde_row / pairs,
           "mde_any_row_detected": at_mde_any,
           "two_level_bootstrap_false_alarms": boot_alarms}
    print(f"seed-aware ({SEEDS} seeds per arm, seed spread {SPREAD} logit): false alarms on equal-quality arms "
          f"{alarms}/{pairs} ({100 * alarms / pairs:.0f}%); planted regression of "
          f"{out['large_regression_drop_pass1_points']:.1f} points pass@1 detected {large}/{pairs}; mean printed MDE "
          f"of (x, pass@1) {100 * mde:.1f} points, a planted drop of that size flagged on that row "
          f"{at_mde_row}/{pairs} ({100 * at_mde_row / pairs:.0f}%, the MDE promises 80%), on any row {at_mde_any}/{pairs}; "
          f"the rejected two-level paired bootstrap flags equal arms {boot_alarms}/{pairs}")
    return out


if __name__ == "__main__":
    sys.exit(main())
