"""Chunked per-token statistics: equal (values and gradients, float64) to the naive full-logits computation."""

import pytest
import torch
from rlvr.harness.train.token_stats import (
    default_chunk_size,
    old_pass_fields,
    token_stats,
    update_pass_fields,
)
from rlvr.methods.base import TokenBatch
from rlvr.methods.lp_reg import minp_proxy_logprobs

from rlvr import methods

IMPLS = ["function", "checkpoint"]


def reference(hidden, weight, tokens, temperature, gather_ids, top_n):
    """The definition: full logits, log_softmax, gathers."""
    lsm = torch.log_softmax(hidden @ weight.T / temperature, dim=-1)  # [B, T, V]
    vals, ids = lsm.topk(top_n, dim=-1)
    return {
        "logp": lsm.gather(-1, tokens[..., None]).squeeze(-1),
        "entropy": -(lsm.exp() * lsm).sum(-1),
        "topk_logp": vals,
        "topk_ids": ids,
        "logp_at_ids": lsm.gather(-1, gather_ids),
    }


def problem(B=3, T=5, H=6, V=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(V, H, dtype=torch.float64, generator=g, requires_grad=True)
    tokens = torch.randint(0, V, (B, T), generator=g)
    gather = torch.randint(0, V, (B, T, 2), generator=g)
    # per-output upstream gradients, fixed so both computations see the same ones
    up = {k: torch.randn(s, dtype=torch.float64, generator=g)
          for k, s in [("logp", (B, T)), ("entropy", (B, T)), ("topk_logp", (B, T, 3)), ("logp_at_ids", (B, T, 2))]}
    return hidden, weight, tokens, gather, up


def grads_of(out, up, keys, hidden, weight):
    hidden.grad = weight.grad = None
    sum((out[k] * up[k]).sum() for k in keys).backward()
    return hidden.grad.clone(), weight.grad.clone()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("chunk", [1, 4, 7, 1000])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_values_and_gradients_equal_the_full_logits(impl, chunk, temperature):
    hidden, weight, tokens, gather, up = problem()
    ref = reference(hidden, weight, tokens, temperature, gather, 3)
    keys = ["logp", "entropy", "topk_logp", "logp_at_ids"]
    want = grads_of(ref, up, keys, hidden, weight)
    out = token_stats(hidden, weight, tokens, temperature=temperature, entropy=True, top_n=3, gather_ids=gather,
                      chunk_size=chunk, impl=impl)
    for k in keys + ["topk_ids"]:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-12, atol=1e-12)
    got = grads_of(out, up, keys, hidden, weight)
    torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got[1], want[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("keys", [["logp"], ["entropy"], ["topk_logp"], ["logp_at_ids"], ["logp", "entropy"]])
def test_each_output_alone_has_the_right_gradient(impl, keys):
    hidden, weight, tokens, gather, up = problem(seed=1)
    want = grads_of(reference(hidden, weight, tokens, 1.0, gather, 3), up, keys, hidden, weight)
    out = token_stats(hidden, weight, tokens, entropy=True, top_n=3, gather_ids=gather, chunk_size=4, impl=impl)
    got = grads_of(out, up, keys, hidden, weight)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_padding_is_skipped_and_gets_no_gradient(impl):
    hidden, weight, tokens, gather, up = problem(seed=2)
    mask = torch.ones(3, 5)
    mask[0, 2:] = 0
    mask[2, 4] = 0
    out = token_stats(hidden, weight, tokens, mask=mask, entropy=True, chunk_size=3, impl=impl)
    ref = reference(hidden, weight, tokens, 1.0, gather, 3)
    valid = mask.bool()
    torch.testing.assert_close(out["logp"][valid], ref["logp"][valid], rtol=1e-12, atol=1e-12)
    assert torch.all(out["logp"][~valid] == 0) and torch.all(out["entropy"][~valid] == 0)
    hidden.grad = None
    (out["logp"] + out["entropy"]).sum().backward()
    assert torch.all(hidden.grad[~valid] == 0)
    assert torch.all(hidden.grad[valid].abs().sum(-1) > 0)


def test_proxy_matches_minp_on_the_full_logits_and_has_no_grad():
    hidden, weight, tokens, _, _ = problem(seed=3)
    out = token_stats(hidden, weight, tokens, temperature=0.8, minp_kappa=0.05, chunk_size=4)
    want = minp_proxy_logprobs(hidden.detach() @ weight.detach().T / 0.8, tokens, 0.05)
    torch.testing.assert_close(out["proxy_logp"], want, rtol=1e-12, atol=1e-12)
    assert not out["proxy_logp"].requires_grad


@pytest.mark.parametrize("proxy_logits", ["raw", "scaled"])
def test_lp_reg_proxy_is_built_from_the_logits_its_flag_names(proxy_logits):
    """Lp-Reg-dev's apply_min_p filters the old logits before the division by the temperature ("raw", the
    default); "scaled" filters the temperature-scaled ones. At temperature 0.5 the two differ."""
    hidden, weight, tokens, _, _ = problem(seed=3)
    method = methods.build("lp_reg", {"kappa": 0.05, "proxy_logits": proxy_logits})
    with torch.no_grad():
        got = old_pass_fields(method, hidden, weight, tokens, torch.ones(tokens.shape), temperature=0.5)
    z = hidden.detach() @ weight.detach().T
    raw, scaled = minp_proxy_logprobs(z, tokens, 0.05), minp_proxy_logprobs(z / 0.5, tokens, 0.05)
    assert not torch.allclose(raw, scaled)
    torch.testing.assert_close(got["proxy_logp"], raw if proxy_logits == "raw" else scaled, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got["old_logp"], torch.log_softmax(z / 0.5, -1).gather(-1, tokens[..., None])[..., 0])


def test_float32_inputs_stay_close_to_float64():
    hidden, weight, tokens, _, _ = problem(seed=4)
    out32 = token_stats(hidden.detach().float().requires_grad_(), weight.detach().float(), tokens, entropy=True)
    out64 = token_stats(hidden, weight, tokens, entropy=True)
    torch.testing.assert_close(out32["logp"].double(), out64["logp"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out32["entropy"].double(), out64["entropy"], rtol=1e-5, atol=1e-5)


def test_default_chunk_bounds_the_buffer():
    assert default_chunk_size(151_936) * 151_936 <= 2**26
    assert default_chunk_size(10) * 10 <= 2**26 and default_chunk_size(2**30) == 1


@pytest.mark.parametrize("name, overrides", [
    ("grpo", {}), ("grpo", {"entropy_coef": 0.01}), ("nsr", {}), ("lp_reg", {}),
    ("casp", {}), ("casp", {"candidates": "old"}), ("bbg", {}),
])
def test_pass_fields_fill_what_each_method_requires(name, overrides):
    method = methods.build(name, overrides)
    hidden, weight, tokens, _, _ = problem(B=4, seed=5)
    mask = torch.ones(4, 5)
    mask[1, 3:] = 0
    with torch.no_grad():
        old = old_pass_fields(method, hidden, weight, tokens, mask)
    new = update_pass_fields(method, hidden, weight, tokens, mask, old_topk_ids=old.get("old_topk_ids"))
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    gids = torch.tensor([0, 0, 1, 1])
    extra = {"ref_logp": old["old_logp"]} if "ref_logp" in method.requires else {}
    batch = TokenBatch(old_logp=old["old_logp"], mask=mask, advantages=method.advantages(rewards, gids, mask),
                       rewards=rewards, group_ids=gids,
                       **{k: v for k, v in old.items() if k != "old_logp"}, **new, **extra)
    batch.check(method.requires)
    loss, stats = method.loss(batch)
    loss.backward()
    assert torch.isfinite(hidden.grad).all() and hidden.grad.abs().sum() > 0
    assert all(isinstance(v, float) for v in stats.values())
