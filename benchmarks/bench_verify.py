"""Naive per-sample math-verify versus the verifier pool with its cache, on synthetic K-sample outputs.

    python benchmarks/bench_verify.py --problems 500 --samples 1024 --workers 2 --naive-sample 2000 [--json PATH]

The completions imitate what RLVR evaluation sees at large K: mostly short chain-of-thought text
ending in a box; per problem a few distinct wrong answers with Zipf-like frequencies, the gold in a few
surface forms, and some completions with no box (truncated). The naive baseline is what a per-sample
reward function does (verl's `math_verify.compute_score`, for one): `verify(parse(gold),
parse(completion))` for every completion, in one process. Running it on all samples would take too long,
so it is timed on a random subsample and extrapolated; the output says so. Both sides see the same items,
and their verdicts on the subsample are compared. One run (no rounds): absolute times only mean something
on the machine that printed them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import re
import sys
import time
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rlvr.tasks.math  # noqa: E402,F401  (registers the math tasks)
from rlvr.harness.verify.pool import VerifierPool  # noqa: E402
from rlvr.tasks.base import Problem  # noqa: E402

from rlvr import tasks  # noqa: E402

FILLER = [
    "First, let us restate the problem in our own words.",
    "We set up an equation for the unknown quantity.",
    "Substituting the given values, we get $3 + 4 = 7$ and $2 \\cdot 7 = 14$.",
    "Simplifying the expression gives $\\frac{14}{2} = 7$.",
    "We check the boundary cases separately.",
    "By symmetry, it suffices to consider the first case.",
    "Expanding $(x+1)^2 = x^2 + 2x + 1$ and collecting terms.",
    "This contradicts our assumption, so we try the other case.",
    "Counting the possibilities one by one, we find a pattern.",
    "Wait, let me double-check this step.",
]


def gold_forms(gold: str) -> list[str]:
    """Surface forms of the gold that a model writes and that survive answer normalisation."""
    forms = [gold]
    if "=" not in gold:
        forms.append(f"x = {gold}")
    if re.fullmatch(r"-?\d+", gold):
        forms.append(f"{gold}.0")
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", gold)
    if m:
        forms.append(f"{m.group(1)}{m.group(2)}/{m.group(3)}")
    return forms


def wrong_answers(gold: str, rng: random.Random, n: int) -> list[str]:
    out: list[str] = []
    base = int(gold) if re.fullmatch(r"-?\d+", gold) else rng.randint(1, 60)
    while len(out) < n:
        kind = rng.random()
        if kind < 0.5:
            cand = str(base + rng.choice([-3, -2, -1, 1, 2, 3, 10, -10]) * rng.randint(1, 4))
        elif kind < 0.8:
            cand = f"\\frac{{{rng.randint(1, 30)}}}{{{rng.randint(2, 12)}}}"
        else:
            cand = f"{rng.randint(1, 9)}\\sqrt{{{rng.choice([2, 3, 5, 6, 7])}}}"
        if cand != gold and cand not in out:
            out.append(cand)
    return out


def zipf_choice(options: list[str], rng: random.Random, s: float = 1.2) -> str:
    weights = [1.0 / (r + 1) ** s for r in range(len(options))]
    return rng.choices(options, weights)[0]


def completions_for(problem: Problem, index: int, samples: int, seed: int) -> list[str]:
    rng = random.Random(f"{seed}:{index}")
    p_correct = rng.betavariate(0.7, 0.7)        # easy and hard problems, few in between
    p_no_box = 0.03
    forms = gold_forms(str(problem.answer))
    wrong = wrong_answers(str(problem.answer), rng, rng.randint(3, 12))
    out = []
    for _ in range(samples):
        cot = " ".join(rng.choices(FILLER, k=rng.randint(2, 7)))
        r = rng.random()
        if r < p_no_box:
            out.append(cot + " So the answer should be")            # truncated: no box
            continue
        answer = zipf_choice(forms, rng) if r < p_no_box + (1 - p_no_box) * p_correct else zipf_choice(wrong, rng)
        out.append(f"{cot}\nTherefore, the final answer is $\\boxed{{{answer}}}$.")
    return out


def naive_verify(gold: str, completion: str) -> bool:
    from math_verify import parse, verify
    return bool(verify(parse("\\boxed{" + gold + "}"), parse(completion)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--samples", type=int, default=1024, help="completions per problem (K)")
    ap.add_argument("--workers", type=int, default=None, help="pool processes (default: all CPUs)")
    ap.add_argument("--naive-sample", type=int, default=2000, help="items timed for the naive baseline")
    ap.add_argument("--task", default="math500")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--deadline", type=float, default=10.0)
    ap.add_argument("--json", help="also write the measurements here")
    args = ap.parse_args(argv)

    from rlvr.harness.provenance import collect, write_measurements
    from rlvr.tasks.loading import resolve_data_dir

    provenance = collect(None if argv is None else [sys.argv[0], *argv])   # of the code that runs, before it runs
    data_dir = resolve_data_dir(args.data_dir)
    task = tasks.get(args.task)
    problems, data_source = task.load_with_source(data_dir)
    problems = problems[: args.problems]
    n_items = len(problems) * args.samples
    print(f"{len(problems)} {args.task} problems x {args.samples} samples = {n_items:,} completions "
          f"(synthetic; seed {args.seed})")

    # Naive baseline on a random subsample of the same items.
    rng = random.Random(args.seed)
    picks = sorted(rng.sample(range(n_items), min(args.naive_sample, n_items)))
    by_problem: dict[int, list[int]] = {}
    for item in picks:
        by_problem.setdefault(item // args.samples, []).append(item % args.samples)
    subsample: list[tuple[int, int, str]] = []
    for pi, sample_ids in by_problem.items():
        comps = completions_for(problems[pi], pi, args.samples, args.seed)
        subsample += [(pi, si, comps[si]) for si in sample_ids]
    naive_results: dict[tuple[int, int], bool] = {}
    t0 = time.perf_counter()
    for pi, si, completion in tqdm(subsample, desc="naive (subsample)", unit="item"):
        naive_results[(pi, si)] = naive_verify(str(problems[pi].answer), completion)
    naive_s = time.perf_counter() - t0
    naive_per_item = naive_s / len(subsample)
    naive_total = naive_per_item * n_items

    # Pool + cache on every item, fed one problem's K samples at a time as an evaluator would.
    t0 = time.perf_counter()
    correct = 0
    agree = total_checked = 0
    with VerifierPool(workers=args.workers, deadline_s=args.deadline, preload=[type(task).__module__]) as pool:
        startup_s = time.perf_counter() - t0
        chunk = 8
        with tqdm(total=n_items, desc="pool + cache", unit="item", unit_scale=True) as bar:
            for start in range(0, len(problems), chunk):
                items, keys = [], []
                for pi in range(start, min(start + chunk, len(problems))):
                    for si, c in enumerate(completions_for(problems[pi], pi, args.samples, args.seed)):
                        items.append((task, problems[pi], c))
                        keys.append((pi, si))
                results = pool.map(items)
                for key, r in zip(keys, results):
                    correct += r.verdict.correct
                    if key in naive_results:
                        total_checked += 1
                        agree += naive_results[key] == r.verdict.correct
                bar.update(len(items))
        stats = pool.stats
        workers = pool.n_workers
    pool_s = time.perf_counter() - t0

    print(f"\nnaive math-verify, 1 process: {len(subsample):,} items timed in {naive_s:.1f} s "
          f"({naive_per_item * 1e3:.2f} ms/item); EXTRAPOLATED to {n_items:,} items: {naive_total:,.0f} s")
    print(f"pool + cache, {workers} workers: {n_items:,} items in {pool_s:.1f} s "
          f"(incl. {startup_s:.1f} s start-up; {n_items / pool_s:,.0f} items/s)")
    print(f"  checks run {stats.checks:,}, cache hits {stats.cache_hits:,} (hit rate {stats.hit_rate:.1%}), "
          f"no answer {stats.no_answer:,}, timeouts {stats.timeouts}, errors {stats.errors}, "
          f"check time {stats.check_seconds:.1f} s")
    print(f"  accuracy {correct / n_items:.3f}; verdicts agree with naive on {agree}/{total_checked} "
          f"subsampled items")
    print(f"speed-up (extrapolated naive / measured pool): {naive_total / pool_s:.1f}x on {os.cpu_count()} CPUs")

    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "data_dir"} | {
            "data_dir": str(data_dir) if data_dir else None}
        results = {
            "items": n_items, "problems": len(problems), "data": data_source,
            "naive": {"processes": 1, "items_timed": len(subsample), "seconds": naive_s,
                      "ms_per_item": naive_per_item * 1e3, "extrapolated_seconds": naive_total},
            "pool": {"workers": workers, "seconds": pool_s, "startup_seconds": startup_s,
                     "items_per_s": n_items / pool_s, **dataclasses.asdict(stats), "hit_rate": stats.hit_rate},
            "accuracy": correct / n_items, "agree": agree, "agree_checked": total_checked,
            "speedup_extrapolated": naive_total / pool_s, "cpu_count": os.cpu_count()}
        write_measurements(args.json, settings, results, provenance)


if __name__ == "__main__":
    main()
