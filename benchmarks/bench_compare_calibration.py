"""How often does `rlvr compare` flag a regression between two runs of equal quality?

    python benchmarks/bench_compare_calibration.py [--pairs 60] [--tolerance 2.0] [--json PATH]

Each pair is two synthetic runs (2 tasks x 40 problems x 64 samples) drawn from the same per-problem
success rates with different seeds: any flagged row is a false alarm. Printed for Holm's correction
(the default) and without correction, plus the detection rate for a candidate whose rates on one task
are scaled by 0.4 (a real regression).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RATES = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9] * 5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--tolerance", type=float, default=2.0)
    ap.add_argument("--json", help="also write the counts here")
    a = ap.parse_args()

    from rlvr.harness.provenance import collect, write_measurements
    from rlvr.harness.report.compare import compare_runs

    from tests.runfactory import bernoulli_outcomes, make_run

    provenance = collect()          # of the code that runs (taken before it runs)
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
    if a.json:
        write_measurements(a.json, vars(a), {corr: {"pairs": a.pairs, "false_alarms": flagged[corr],
                                                    "regressions_detected": detected[corr]} for corr in flagged},
                           provenance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
