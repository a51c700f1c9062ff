"""Loss aggregation (verl's modes), the PPO clip and k3: formulas and micro-batch split invariance."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rlvr.methods.aggregation import AGG_MODES, AggScale, agg_loss, k3_kl, ppo_clip_loss

L = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]], dtype=torch.float64)
M = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.float64)


@pytest.mark.parametrize("mode, want", [
    ("token-mean", (1 + 2 + 3 + 10) / 4),
    ("seq-mean-token-sum", (6 + 10) / 2),
    ("seq-mean-token-mean", (6 / 3 + 10 / 1) / 2),
    ("seq-mean-token-sum-norm", (6 + 10) / 2 / 4),  # mean over the B = 2 rows, / T_pad = 4 (verl 0.9.1, Dr. GRPO)
])
def test_modes_match_the_spec_table(mode, want):
    assert agg_loss(L, M, mode).item() == pytest.approx(want, abs=1e-12)


def test_microbatch_weighted_is_verl02_row_weighted_token_mean():
    # micro-batch = row 1 only, mini-batch of 2 rows: token-mean of the micro-batch times 1/2
    scale = AggScale.of(M)
    got = agg_loss(L[1:], M[1:], "token-mean", scale, microbatch_weighted=True)
    assert got.item() == pytest.approx(10.0 * 1 / 2)
    with pytest.raises(ValueError):
        agg_loss(L, M, "seq-mean-token-sum", microbatch_weighted=True)


def test_unknown_mode_and_empty_mask():
    with pytest.raises(ValueError, match="loss_agg_mode"):
        agg_loss(L, M, "token_mean")
    for mode in AGG_MODES:
        assert agg_loss(L, torch.zeros_like(M), mode).item() == 0.0


@st.composite
def split_batch(draw):
    B, T = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    lengths = draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    cuts = sorted(set(draw(st.lists(st.integers(1, B - 1), max_size=B - 1)))) if B > 1 else []
    seed = draw(st.integers(0, 2**16))
    return B, T, lengths, cuts, seed


@settings(max_examples=60, deadline=None)
@given(split_batch(), st.sampled_from(AGG_MODES))
def test_split_into_micro_batches_gives_the_same_loss_and_gradient(case, mode):
    B, T, lengths, cuts, seed = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, dtype=torch.float64, generator=g, requires_grad=True)
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).double()
    per_token = x * x * 0.5 + x  # any per-token loss with a row-dependent gradient
    whole = agg_loss(per_token, mask, mode)
    (gw,) = torch.autograd.grad(whole, x)
    scale = AggScale.of(mask)
    bounds = [0, *cuts, B]
    parts = [agg_loss((x[a:b] ** 2 * 0.5 + x[a:b]), mask[a:b], mode, scale) for a, b in zip(bounds, bounds[1:])]
    total = sum(parts)
    (gs,) = torch.autograd.grad(total, x)
    assert total.item() == pytest.approx(whole.item(), rel=1e-12, abs=1e-12)
    torch.testing.assert_close(gs, gw, rtol=1e-12, atol=1e-12)


def test_split_invariance_needs_a_constant_t_pad():
    # micro-batches re-padded to their own lengths: the mini-batch's t_pad keeps the sum unchanged
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 0, 0, 0]])
    loss = torch.ones(2, 4)
    whole = agg_loss(loss, mask, "seq-mean-token-sum-norm", AggScale.of(mask, t_pad=8))
    scale = AggScale.of(mask, t_pad=8)
    parts = agg_loss(loss[:1], mask[:1], "seq-mean-token-sum-norm", scale) + \
        agg_loss(loss[1:, :1], mask[1:, :1], "seq-mean-token-sum-norm", scale)
    assert parts.item() == pytest.approx(whole.item()) == pytest.approx(5 / 2 / 8)


@pytest.mark.parametrize("ratio, adv, eps_low, eps_high, dual, want_loss, want_clipped", [
    (1.0, 1.0, 0.2, 0.2, None, -1.0, False),
    (1.5, 1.0, 0.2, 0.2, None, -1.2, True),     # A > 0: ratio capped at 1 + eps_high
    (1.5, 1.0, 0.2, 0.28, None, -1.28, True),   # clip-higher
    (0.5, 1.0, 0.2, 0.2, None, -0.5, False),    # A > 0, ratio low: unclipped is the max
    (0.5, -1.0, 0.2, 0.2, None, 0.8, True),     # A < 0: ratio floored at 1 - eps_low
    (1.5, -1.0, 0.2, 0.2, None, 1.5, False),
    (5.0, -1.0, 0.2, 0.2, 3.0, 3.0, True),      # dual clip caps the loss at -c A
    (2.0, -1.0, 0.2, 0.2, 3.0, 2.0, False),
    (5.0, 1.0, 0.2, 0.2, 3.0, -1.2, True),      # dual clip only acts on A < 0
])
def test_ppo_clip_case_table(ratio, adv, eps_low, eps_high, dual, want_loss, want_clipped):
    loss, clipped = ppo_clip_loss(torch.tensor([ratio]), torch.tensor([adv]), eps_low, eps_high, dual)
    assert loss.item() == pytest.approx(want_loss) and bool(clipped) == want_clipped


def test_dual_clip_zeroes_the_gradient_beyond_c():
    logp = torch.tensor([math.log(4.0)], requires_grad=True)
    loss, _ = ppo_clip_loss(torch.exp(logp), torch.tensor([-1.0]), 0.2, 0.2, 3.0)
    loss.backward()
    assert logp.grad.item() == 0.0


def test_k3_worked_numbers_from_the_spec():
    # methods-spec 7: p = 0.03 on-policy, proxy q = 0.03 / 0.98; x = 0.020203, k3 = 2.0546e-4, d/dlogp = -0.020408
    q = torch.tensor([math.log(0.03 / 0.98)], dtype=torch.float64)
    logp = torch.tensor([math.log(0.03)], dtype=torch.float64, requires_grad=True)
    kl = k3_kl(logp, q)
    kl.backward()
    assert (q - logp).item() == pytest.approx(0.020203, abs=1e-6)
    assert kl.item() == pytest.approx(2.0546e-4, rel=1e-4)
    assert logp.grad.item() == pytest.approx(-0.020408, abs=1e-6)


def test_k3_clamp_zeroes_the_gradient_past_ten():
    logp = torch.tensor([-40.0, -1.0], dtype=torch.float64, requires_grad=True)
    kl = k3_kl(logp, torch.tensor([-1.0, -1.0], dtype=torch.float64))
    kl.sum().backward()
    assert kl[0].item() == 10.0 and logp.grad[0].item() == 0.0 and kl[1].item() == 0.0
