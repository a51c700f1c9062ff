"""`rlvr export-lm-eval`: the exported tasks give lm-eval our prompts, verdicts and pass@k.

The first half needs no lm-eval (default suite). The second half (`tox -e lmeval`, which installs
lm-eval 0.4.13) runs exported tasks through `lm_eval.simple_evaluate` and replays the very completions
lm-eval produced through `rlvr eval` (`rlvr.harness.eval.evaluate.evaluate` with an engine that returns them):
both must report the same pass@k, which also proves that lm-eval sent our prompts verbatim.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from rlvr.harness.backends.lmeval import (
    ExportConfig,
    export_lm_eval,
    generation_kwargs,
    load_docs,
    process_results,
    verify_samples,
)
from rlvr.harness.cli import main
from rlvr.harness.errors import UserError
from rlvr.harness.report.passk import pass_at_k
from rlvr.harness.sample.engine import Completion, SamplingParams

from rlvr import tasks as registry


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: ("!function", loader.construct_scalar(node)))


def read_yaml(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_Loader)


# ---- export only (no lm-eval needed) ----------------------------------------------------------------

def test_all10_export_writes_one_task_per_benchmark_and_the_suite_groups(tmp_path):
    written = export_lm_eval(ExportConfig(out=str(tmp_path), tasks=["all10"], n=16))
    assert written[0].name == "rlvr_lmeval.py"
    names = {p.stem for p in written[1:]}
    assert names == {f"rlvr_{t}" for t in registry.SUITES["all10"]} | {"rlvr_math6", "rlvr_logic2", "rlvr_code2",
                                                                         "rlvr_all10"}
    for t in registry.SUITES["all10"]:
        cfg = read_yaml(tmp_path / f"rlvr_{t}.yaml")
        task = registry.get(t)
        assert cfg["task"] == f"rlvr_{t}"
        assert cfg["repeats"] == 16 and cfg["num_fewshot"] == 0 and cfg["output_type"] == "generate_until"
        assert cfg["custom_dataset"] == ("!function", "rlvr_lmeval.load_docs")
        assert cfg["dataset_kwargs"]["rlvr_task"] == t
        assert cfg["dataset_kwargs"]["rlvr_template"] == task.templates[0]     # rlvr eval's default
        assert cfg["doc_to_text"] == "prompt"
        assert cfg["filter_list"] == [{"name": "rlvr", "filter": [
            {"function": "custom", "filter_fn": ("!function", "rlvr_lmeval.verify_samples")}]}]
        assert cfg["process_results"] == ("!function", "rlvr_lmeval.process_results")
        passk = ["pass@1", "pass@2", "pass@4", "pass@8", "pass@16"]
        majk = [f"maj@{k}" for k in (1, 2, 4, 8, 16)] if task.domain != "code" else []
        assert [m["metric"] for m in cfg["metric_list"]] == passk + ["avg@n"] + majk
        assert all(m["aggregation"] == "mean" and m["higher_is_better"] for m in cfg["metric_list"])
        assert cfg.get("unsafe_code", False) == (task.domain == "code")
        assert cfg["generation_kwargs"] == {"until": list(task.stop_strings(task.templates[0])), "max_gen_toks": 4096,
                                            "do_sample": True, "temperature": 0.6, "top_p": 0.95}
    group = read_yaml(tmp_path / "rlvr_math6.yaml")
    assert group["task"] == [f"rlvr_{t}" for t in registry.SUITES["math6"]]
    assert {(a["metric"], tuple(a["filter_list"]), a["weight_by_size"]) for a in group["aggregate_metric_list"]} == \
        {(f"{m}@{k}", ("rlvr",), False) for k in (1, 2, 4, 8, 16) for m in ("pass", "maj")} | {("avg@n", ("rlvr",), False)}
    # a group with a code task averages no maj@k (code has no final answer to vote on)
    assert {a["metric"] for a in read_yaml(tmp_path / "rlvr_all10.yaml")["aggregate_metric_list"]} == \
        {f"pass@{k}" for k in (1, 2, 4, 8, 16)} | {"avg@n"}
    assert read_yaml(tmp_path / "rlvr_all10.yaml")["task"] == [f"rlvr_{t}" for t in registry.SUITES["all10"]]
    helper = {}
    exec(compile((tmp_path / "rlvr_lmeval.py").read_text(), "rlvr_lmeval.py", "exec"), helper)
    assert helper["PASS_KS"] == (1, 2, 4, 8, 16) and helper["DEADLINE_S"] == 10.0


def test_cli_export_with_k_template_limit_and_no_group_for_a_partial_suite(tmp_path, capsys):
    assert main(["export-lm-eval", "--tasks", "math500,micro_arith", "--n", "8", "--k", "1,8", "--out", str(tmp_path),
                 "--template", "math500=chat", "--limit", "5", "--temperature", "0", "--stop", "</s>"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rlvr_lmeval.py", "rlvr_math500.yaml",
                                                          "rlvr_micro_arith.yaml"]
    cfg = read_yaml(tmp_path / "rlvr_math500.yaml")
    assert cfg["dataset_kwargs"] == {"rlvr_task": "math500", "rlvr_template": "chat", "rlvr_limit": 5,
                                     "rlvr_data_dir": None, "rlvr_tokenizer": None}
    assert [m["metric"] for m in cfg["metric_list"]] == ["pass@1", "pass@8", "avg@n", "maj@1", "maj@8"]
    assert cfg["generation_kwargs"] == {"until": ["</s>"], "max_gen_toks": 4096, "do_sample": False, "temperature": 0.0}
    assert len(capsys.readouterr().out.splitlines()) == 3


@pytest.mark.parametrize("argv, message", [
    (["--n", "4", "--k", "8"], "--k: every k must be in 1..n=4"),
    (["--n", "0"], "--n must be >= 1"),
    (["--limit", "0"], "--limit must be >= 1"),
    (["--template", "nope"], "no task among --tasks offers a template named 'nope'"),
    (["--template", "math500=micro"], "task math500 has no template 'micro'"),
    (["--deadline", "0"], "--deadline must be > 0"),
])
def test_cli_mistakes_are_one_line_errors(tmp_path, capsys, argv, message):
    assert main(["export-lm-eval", "--tasks", "math500", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_unknown_task_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown task 'nope'"):
        export_lm_eval(ExportConfig(out=str(tmp_path), tasks=["nope"]))


@pytest.mark.parametrize("params, expected", [
    (SamplingParams(0.6, 0.95, 0, 4096), {"until": [], "max_gen_toks": 4096, "do_sample": True, "temperature": 0.6,
                                          "top_p": 0.95}),
    (SamplingParams(1.0, 1.0, 20, 64, ("\n\n",)), {"until": ["\n\n"], "max_gen_toks": 64, "do_sample": True,
                                                   "temperature": 1.0, "top_p": 1.0, "top_k": 20}),
    (SamplingParams(0.0, 0.9, 5, 16), {"until": [], "max_gen_toks": 16, "do_sample": False, "temperature": 0.0}),
])
def test_generation_kwargs(params, expected):
    assert generation_kwargs(params) == expected


def test_load_docs_renders_rlvr_eval_prompts_and_loads_the_tokenizer_only_when_needed(data_dir, tiny_model):
    from transformers import AutoTokenizer

    micro = load_docs(rlvr_task="micro_arith", rlvr_limit=3, pretrained="/no/such/model")["test"]
    task = registry.get("micro_arith")
    assert micro["prompt"] == [task.prompt(p) for p in task.load()[:3]]      # the bogus model is never loaded
    assert micro.column_names == ["rlvr_task", "template", "options", "problem_id", "prompt", "target"]

    math500 = registry.get("math500")
    problems = math500.load(data_dir)[:2]
    tok = AutoTokenizer.from_pretrained(tiny_model)
    docs = load_docs(rlvr_task="math500", rlvr_template="chat", rlvr_limit=2, pretrained=str(tiny_model),
                     version=1, config_source="x.yaml")["test"]
    assert docs["prompt"] == [math500.prompt(p, "chat", tok) for p in problems]
    assert docs["prompt"][0].startswith("<|im_start|>user\n")
    assert docs["target"] == [p.answer for p in problems]
    with pytest.raises(UserError, match="no tokenizer is known"):
        load_docs(rlvr_task="math500", rlvr_template="chat", rlvr_limit=1)
    with pytest.raises(UserError, match="cannot load the tokenizer '/no/such/model' \\(--model of the export\\)"):
        load_docs(rlvr_task="math500", rlvr_template="chat", rlvr_limit=1, rlvr_tokenizer="/no/such/model",
                  pretrained=str(tiny_model))


def test_filter_verifies_every_sample_and_process_results_is_unbiased_pass_at_k():
    docs = list(load_docs(rlvr_task="micro_arith", rlvr_limit=2)["test"])
    problems = registry.get("micro_arith").load()[:2]
    right = [f"so \\boxed{{{p.answer}}}" for p in problems]
    wrong = [f"\\boxed{{{int(p.answer) + 1}}}" for p in problems]
    resps = [[right[0], wrong[0], "no answer", right[0]], [wrong[1]] * 4]
    verdicts = verify_samples(resps, docs, workers=1)
    assert [[v["correct"] for v in vs] for vs in verdicts] == [[True, False, False, True], [False] * 4]
    assert verdicts[0][2]["reason"] == "no_answer" and verdicts[0][0]["extracted"] == problems[0].answer
    # maj@k by hand for (right, wrong, no answer, right): k=1 -> 2/4; k=2 -> of the 6 pairs, RR and the two
    # R+silent pairs win, the two R+W pairs tie (1/2 each), W+silent loses: 4/6; k=4 -> 2 votes against 1
    assert process_results(docs[0], [verdicts[0]], ks=(1, 2, 4)) == {
        **{f"pass@{k}": pytest.approx(pass_at_k(4, 2, k), abs=0) for k in (1, 2, 4)}, "avg@n": 0.5,
        "maj@1": pytest.approx(0.5), "maj@2": pytest.approx(4 / 6), "maj@4": pytest.approx(1.0)}
    assert process_results(docs[1], [verdicts[1]], ks=(1, 4)) == {"pass@1": 0.0, "pass@4": 0.0, "avg@n": 0.0,
                                                                  "maj@1": 0.0, "maj@4": 0.0}
    with pytest.raises(UserError, match="pass@8 needs at least 8 samples"):
        process_results(docs[0], [verdicts[0]], ks=(1, 8))


def test_task_options_reach_the_yaml_and_the_verdicts(tmp_path, data_dir):
    """--task-option answer_mode=any_boxed (BBG's scoring): baked into the task YAML, and the filter extracts
    with the configured task, so an early right box counts where the default last-box rule says wrong."""
    assert main(["export-lm-eval", "--tasks", "aime24", "--out", str(tmp_path / "x"), "--n", "2",
                     "--data-dir", str(data_dir), "--task-option", "answer_mode=any_boxed"]) == 0
    doc = yaml.load((tmp_path / "x" / "rlvr_aime24.yaml").read_text(), Loader=_Loader)
    assert doc["dataset_kwargs"]["rlvr_options"] == {"answer_mode": "any_boxed"}
    assert doc["metadata"]["task_options"] == {"answer_mode": "any_boxed"}
    problem = registry.get("aime24").load(data_dir)[0]
    text = f"first \\boxed{{{problem.answer}}} then \\boxed{{{int(problem.answer) + 1}}}"
    for options, correct in (({"answer_mode": "any_boxed"}, True), (None, False)):
        docs = list(load_docs(rlvr_task="aime24", rlvr_limit=1, rlvr_data_dir=str(data_dir),
                              rlvr_options=options)["test"])
        assert [v["correct"] for v in verify_samples([[text]], docs, workers=1)[0]] == [correct]


# ---- through lm-eval (tox -e lmeval) -----------------------------------------------------------------

def _answer(problem, i: int) -> str:
    """A deterministic 'model': right or wrong depending on (problem, sample index), so that pass@k is
    neither 0 nor 1 and differs between k."""
    rng = random.Random(f"{problem.task}/{problem.id}/{i}")
    task = registry.get(problem.task)
    if problem.task.startswith("micro_"):
        return task.solution(problem, rng, 0.4)
    ok = rng.random() < 0.35
    if task.domain == "code":
        return problem.meta["canonical_solution"] if ok else "    return None\n"
    return f"We find \\boxed{{{problem.answer}}}." if ok else "We find \\boxed{-123456}."


def _deterministic_lm(prompts: dict[str, object]):
    from lm_eval.api.model import LM

    class DeterministicLM(LM):
        """Answers each request from the problem its prompt belongs to; the i-th repeat of a prompt
        gets sample index i."""

        def __init__(self):
            super().__init__()
            self.seen: dict[str, int] = defaultdict(int)
            self.requests = 0

        def generate_until(self, requests, disable_tqdm: bool = False):
            out = []
            for req in requests:
                context, _gen_kwargs = req.args
                problem = prompts[context]          # KeyError: lm-eval sent a prompt that is not ours
                out.append(_answer(problem, self.seen[context]))
                self.seen[context] += 1
                self.requests += 1
            return out

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError

    return DeterministicLM()


class ReplayEngine:
    """An `rlvr eval` engine that returns, for each prompt, the completions lm-eval logged for it."""

    name = "lm-eval-replay"

    def __init__(self, completions: dict[str, list[str]]):
        self.completions = completions

    def generate(self, requests, params):
        return [[Completion(text, [], "stop") for text in self.completions[prompt][:len(seeds)]]
                for prompt, seeds in requests]


def _replay_through_rlvr_eval(lm_eval_samples: dict, task_names, n, limit, out, templates=None, tokenizer=None):
    """pass@k per task from `rlvr eval` on the completions lm-eval produced."""
    from rlvr.harness.eval.evaluate import EvalConfig, evaluate

    completions = {}
    for rows in lm_eval_samples.values():
        for row in rows:
            (context, _), = [tuple(a) for a in row["arguments"]]
            completions[context] = row["resps"][0]
            assert len(row["resps"][0]) == n
    cfg = EvalConfig(model="lm-eval-replay", tasks=list(task_names), out=str(out), n=n, limit=limit, chunk=n,
                     workers=2, templates=templates or {}, sampling=SamplingParams(1.0, 1.0, 0, 16))
    run = evaluate(cfg, engine=ReplayEngine(completions), tokenizer=tokenizer, progress=False, print_table=False)
    metrics = run.read_metrics()["tasks"]
    return {t: dict(zip(m["curve"]["ks"], m["curve"]["mean"], strict=True)) for t, m in metrics.items()}


@pytest.fixture(scope="module")
def lm_eval_run(tmp_path_factory, data_dir):
    """micro_arith, humaneval and the math6 group through lm-eval with the deterministic LM."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    out = tmp_path_factory.mktemp("lmeval")
    n, limit = 8, 3
    names = ["micro_arith", "humaneval", *registry.SUITES["math6"]]
    export_lm_eval(ExportConfig(out=str(out / "export"), tasks=names, n=n, limit=limit, workers=2,
                                sampling=SamplingParams(1.0, 1.0, 0, 64)))
    prompts = {}
    for name in names:
        task = registry.get(name)
        for p in task.load(data_dir)[:limit]:
            prompts[task.prompt(p, task.templates[0])] = p
    lm = _deterministic_lm(prompts)
    # include_defaults=False: indexing lm-eval's ~26k built-in YAMLs costs half a minute and is not under test
    res = lm_eval.simple_evaluate(model=lm, tasks=["rlvr_micro_arith", "rlvr_humaneval", "rlvr_math6"],
                                  task_manager=TaskManager(include_path=str(out / "export"), include_defaults=False),
                                  log_samples=True, confirm_run_unsafe_code=True, bootstrap_iters=0)
    replay = _replay_through_rlvr_eval(res["samples"], names, n, limit, out / "replay")
    from rlvr.harness.runs.store import Run

    return {"results": res, "replay": replay, "lm": lm, "names": names, "n": n, "limit": limit,
            "replay_metrics": Run.open(out / "replay").read_metrics()["tasks"]}


def test_lm_eval_pass_at_k_equals_rlvr_eval_on_the_same_samples(lm_eval_run):
    results, replay = lm_eval_run["results"]["results"], lm_eval_run["replay"]
    assert lm_eval_run["lm"].requests == len(lm_eval_run["names"]) * lm_eval_run["limit"] * lm_eval_run["n"]
    for name in lm_eval_run["names"]:
        ours = replay[name]
        assert sorted(ours) == [1, 2, 4, 8]
        for k, value in ours.items():
            assert results[f"rlvr_{name}"][f"pass@{k},rlvr"] == pytest.approx(value, rel=1e-12, abs=1e-15), (name, k)
    # the check is not vacuous: the deterministic answers give intermediate, increasing pass@k
    for name in ("micro_arith", "humaneval"):
        curve = [results[f"rlvr_{name}"][f"pass@{k},rlvr"] for k in (1, 2, 4, 8)]
        assert 0 < curve[0] < curve[1] <= curve[3] <= 1 and curve[0] < 1, (name, curve)


def test_lm_eval_avg_and_maj_columns_equal_rlvr_eval_metrics(lm_eval_run):
    """avg@n and maj@k in lm-eval's results are metrics.json's for the same samples; code tasks have no maj@k."""
    results, metrics = lm_eval_run["results"]["results"], lm_eval_run["replay_metrics"]
    for name in lm_eval_run["names"]:
        m = metrics[name]
        assert results[f"rlvr_{name}"]["avg@n,rlvr"] == pytest.approx(m["avg"]["mean"], rel=1e-12)
        if name == "humaneval":
            assert m["maj"] is None and not any(key.startswith("maj@") for key in results[f"rlvr_{name}"])
            continue
        for k, value in zip(m["maj"]["ks"], m["maj"]["mean"], strict=True):
            assert results[f"rlvr_{name}"][f"maj@{k},rlvr"] == pytest.approx(value, rel=1e-12, abs=1e-15), (name, k)
    assert 0 < results["rlvr_micro_arith"]["maj@8,rlvr"] < 1     # not vacuous


def test_lm_eval_logs_our_prompts_all_samples_and_their_verdicts(lm_eval_run):
    res = lm_eval_run["results"]
    for row in res["samples"]["rlvr_humaneval"]:
        problem = registry.get("humaneval").load()[row["doc_id"]]
        assert row["arguments"][0][0] == problem.text            # template "completion": the bare prompt
        assert len(row["resps"][0]) == len(row["filtered_resps"][0]) == lm_eval_run["n"]
        verdicts = row["filtered_resps"][0]
        for text, v in zip(row["resps"][0], verdicts, strict=True):
            assert v["correct"] == (text == problem.meta["canonical_solution"]), v["reason"]
        c = sum(v["correct"] for v in verdicts)
        assert row["pass@1"] == pytest.approx(c / lm_eval_run["n"])
    assert res["n-samples"]["rlvr_micro_arith"] == {"original": 3, "effective": 3}   # the export's --limit
    assert res["versions"]["rlvr_micro_arith"] == 1


def test_lm_eval_group_is_the_unweighted_mean_over_its_benchmarks(lm_eval_run):
    results = lm_eval_run["results"]["results"]
    for k in (1, 2, 4, 8):
        members = [results[f"rlvr_{t}"][f"pass@{k},rlvr"] for t in registry.SUITES["math6"]]
        assert results["rlvr_math6"][f"pass@{k},rlvr"] == pytest.approx(sum(members) / len(members), rel=1e-12)


def test_lm_eval_hf_backend_with_a_tiny_model_uses_its_chat_template(tmp_path, data_dir, tiny_model):
    """lm-eval's own `hf` model class: the exported task's chat-template prompt comes from the
    tokenizer of `pretrained=`, and lm-eval's pass@k equals rlvr eval's on its samples."""
    lm_eval = pytest.importorskip("lm_eval")
    pytest.importorskip("accelerate")           # lm-eval's hf backend needs it (lm-eval[hf])
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    n, limit = 2, 2
    export_lm_eval(ExportConfig(out=str(tmp_path / "export"), tasks=["math500"], n=n, limit=limit, workers=1,
                                templates={"math500": "chat"}, sampling=SamplingParams(1.0, 1.0, 0, 8)))
    res = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(tiny_model), "dtype": "float32"},
                                  device="cpu", tasks=["rlvr_math500"], log_samples=True, bootstrap_iters=0,
                                  task_manager=TaskManager(include_path=str(tmp_path / "export"),
                                                           include_defaults=False,
                                                           metadata={"pretrained": str(tiny_model)}))
    rows = res["samples"]["rlvr_math500"]
    assert len(rows) == limit and all(r["arguments"][0][0].startswith("<|im_start|>user\n") for r in rows)
    replay = _replay_through_rlvr_eval(res["samples"], ["math500"], n, limit, tmp_path / "replay",
                                       templates={"math500": "chat"},
                                       tokenizer=AutoTokenizer.from_pretrained(tiny_model))
    for k, value in replay["math500"].items():
        assert res["results"]["rlvr_math500"][f"pass@{k},rlvr"] == pytest.approx(value, abs=1e-15)
