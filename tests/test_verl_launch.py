"""`rlvr train --backend verl`: the YAML -> verl launch translation and the reward function.

None of this needs verl; tests/test_verl_backend.py (tox -e verl) checks the same launches against
verl's own config loader.
"""

import json
from importlib import metadata

import pytest
from rlvr.harness.backends.verl import launch, reward
from rlvr.harness.cli import main
from rlvr.harness.config import from_dict
from rlvr.harness.errors import UserError
from rlvr.harness.train.trainer import TrainConfig
from rlvr.tasks.base import Problem

from rlvr import tasks


def config(method=None, **kw):
    base = {"model": "m", "out": "runs/x", "tasks": ["micro_arith"], "method": method or {"name": "grpo"},
            "prompts_per_step": 16, "rollouts_per_prompt": 8, "micro_batch_size": 4, "steps": 10}
    return from_dict(TrainConfig, {**base, **kw})


def overrides(cfg, section=None, **kw):
    vs = from_dict(launch.VerlSection, section or {}, "verl")
    plan = launch.translate(cfg, vs, "/d/train.parquet", "/d/val.parquet", n_train=kw.get("n_train", 100),
                            max_prompt_tokens=kw.get("longest", 50), has_val_tasks=kw.get("has_val", False))
    return dict(o.split("=", 1) for o in plan.overrides), plan


@pytest.mark.parametrize("value, text", [
    (None, "null"), (True, "true"), (False, "false"), (3, "3"), (1e-6, "1e-06"), (0.5, "0.5"),
    ("token-mean", "token-mean"), ("/a/b.parquet", "/a/b.parquet"), ("true", '"true"'), ("null", '"null"'),
    ("pkg://x.y", '"pkg://x.y"'), ("1e-6", '"1e-6"'), ('{"a":1}', "'{\"a\":1}'"),
    ("{% for m in messages %}{{ m.content }}{% endfor %}", '"{% for m in messages %}{{ m.content }}{% endfor %}"'),
    (["console", "wandb"], "[console,wandb]"), ([0.9, 0.999], "[0.9,0.999]"), ({"eps": 1e-6}, "{eps:1e-06}"),
])
def test_hydra_values(value, text):
    assert launch.hydra_value(value) == text


@pytest.mark.parametrize("bad", ["a'b\"c", "C:\\path", "${oc.env:HOME}"])
def test_hydra_values_refused(bad):
    with pytest.raises(UserError):
        launch.hydra_value(bad)


def test_grpo_defaults_translate_to_verl_keys():
    ov, plan = overrides(config())
    assert ov["algorithm.adv_estimator"] == ov["actor_rollout_ref.actor.policy_loss.loss_mode"] == "rlvr_grpo"
    assert ov["actor_rollout_ref.actor.loss_agg_mode"] == "seq-mean-token-mean"
    # GRPO's default KL needs reference log-probs; verl's own KL and entropy terms stay at 0
    assert ov["actor_rollout_ref.actor.use_kl_loss"] == "true" and ov["actor_rollout_ref.actor.kl_loss_coef"] == "0.0"
    assert ov["actor_rollout_ref.actor.entropy_coeff"] == "0.0"
    assert ov["actor_rollout_ref.actor.calculate_entropy"] == "false"
    assert ov["actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu"] == "4"
    assert (ov["data.train_batch_size"], ov["actor_rollout_ref.rollout.n"]) == ("16", "8")
    assert ov["actor_rollout_ref.actor.ppo_mini_batch_size"] == "16"          # all rows: 128 / 8 prompts
    assert ov["trainer.total_epochs"] == "2" and ov["trainer.total_training_steps"] == "10"   # 100 // 16 = 6 / epoch
    assert ov["trainer.save_freq"] == "10" and ov["trainer.test_freq"] == "-1"
    assert ov["actor_rollout_ref.rollout.top_k"] == "-1"
    assert "actor_rollout_ref.actor.optim.override_optimizer_config" not in ov
    assert ov["+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES"] == "rlvr.harness.backends.verl.plugin"
    assert json.loads(plan.env["RLVR_VERL_METHOD"]) == {"name": "grpo"}
    assert plan.env["VERL_USE_EXTERNAL_MODULES"] == "rlvr.harness.backends.verl.plugin"


def test_method_hyperparameters_travel_as_json_not_verl_keys():
    block = {"name": "lp_reg", "rho": 0.005, "kappa": 0.05, "minp_compare": ">"}
    ov, plan = overrides(config(block))
    assert json.loads(plan.env["RLVR_VERL_METHOD"]) == block
    assert json.loads(ov["+ray_kwargs.ray_init.runtime_env.env_vars.RLVR_VERL_METHOD"].strip("'")) == block
    assert not [k for k in ov if "rho" in k or "kappa" in k]
    assert ov["actor_rollout_ref.actor.use_kl_loss"] == "false"
    assert ov["actor_rollout_ref.model.use_fused_kernels"] == "false"


def test_entropy_methods_ask_verl_for_entropy():
    ov, _ = overrides(config({"name": "nsr", "row_selection": "mask"}))
    assert ov["actor_rollout_ref.actor.calculate_entropy"] == "true"
    assert ov["actor_rollout_ref.actor.entropy_coeff"] == "0.0"


def test_dapo_dynamic_sampling_is_verls_filter_groups():
    ov, plan = overrides(config({"name": "grpo", "dynamic_sampling": True, "kl_coef": 0.0}))
    assert ov["algorithm.filter_groups.enable"] == "true" and ov["algorithm.filter_groups.metric"] == "reward"
    assert any("filter_groups" in n for n in plan.notes)


@pytest.mark.parametrize("block, match", [
    ({"name": "nsr"}, "row_selection: mask"),
    ({"name": "psr"}, "row_selection: mask"),
    ({"name": "bbg"}, "gate: off"),
    ({"name": "casp", "candidates": "old"}, "candidates: current"),
])
def test_methods_verl_cannot_run_as_configured_are_refused(block, match):
    with pytest.raises(UserError, match=match):
        overrides(config(block))


@pytest.mark.parametrize("block", [{"name": "nsr", "row_selection": "mask"}, {"name": "bbg", "gate": "off"},
                                   {"name": "w_reinforce"}, {"name": "casp"}, {"name": "lp_reg"}])
def test_methods_verl_can_run(block):
    ov, _ = overrides(config(block))
    assert ov["algorithm.adv_estimator"] == "rlvr_" + block["name"]


def test_batch_and_gpu_mapping():
    cfg = config(mini_batch_size=32, ppo_epochs=2, optimizer={"lr": 3e-6, "eps": 1e-5, "betas": [0.9, 0.95]},
                 sampling={"temperature": 0.6, "top_p": 0.9, "top_k": 20, "max_new_tokens": 2048}, seed=7,
                 checkpoint_every=5, eval={"tasks": ["micro_arith"], "every": 2, "n": 8})
    ov, _ = overrides(cfg, {"nnodes": 2, "n_gpus_per_node": 8, "rollout_tp": 2, "strategy": "fsdp2"}, has_val=True)
    assert ov["actor_rollout_ref.actor.ppo_mini_batch_size"] == "4"            # 32 rows / 8 rollouts
    assert ov["actor_rollout_ref.actor.ppo_epochs"] == "2"
    assert (ov["trainer.nnodes"], ov["trainer.n_gpus_per_node"]) == ("2", "8")
    assert ov["actor_rollout_ref.rollout.tensor_model_parallel_size"] == "2"
    assert ov["actor_rollout_ref.actor.strategy"] == ov["actor_rollout_ref.actor.fsdp_config.strategy"] == "fsdp2"
    assert ov["actor_rollout_ref.actor.optim.override_optimizer_config"] == "{eps:1e-05}"
    assert ov["actor_rollout_ref.actor.optim.betas"] == "[0.9,0.95]"
    assert ov["actor_rollout_ref.actor.loss_scale_factor"] == "2048" == ov["data.max_response_length"]
    assert (ov["actor_rollout_ref.rollout.top_k"], ov["actor_rollout_ref.rollout.seed"]) == ("20", "7")
    assert (ov["trainer.save_freq"], ov["trainer.test_freq"]) == ("5", "2")
    assert ov["actor_rollout_ref.rollout.val_kwargs.n"] == "8"


@pytest.mark.parametrize("kw, section, match", [
    ({"mini_batch_size": 20}, {}, "mini_batch_size"),
    ({}, {"n_gpus_per_node": 3}, "divide evenly over 3 GPUs"),
    ({"prompts_per_step": 200}, {}, "fewer than prompts_per_step"),
])
def test_batch_errors_name_the_field(kw, section, match):
    with pytest.raises(UserError, match=match):
        overrides(config(**kw), section)


def test_load_splits_the_verl_section_and_applies_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\nout: o\ntasks: [micro_arith]\nverl: {nnodes: 2}\n")
    cfg, vs = launch.load(path, ["verl.n_gpus_per_node=4", "steps=3"])
    assert (cfg.steps, vs.nnodes, vs.n_gpus_per_node) == (3, 2, 4)
    path.write_text("model: m\nout: o\ntasks: [micro_arith]\nverl: {gpus: 2}\n")
    with pytest.raises(UserError, match=r"c.yaml: field 'verl.gpus': unknown"):
        launch.load(path)
    path.write_text("model: m\nout: o\ntasks: [micro_arith]\nverl: {strategy: megatron}\n")
    with pytest.raises(UserError, match=r"field 'verl.strategy': expected one of fsdp, fsdp2, got 'megatron'"):
        launch.load(path)


def test_cli_print_only_writes_the_data_and_prints_the_launch(tmp_path, tiny_model, capsys):
    pq = pytest.importorskip("pyarrow.parquet")      # the parquet data needs it (datasets brings it)
    path = tmp_path / "c.yaml"
    path.write_text(f"model: {tiny_model}\nout: {tmp_path / 'run'}\ntasks: [micro_arith]\ntrain_problems: 40\n"
                    f"method: {{name: casp, top_n: 2}}\nprompts_per_step: 8\nrollouts_per_prompt: 4\n"
                    f"eval: {{tasks: [micro_arith], limit: 5}}\nverl: {{n_gpus_per_node: 2}}\n")
    assert main(["train", "--backend", "verl", "--config", str(path), "--print-only"]) == 0
    out = capsys.readouterr().out
    assert "python -m verl.trainer.main_ppo" in out and "algorithm.adv_estimator=rlvr_casp" in out
    data = tmp_path / "run" / "verl_data"
    train = pq.read_table(data / "train.parquet").to_pylist()
    val = pq.read_table(data / "val.parquet").to_pylist()
    assert (len(train), len(val)) == (40, 5)
    task = tasks.get("micro_arith")
    want = task.train_problems(40)
    for row, problem in zip(train, want, strict=True):
        assert reward.problem_from_extra_info(row["extra_info"]) == problem
        assert row["prompt"] == [{"role": "user", "content": task.prompt(problem)}]
        assert row["data_source"] == "micro_arith" and row["reward_model"]["ground_truth"] == str(problem.answer)
    record = json.loads((data / "launch.json").read_text())
    assert record["overrides"][0] == f"data.train_files={data / 'train.parquet'}"
    assert f"data.max_prompt_length={record['overrides'][3].split('=')[1]}" in out


def prompt_tokens(model, problems):
    from transformers import AutoTokenizer

    tok, task = AutoTokenizer.from_pretrained(model), tasks.get("micro_arith")
    return [len(tok(task.prompt(p), add_special_tokens=False)["input_ids"]) for p in problems]


def test_prompts_over_max_prompt_length_are_dropped_as_verl_would(tmp_path, tiny_model, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    # micro_arith prompts are 17, 21 or 25 tokens long with the tiny model's tokenizer
    path = tmp_path / "c.yaml"
    path.write_text(f"model: {tiny_model}\nout: {tmp_path / 'run'}\ntasks: [micro_arith]\ntrain_problems: 40\n"
                    f"prompts_per_step: 8\nrollouts_per_prompt: 4\nsteps: 10\neval: {{tasks: [micro_arith], limit: 5}}\n"
                    f"verl: {{n_gpus_per_node: 2, max_prompt_length: 21}}\n")
    task = tasks.get("micro_arith")
    train_all, val_all = task.train_problems(40), task.load()[:5]
    keep_train = [p for p, n in zip(train_all, prompt_tokens(tiny_model, train_all), strict=True) if n <= 21]
    keep_val = [p for p, n in zip(val_all, prompt_tokens(tiny_model, val_all), strict=True) if n <= 21]
    assert 0 < len(keep_train) < 40 and keep_val
    assert main(["train", "--backend", "verl", "--config", str(path), "--print-only"]) == 0
    captured = capsys.readouterr()
    note = [line for line in captured.err.splitlines() if "max_prompt_length" in line]
    assert note == [f"rlvr: note: field 'verl.max_prompt_length': dropped {40 - len(keep_train)} of 40 training "
                    f"and {5 - len(keep_val)} of 5 validation prompts longer than 21 tokens "
                    f"(verl's data.filter_overlong_prompts)"]
    data = tmp_path / "run" / "verl_data"
    train = [reward.problem_from_extra_info(r["extra_info"]) for r in pq.read_table(data / "train.parquet").to_pylist()]
    val = [reward.problem_from_extra_info(r["extra_info"]) for r in pq.read_table(data / "val.parquet").to_pylist()]
    assert (train, val) == (keep_train, keep_val)
    assert "data.max_prompt_length=21" in captured.out and "data.filter_overlong_prompts=true" in captured.out
    # n_train counts the kept prompts: total_epochs = ceil(steps / (kept // prompts_per_step))
    assert f"trainer.total_epochs={-(-10 // (len(keep_train) // 8))}" in captured.out


def test_max_prompt_length_below_every_prompt_is_an_error(tmp_path, tiny_model, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(f"model: {tiny_model}\nout: {tmp_path / 'run'}\ntasks: [micro_arith]\ntrain_problems: 40\n"
                    f"prompts_per_step: 8\nrollouts_per_prompt: 4\nverl: {{n_gpus_per_node: 2, max_prompt_length: 16}}\n")
    assert main(["train", "--backend", "verl", "--config", str(path), "--print-only"]) == 2
    err = capsys.readouterr().err
    assert err == ("rlvr: error: field 'verl.max_prompt_length': all 40 training prompts are longer than 16 tokens "
                   "(the shortest has 17)\n")


def test_cli_print_only_needs_the_verl_backend(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "none.yaml"), "--print-only"]) == 2
    assert "--print-only: only with --backend verl" in capsys.readouterr().err


def test_run_without_verl_is_a_user_error(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    plan = launch.VerlLaunch(overrides=[], env={}, train_file="t", val_file="v")
    with pytest.raises(UserError, match="verl is not installed"):
        launch.run(plan)
    monkeypatch.setattr(metadata, "version", lambda name: "0.8.0")
    with pytest.raises(UserError, match="pinned to verl==0.9.1"):
        launch.run(plan)


def test_reward_function_scores_with_our_verifier(monkeypatch):
    monkeypatch.setenv("RLVR_VERIFY_WORKERS", "1")
    task = tasks.get("micro_arith")
    problem = task.train_problems(1)[0]
    info = reward.problem_to_extra_info(problem)
    try:
        right = reward.compute_score("micro_arith", f" \\boxed{{{problem.answer}}}", str(problem.answer), dict(info),
                                     num_turns=1)
        wrong = reward.compute_score("micro_arith", " nonsense", str(problem.answer), dict(info))
    finally:
        reward.close_pool()
    assert right == {"score": 1.0, "acc": 1.0} and wrong == {"score": 0.0, "acc": 0.0}
    assert task.verify(problem, f" \\boxed{{{problem.answer}}}").correct


def test_reward_function_rejects_rows_it_did_not_write():
    with pytest.raises(ValueError, match="rlvr_problem"):
        reward.compute_score("x", "y", "z", {"index": 0})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        reward.problem_to_extra_info(Problem("1", "t", "q", answer={1, 2}))
    with pytest.raises(ValueError, match="round trip"):
        reward.problem_to_extra_info(Problem("1", "t", "q", answer="a", meta={1: "int key"}))


def test_problems_with_tuples_survive_the_parquet_column():
    p = Problem("7", "t", "q", answer=[1, (2, 3)], meta={"ops": (("-", 9), ("+", 2)), "n": None})
    assert reward.problem_from_extra_info(reward.problem_to_extra_info(p)) == p


def test_local_train_accepts_and_ignores_the_verl_section(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("model: x\nout: y\ntasks: [micro_arith]\nsteps: lots\nverl: {nnodes: 2}\n")
    assert main(["train", "--config", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"rlvr: error: {path}: field 'steps'")


def test_local_vllm_rollout_fields_are_noted_as_not_verls():
    _, plan = overrides(config())
    assert not any("rollout_engine" in n for n in plan.notes)
    _, plan = overrides(config(rollout_engine="vllm", vllm={"gpu_memory_utilization": 0.4}))
    assert any("rollout_engine and the vllm: section are the local trainer's" in n for n in plan.notes)
