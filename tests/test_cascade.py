"""Shared-prefix decoding (harness/sample/cascade.py) against the model's own forward, for each family it takes."""

import pytest
import torch
from rlvr.harness.errors import UserError
from rlvr.harness.sample.cascade import (
    CascadeDecoder,
    MultiCascadeDecoder,
    cascade_unsupported,
    prefill,
    prefill_many,
)
from rlvr.harness.sample.engine import HFEngine, SamplingParams, sample_seed


def _model(kind: str):
    import transformers

    common = dict(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
                  max_position_embeddings=512)
    if kind == "llama":            # grouped-query attention (6 query heads on 2 kv heads), no biases
        cfg = transformers.LlamaConfig(**common, num_key_value_heads=2)
    elif kind == "qwen2":          # q/k/v biases
        cfg = transformers.Qwen2Config(**common, num_key_value_heads=3)
    elif kind == "qwen3":          # per-head q/k RMSNorm and an explicit head_dim
        cfg = transformers.Qwen3Config(**common, num_key_value_heads=2, head_dim=16)
    else:
        cfg = transformers.MistralConfig(**common, num_key_value_heads=2, sliding_window=None)
    torch.manual_seed(0)
    model = getattr(transformers, {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                                   "qwen3": "Qwen3ForCausalLM", "mistral": "MistralForCausalLM"}[kind])(cfg)
    with torch.no_grad():          # biases and norm weights away from their zero/one initialisation
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("kind,fused", [("llama", True), ("qwen2", True), ("qwen3", True), ("mistral", True),
                                        ("qwen2", False), ("qwen3", False)])
def test_cascade_logits_equal_the_models_forward(kind, fused, monkeypatch):
    """Every step's logits equal a full forward over prompt + tokens, through a row drop and a buffer growth,
    with q|k|v and gate|up fused (small models) or read from the modules as they are (large ones)."""
    import rlvr.harness.sample.cascade

    if not fused:
        monkeypatch.setattr(rlvr.harness.sample.cascade, "FUSE_MAX_PARAMS", 0)
    model = _model(kind)
    assert cascade_unsupported(model) is None
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 97, (37,), generator=g).tolist()
    steps = 150                                     # beyond the first 128-token suffix buffer
    tokens = torch.randint(0, 97, (4, steps), generator=g)
    with torch.inference_mode():
        dec = CascadeDecoder(model, prefill(model, prompt), rows=4, max_new_tokens=steps + 1)
        assert len(dec.w.layers[0].qkv) == (1 if fused else 3)
        got = [dec.first_logits]
        for t in range(steps):
            if t == 70:                             # rows 1 finishes: the others go on without it
                keep = torch.tensor([0, 2, 3])
                dec.select(keep)
                tokens, got = tokens[keep], [x[keep] for x in got]
            got.append(dec.step(tokens[:, t]))
        full = torch.cat([torch.tensor([prompt] * tokens.shape[0]), tokens], dim=1)
        ref = model(input_ids=full).logits[:, len(prompt) - 1:]
    got = torch.stack(got, dim=1)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind,fused", [("llama", True), ("qwen2", True), ("qwen3", True), ("mistral", True),
                                        ("qwen2", False)])
def test_multi_prompt_cascade_logits_equal_the_models_forward(kind, fused, monkeypatch):
    """Rows of three prompts of different lengths decoded together (each prompt's KV once, interleaved row
    order): every step's logits equal a full forward over that row's prompt + tokens, through row drops and
    a buffer growth."""
    import rlvr.harness.sample.cascade

    if not fused:
        monkeypatch.setattr(rlvr.harness.sample.cascade, "FUSE_MAX_PARAMS", 0)
    model = _model(kind)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (37, 5, 20)]
    row_prompt = torch.tensor([0, 1, 2, 1, 0, 2, 2])
    steps = 140
    tokens = torch.randint(0, 97, (row_prompt.numel(), steps), generator=g)
    with torch.inference_mode():
        pre = prefill_many(model, prompts)
        assert pre.kv[0][0].shape[0] == 3                     # one copy of each prompt's keys, not one per row
        dec = MultiCascadeDecoder(model, pre, row_prompt, max_new_tokens=steps + 1)
        got = [dec.first_logits]
        rows = row_prompt
        for t in range(steps):
            if t in (30, 90):                                 # rows finish: the others go on without them
                keep = torch.tensor([0, 2, 3, 4, 5]) if t == 30 else torch.tensor([1, 2, 4])
                dec.select(keep)
                tokens, rows, got = tokens[keep], rows[keep], [x[keep] for x in got]
            got.append(dec.step(tokens[:, t]))
        got = torch.stack(got, dim=1)
        for r, p in enumerate(rows.tolist()):
            full = torch.tensor([prompts[p] + tokens[r].tolist()])
            ref = model(input_ids=full).logits[0, len(prompts[p]) - 1:]
            torch.testing.assert_close(got[r], ref, rtol=1e-4, atol=1e-4)


def test_cascade_refuses_what_it_does_not_implement():
    import transformers

    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50))
    assert "gpt2" in cascade_unsupported(gpt2)
    sliding = transformers.MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=50,
                                         sliding_window=16)
    assert "sliding" in cascade_unsupported(transformers.MistralForCausalLM(sliding))
    wrapped = _model("qwen2")
    wrapped.model.layers[1].mlp.up_proj = torch.nn.Sequential(wrapped.model.layers[1].mlp.up_proj)
    assert "torch.nn.Linear" in cascade_unsupported(wrapped)


def _engine(tiny_model, cascade):
    from rlvr.harness.sample.models import load_model

    model, tok = load_model(str(tiny_model))
    return HFEngine(model, tok, cascade=cascade), model, tok


def test_engine_samples_match_the_transformers_path(tiny_model):
    """The same seeds give the same completions whichever path decodes them. Without top-p, inverse-CDF
    sampling in vocabulary order moves a token only if a uniform lands within float rounding of a CDF
    boundary, so the paths agree exactly here. (With top-p, the probabilities are sorted first, and this
    random model's near-ties can swap order under rounding: 1 of 128 samples differed at top-p 0.9.)"""
    fast, model, _ = _engine(tiny_model, None)
    slow = HFEngine(fast.model, fast.tokenizer, cascade=False)
    assert (fast.decode_path, slow.decode_path) == ("cascade", "transformers")
    params = SamplingParams(temperature=1.0, max_new_tokens=40)
    reqs = [("Question: 2 + 3 = ?", [sample_seed(0, "t", "a", i) for i in range(48)]),
            ("Another prompt, longer than the first one.", [sample_seed(0, "t", "b", i) for i in range(16)])]
    a, b = fast.generate(reqs, params), slow.generate(reqs, params)
    assert [[c.token_ids for c in r] for r in a] == [[c.token_ids for c in r] for r in b]
    assert sum(c.tokens for r in a for c in r) > 1000


def test_merged_prompts_sample_as_on_the_transformers_path(tiny_model):
    """Training rollouts (rows of several prompts in one batch) through the multi-prompt cascade decoder give
    the same completions for the same per-sample seeds as transformers' left-padded batch, and as each
    prompt decoded alone."""
    from rlvr.harness.sample.models import load_model

    model, tok = load_model(str(tiny_model))
    fast = HFEngine(model, tok, merge_prompts=True)
    slow = HFEngine(model, tok, merge_prompts=True, cascade=False)
    alone = HFEngine(model, tok)
    params = SamplingParams(temperature=1.0, max_new_tokens=40)
    reqs = [(f"Question {i}: {'x ' * (3 * i)}= ?", [sample_seed(0, "train/0/0", f"p{i}", j) for j in range(8)])
            for i in range(6)]
    seen = []
    a = fast.generate(reqs, params, on_finish=lambda i, j, c: seen.append((i, j, c)))
    b, c = slow.generate(reqs, params), alone.generate(reqs, params)
    ids = [[x.token_ids for x in r] for r in a]
    # on_finish hands over every sample once, as it finishes: shortest first, the same completion as returned
    assert sorted((i, j) for i, j, _ in seen) == [(i, j) for i in range(6) for j in range(8)]
    assert all(a[i][j] is x for i, j, x in seen)
    assert [len(x.token_ids) for _, _, x in seen if x.finish_reason == "stop"] == \
        sorted(len(x.token_ids) for _, _, x in seen if x.finish_reason == "stop")
    assert ids == [[x.token_ids for x in r] for r in b] == [[x.token_ids for x in r] for r in c]
    assert len({len(x) for r in ids for x in r}) > 5          # rows finished at many different steps


def test_engine_reuses_a_prompt_only_while_the_weights_are_unchanged(tiny_model):
    engine, model, tok = _engine(tiny_model, True)
    params = SamplingParams(temperature=1.0, max_new_tokens=20)
    req = [("Question: 7 - 4 = ?", [sample_seed(0, "t", "a", i) for i in range(8)])]
    before = engine.generate(req, params)
    with torch.no_grad():                           # what an optimizer step does to the weights
        for p in model.parameters():
            p.mul_(1.5)
    after = engine.generate(req, params)
    fresh = HFEngine(model, tok, cascade=True).generate(req, params)
    assert [c.token_ids for c in after[0]] == [c.token_ids for c in fresh[0]]
    assert [c.token_ids for c in after[0]] != [c.token_ids for c in before[0]]


def test_engine_cascade_on_an_unsupported_model_is_a_clear_error():
    import transformers

    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50))

    class Tok:
        eos_token_id = 0

    with pytest.raises(UserError, match="cascade decoding: model type 'gpt2'"):
        HFEngine(gpt2, Tok(), cascade=True)
    assert HFEngine(gpt2, Tok()).decode_path == "transformers"
