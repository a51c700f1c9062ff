"""`rlvr` command line: a thin layer over functions the Python API exposes.

Each verb is a function `_cmd_<verb>(args) -> int` registered in `VERBS` with its argument setup.
User mistakes raise `UserError` and become one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rlvr.harness.errors import UserError

Setup = Callable[[argparse.ArgumentParser], None]
Handler = Callable[[argparse.Namespace], int]
VERBS: dict[str, tuple[str, Setup, Handler]] = {}


def verb(name: str, help_line: str, setup: Setup):
    def deco(fn: Handler) -> Handler:
        VERBS[name] = (help_line, setup, fn)
        return fn
    return deco


def _csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


# ---- table -------------------------------------------------------------------------------------

def _setup_table(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN", help="run directories (rows)")
    p.add_argument("--k", help="comma-separated k values per cell (default: 1,256, with 256 lowered to "
                               "the largest power of two <= n when runs have fewer samples)")
    p.add_argument("--format", default="md", choices=["md", "latex", "csv"], help="output format (default: md)")
    p.add_argument("--reference", metavar="FILE", help="JSON file of published numbers, added as marked rows")
    p.add_argument("--tasks", type=_csv_list, help="comma-separated benchmark columns (default: all present)")
    p.add_argument("--allow-different-problems", action="store_true",
                   help="tabulate runs that scored a benchmark on different problem sets")
    p.add_argument("--out", metavar="FILE", help="write the table here instead of stdout")


@verb("table", "result table: runs x benchmarks, 'pass@1 / pass@256' cells, domain averages", _setup_table)
def _cmd_table(a: argparse.Namespace) -> int:
    from rlvr.harness.report.metrics import incomplete_notes
    from rlvr.harness.report.tables import parse_ks, table

    text = table(a.runs, parse_ks(a.k) if a.k else None, a.format, a.reference, a.tasks, a.allow_different_problems)
    for note in incomplete_notes(a.runs):
        print(note, file=sys.stderr)
    _emit(text, a.out)
    return 0


# ---- plot --------------------------------------------------------------------------------------

def _setup_plot(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (one colour each)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="image to write")
    p.add_argument("--tasks", type=_csv_list, help="comma-separated benchmarks (default: all present)")
    p.add_argument("--iterations", type=int, default=1000, help="bootstrap iterations for the bands")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--title", help="figure title")
    p.add_argument("--allow-different-problems", action="store_true",
                   help="plot runs that scored a benchmark on different problem sets")


@verb("plot", "pass@k curves per benchmark with bootstrap bands, one colour per run", _setup_plot)
def _cmd_plot(a: argparse.Namespace) -> int:
    from rlvr.harness.report.metrics import incomplete_notes
    from rlvr.harness.report.plots import plot_runs

    path = plot_runs(a.runs, a.out, a.tasks, a.iterations, a.seed, title=a.title,
                     allow_different_problems=a.allow_different_problems)
    for note in incomplete_notes(a.runs):
        print(note, file=sys.stderr)
    print(path)
    return 0


# ---- compare -----------------------------------------------------------------------------------

def _setup_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("baseline", metavar="BASELINE", help="run directory of the reference (e.g. a golden run)")
    p.add_argument("candidate", metavar="CANDIDATE", help="run directory to check")
    p.add_argument("--tolerance", type=float, default=1.0, metavar="POINTS",
                   help="a drop must exceed this many percentage points to count (default: 1.0)")
    p.add_argument("--alpha", type=float, default=0.05, help="one-sided test level (default: 0.05)")
    p.add_argument("--iterations", type=int, default=5000, help="bootstrap iterations (default: 5000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--correction", default="holm", choices=["holm", "none"],
                   help="multiple-testing correction over the (task, k) rows (default: holm)")
    p.add_argument("--k", help="comma-separated k values (default: 1, 2, 4, ... up to n)")
    p.add_argument("--tasks", type=_csv_list, help="comma-separated benchmarks (default: all shared)")
    p.add_argument("--max-error-rate", type=float, default=0.0, metavar="FRACTION",
                   help="fail (exit 1) when more than this fraction of either run's samples could not be verified "
                        "(verifier errors, which pass@k leaves out; default: 0, any error fails; rerun the run's "
                        "`rlvr eval` or `rlvr regrade` to verify them again)")


@verb("compare", "paired-bootstrap pass@k regression check; exit 1 on a significant drop", _setup_compare)
def _cmd_compare(a: argparse.Namespace) -> int:
    from rlvr.harness.report.compare import compare_runs
    from rlvr.harness.report.metrics import incomplete_notes
    from rlvr.harness.report.tables import parse_ks

    if not 0 <= a.max_error_rate <= 1:
        raise UserError(f"--max-error-rate must be in [0, 1], got {a.max_error_rate}")
    res = compare_runs(a.baseline, a.candidate, a.tolerance, a.alpha, a.iterations, a.seed,
                       parse_ks(a.k) if a.k else None, a.tasks, a.correction)
    for note in incomplete_notes([a.baseline, a.candidate]):
        print(note, file=sys.stderr)
    over = [(path, rate) for path, rate in res.error_rates.items() if rate > a.max_error_rate]
    for t, n in res.unshared.items():
        if n:
            print(f"rlvr: note: task {t}: {n} problems are in only one run, or have no verified sample in one, "
                  f"and were left out", file=sys.stderr)
    print(res.render())
    if over:
        print("\n" + "; ".join(f"ERRORS: {100 * rate:.2f}% of the samples of {path} could not be verified"
                                for path, rate in over)
              + f" (more than --max-error-rate {a.max_error_rate:g}): the comparison cannot pass")
        return 1
    if res.regressions:
        worst = min(res.regressions, key=lambda r: r.diff)
        print(f"\nREGRESSION: {len(res.regressions)} (task, k) cells dropped by more than {a.tolerance:g} "
              f"points (worst: {worst.task} pass@{worst.k} {100 * worst.diff:+.2f})")
        return 1
    print("\nno regression")
    return 0


# ---- metrics -----------------------------------------------------------------------------------

def _setup_metrics(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--iterations", type=int, default=1000, help="bootstrap iterations (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")


@verb("metrics", "recompute a run's metrics.json (pass@k curves) from its samples", _setup_metrics)
def _cmd_metrics(a: argparse.Namespace) -> int:
    from rlvr.harness.report.metrics import update_metrics
    from rlvr.harness.runs.store import Run

    m = update_metrics(Run.open(a.run), iterations=a.iterations, seed=a.seed)
    for t, tm in m["tasks"].items():
        curve = tm["curve"]
        errors = f", {tm['errors']} samples not verified (errors)" if tm.get("errors") else ""
        if curve is None:
            print(f"{t}: {len(tm['problems'])} problems, no judged sample{errors}")
            continue
        print(f"{t}: {curve['problems']} problems, n={tm['n_min']}{errors}"
              + "".join(f"  pass@{k}={100 * v:.1f}" for k, v in zip(curve["ks"], curve["mean"], strict=True)))
    return 0


# ---- regrade -----------------------------------------------------------------------------------

def _setup_regrade(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory (its samples.jsonl must hold the completions)")
    p.add_argument("--tasks", type=_csv_list, help="comma-separated tasks of the run (default: all)")
    p.add_argument("--data-dir", help="where the benchmark data lives (default: $RLVR_DATA_DIR), as for the run")
    p.add_argument("--workers", type=int, help="verifier processes (default: the CPUs)")
    p.add_argument("--deadline", type=float, default=10.0, metavar="S",
                   help="seconds one check may take before it counts as a verifier error (default: 10)")


@verb("regrade", "verify a run's stored completions again with the current verifiers (no sampling)", _setup_regrade)
def _cmd_regrade(a: argparse.Namespace) -> int:
    from rlvr.harness.eval.regrade import regrade, render

    if a.workers is not None and a.workers < 1:
        raise UserError(f"--workers must be >= 1, got {a.workers}")
    if not a.deadline > 0:
        raise UserError(f"--deadline must be > 0, got {a.deadline}")
    print(render(regrade(a.run, a.tasks, a.data_dir, a.workers, a.deadline)))
    return 0


# ---- tasks -------------------------------------------------------------------------------------

def _setup_tasks(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="local benchmark directory (default: $RLVR_DATA_DIR)")


@verb("tasks", "list the benchmarks: name, domain, size, source, whether the data is available here", _setup_tasks)
def _cmd_tasks(a: argparse.Namespace) -> int:
    from rlvr.tasks.loading import local_file
    from tabulate import tabulate

    from rlvr import tasks as registry

    rows = []
    suites = {t: s for s, names in registry.SUITES.items() if s != "all10" for t in names}
    for name in registry.available():
        task = registry.get(name)
        hub = task.hub.path + (f" ({task.hub.name})" if task.hub and task.hub.name else "") if task.hub else "–"
        path = local_file(task, a.data_dir)
        if not task.local_dir and task.hub is None:   # generated in code (the micro world): always here
            try:
                size, state = str(len(task.load(a.data_dir))), "generated"
            except (NotImplementedError, UserError):  # a task with no evaluation split (training only)
                size, state = "–", "no evaluation split"
        elif path is not None:
            try:
                size, state = str(len(task.load(a.data_dir))), f"local: {path.parent}"
            except UserError as e:
                size, state = "?", f"local data unusable: {e}"
        else:
            size, state = "?", "hub only (not reachable offline)" if task.hub else "missing"
        rows.append([name, task.domain, suites.get(name, "extra"), size, hub, state])
    for name in (n for names in registry.SUITES.values() for n in names):
        if name not in registry.available() and name not in [r[0] for r in rows]:
            rows.append([name, "?", suites.get(name, ""), "?", "–", "not implemented yet"])
    print(tabulate(rows, headers=["task", "domain", "suite", "problems", "hub source", "here"], tablefmt="github"))
    print("\nsuites: " + "; ".join(f"{s} = {', '.join(n)}" for s, n in registry.SUITES.items()))
    return 0


# ---- init-model --------------------------------------------------------------------------------

def _setup_init_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="directory to write the model and tokenizer to")
    p.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary size (default: 1024)")
    p.add_argument("--hidden-size", type=int, default=64, help="hidden size (default: 64)")
    p.add_argument("--layers", type=int, default=2, help="transformer layers (default: 2)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory")


@verb("init-model", "build a small Qwen2-architecture model and tokenizer offline, in HF format", _setup_init_model)
def _cmd_init_model(a: argparse.Namespace) -> int:
    from rlvr.harness.sample.models import TinyModelSpec, init_model

    spec = TinyModelSpec(vocab_size=a.vocab_size, hidden_size=a.hidden_size, num_layers=a.layers,
                         num_heads=a.heads, num_kv_heads=a.heads // 2 or 1, seed=a.seed)
    print(init_model(a.out, spec, overwrite=a.overwrite))
    return 0


# ---- eval --------------------------------------------------------------------------------------

def _setup_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="hub id or local directory of a causal LM")
    p.add_argument("--tasks", required=True, help="comma-separated tasks and suites (math6, logic2, code2, all10)")
    p.add_argument("--out", required=True, help="run directory (resumed when it exists with the same settings)")
    p.add_argument("--n", type=int, default=16, help="samples per problem (default: 16)")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default: 0.6)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default: 0.95)")
    p.add_argument("--top-k", type=int, default=0, help="top-k sampling, 0 = off (default: 0)")
    p.add_argument("--max-new-tokens", type=int, default=4096, help="generation limit (default: 4096)")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable); completion-style templates add their task's own (bbh cot_3shot: a blank line; humaneval completion: the Codex stop sequences)")
    p.add_argument("--seed", type=int, default=0, help="run seed; sample seeds derive from it (default: 0)")
    p.add_argument("--engine", default="hf", choices=["hf", "vllm"], help="sampler (default: hf)")
    p.add_argument("--template", help="prompt template: NAME for every task offering it, or task=NAME,...")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="scoring option for every task that accepts it (repeatable): answer_mode=any_boxed "
                        "(math: correct if any \\boxed{} matches, as BBG scores), fallback=true")
    p.add_argument("--data-dir", help="local benchmark directory (default: $RLVR_DATA_DIR, then the hub)")
    p.add_argument("--shard", default="0/1", help="evaluate shard i of N of the problems (default: 0/1)")
    p.add_argument("--limit", type=int, help="only the first L problems of each task")
    p.add_argument("--chunk", type=int, default=64,
                   help="samples of one problem per batch (default: 64). The same chunk gives the same samples, so a "
                        "resume keeps it; larger is faster and holds more KV memory (benchmarks/bench_sampling.py)")
    p.add_argument("--workers", type=int, help="verifier processes (default: all CPUs)")
    p.add_argument("--deadline", type=float, default=10.0, help="seconds per verification (default: 10); code tasks get at least their own test time limits")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    p.add_argument("--revision", help="hub revision of the model")
    p.add_argument("--no-completions", action="store_true", help="do not store completion texts")
    p.add_argument("--label", help="row label in tables and plots (a resume may change it)")


@verb("eval", "sample n completions per problem, verify them, write a run directory with pass@k", _setup_eval)
def _cmd_eval(a: argparse.Namespace) -> int:
    from rlvr.harness.eval.evaluate import EvalConfig, evaluate, parse_shard, parse_templates
    from rlvr.harness.sample.engine import SamplingParams
    from rlvr.harness.verify.task_options import parse_task_options
    from rlvr.tasks import expand

    names = expand(a.tasks)
    cfg = EvalConfig(
        model=a.model, tasks=names, out=a.out, n=a.n,
        sampling=SamplingParams(a.temperature, a.top_p, a.top_k, a.max_new_tokens, tuple(a.stop)),
        seed=a.seed, engine=a.engine, templates=parse_templates(a.template, names),
        task_options=parse_task_options(a.task_option, names), data_dir=a.data_dir,
        shard=parse_shard(a.shard), limit=a.limit, chunk=a.chunk, workers=a.workers, deadline_s=a.deadline,
        device=a.device, dtype=a.dtype, revision=a.revision, keep_completions=not a.no_completions,
        label=a.label)
    evaluate(cfg)
    return 0


# ---- merge -------------------------------------------------------------------------------------

def _setup_merge(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="shard run directories of one evaluation")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--allow-partial", action="store_true", help="merge even when some shards are missing")


@verb("merge", "combine the shards of one evaluation into one run (refuses differing settings)", _setup_merge)
def _cmd_merge(a: argparse.Namespace) -> int:
    from rlvr.harness.eval.merge import merge_runs

    run = merge_runs(a.runs, a.out, a.allow_partial)
    print(run.path)
    return 0


# ---- methods -----------------------------------------------------------------------------------

def _setup_methods(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one method's full documentation")


@verb("methods", "list the RLVR methods with their hyperparameters and defaults", _setup_methods)
def _cmd_methods(a: argparse.Namespace) -> int:
    from rlvr import methods

    names = [a.name] if a.name else methods.available()
    for name in names:
        if name not in methods.available():
            raise UserError(f"unknown method {name!r} (known: {', '.join(methods.available())})")
        d = methods.describe(name)
        print(f"{name}: {d['summary']}")
        if a.name:
            print("\n" + d["doc"] + "\n")
        for f in d["fields"]:
            print(f"    {f['name']:<24} {f['type']:<28} default {f['default']!r}")
        print()
    return 0


# ---- train -------------------------------------------------------------------------------------

def _setup_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training config (YAML); see reproduce/ for examples")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set steps=20 --set method.kl_coef=0 (repeatable)")
    p.add_argument("--backend", default="local", choices=["local", "verl"],
                   help="training backend: local (this process, CPU or one GPU) or verl (multi-GPU, "
                        "multi-node; reads the config's optional verl: section) (default: local)")
    p.add_argument("--print-only", action="store_true",
                   help="with --backend verl: write the data files and print the verl launch, do not run it")


@verb("train", "train a model with an RLVR method (resumes from the last checkpoint in --out)", _setup_train)
def _cmd_train(a: argparse.Namespace) -> int:
    if a.backend == "verl":
        from rlvr.harness.backends.verl import launch

        plan = launch.prepare(a.config, a.set)
        print(plan.render(), flush=True)
        return 0 if a.print_only else launch.run(plan)
    if a.print_only:
        raise UserError("--print-only: only with --backend verl")
    from rlvr.harness.config import load_config
    from rlvr.harness.train.trainer import TrainConfig, train

    cfg = load_config(TrainConfig, a.config, a.set, ignore=("verl",))   # verl: is for --backend verl
    print(train(cfg))
    return 0


# ---- reproduce ---------------------------------------------------------------------------------

def _setup_reproduce(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="recipe: micro (the embedded default), a folder of reproduce/ (nsr, casp, casp_logic, "
                                "casp_code, lp_reg, bbg) or a path to a recipe.yaml")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the recipe, check model/data/GPUs here, print the plan and a GPU-hour estimate")
    p.add_argument("--scale", default="full", choices=["full", "micro"],
                   help="full: the paper's setting (default); micro: the recipe's method configs on the micro "
                        "world, on CPU")
    p.add_argument("--quick", action="store_true", help="micro world: fewer problems, K = 64, fewer RL steps "
                                                        "(about 2 minutes once the base model is cached)")
    p.add_argument("--out", help="output directory (default: runs/micro[-quick], runs/reproduce/NAME[-micro])")
    p.add_argument("--cache", default=".cache/rlvr", help="where base models built here are cached (--rebuild-base, "
                                                          "recipes of another base) (default: .cache/rlvr)")
    p.add_argument("--methods", help="comma-separated methods (micro: the default arms and any other registered "
                                     "method of OPTIONAL_METHODS, e.g. dapo,gspo,cispo,rloo) or arm ids (recipes) "
                                     "to run (default: the recipe's arms)")
    p.add_argument("--data-dir", help="local benchmark directory (default: $RLVR_DATA_DIR)")
    p.add_argument("--rebuild-base", action="store_true",
                   help="micro world: pre-train the base model from scratch instead of loading the shipped one, "
                        "and say whether it reproduced the shipped weights bit for bit")


@verb("reproduce", "run a paper's recipe (--dry-run: plan and availability; --scale micro: on CPU); "
                   "'micro' trains every method on CPU and compares pass@k", _setup_reproduce)
def _cmd_reproduce(a: argparse.Namespace) -> int:
    if a.name == "micro" or a.scale == "micro":
        # before anything imports torch: PyTorch reads ATEN_CPU_CAPABILITY once, on import
        from rlvr.harness import cpu_isa

        cpu_isa.pin()
    only = _csv_list(a.methods) if a.methods else None
    if a.rebuild_base and a.name != "micro":
        raise UserError("--rebuild-base applies to `rlvr reproduce micro`")
    if a.name != "micro":
        from rlvr.harness.reproduce.runner import reproduce

        return reproduce(a.name, dry_run=a.dry_run, scale=a.scale, quick=a.quick, out=a.out, cache=a.cache,
                         arms=only, data_dir=a.data_dir)
    if a.dry_run:
        raise UserError("--dry-run applies to the paper recipes; `rlvr reproduce micro --quick` is the short run")
    from rlvr.harness.reproduce.micro import run_micro

    out = a.out or ("runs/micro-quick" if a.quick else "runs/micro")
    run_micro(out, a.cache, quick=a.quick, only=only, rebuild_base=a.rebuild_base)
    return 0


# ---- export-lm-eval ----------------------------------------------------------------------------

def _setup_export_lm_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", required=True, help="comma-separated tasks and suites (math6, logic2, code2, all10)")
    p.add_argument("--out", required=True, help="folder for the task YAMLs and their helper (lm_eval --include_path)")
    p.add_argument("--n", type=int, default=16, help="samples per problem, lm-eval's repeats (default: 16)")
    p.add_argument("--k", help="comma-separated pass@k columns (default: 1, 2, 4, ... up to n)")
    p.add_argument("--template", help="prompt template: NAME for every task offering it, or task=NAME,...")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default: 0.6)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default: 0.95)")
    p.add_argument("--top-k", type=int, default=0, help="top-k sampling, 0 = not set (default: 0)")
    p.add_argument("--max-new-tokens", type=int, default=4096, help="generation limit (default: 4096)")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable); completion-style templates add their task's own (bbh cot_3shot: a blank line; humaneval completion: the Codex stop sequences)")
    p.add_argument("--limit", type=int, help="only the first L problems of each task")
    p.add_argument("--data-dir", help="benchmark directory to bake in (default at run time: $RLVR_DATA_DIR)")
    p.add_argument("--model", help="tokenizer for chat-template prompts (default at run time: lm-eval's "
                                   "tokenizer= or pretrained= model argument)")
    p.add_argument("--deadline", type=float, default=10.0, help="seconds per verification (default: 10); code tasks get at least their own test time limits")
    p.add_argument("--workers", type=int, help="verifier processes (default: all CPUs)")
    p.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a scoring option of the tasks that accept it, as in rlvr eval (repeatable)")


@verb("export-lm-eval", "write our tasks as lm-eval task YAMLs (our prompts, verifiers, unbiased pass@k)",
      _setup_export_lm_eval)
def _cmd_export_lm_eval(a: argparse.Namespace) -> int:
    from rlvr.harness.backends.lmeval import ExportConfig, export_lm_eval
    from rlvr.harness.eval.evaluate import parse_templates
    from rlvr.harness.report.tables import parse_ks
    from rlvr.harness.sample.engine import SamplingParams
    from rlvr.harness.verify.task_options import parse_task_options
    from rlvr.tasks import expand

    names = expand(a.tasks)
    cfg = ExportConfig(task_options=parse_task_options(a.task_option, names),
        out=a.out, tasks=names, n=a.n, ks=parse_ks(a.k) if a.k else None,
        templates=parse_templates(a.template, names),
        sampling=SamplingParams(a.temperature, a.top_p, a.top_k, a.max_new_tokens, tuple(a.stop)),
        limit=a.limit, data_dir=a.data_dir, model=a.model, deadline_s=a.deadline, workers=a.workers)
    for path in export_lm_eval(cfg):
        print(path)
    return 0


# ---- plumbing ----------------------------------------------------------------------------------

def _emit(text: str, out: str | None) -> None:
    if out:
        try:
            with open(out, "w", encoding="utf-8") as f:
                f.write(text if text.endswith("\n") else text + "\n")
        except OSError as e:
            raise UserError(f"--out: cannot write {out} ({e.strerror})") from None
        print(out)
    else:
        print(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlvr", description="RLVR benchmark and reproducibility harness.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run 'rlvr VERB --help' for a verb's flags.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (help_line, setup, fn) in VERBS.items():
        p = sub.add_parser(name, help=help_line, description=help_line)
        setup(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        code = args.func(args)
        sys.stdout.flush()   # so that a closed pipe shows here, not as a warning when Python exits
        return code
    except UserError as e:
        print(f"rlvr: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlvr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`rlvr methods | head`): stop quietly with the status a SIGPIPE gives git or
        # ls (128 + 13). stdout now points at devnull, so Python's final flush has nowhere to fail
        # (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
