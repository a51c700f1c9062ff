"""The `hf` engine's stop-string search, with and without its token filter, measured in one run.

    python benchmarks/bench_stop_strings.py [--model DIR] [--problems 2] [--n 64] [--max-new-tokens 64]
                                            [--repeats 3] [--json PATH]

A completion-style prompt ends where its task's stop strings appear (HumanEval's completion prompt: the Codex
stops; BBH's 3-shot prompt: a blank line). The engine searches the decoded tail of a row only when the row's new
token can complete a stop string (`HFEngine._stop_tokens`); the baseline, a subclass whose table flags every
token, searches every live row at every step, as the engine did before the filter. Both run interleaved, the
same prompts and seeds; the completions must be identical (the script fails otherwise), and the speed-up is
the median of the paired per-round ratios (printed with their range). Absolute times only mean something on
the machine that printed them.
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--problems", type=int, default=2)
    ap.add_argument("--n", type=int, default=64, help="samples per problem (one batch)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-dir", default=os.environ.get("RLVR_DATA_DIR"))
    ap.add_argument("--json", help="also write the measurements here")
    a = ap.parse_args()

    import torch
    from rlvr.harness.provenance import collect, write_measurements
    from rlvr.harness.sample.engine import HFEngine, SamplingParams, sample_seed
    from rlvr.harness.sample.models import init_model, load_model, model_fingerprint

    from rlvr import tasks

    class EveryRow(HFEngine):
        def _stop_tokens(self, stop, vocab, device):
            return torch.ones(vocab, dtype=torch.bool, device=device)

    provenance = collect()          # of the code that runs (taken before it runs)
    model_path = a.model or str(init_model(Path(tempfile.mkdtemp(prefix="bench-stop-")) / "tiny"))
    model, tok = load_model(model_path)
    results: dict = {"model": model_fingerprint(model_path), "tasks": {}}
    filtered, every = HFEngine(model, tok), EveryRow(model, tok)
    for name, template in (("humaneval", "completion"), ("bbh", "cot_3shot")):
        task = tasks.get(name)
        problems, source = task.load_with_source(a.data_dir)
        problems = problems[: a.problems]
        prompts = [task.prompt(p, template, tok) for p in problems]
        params = SamplingParams(temperature=1.0, max_new_tokens=a.max_new_tokens).with_stop(task.stop_strings(template))

        def run(engine, name=name, problems=problems, prompts=prompts, params=params):
            return [engine.generate([(prompt, [sample_seed(0, name, p.id, i) for i in range(a.n)])], params)[0]
                    for p, prompt in zip(problems, prompts, strict=True)]

        times: dict[str, list[float]] = {"filtered": [], "every-row": []}
        for rnd in range(a.repeats + 1):                  # round 0 warms up and is not timed
            outs = {}
            for label, engine in (("every-row", every), ("filtered", filtered)):
                t0 = time.perf_counter()
                outs[label] = run(engine)
                if rnd:
                    times[label].append(time.perf_counter() - t0)
            same = [[(c.token_ids, c.text, c.finish_reason) for c in r] for r in outs["filtered"]] == \
                   [[(c.token_ids, c.text, c.finish_reason) for c in r] for r in outs["every-row"]]
            if not same:
                print(f"{name}: the filtered search changed a completion", file=sys.stderr)
                return 1
        flagged = filtered._stop_tokens(params.stop, model.get_output_embeddings().weight.shape[0], "cpu")
        stopped = sum(c.finish_reason == "stop" for r in outs["filtered"] for c in r)
        ratios = [e / f for e, f in zip(times["every-row"], times["filtered"], strict=True)]
        ratio = statistics.median(ratios)
        print(f"{name} ({template}, stops {params.stop!r}): {int(flagged.sum())} of {flagged.numel()} tokens flagged; "
              f"{stopped} of {a.problems * a.n} samples stopped; every-row {statistics.median(times['every-row']):.2f} s, "
              f"filtered {statistics.median(times['filtered']):.2f} s: {ratio:.2f}x "
              f"(rounds {min(ratios):.2f} to {max(ratios):.2f}: {', '.join(f'{r:.2f}' for r in ratios)}); "
              "completions identical")
        results["tasks"][name] = {
            "template": template, "stop": list(params.stop), "data": source, "problems": len(problems),
            "samples": len(problems) * a.n, "stopped": stopped, "tokens_flagged": int(flagged.sum()),
            "vocab": flagged.numel(), "completions_identical": True,
            "seconds": {k: {"median": statistics.median(v), "runs": v} for k, v in times.items()},
            "ratio every-row / filtered": {"median": ratio, "min": min(ratios), "max": max(ratios), "rounds": ratios}}
    if a.json:
        write_measurements(a.json, vars(a), results, provenance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
