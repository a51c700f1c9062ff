"""`rollout_engine: vllm`: config errors and the engine's call sequence on CPU (vLLM faked), and on a GPU with
vLLM a short training run after which vLLM decodes exactly as the trained model does."""

import json
import sys
import types

import pytest
from rlvr.harness import cli
from rlvr.harness.config import load_config
from rlvr.harness.errors import UserError
from rlvr.harness.sample.vllm_rollout import (
    LLMWeightSyncClient,
    VLLMRolloutEngine,
    check_vllm_rollouts,
    weight_transfer_api,
)
from rlvr.harness.train.trainer import TrainConfig, Trainer


def config(tmp_path, model, **over):
    base = {"model": str(model), "out": str(tmp_path / "run"), "tasks": ["micro_arith"],
            "method": {"name": "nsr"}, "prompts_per_step": 4, "rollouts_per_prompt": 4, "micro_batch_size": 16,
            "steps": 2, "sampling": {"max_new_tokens": 16}, "workers": 1, "rollout_engine": "vllm"}
    base.update(over)
    return load_config(TrainConfig, base=base)


# ---- config ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("over,match", [
    ({"rollout_engine": "sglang"}, r"field 'rollout_engine': expected one of hf, vllm, got 'sglang'"),
    ({"vllm": {"gpu_memory_utilization": 1.5}}, r"field 'vllm.gpu_memory_utilization': must be in \(0, 1\)"),
    ({"vllm": {"gpu_memory_utilization": 0}}, r"field 'vllm.gpu_memory_utilization': must be in \(0, 1\)"),
    ({"vllm": {"max_model_len": 0}}, r"field 'vllm.max_model_len': must be >= 1"),
    ({"vllm": {"sleep": "yes"}}, r"field 'vllm.sleep': expected true or false"),
    ({"vllm": {"tp": 2}}, r"field 'vllm.tp': unknown"),
])
def test_config_errors_name_the_field(tmp_path, over, match):
    with pytest.raises(UserError, match=match) as e:
        config(tmp_path, "m", **over)
    assert "\n" not in str(e.value)


def test_rollout_engine_is_checked_without_the_yaml_loader(tmp_path):
    with pytest.raises(UserError, match=r"field 'rollout_engine': expected one of hf, vllm, got 'vLLM'"):
        TrainConfig(model="m", out=str(tmp_path), tasks=["micro_arith"], rollout_engine="vLLM")


def test_default_is_the_hf_engine(tmp_path):
    cfg = load_config(TrainConfig, base={"model": "m", "out": str(tmp_path), "tasks": ["micro_arith"]})
    assert cfg.rollout_engine == "hf" and cfg.vllm.gpu_memory_utilization == 0.3 and not cfg.vllm.sleep


def test_missing_vllm_is_one_line_naming_the_field_and_the_extra(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)      # `import vllm` fails, as where it is not installed
    with pytest.raises(UserError) as e:
        Trainer(config(tmp_path, tiny_model), progress=False)
    msg = str(e.value)
    assert msg.startswith("field 'rollout_engine': vllm is not installed") and "rlvr-harness[vllm]" in msg
    assert "\n" not in msg


def test_missing_vllm_through_the_cli_is_one_line(tmp_path, tiny_model, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)
    path = tmp_path / "c.yaml"
    path.write_text(f"model: {tiny_model}\nout: {tmp_path / 'run'}\ntasks: [micro_arith]\nrollout_engine: vllm\n")
    assert cli.main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlvr: error: field 'rollout_engine': vllm is not installed") and err.count("\n") == 1
    assert "pip install 'rlvr-harness[vllm]'" in err


@pytest.fixture
def fake_vllm(monkeypatch):
    """An importable `vllm` without the weight-transfer modules, with a SamplingParams that keeps its kwargs."""
    mod = types.ModuleType("vllm")
    mod.__version__ = "0.26.0"
    mod.SamplingParams = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


@pytest.mark.parametrize("device,match", [
    ("cpu", r"field 'rollout_engine': vllm rollouts need a CUDA device \(field 'device' resolved to 'cpu'\)"),
    ("cuda:1", r"field 'device': vllm rollouts run on the first visible GPU; choose it with CUDA_VISIBLE_DEVICES"),
])
def test_vllm_rollouts_need_the_first_cuda_device(fake_vllm, device, match):
    with pytest.raises(UserError, match=match):
        check_vllm_rollouts(device)


def test_old_vllm_names_the_version_it_needs(fake_vllm):
    with pytest.raises(UserError, match=r"field 'rollout_engine': vllm 0.26.0 lacks the weight-transfer API .*"
                                        r"needs vllm >= 0.27"):
        check_vllm_rollouts("cuda")
    with pytest.raises(UserError, match="needs vllm >= 0.27"):
        weight_transfer_api()


# ---- the engine's calls into vLLM, with a recording stand-in for vllm.LLM --------------------------

class RecordingLLM:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if name == "generate":
                prompts, params = args[0], args[1]
                return [types.SimpleNamespace(outputs=[types.SimpleNamespace(
                    text=f"s{p['seed']}", token_ids=[p["seed"], len(q["prompt_token_ids"])],
                    finish_reason="length" if p["seed"] % 2 else "stop")]) for q, p in zip(prompts, params)]
        return call

    def names(self):
        return [c[0] for c in self.calls]


class Sender:
    def __init__(self, llm, model):
        self.llm, self.model = llm, model

    def send_weights(self):
        self.llm.calls.append(("send_weights", (self.model,), {}))


def char_tokenizer(text, add_special_tokens=True):
    return {"input_ids": ([0] if add_special_tokens else []) + [ord(c) for c in text]}


def engine(sleep=False):
    llm = RecordingLLM()
    made = []

    def make_sender(model):
        made.append(model)
        return Sender(llm, model)

    return VLLMRolloutEngine(llm, char_tokenizer, make_sender, sleep=sleep), llm, made


def test_generate_sends_token_ids_without_specials_and_one_seed_per_sample(fake_vllm):
    from rlvr.harness.sample.engine import SamplingParams

    eng, llm, _ = engine()
    out = eng.generate([("ab", [5, 6]), ("xyz", [7])], SamplingParams(temperature=0.7, top_k=0, max_new_tokens=9))
    (name, (prompts, params), kwargs), = llm.calls
    assert name == "generate" and kwargs == {"use_tqdm": False}
    assert prompts == [{"prompt_token_ids": [97, 98]}] * 2 + [{"prompt_token_ids": [120, 121, 122]}]
    assert [(p["seed"], p["n"], p["max_tokens"], p["temperature"]) for p in params] == \
        [(5, 1, 9, 0.7), (6, 1, 9, 0.7), (7, 1, 9, 0.7)]
    assert [[(c.text, c.token_ids, c.finish_reason) for c in cs] for cs in out] == \
        [[("s5", [5, 2], "length"), ("s6", [6, 2], "stop")], [("s7", [7, 3], "length")]]


def test_sync_sends_the_weights_then_drops_the_prefix_cache():
    eng, llm, made = engine(sleep=False)
    model = object()
    eng.sleep()                     # no-op without vllm.sleep
    eng.sync_weights(model)
    eng.sync_weights(model)
    assert llm.names() == ["send_weights", "reset_prefix_cache"] * 2
    assert made == [model] and eng.syncs == 2      # one sender per model
    other = object()
    eng.sync_weights(other)
    assert made == [model, other] and llm.calls[-2] == ("send_weights", (other,), {})


def test_sleep_mode_follows_the_documented_rlhf_order(fake_vllm):
    from rlvr.harness.sample.engine import SamplingParams

    eng, llm, _ = engine(sleep=True)
    eng.sleep()
    eng.sleep()                     # already asleep: not sent twice
    with pytest.raises(RuntimeError, match="asleep"):
        eng.generate([("a", [1])], SamplingParams())
    eng.sync_weights(object())
    assert [(n, a, k) for n, a, k in llm.calls if n != "send_weights"] == [
        ("sleep", (), {"level": 2}), ("wake_up", (), {"tags": ["weights"]}),
        ("wake_up", (), {"tags": ["kv_cache"]}), ("reset_prefix_cache", (), {})]
    assert llm.names().index("send_weights") == 2   # weights are woken before the transfer, KV cache after it
    eng.generate([("a", [1])], SamplingParams())
    assert llm.names()[-1] == "generate"


def test_client_wraps_payloads_as_the_llm_methods_take_them():
    llm = RecordingLLM()
    client = LLMWeightSyncClient(llm)
    client.init_weight_transfer_engine({"packed": False})
    client.start_weight_update()
    client.update_weights({"names": ["w"]})
    client.finish_weight_update()
    client.finish_weight_update(weight_version="v2")
    assert llm.calls == [("init_weight_transfer_engine", ({"init_info": {"packed": False}},), {}),
                         ("start_weight_update", (), {}),
                         ("update_weights", ({"update_info": {"names": ["w"]}},), {}),
                         ("finish_weight_update", (), {}),
                         ("finish_weight_update", (), {}), ("update_weight_version", ("v2",), {})]


# ---- GPU: the weights really arrive ------------------------------------------------------------------

def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")
@pytest.mark.parametrize("sleep", [False, True])
def test_vllm_rollouts_decode_with_the_trained_weights(tmp_path, sleep):
    """Two NSR steps (its gradient is non-zero even when every rollout is wrong) with vLLM rollouts; then vLLM's
    greedy completion equals the trained HF model's, and vLLM's log-probs of it equal the trained model's
    (atol 2e-3, float32) while the untrained model's differ by more than 10x that."""
    pytest.importorskip("vllm")
    import torch
    from rlvr.harness.sample.engine import HFEngine, SamplingParams
    from rlvr.harness.sample.models import TinyModelSpec, init_model, load_model
    from vllm import SamplingParams as VParams

    from rlvr import tasks

    # head_dim 64: a size every vLLM attention backend takes
    base = init_model(tmp_path / "tiny", TinyModelSpec(hidden_size=128, num_heads=2, num_kv_heads=1,
                                                       intermediate_size=256, num_layers=2))
    cfg = config(tmp_path, base, device="cuda", dtype="float32", optimizer={"lr": 0.01},
                 vllm={"gpu_memory_utilization": 0.2, "enforce_eager": True, "sleep": sleep})
    tr = Trainer(cfg, progress=False)
    out = tr.train()
    assert [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [1, 2]
    eng = tr.rollout_engine
    assert isinstance(eng, VLLMRolloutEngine) and eng.syncs == 3      # at the start and after each step

    task = tasks.get("micro_arith")
    prompt = task.prompt(task.train_problems(1, start=500)[0], None, tr.tok)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
    ours = eng.generate([(prompt, [0])], greedy)[0][0]
    hf = HFEngine(tr.model, tr.tok).generate([(prompt, [0])], greedy)[0][0]
    assert ours.token_ids == hf.token_ids

    p_ids = tr.tok(prompt, add_special_tokens=False)["input_ids"]
    res = eng.llm.generate([{"prompt_token_ids": p_ids}], VParams(temperature=0.0, max_tokens=12, logprobs=1),
                           use_tqdm=False)[0].outputs[0]
    toks = list(res.token_ids)
    v_lp = torch.tensor([step[t].logprob for step, t in zip(res.logprobs, toks)])

    def logprobs(model):
        seq = torch.tensor([p_ids + toks], device=tr.device)
        with torch.no_grad():
            lp = model(input_ids=seq).logits[0, len(p_ids) - 1:-1].float().log_softmax(-1)
        return lp.gather(-1, seq[0, len(p_ids):, None]).squeeze(-1).cpu()

    trained = logprobs(tr.model)
    untrained = logprobs(load_model(str(base), "cuda", "float32")[0])
    assert torch.allclose(v_lp, trained, atol=2e-3), (v_lp, trained)
    assert (untrained - trained).abs().max() > 2e-2, "training did not move the weights: the check cannot fail"
