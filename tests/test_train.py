"""rlvr train: every registered method trains on CPU and raises the reward of an easy task."""

import dataclasses
import json

import pytest
from rlvr.harness import cli
from rlvr.harness.config import load_config
from rlvr.harness.errors import UserError
from rlvr.harness.train.trainer import TrainConfig, train
from rlvr.tasks.base import Problem, Task, Verdict

from rlvr import methods, tasks


@tasks.register
class FirstCharDigit(Task):
    """Test-only task: correct when the completion starts with a digit or a lowercase letter (about 15%
    of a random model's first tokens), so every method sees rewards from the first step."""

    name = "test_first_digit"
    domain = "math"

    def train_problems(self, count):
        return [Problem(f"p{i}", self.name, f"say {i % 7}", None) for i in range(count)]

    def load(self, data_dir=None):
        self.last_source = {"kind": "generated"}
        return self.train_problems(4)

    def prompt(self, problem, template=None, tokenizer=None):
        return f"Q: {problem.text}\nA:"

    def extract(self, problem, completion):
        return completion[:1]

    def check(self, problem, extracted):
        ok = extracted.isdigit() or "a" <= extracted <= "z"
        return Verdict(ok, float(ok), extracted, "ok" if ok else "mismatch")


def config(tmp_path, model, name, **over):
    base = {"model": str(model), "out": str(tmp_path / name), "tasks": ["test_first_digit"],
            "method": {"name": name}, "prompts_per_step": 8, "rollouts_per_prompt": 8, "micro_batch_size": 32,
            "steps": 12, "sampling": {"max_new_tokens": 2, "temperature": 1.0},
            "optimizer": {"lr": 0.03}, "workers": 1, "seed": 1}
    base.update(over)
    return load_config(TrainConfig, base=base)


def rewards(out):
    return [json.loads(line)["reward_mean"] for line in (out / "train_log.jsonl").read_text().splitlines()]


# method -> overrides that keep the test fast and its signal clear (documented defaults otherwise)
OVERRIDES = {"grpo": {"kl_coef": 0.0}}


@pytest.mark.parametrize("name", sorted(methods.available()))
def test_every_method_raises_the_training_reward(tmp_path, tiny_model, name):
    cfg = config(tmp_path, tiny_model, name, method={"name": name, **OVERRIDES.get(name, {})})
    out = train(cfg, progress=False)
    r = rewards(out)
    assert len(r) == 12
    early, late = sum(r[:3]) / 3, sum(r[-3:]) / 3
    assert late > early + 0.1, (name, r)
    assert (out / "checkpoints" / "last" / "config.json").exists()


def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_model):
    first = config(tmp_path, tiny_model, "grpo", steps=3, checkpoint_every=2, method={"name": "grpo", "kl_coef": 0.0})
    train(first, progress=False)
    state = json.loads((tmp_path / "grpo" / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["step"] == 3
    more = config(tmp_path, tiny_model, "grpo", steps=5, checkpoint_every=2, method={"name": "grpo", "kl_coef": 0.0})
    train(more, progress=False)
    log = [json.loads(line)["step"] for line in (tmp_path / "grpo" / "train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4, 5]


def test_resume_refuses_changed_training_settings_and_records_allowed_changes(tmp_path, tiny_model, capsys):
    train(config(tmp_path, tiny_model, "grpo", steps=1), progress=False)
    for over, field in (({"method": {"name": "nsr"}}, "method.name"), ({"optimizer": {"lr": 0.01}}, "optimizer.lr"),
                        ({"rollouts_per_prompt": 4}, "rollouts_per_prompt")):
        with pytest.raises(UserError, match=rf"cannot resume: {field} was .* when this run was started, now"):
            train(config(tmp_path, tiny_model, "grpo", steps=2, **over), progress=False)
    # the same method spelled with its defaults is the same method; steps and eval may change
    train(config(tmp_path, tiny_model, "grpo", steps=2, method={"name": "grpo", "kl_coef": 0.04}), progress=False)
    assert "resuming at step 1 with steps 1 -> 2" in capsys.readouterr().err
    info = json.loads((tmp_path / "grpo" / "train.json").read_text())
    assert info["resumes"][0]["step"] == 1 and info["resumes"][0]["changed"] == {"steps": [1, 2]}
    assert info["config"]["steps"] == 1      # the settings the run was started with


def test_yaml_numbers_in_scientific_notation_are_numbers(tmp_path):
    from rlvr.harness.config import read_config_data

    path = tmp_path / "c.yaml"
    path.write_text("optimizer: {lr: 1e-3}\nmethod: {name: grpo, kl_coef: 4E-2}\n")
    data = read_config_data(path, ["optimizer.eps=1e-8"])
    assert data["optimizer"] == {"lr": 0.001, "eps": 1e-8} and data["method"]["kl_coef"] == 0.04


def test_checkpoint_keep_prunes_all_but_the_newest(tmp_path, tiny_model):
    out = train(config(tmp_path, tiny_model, "grpo", steps=4, checkpoint_every=1, checkpoint_keep=2,
                       method={"name": "grpo", "kl_coef": 0.0}), progress=False)
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_3", "step_4"]
    assert (out / "checkpoints" / "last").resolve().name == "step_4"


def test_kl_to_reference_runs(tmp_path, tiny_model):
    out = train(config(tmp_path, tiny_model, "grpo", steps=2, method={"name": "grpo", "kl_coef": 0.1}), progress=False)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert "method/kl_ref" in log[-1]


def test_tensorboard_logger_writes_the_step_metrics(tmp_path, tiny_model):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = train(config(tmp_path, tiny_model, "grpo", steps=2, loggers=["jsonl", "tensorboard"],
                       method={"name": "grpo", "kl_coef": 0.0}), progress=False)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/reward_mean", "train/entropy", "method/pg_clipfrac", "method/pg_clipfrac_lower",
            "time/time_step_s"} <= set(tags)
    logged = [json.loads(line)["reward_mean"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    scalars = events.Scalars("train/reward_mean")
    assert [e.step for e in scalars] == [1, 2]
    assert [e.value for e in scalars] == pytest.approx(logged)     # float32 in the event file


def test_periodic_evaluation_writes_runs(tmp_path, tiny_model):
    out = train(config(tmp_path, tiny_model, "nsr", steps=2,
                       eval={"every": 1, "tasks": ["test_first_digit"], "n": 4}), progress=False)
    for step in (1, 2):
        info = json.loads((out / "eval" / f"step_{step}" / "run.json").read_text())
        assert info["step"] == step and info["method"]["name"] == "nsr"


def test_periodic_evaluation_takes_task_options(tmp_path, tiny_model):
    out = train(config(tmp_path, tiny_model, "nsr", steps=1,
                       eval={"tasks": ["aime24"], "n": 2, "limit": 1, "max_new_tokens": 2,
                             "task_options": ["answer_mode=any_boxed"]}), progress=False)
    info = json.loads((out / "eval" / "step_1" / "run.json").read_text())
    assert info["tasks"]["aime24"]["options"] == {"answer_mode": "any_boxed"}


def test_an_overlong_penalty_that_cannot_apply_is_noted(tmp_path, tiny_model, capsys):
    from rlvr.harness.train.trainer import Trainer

    Trainer(config(tmp_path, tiny_model, "grpo", method={"name": "grpo", "overlong_max_len": 20480}), progress=False)
    err = capsys.readouterr().err
    assert "the overlong penalty starts past 16384 tokens, beyond sampling.max_new_tokens 2" in err


@pytest.mark.parametrize("over,match", [
    ({"eval": {"tasks": ["aime24"], "task_options": ["nope=1"]}},
     r"field 'eval.task_options': nope: no task among eval.tasks accepts it \(they accept: answer_mode, fallback\)$"),
    ({"eval": {"tasks": ["aime24"], "task_options": ["answer_mode=all"]}},
     r"field 'eval.task_options': task aime24: answer_mode 'all' is not one of boxed, any_boxed$"),
    ({"stepz": 3}, "field 'stepz': unknown"),
    ({"eval": {"tasks": ["math5"]}}, "field 'eval.tasks': unknown task 'math5'"),
    ({"eval": {"tasks": ["aime24"], "n": 0}}, "field 'eval.n': must be >= 1, got 0"),
    ({"optimizer": {"lr": -1.0}}, "field 'optimizer.lr': must be > 0, got -1.0"),
    ({"sampling": {"temperature": -0.5}}, "field 'sampling.temperature': must be >= 0, got -0.5"),
    ({"tasks": ["micro_arth"]}, "field 'tasks': unknown task 'micro_arth'"),
    ({"steps": "many"}, "field 'steps': expected an integer"),
    ({"optimizer": {"lr": "fast"}}, "field 'optimizer.lr': expected a number"),
    ({"method": {"name": "nope"}}, "unknown method 'nope'"),
    ({"loggers": ["jsonl", "mlflow"]}, "field 'loggers': unknown logger 'mlflow'"),
    ({"method": {"name": "grpo", "eps_lo": 0.1}}, "eps_lo"),
    ({"prompts_per_step": 0}, "prompts_per_step"),
    ({"micro_batch_tokens": 0}, "field 'micro_batch_tokens': must be >= 1"),
])
def test_config_errors_name_the_field(tmp_path, tiny_model, over, match):
    with pytest.raises(UserError, match=match):
        cfg = config(tmp_path, tiny_model, "grpo", **over)
        train(cfg, progress=False)


def test_cli_config_file_error_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x\nout: y\ntasks: [micro_arith]\nsteps: lots\n")
    assert cli.main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rlvr: error: {bad}: field 'steps'") and err.count("\n") == 1


def test_methods_verb_lists_every_method(capsys):
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in methods.available():
        assert f"{name}:" in out


def test_trainer_log_probs_match_a_plain_forward(tmp_path, tiny_model):
    """The chunked hidden-state path must score exactly the sampled response tokens."""
    import torch
    from rlvr.harness.train.token_stats import token_stats
    from rlvr.harness.train.trainer import Trainer, _Rollout

    tr = Trainer(config(tmp_path, tiny_model, "grpo", method={"name": "grpo", "kl_coef": 0.0}), progress=False)
    tok = tr.tok
    rows = []
    for i, (prompt, resp) in enumerate([("Q: say 1\nA:", " 12 ab"), ("Q: a much longer prompt here\nA:", " x")]):
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        r = tok(resp, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append(_Rollout(None, None, i, p, r, "stop", 0.0))
    ids, attn, tokens, mask, pos = tr._tensors(rows)
    with torch.no_grad():
        h = tr._hidden(tr.model, ids, attn, pos)
        ours = token_stats(h, tr.model.get_output_embeddings().weight, tokens, mask=mask)["logp"]
        for b, x in enumerate(rows):
            seq = torch.tensor([x.prompt_ids + x.response_ids])
            logits = tr.model(input_ids=seq).logits[0].log_softmax(-1)
            n, lp = len(x.response_ids), len(x.prompt_ids)
            want = logits[lp - 1:lp - 1 + n].gather(-1, seq[0, lp:, None]).squeeze(-1)
            assert torch.allclose(ours[b, :n], want, atol=1e-5)
            assert float(mask[b].sum()) == n


def test_token_budget_split_packs_consecutive_rows_up_to_the_budget():
    from rlvr.harness.train.trainer import token_budget_split

    assert token_budget_split(list("abcdef"), [3, 4, 2, 9, 1, 1], 7) == [["a", "b"], ["c"], ["d"], ["e", "f"]]
    assert token_budget_split([0, 1], [5, 5], 100) == [[0, 1]]
    assert token_budget_split([], [], 3) == []


def test_micro_batch_tokens_sizes_the_update_micro_batches_by_tokens(tmp_path, tiny_model, monkeypatch):
    """With micro_batch_tokens each update micro-batch holds at most that many prompt + response tokens (a
    longer row alone); the loss is normalised by the whole mini-batch either way, so GRPO's update is the
    same as with row micro-batches."""
    import torch
    from rlvr.harness.train.trainer import Trainer, _Rollout
    from rlvr.methods.grpo import GRPO

    seen = []
    real_loss = GRPO.loss

    def recording_loss(self, batch):
        seen.append(int(batch.mask.shape[0]))
        return real_loss(self, batch)

    monkeypatch.setattr(GRPO, "loss", recording_loss)
    method = {"name": "grpo", "kl_coef": 0.0, "loss_agg_mode": "token-mean"}
    by_rows = Trainer(config(tmp_path / "a", tiny_model, "grpo", method=method, micro_batch_size=16), progress=False)
    by_tokens = Trainer(config(tmp_path / "b", tiny_model, "grpo", method=method, micro_batch_size=16,
                               micro_batch_tokens=20), progress=False)
    tok = by_rows.tok
    rows = []
    for i in range(8):
        p = tok(f"Q: say {i}\nA:", add_special_tokens=False)["input_ids"]
        r = tok(" 1" * (1 + i % 3), add_special_tokens=False)["input_ids"]
        rows.append(_Rollout(None, None, i // 4, p, r, "stop", float(i % 2)))
    lengths = [len(x.prompt_ids) + len(x.response_ids) for x in rows]
    assert max(lengths) <= 20 < sum(lengths)
    by_rows._update(0, rows)
    assert seen == [8]
    seen.clear()
    by_tokens._update(0, rows)
    assert len(seen) > 1 and sum(seen) == 8
    parts = by_tokens._micro_batches(list(range(8)), rows)
    assert [len(p) for p in parts] == seen and all(sum(lengths[i] for i in p) <= 20 for p in parts)
    # the gradients of the step (Adam's first step turns float32 noise in near-zero gradients into lr-sized
    # moves, so the parameters are not the thing to compare)
    for a, b in zip(by_rows.model.parameters(), by_tokens.model.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)


def _rows(tok, groups=4, per_group=4, seed=0):
    """Rollout rows with prompts and responses of different lengths and mixed rewards (no sampling)."""
    import random

    from rlvr.harness.train.trainer import _Rollout

    rng = random.Random(seed)
    rows = []
    for gi in range(groups):
        prompt = tok(f"Q: say {gi} {'x ' * gi}\nA:", add_special_tokens=False)["input_ids"]
        for j in range(per_group):
            resp = [rng.randrange(3, len(tok)) for _ in range(rng.randrange(1, 9))] + [tok.eos_token_id]
            rows.append(_Rollout(None, None, gi, prompt, resp, "stop", float((gi + j) % 2)))
    return rows


SPECS = [{"name": n, **OVERRIDES.get(n, {})} for n in sorted(methods.available())] + [
    {"name": "casp", "candidates": "old"}, {"name": "grpo", "kl_coef": 0.0, "entropy_coef": 0.01}]


# Clip-Cov and KL-Cov pick tokens by a top-k (or random) selection on the covariance of log-probs and advantages:
# the two paths' forwards (no-grad vs grad) differ by float rounding, which can flip a near-tied token in a
# small micro-batch (seen with 2 threads, 6 rows), so they are compared in one micro-batch only.
SELECTING = {"clip_cov", "kl_cov"}
ONE_PASS_CASES = [(mb, spec) for mb in (16, 6) for spec in SPECS if mb == 16 or spec["name"] not in SELECTING]


@pytest.mark.parametrize("mb, spec", ONE_PASS_CASES,
                         ids=[f"{mb}-" + "-".join(f"{v}" for v in s.values()) for mb, s in ONE_PASS_CASES])
def test_one_pass_update_equals_the_separate_old_log_prob_pass(tmp_path, tiny_model, spec, mb):
    """With one epoch and one mini-batch of the training model's own rollouts, the update takes the behaviour
    log-probs and the method's statistics from its own forward (no separate no-grad pass): the gradient equals
    that of the path with the separate pass, and so do the loss and every logged statistic in one micro-batch.
    (In micro-batches of 6 rows the one-pass path groups rows of similar length, so the method's statistics,
    means over micro-batches, are of other micro-batches: only the global ones are compared.)"""
    import torch
    from rlvr.harness.train.trainer import Trainer

    results = []
    for one_pass in (False, True):
        tr = Trainer(config(tmp_path, tiny_model, spec["name"], method=spec, micro_batch_size=mb), progress=False)
        tr.one_pass_allowed = one_pass
        rows = _rows(tr.tok)
        assert tr._one_pass(len(rows)) is one_pass
        grads = []
        tr.opt.step = lambda grads=grads, tr=tr: grads.append([p.grad.clone() for p in tr.model.parameters()])
        calls = []
        tr._hidden = lambda *a, calls=calls, real=tr._hidden: calls.append(1) or real(*a)
        stats = tr._update(0, rows)
        results.append((stats, grads[0], len(calls)))
    (slow, g_slow, n_slow), (fast, g_fast, n_fast) = results
    micro = -(-16 // mb)
    assert (n_slow, n_fast) == (2 * micro, micro)       # 16 rows: the old pass is skipped
    assert slow.keys() == fast.keys()
    keys = slow if mb == 16 else ("entropy", "top1_prob", "grad_norm", "lr")
    for key in keys:
        assert fast[key] == pytest.approx(slow[key], rel=1e-5, abs=1e-6), key
    if "method/ratio_mean" in fast:
        assert fast["method/ratio_mean"] == 1.0
    for a, b in zip(g_slow, g_fast, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_the_old_log_prob_pass_stays_where_it_can_differ(tmp_path, tiny_model):
    from rlvr.harness.train.trainer import Trainer

    grpo = {"name": "grpo", "kl_coef": 0.0}
    for over, n in (({"ppo_epochs": 2}, 16), ({"mini_batch_size": 8}, 16), ({}, 17),
                    ({"method": {"name": "grpo", "kl_coef": 0.1}}, 16)):
        tr = Trainer(config(tmp_path, tiny_model, "grpo", **{"method": grpo, "mini_batch_size": 16, **over}),
                     progress=False)
        assert not tr._one_pass(n), over
    tr = Trainer(config(tmp_path, tiny_model, "grpo", method=grpo), progress=False)
    assert tr._one_pass(16) and tr._one_pass(1000)
    tr.cfg = dataclasses.replace(tr.cfg, rollout_engine="vllm")     # rollouts from vLLM's copy of the weights
    assert not tr._one_pass(16)


def test_the_kl_term_reads_the_reference_model(tmp_path, tiny_model):
    """GRPO's `kl_ref` is the k3 KL to the reference model: 0 when the reference is the policy itself, and
    for a different reference exp(q - p) - (q - p) - 1 per token from plain forwards of both models, averaged
    per response and then over responses (GRPO's default aggregation)."""
    import torch
    from rlvr.harness.sample.models import load_model
    from rlvr.harness.train.trainer import Trainer

    tr = Trainer(config(tmp_path, tiny_model, "grpo", method={"name": "grpo", "kl_coef": 0.1}), progress=False)
    assert tr.ref is not None and not tr._one_pass(16)
    rows = _rows(tr.tok)
    tr.opt.step = lambda: None                               # the policy stays as it is for the second call
    assert tr._update(0, rows)["method/kl_ref"] == pytest.approx(0.0, abs=1e-9)

    ref, _ = load_model(str(tiny_model))
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    tr.ref = ref.requires_grad_(False)
    got = tr._update(1, rows)["method/kl_ref"]

    total, n = 0.0, 0
    with torch.no_grad():
        for x in rows:
            seq = torch.tensor([x.prompt_ids + x.response_ids])
            lp, resp = len(x.prompt_ids), seq[0, len(x.prompt_ids):, None]
            p = tr.model(input_ids=seq).logits[0, lp - 1:-1].log_softmax(-1).gather(-1, resp).squeeze(-1)
            q = ref(input_ids=seq).logits[0, lp - 1:-1].log_softmax(-1).gather(-1, resp).squeeze(-1)
            total += float((torch.exp(q - p) - (q - p) - 1).mean())      # GRPO's seq-mean-token-mean
            n += 1
    assert tr.method.loss_agg_mode == "seq-mean-token-mean"
    assert total / n > 1e-3
    assert got == pytest.approx(total / n, rel=1e-4)
