"""Training seeds as a dimension of runs, the random-reward control, the boundary table, the learning check."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from rlvr.harness import cli
from rlvr.harness.errors import UserError
from rlvr.harness.eval.evaluate import EvalConfig, evaluate
from rlvr.harness.report.boundary import boundary, boundary_csv, boundary_md
from rlvr.harness.reproduce import micro
from rlvr.harness.reproduce.micro import (
    QUICK,
    RANDOM_REWARD_ARM,
    MicroRecipe,
    beats,
    estimate_seconds,
    learning_signal,
)
from rlvr.harness.sample.engine import SamplingParams
from rlvr.harness.train.trainer import train

from tests.runfactory import make_run
from tests.test_train import config, rewards

GRPO = {"name": "grpo", "kl_coef": 0.0}


def log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


# ---- the trainer -------------------------------------------------------------------------------

def test_seed_and_arm_are_recorded_in_the_training_run_and_its_checkpoints(tmp_path, tiny_model):
    out = train(config(tmp_path, tiny_model, "grpo", steps=1, seed=7, label="grpo-s7", arm="grpo", method=GRPO),
                progress=False)
    info = json.loads((out / "train.json").read_text())
    assert (info["arm"], info["train_seed"], info["config"]["seed"]) == ("grpo", 7, 7)
    ckpt = json.loads((out / "checkpoints" / "last" / "rlvr_train.json").read_text())
    assert ckpt["arm"] == "grpo" and ckpt["train_seed"] == 7 and ckpt["method"] == "grpo" and ckpt["step"] == 1
    # without `arm`: the label names the arm, and without a label the method does
    out2 = train(config(tmp_path, tiny_model, "nsr", steps=1), progress=False)
    assert json.loads((out2 / "train.json").read_text())["arm"] == "nsr"


def test_the_training_seed_changes_the_run(tmp_path, tiny_model):
    a = train(config(tmp_path / "a", tiny_model, "grpo", steps=2, seed=0, method=GRPO), progress=False)
    b = train(config(tmp_path / "b", tiny_model, "grpo", steps=2, seed=1, method=GRPO), progress=False)
    c = train(config(tmp_path / "c", tiny_model, "grpo", steps=2, seed=1, method=GRPO), progress=False)
    assert rewards(b) == rewards(c)                   # a seed decides the run
    assert rewards(a) != rewards(b)                   # and another seed gives another one


def test_eval_of_a_checkpoint_records_its_arm_and_training_seed(tmp_path, tiny_model):
    out = train(config(tmp_path, tiny_model, "grpo", steps=1, seed=3, label="grpo-s3", arm="grpo", method=GRPO),
                progress=False)
    sampling = SamplingParams(1.0, 1.0, 0, 2)
    run = evaluate(EvalConfig(model=str(out / "checkpoints" / "last"), tasks=["test_first_digit"],
                              out=str(tmp_path / "eval"), n=2, sampling=sampling, workers=1),
                   progress=False, print_table=False)
    assert (run.info["arm"], run.info["train_seed"]) == ("grpo", 3)
    # a checkpoint written before rlvr_train.json existed: its training run's train.json says the same
    (out / "checkpoints" / "last" / "rlvr_train.json").unlink()
    old = evaluate(EvalConfig(model=str(out / "checkpoints" / "last"), tasks=["test_first_digit"],
                              out=str(tmp_path / "eval-old"), n=2, sampling=sampling, workers=1),
                   progress=False, print_table=False)
    assert (old.info["arm"], old.info["train_seed"]) == ("grpo", 3)
    base = evaluate(EvalConfig(model=str(tiny_model), tasks=["test_first_digit"], out=str(tmp_path / "base"), n=2,
                               sampling=sampling, workers=1, label="base"), progress=False, print_table=False)
    assert (base.info["arm"], base.info["train_seed"]) == ("base", None)
    # a resume that names no arm keeps the recorded one, and may set a new one (it changes no sample)
    again = evaluate(EvalConfig(model=str(tiny_model), tasks=["test_first_digit"], out=str(tmp_path / "base"), n=2,
                                sampling=sampling, workers=1), progress=False, print_table=False)
    assert again.info["arm"] == "base"
    renamed = evaluate(EvalConfig(model=str(tiny_model), tasks=["test_first_digit"], out=str(tmp_path / "base"),
                                  n=2, sampling=sampling, workers=1, arm="other"), progress=False, print_table=False)
    assert renamed.info["arm"] == "other"


def test_random_reward_measures_p_from_the_starting_model_and_draws_at_that_rate(tmp_path, tiny_model):
    out = train(config(tmp_path, tiny_model, "grpo", steps=4, method=GRPO, reward={"kind": "random", "p_prompts": 8}),
                progress=False)
    info = json.loads((out / "train.json").read_text())["reward"]
    measured = info["measured_on"]
    assert measured["prompts"] == 8 and measured["rollouts_per_prompt"] == 8
    assert info["p"] == measured["correct"] / 64 and 0 < info["p"] < 1
    steps = log(out)
    drawn = [s["reward_mean"] for s in steps]
    # 4 steps x 64 draws of Bernoulli(p): the mean is within 4 standard deviations of p
    sd = (info["p"] * (1 - info["p"]) / 256) ** 0.5
    assert abs(sum(drawn) / 4 - info["p"]) < 4 * sd
    assert all("verified_reward_mean" in s for s in steps)
    # the draws ignore the verdicts: they differ from what the verifier said
    assert drawn != [s["verified_reward_mean"] for s in steps]
    state = json.loads((out / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["reward_p"] == info["p"]


def test_random_reward_with_a_given_p(tmp_path, tiny_model):
    out = train(config(tmp_path, tiny_model, "grpo", steps=2, method=GRPO, reward={"kind": "random", "p": 0.0}),
                progress=False)
    steps = log(out)
    assert [s["reward_mean"] for s in steps] == [0.0, 0.0]
    assert any(s["verified_reward_mean"] > 0 for s in steps)     # the task is solvable: the zeros are the draws
    assert json.loads((out / "train.json").read_text())["reward"] == {"kind": "random", "p": 0.0}


def test_random_reward_resumes_with_the_measured_p(tmp_path, tiny_model, capsys):
    cfg = dict(method=GRPO, reward={"kind": "random", "p_prompts": 4}, checkpoint_every=1)
    train(config(tmp_path, tiny_model, "grpo", steps=1, **cfg), progress=False)
    p = json.loads((tmp_path / "grpo" / "train.json").read_text())["reward"]["p"]
    out = train(config(tmp_path, tiny_model, "grpo", steps=2, **cfg), progress=True)
    assert "random reward: p =" not in capsys.readouterr().err           # not measured again
    assert json.loads((out / "checkpoints" / "last" / "trainer_state.json").read_text())["reward_p"] == p


def test_a_run_started_before_the_seed_fields_existed_resumes(tmp_path, tiny_model):
    train(config(tmp_path, tiny_model, "grpo", steps=1, method=GRPO, checkpoint_every=1), progress=False)
    info_path = tmp_path / "grpo" / "train.json"
    info = json.loads(info_path.read_text())
    for key in ("arm", "reward"):
        del info["config"][key]
    info_path.write_text(json.dumps(info))
    train(config(tmp_path, tiny_model, "grpo", steps=2, method=GRPO, checkpoint_every=1), progress=False)
    assert len(log(tmp_path / "grpo")) == 2


@pytest.mark.parametrize("reward, match", [
    ({"kind": "coin"}, "reward.kind"), ({"kind": "random", "p": 1.5}, "reward.p"),
    ({"kind": "verifier", "p": 0.5}, "reward.p"), ({"kind": "random", "p_prompts": 0}, "reward.p_prompts")])
def test_reward_config_errors_name_the_field(tmp_path, tiny_model, reward, match):
    with pytest.raises(UserError, match=match):
        config(tmp_path, tiny_model, "grpo", reward=reward)


# ---- the boundary table and the learning check ------------------------------------------------

def run(path: Path, outcomes: dict, arm: str | None = None, seed: int | None = None) -> Path:
    make_run(path, outcomes)
    info = json.loads((path / "run.json").read_text())
    info.update({"arm": arm or path.name, "train_seed": seed})
    (path / "run.json").write_text(json.dumps(info))
    return path


def test_boundary_lists_problems_gained_and_lost_against_the_base(tmp_path):
    base = run(tmp_path / "runs" / "base", {"t": {"a": [False] * 4, "b": [True, False, False, False],
                                                  "c": [False] * 4, "d": [True] * 4}}, arm="base")
    r0 = run(tmp_path / "runs" / "m-s0", {"t": {"a": [False, True, False, False], "b": [False] * 4,
                                                "c": [False] * 4, "d": [True] * 4}}, arm="m", seed=0)
    r1 = run(tmp_path / "runs" / "m-s1", {"t": {"a": [False] * 4, "b": [True] * 4, "c": [True] * 4,
                                                "d": [False] * 4}}, arm="m", seed=1)
    rows = boundary(str(base), [str(r1), str(r0)])
    assert [(r.run, r.train_seed) for r in rows] == [("m-s0", 0), ("m-s1", 1)]     # seeds in order
    assert (rows[0].gained, rows[0].lost) == (["a"], ["b"])
    assert (rows[1].gained, rows[1].lost) == (["c"], ["d"])
    assert (rows[0].base_solved, rows[0].run_solved, rows[0].problems) == (2, 2, 4)
    summary = [[c.strip() for c in line.strip("|").split("|")] for line in boundary_md(rows).splitlines()
               if line.startswith("| m ")]
    assert summary == [["m", "2", "2", "2", "8"]]      # seeds, gained, lost, problem-runs
    csv_lines = boundary_csv(rows).splitlines()
    assert csv_lines[1].split(",")[:9] == ["m-s0", "m", "0", "t", "4", "2", "2", "1", "1"]


def test_table_boundary_cli(tmp_path, capsys):
    base = run(tmp_path / "base", {"t": {"a": [False] * 2, "b": [True] * 2}}, arm="base")
    other = run(tmp_path / "m-s0", {"t": {"a": [True] * 2, "b": [True] * 2}}, arm="m", seed=0)
    assert cli.main(["table", "--boundary", str(base), str(other), "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split(",")[7:9] == ["1", "0"] and out[1].split(",")[11] == "a"
    assert cli.main(["table", "--boundary", str(base), str(other), "--format", "latex"]) == 2
    assert "--boundary" in capsys.readouterr().err


def test_seeds_flag_errors_are_one_line(capsys):
    assert cli.main(["reproduce", "micro", "--seeds", "0,x"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert cli.main(["reproduce", "micro", "--seeds", "1,1"]) == 2


def bern(rates, n, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    return {f"p{i}": (rng.random(n) < r).tolist() for i, r in enumerate(rates)}


def test_beats_finds_a_real_gain_and_not_a_copy(tmp_path):
    rates = [0.2, 0.4, 0.5, 0.6, 0.3, 0.7, 0.45, 0.55] * 3
    base = run(tmp_path / "runs" / "base", {"t": bern(rates, 64, 0)}, arm="base")
    better = [run(tmp_path / "runs" / f"up-s{s}", {"t": bern([r + 0.15 for r in rates], 64, 10 + s)}, "up", s)
              for s in range(3)]
    for s in range(3):
        run(tmp_path / "runs" / f"same-s{s}", {"t": bern(rates, 64, 20 + s)}, "same", s)
    copy = run(tmp_path / "runs" / "copy-s0", {"t": bern(rates, 64, 0)}, "copy", 0)    # the base's own samples
    assert beats([str(r) for r in better], [str(base)])["beats"]
    r = beats([str(copy)], [str(base)])
    assert r["diff"] == 0 and not r["beats"]
    # equal quality: at the one-sided 5% level, about 1 false alarm in 20 pairs is expected; 4 or more
    # has probability below 2% under a calibrated test
    alarms = 0
    for k in range(20):
        b = run(tmp_path / "null" / f"base{k}", {"t": bern(rates, 64, 1000 + k)}, "base")
        arm = [run(tmp_path / "null" / f"same{k}-s{s}", {"t": bern(rates, 64, 2000 + 10 * k + s)}, "same", s)
               for s in range(3)]
        alarms += beats([str(x) for x in arm], [str(b)], iterations=2000)["beats"]
    assert alarms <= 3
    sig = learning_signal(tmp_path, control="same")
    assert sig["up"]["base"]["beats"] and sig["up"]["control"]["beats"]
    assert not sig["copy"]["base"]["beats"] and "control" not in sig["same"]


# ---- the micro recipe ----------------------------------------------------------------------------

def test_the_micro_recipe_has_three_seeds_a_random_reward_control_and_three_times_the_problems():
    r = MicroRecipe()
    assert len(r.train_seeds) >= 3 and len(QUICK["train_seeds"]) >= 3
    assert r.eval_limit >= 3 * 8
    labels = [label for label, *_ in r.trained_runs()]
    assert len(labels) == len(r.train_seeds) * (len(r.methods) + 1)
    assert "grpo-s2" in labels and f"{RANDOM_REWARD_ARM}-s0" in labels
    rr = next(x for x in r.trained_runs() if x[1] == RANDOM_REWARD_ARM)
    assert rr[2] == "grpo" and rr[3] == dict(dict(r.methods)["grpo"]) and rr[4] == {"kind": "random"}
    assert [x[0] for x in r.trained_runs(["nsr"])] == ["nsr-s0", "nsr-s1", "nsr-s2"]


def test_the_time_estimate_fits_the_budget_and_scales_with_seeds():
    full, quick = estimate_seconds(MicroRecipe()), estimate_seconds(replace(MicroRecipe(), **QUICK))
    assert full["total"] <= 20 * 60 and quick["total"] <= 3 * 60
    one = estimate_seconds(replace(MicroRecipe(), train_seeds=(0,)))
    assert one["train"] == pytest.approx(full["train"] / 3, rel=1e-3)


def test_unknown_micro_method_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--methods"):
        micro.run_micro(tmp_path, tmp_path / "cache", recipe=MicroRecipe(), only=["nope"])


# ---- paper recipes with --seeds --------------------------------------------------------------------

def test_a_recipe_with_seeds_trains_and_evaluates_each_arm_once_per_seed(tmp_path, tiny_model, capsys):
    import yaml
    from rlvr.harness.runs.store import Run

    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "reference.json").write_text(json.dumps({
        "paper": "test", "arxiv": "0000.00000", "version": "v1", "default_table": "t1", "tables": [
            {"id": "t1", "source": "test Table 1", "unit": "percent", "rows": [
                {"label": "GRPO", "match": ["grpo"], "scores": {"micro_arith": {"1": 50.0}}}]}]}))
    (folder / "recipe.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "title": "tiny", "arxiv": "0000.00000", "version": "v1",
        "model": {"path": str(tiny_model), "params_b": 0.0001},
        "train_data": {"task": "micro_arith"},
        "training": {"prompts_per_step": 2, "rollouts_per_prompt": 2, "steps": 1, "micro_batch_size": 8,
                     "dtype": "float32", "optimizer": {"lr": 0.01},
                     "sampling": {"temperature": 1.0, "max_new_tokens": 4}},
        "arms": [{"id": "grpo", "label": "GRPO", "method": {"name": "grpo", "kl_coef": 0.0}}],
        "evaluations": [{"id": "e", "tasks": ["micro_arith"], "n": 2, "temperature": 1.0, "top_p": 1.0,
                         "max_new_tokens": 4, "ks": [1], "answer_extraction": "boxed", "engine": "hf",
                         "checkpoint": "last", "limit": 1, "reference_table": "t1"}],
        "hardware": {"gpus": 0, "gpu": "cpu", "backend": "local"}}))
    out = tmp_path / "out"
    assert cli.main(["reproduce", str(folder), "--out", str(out), "--seeds", "0,1"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in (out / "train").iterdir()) == ["grpo-s0", "grpo-s1"]
    assert sorted(p.name for p in (out / "configs").iterdir()) == ["grpo-s0.yaml", "grpo-s1.yaml"]
    for seed in (0, 1):
        assert json.loads((out / "train" / f"grpo-s{seed}" / "train.json").read_text())["train_seed"] == seed
        info = Run.open(out / "eval" / "e" / f"grpo-s{seed}").info
        assert (info["arm"], info["train_seed"], info["label"]) == ("grpo", seed, f"GRPO-s{seed}")
    assert Run.open(out / "eval" / "e" / "base").info["train_seed"] is None
    text = (out / "table-t1.md").read_text()
    assert "| GRPO-s0 " in text and "| GRPO-s1 " in text and "Δ GRPO-s1 − GRPO" in text


def test_signal_changes_reports_a_golden_difference_that_is_gone():
    golden = {"diff": 0.05, "p": 0.001, "p_below": 0.999,
              "tasks": {"a": {"diff": -0.1, "p": 0.999, "p_below": 0.002}, "b": {"diff": 0.0, "p": 0.5, "p_below": 0.5}}}
    same = {"diff": 0.04, "p": 0.01, "p_below": 0.99,
            "tasks": {"a": {"diff": -0.08, "p": 0.99, "p_below": 0.01}, "b": {"diff": 0.0, "p": 0.5, "p_below": 0.5}}}
    flat = {"diff": 0.0, "p": 0.5, "p_below": 0.5,
            "tasks": {"a": {"diff": 0.0, "p": 0.5, "p_below": 0.5}, "b": {"diff": 0.0, "p": 0.5, "p_below": 0.5}}}
    assert micro.signal_changes(golden, same, strong=0.01) == []
    lost = micro.signal_changes(golden, flat, strong=0.01)
    assert [line.split(":")[0] for line in lost] == ["overall", "a"]
    assert "above" in lost[0] and "below" in lost[1]


def test_moved_finds_a_seed_that_left_the_base_and_not_a_copy(tmp_path):
    rates = [0.2, 0.4, 0.5, 0.6, 0.3, 0.7, 0.45, 0.55]
    base = run(tmp_path / "base", {"t": bern(rates, 64, 0), "u": bern(rates, 64, 1)}, arm="base")
    copies = [str(run(tmp_path / f"copy-s{s}", {"t": bern(rates, 64, 0), "u": bern(rates, 64, 1)}, "copy", s))
              for s in range(3)]
    assert micro.moved(copies, [str(base)])["p"] == 1.0
    # one seed of three drops by 30 points on task u (the samples of the rest are the base's)
    arm = copies[:2] + [str(run(tmp_path / "down-s2", {"t": bern(rates, 64, 0),
                                                       "u": bern([r - 0.3 for r in rates], 64, 1)}, "down", 2))]
    m = micro.moved(arm, [str(base)])
    assert m["p"] < 0.01 and (m["run"], m["task"]) == ("down-s2", "u") and m["diff"] < -0.2
