"""`rlvr eval --task-option KEY=VALUE`: parsing, one-line errors, and the option reaching the verdicts,
run.json, resume and merge (a scripted engine stands in for a model)."""

import json
import re

import pytest
from rlvr.harness import cli
from rlvr.harness.errors import UserError
from rlvr.harness.eval.evaluate import EvalConfig, evaluate
from rlvr.harness.eval.merge import merge_runs
from rlvr.harness.reproduce.recipes import eval_task_options, load_recipe
from rlvr.harness.runs.store import Run
from rlvr.harness.sample.engine import Completion, SamplingParams
from rlvr.harness.verify.pool import VerifierPool
from rlvr.harness.verify.task_options import configured_task, parse_task_options

from rlvr import tasks


@pytest.mark.parametrize("items, names, expected", [
    ([], ["aime24"], {}),
    (["answer_mode=any_boxed"], ["aime24", "bbh"], {"aime24": {"answer_mode": "any_boxed"}}),
    (["answer_mode=any_boxed", "fallback=true"], ["aime24", "math500"],
     {t: {"answer_mode": "any_boxed", "fallback": True} for t in ("aime24", "math500")}),
    (["answer_mode=boxed", "answer_mode=any_boxed"], ["aime24"], {"aime24": {"answer_mode": "any_boxed"}}),
])
def test_options_go_to_the_tasks_that_accept_them(items, names, expected):
    assert parse_task_options(items, names) == expected


@pytest.mark.parametrize("tasks_arg, option, match", [
    ("aime24", "nope=1", r"--task-option nope: no task among --tasks accepts it \(they accept: answer_mode, fallback\)"),
    ("bbh", "answer_mode=any_boxed", r"--task-option answer_mode: no task among --tasks accepts it \(they accept: none\)"),
    ("aime24", "answer_mode=all", r"--task-option: task aime24: answer_mode 'all' is not one of boxed, any_boxed"),
    ("aime24", "fallback=maybe", r"--task-option: task aime24: field 'fallback': expected true or false, got 'maybe'"),
    ("aime24", "answer_mode", r"--task-option 'answer_mode': expected KEY=VALUE"),
])
def test_bad_task_options_are_one_line_errors(tmp_path, capsys, tasks_arg, option, match):
    argv = ["eval", "--model", str(tmp_path / "no-model"), "--tasks", tasks_arg, "--out", str(tmp_path / "x"),
            "--task-option", option]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlvr: error: --task-option") and err.count("\n") == 1
    assert re.search(match, err), err
    assert not (tmp_path / "x").exists()


def test_configured_task_refuses_what_the_task_does_not_accept():
    # synlogic's option acts in `check`, which the pool's workers run on the registered instance
    with pytest.raises(UserError, match="task synlogic_easy does not accept it"):
        configured_task("synlogic_easy", {"game_of_24_checks_value": False})
    assert configured_task("aime24", None) is tasks.get("aime24")
    assert configured_task("aime24", {"answer_mode": "any_boxed"}).answer_mode == "any_boxed"
    assert tasks.get("aime24").answer_mode == "boxed"


def test_the_cli_passes_the_option_into_the_eval_config(tmp_path, monkeypatch):
    import rlvr.harness.eval.evaluate

    seen = []
    monkeypatch.setattr(rlvr.harness.eval.evaluate, "evaluate", seen.append)
    assert cli.main(["eval", "--model", "m", "--tasks", "aime24,bbh", "--out", str(tmp_path / "x"),
                     "--task-option", "answer_mode=any_boxed"]) == 0
    assert seen[0].task_options == {"aime24": {"answer_mode": "any_boxed"}}


class TwoBoxes:
    """Every sample: the right answer boxed first, a wrong one boxed last."""

    name = "scripted"

    def __init__(self, gold: dict[str, str]):
        self.gold = gold

    def generate(self, requests, params):
        out = []
        for prompt, seeds in requests:
            gold = next(g for text, g in self.gold.items() if text in prompt)
            text = f" First \\boxed{{{gold}}}, then on reflection \\boxed{{{int(gold) + 1}}}."
            out.append([Completion(text, [1, 2, 3], "stop") for _ in seeds])
        return out


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(workers=1) as p:
        yield p


def run_eval(out, data_dir, pool, options=None, shard=(0, 1), limit=1):
    problems = tasks.get("aime24").load(data_dir)[:limit]
    engine = TwoBoxes({p.text: p.answer for p in problems})
    cfg = EvalConfig(model="scripted-model", tasks=["aime24"], out=str(out), n=2, data_dir=str(data_dir),
                     limit=limit, shard=shard, sampling=SamplingParams(max_new_tokens=8),
                     task_options={"aime24": options} if options else {})
    return evaluate(cfg, engine=engine, progress=False, print_table=False, pool=pool)


def test_any_boxed_changes_the_verdict_and_the_run_identity(tmp_path, data_dir, pool):
    last = run_eval(tmp_path / "last", data_dir, pool)
    anyb = run_eval(tmp_path / "any", data_dir, pool, {"answer_mode": "any_boxed"})
    assert [s["correct"] for s in last.iter_samples()] == [False, False]
    assert [s["correct"] for s in anyb.iter_samples()] == [True, True]
    assert {s["reason"] for s in anyb.iter_samples()} == {"ok (any_boxed)"}
    info_last = json.loads((tmp_path / "last" / "run.json").read_text())
    info_any = json.loads((tmp_path / "any" / "run.json").read_text())
    assert "options" not in info_last["tasks"]["aime24"]
    assert info_any["tasks"]["aime24"]["options"] == {"answer_mode": "any_boxed"}
    with pytest.raises(UserError, match="setting 'tasks.aime24.options' differs"):
        run_eval(tmp_path / "any", data_dir, pool)                       # resume without the option
    assert len(list(run_eval(tmp_path / "any", data_dir, pool, {"answer_mode": "any_boxed"}).iter_samples())) == 2


def test_merge_refuses_shards_scored_with_other_options(tmp_path, data_dir, pool):
    run_eval(tmp_path / "s0", data_dir, pool, {"answer_mode": "any_boxed"}, shard=(0, 2), limit=2)
    run_eval(tmp_path / "s1", data_dir, pool, None, shard=(1, 2), limit=2)
    with pytest.raises(UserError, match=r"setting 'tasks\.aime24\.options' \("):
        merge_runs([str(tmp_path / "s0"), str(tmp_path / "s1")], str(tmp_path / "m"))
    run_eval(tmp_path / "s1b", data_dir, pool, {"answer_mode": "any_boxed"}, shard=(1, 2), limit=2)
    merged = merge_runs([str(tmp_path / "s0"), str(tmp_path / "s1b")], str(tmp_path / "m"))
    assert Run.open(merged.path).info["tasks"]["aime24"]["options"] == {"answer_mode": "any_boxed"}


def test_the_bbg_recipe_evaluates_with_any_boxed():
    bbg, _ = load_recipe("bbg")
    assert eval_task_options(bbg.evaluations[0]) == {t: {"answer_mode": "any_boxed"}
                                                     for t in ("aime25", "minerva_math", "olympiadbench", "math500")}
    nsr, _ = load_recipe("nsr")
    assert all(eval_task_options(ev) == {} for ev in nsr.evaluations)


class Recorder:
    """Answers every sample with a fixed text and records the sampling settings each request got."""

    name = "scripted"

    def __init__(self, text: str):
        self.text, self.params = text, []

    def generate(self, requests, params):
        self.params.append(params)
        return [[Completion(self.text, [1], "stop") for _ in seeds] for _, seeds in requests]


def test_completion_style_templates_add_their_tasks_stop_strings(tmp_path, data_dir, pool):
    """BBH's 3-shot prompt stops at a blank line (lm-eval's bbh_cot_fewshot), HumanEval's completion prompt
    at the Codex stop sequences; the run's own --stop strings stay first, and run.json records the task's."""
    engine = Recorder("So the answer is (A).")
    cfg = EvalConfig(model="scripted-model", tasks=["bbh"], out=str(tmp_path / "bbh"), n=1, data_dir=str(data_dir),
                     limit=1, sampling=SamplingParams(max_new_tokens=8, stop=("</s>",)))
    run = evaluate(cfg, engine=engine, progress=False, print_table=False, pool=pool)
    assert {p.stop for p in engine.params} == {("</s>", "\n\n")}
    assert run.info["tasks"]["bbh"]["stop"] == ["\n\n"]
    cfg = EvalConfig(model="scripted-model", tasks=["bbh"], out=str(tmp_path / "boxed"), n=1, data_dir=str(data_dir),
                     limit=1, templates={"bbh": "zero_shot_boxed"}, sampling=SamplingParams(max_new_tokens=8))
    engine = Recorder("\\boxed{(A)}")
    run = evaluate(cfg, engine=engine, progress=False, print_table=False, pool=pool)
    assert {p.stop for p in engine.params} == {()} and "stop" not in run.info["tasks"]["bbh"]
    assert tasks.get("humaneval").stop_strings("completion") == ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
    assert tasks.get("humaneval").stop_strings("evalplus_chat") == ()
