"""Samples/s of our `hf` engine against naive `model.generate` loops, measured in one run.

    python benchmarks/bench_sampling.py [--grid 4x64,1x1024] [--chunks 64,256] [--max-new-tokens 64]
                                        [--repeats 3] [--big-n 1024]

Each grid entry PxN draws N samples for each of P problems (AIME 2024 prompts, the same model and sampling
settings for every variant: temperature 1, no top-p or top-k cut). Variants:
  hf-engine/chunkC         our engine as `rlvr eval --chunk C` runs it: batches of C samples of one problem,
                           shared-prefix "cascade" decoding where the architecture allows (harness/sample/cascade.py)
  hf-engine-transformers   the same with the first chunk size, forced onto transformers' forward
  naive-per-problem        one `model.generate(num_return_sequences=N)` call per problem
  naive-per-problem/C      calls of `num_return_sequences=C` (the first chunk size) until N, for N > C: what
                           a user does whose N samples do not fit one call
  naive-per-sample         one `model.generate` call per sample (what a first script does); only for
                           N <= --per-sample-max, one round
A grid entry runs --repeats interleaved rounds (a slow spell of this shared machine hits every variant alike);
before them, one untimed round of the hf variants (and, in the first entry, of every variant) warms the
allocator and BLAS. A ratio is the median over rounds of the paired per-round ratios baseline / ours.
Then `rlvr eval` itself draws n = --big-n samples for one problem (bounded memory, chunks of 64).
Prints the ratios; absolute times only mean something on the machine that printed them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _grid(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        try:
            p, n = (int(x) for x in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--grid: {item!r} is not PROBLEMSxSAMPLES (e.g. 4x64)") from None
        if p < 1 or n < 1:
            raise argparse.ArgumentTypeError(f"--grid: {item!r} needs at least one problem and one sample")
        out.append((p, n))
    return out


def _ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--chunks: {text!r} is not a comma-separated list of integers") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError("--chunks: chunk sizes must be >= 1")
    return vals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model directory (default: a tiny model built with init_model)")
    ap.add_argument("--grid", type=_grid, default=_grid("4x64,1x1024"),
                    help="comparisons to run, PROBLEMSxSAMPLES each (default 4x64,1x1024)")
    ap.add_argument("--chunks", type=_ints, default=[64, 256],
                    help="our engine's batch sizes (rlvr eval --chunk); ratios are taken against each")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed interleaved rounds per grid entry")
    ap.add_argument("--per-sample-max", type=int, default=64,
                    help="run naive-per-sample only where N is at most this (it is slow)")
    ap.add_argument("--big-n", type=int, default=1024, help="samples for the one-problem rlvr eval run (0: skip)")
    ap.add_argument("--data-dir", default=os.environ.get("RLVR_DATA_DIR"))
    ap.add_argument("--json", help="also write the measurements here")
    a = ap.parse_args()

    import torch
    from rlvr.harness.eval.evaluate import EvalConfig, evaluate
    from rlvr.harness.provenance import collect, write_measurements
    from rlvr.harness.sample.engine import HFEngine, SamplingParams, sample_seed
    from rlvr.harness.sample.models import init_model, load_model

    from rlvr import tasks

    provenance = collect()          # of the code that runs (taken before it runs)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sampling-"))
    model_path = a.model or str(init_model(tmp / "tiny"))
    model, tok = load_model(model_path)
    task = tasks.get("aime24")
    all_problems = task.load(a.data_dir)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=a.max_new_tokens)
    engine = HFEngine(model, tok)
    plain = HFEngine(model, tok, cascade=False)
    first_chunk = a.chunks[0]

    def ours(problems, prompts, n, chunk, eng=engine) -> int:
        toks = 0
        for p, prompt in zip(problems, prompts, strict=True):
            seeds = [sample_seed(0, task.name, p.id, i) for i in range(n)]
            for start in range(0, n, chunk):
                toks += sum(c.tokens for c in eng.generate([(prompt, seeds[start:start + chunk])], params)[0])
        return toks

    def naive_per_problem(prompts, n, per_call) -> int:
        toks = 0
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
            for start in range(0, n, per_call):
                with torch.inference_mode():
                    out = model.generate(ids, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                         max_new_tokens=a.max_new_tokens, num_return_sequences=min(per_call, n - start),
                                         pad_token_id=tok.pad_token_id)
                toks += int((out[:, ids.shape[1]:] != tok.pad_token_id).sum())
        return toks

    results: dict = {"grid": {}}
    print(f"hf engine decode path: {engine.decode_path}; {a.max_new_tokens} new tokens at most; "
          f"{a.repeats} timed rounds per grid entry")
    for entry, (n_problems, n) in enumerate(a.grid):
        problems = all_problems[:n_problems]
        prompts = [task.prompt(p, "qwen_boxed", tok) for p in problems]
        chunks = list(dict.fromkeys(min(c, n) for c in a.chunks))
        ours_names = [f"hf-engine/chunk{c}" for c in chunks]
        # (name, work, cheap): the cheap ones (ours) get a warm-up round in every entry
        variants = [(name, partial(ours, problems, prompts, n, c), True) for name, c in zip(ours_names, chunks,
                                                                                          strict=True)]
        variants.append(("hf-engine-transformers", partial(ours, problems, prompts, n, chunks[0], plain), True))
        variants.append(("naive-per-problem", partial(naive_per_problem, prompts, n, n), False))
        if n > first_chunk:
            variants.append((f"naive-per-problem/{first_chunk}", partial(naive_per_problem, prompts, n, first_chunk),
                             False))
        if n <= a.per_sample_max:
            variants.append(("naive-per-sample", partial(naive_per_problem, prompts, n, 1), False))
        times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        tokens: dict[str, int] = {}
        for rnd in range(a.repeats + 1):
            for name, fn, cheap in variants:
                if rnd == 0 and not (cheap or entry == 0):
                    continue        # warm-up: the hf variants always, every variant in the first entry
                if name == "naive-per-sample" and rnd != 1:
                    continue        # one timed run, no warm-up
                t0 = time.perf_counter()
                toks = fn()
                if rnd:
                    times[name].append(time.perf_counter() - t0)
                    tokens[name] = toks
        label = f"{n_problems}x{n}"
        samples = n_problems * n
        print(f"\n{label}: {n_problems} problem(s) x {n} samples")
        block: dict = {"problems": n_problems, "n": n, "variants": {}, "ratios": {}}
        for name, _, _ in variants:
            dt = statistics.median(times[name])
            toks = tokens[name]
            block["variants"][name] = {"seconds": dt, "runs": times[name], "samples_per_s": samples / dt,
                                       "tokens_per_s": toks / dt, "tokens": toks}
            print(f"  {name:<28} {samples} samples, {toks} tokens in {dt:7.2f} s (median of {len(times[name])}): "
                  f"{samples / dt:8.1f} samples/s")
        for mine in ours_names:
            for name, _, _ in variants:
                if name in ours_names or (name == "hf-engine-transformers" and mine != ours_names[0]):
                    continue        # the transformers path runs at the first chunk size only
                # paired by round (the same slow or fast spell hits both), median over rounds; the one
                # naive-per-sample run (round 1) is paired with round 1 of ours
                ratios = [t / o for t, o in zip(times[name], times[mine], strict=False)]
                block["ratios"][f"{name} / {mine}"] = {"median": statistics.median(ratios), "rounds": ratios}
                print(f"  speed-up of {mine} over {name}: {statistics.median(ratios):.1f}x "
                      f"(per round: {', '.join(f'{r:.1f}' for r in ratios)})")
        results["grid"][label] = block

    if a.big_n:
        cfg = EvalConfig(model=model_path, tasks=["aime24"], out=str(tmp / "big"), n=a.big_n, sampling=params,
                         limit=1, data_dir=a.data_dir, workers=1)
        t0 = time.perf_counter()
        run = evaluate(cfg, engine=engine, tokenizer=tok, print_table=False)
        dt = time.perf_counter() - t0
        n_samples = sum(1 for _ in run.iter_samples())
        results["big_n"] = {"n": a.big_n, "decode": engine.decode_path, "samples": n_samples, "seconds": dt}
        print(f"\nrlvr eval, one problem, n={a.big_n}: {n_samples} samples verified and stored in {dt:.1f} s "
              f"({n_samples / dt:.1f} samples/s)")

    if a.json:
        settings = {k: v for k, v in vars(a).items() if k != "grid"} | {"grid": [f"{p}x{n}" for p, n in a.grid]}
        write_measurements(a.json, settings, results, provenance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
