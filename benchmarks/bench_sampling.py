"""Samples/s of our `hf` engine against naive `model.generate` loops, measured in one run.

    python benchmarks/bench_sampling.py [--problems 4] [--n 64] [--max-new-tokens 48] [--big-n 1024]

Our engine runs twice: with its default decode path (shared-prefix "cascade" attention where the
architecture allows, harness/cascade.py) and forced onto transformers' forward (`cascade=False`).
Baselines, on the same model, prompts and sampling settings:
  naive-per-sample   one `model.generate` call per sample (what a first script does)
  naive-per-problem  one `model.generate(num_return_sequences=n)` call per problem
Each fast variant runs once untimed, then --repeats times, interleaved; a ratio is the median over rounds
of the paired per-round ratios (this is a noisy shared machine).
Then `rlvr eval` itself draws n = --big-n samples for one problem (bounded memory, chunks of 64).
Prints the ratios; absolute times only mean something on the machine that printed them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model directory (default: a tiny model built with init_model)")
    ap.add_argument("--problems", type=int, default=4)
    ap.add_argument("--n", type=int, default=64, help="samples per problem for the timed comparison")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--big-n", type=int, default=1024, help="samples for the one-problem n=1024 run (0: skip)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="timed runs of each fast variant, interleaved; the median counts (naive-per-sample: 1)")
    ap.add_argument("--data-dir", default=os.environ.get("RLVR_DATA_DIR"))
    ap.add_argument("--json", help="also write the measurements here")
    a = ap.parse_args()

    import torch

    import tasks
    from harness.evaluate import EvalConfig, evaluate
    from harness.models import init_model, load_model
    from harness.provenance import collect, utc_now
    from harness.sampling import HFEngine, SamplingParams, sample_seed

    tmp = Path(tempfile.mkdtemp(prefix="bench-sampling-"))
    model_path = a.model or str(init_model(tmp / "tiny"))
    model, tok = load_model(model_path)
    task = tasks.get("aime24")
    problems = task.load(a.data_dir)[: a.problems]
    prompts = [task.prompt(p, "qwen_boxed", tok) for p in problems]
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=a.max_new_tokens)
    engine = HFEngine(model, tok)
    plain = HFEngine(model, tok, cascade=False)

    def ours(engine=engine) -> int:
        toks = 0
        for p, prompt in zip(problems, prompts, strict=True):
            seeds = [sample_seed(0, task.name, p.id, i) for i in range(a.n)]
            for start in range(0, a.n, 64):
                toks += sum(c.tokens for c in engine.generate([(prompt, seeds[start:start + 64])], params)[0])
        return toks

    def naive_per_problem() -> int:
        toks = 0
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
            with torch.inference_mode():
                out = model.generate(ids, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=a.max_new_tokens,
                                     num_return_sequences=a.n, pad_token_id=tok.pad_token_id)
            toks += int((out[:, ids.shape[1]:] != tok.pad_token_id).sum())
        return toks

    def naive_per_sample() -> int:
        toks = 0
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
            for _ in range(a.n):
                with torch.inference_mode():
                    out = model.generate(ids, do_sample=True, temperature=1.0, top_p=1.0,
                                         max_new_tokens=a.max_new_tokens, pad_token_id=tok.pad_token_id)
                toks += out.shape[1] - ids.shape[1]
        return toks

    results = {}
    samples = a.problems * a.n
    variants = [("hf-engine", ours), ("hf-engine-transformers", lambda: ours(plain)),
                ("naive-per-problem", naive_per_problem), ("naive-per-sample", naive_per_sample)]
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    tokens: dict[str, int] = {}
    # one untimed pass of each fast variant first (allocator and BLAS warm-up), then interleaved rounds so
    # that a slow spell of a shared machine hits every variant alike
    for rnd in range(a.repeats + 1):
        for name, fn in variants:
            if name == "naive-per-sample" and rnd != 1:
                continue
            t0 = time.perf_counter()
            toks = fn()
            if rnd:
                times[name].append(time.perf_counter() - t0)
                tokens[name] = toks
    for name, _ in variants:
        dt = statistics.median(times[name])
        toks = tokens[name]
        results[name] = {"seconds": dt, "runs": times[name], "samples_per_s": samples / dt, "tokens_per_s": toks / dt}
        print(f"{name:<22} {samples} samples, {toks} tokens in {dt:7.2f} s (median of {len(times[name])}): "
              f"{samples / dt:8.1f} samples/s, {toks / dt:9.1f} tokens/s", flush=True)
    print(f"hf engine decode path: {engine.decode_path}")
    ours_t = times["hf-engine"]
    for name in ("hf-engine-transformers", "naive-per-problem", "naive-per-sample"):
        # paired by round (the same slow or fast spell hits both), median over rounds; the one naive-per-sample
        # run (round 1) is paired with round 1 of the hf engine
        ratios = [t / o for t, o in zip(times[name], ours_t, strict=False)]
        ratio = statistics.median(ratios)
        results[f"ratio_vs_{name}"] = ratio
        results[f"ratios_vs_{name}"] = ratios
        print(f"speed-up of the hf engine over {name}: {ratio:.1f}x "
              f"(per round: {', '.join(f'{r:.1f}' for r in ratios)})")

    if a.big_n:
        cfg = EvalConfig(model=model_path, tasks=["aime24"], out=str(tmp / "big"), n=a.big_n, sampling=params,
                         limit=1, data_dir=a.data_dir, workers=1)
        t0 = time.perf_counter()
        run = evaluate(cfg, engine=engine, tokenizer=tok, print_table=False)
        dt = time.perf_counter() - t0
        n_samples = sum(1 for _ in run.iter_samples())
        results["big_n"] = {"n": a.big_n, "decode": engine.decode_path, "samples": n_samples, "seconds": dt}
        print(f"rlvr eval, one problem, n={a.big_n}: {n_samples} samples verified and stored in {dt:.1f} s "
              f"({n_samples / dt:.1f} samples/s)")

    if a.json:
        Path(a.json).write_text(json.dumps({"date": utc_now(), "settings": vars(a), "results": results,
                                            "provenance": collect()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
