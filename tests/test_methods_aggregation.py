"""Loss aggregation (verl's modes), the PPO clip and k3: formulas and micro-batch split invariance."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rlvr.methods.aggregation import (
    AGG_MODES,
    SUM_NORM_DIVISORS,
    AggScale,
    agg_loss,
    k3_kl,
    ppo_clip_loss,
    ppo_clip_terms,
)

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


# M with a third, fully masked row: verl 0.9.1 leaves it out of the sequence count (seqs = 2, not 3)
L3 = torch.cat([L, torch.full((1, 4), 100.0, dtype=torch.float64)])
M3 = torch.cat([M, torch.zeros(1, 4, dtype=torch.float64)])


@pytest.mark.parametrize("mode, want", [
    ("token-mean", (1 + 2 + 3 + 10) / 4),
    ("seq-mean-token-sum", (6 + 10) / 2),
    ("seq-mean-token-mean", (6 / 3 + 10 / 1) / 2),
    ("seq-mean-token-sum-norm", (6 + 10) / 2 / 4),
])
def test_a_fully_masked_row_is_not_a_sequence(mode, want):
    assert AggScale.of(M3).seqs == 2 and AggScale.of(M3).rows == 3
    assert agg_loss(L3, M3, mode).item() == pytest.approx(want, abs=1e-12)


def test_sum_norm_divisor_t_pad_divides_the_total_by_t_pad_alone():
    # verl main (January 2026): masked total / t_pad, no division by the sequence count
    assert agg_loss(L, M, "seq-mean-token-sum-norm", sum_norm_divisor="t_pad").item() == pytest.approx((6 + 10) / 4)
    assert agg_loss(L, M, "seq-mean-token-sum-norm", AggScale.of(M, t_pad=8), sum_norm_divisor="t_pad").item() \
        == pytest.approx((6 + 10) / 8)
    # with dp ranks averaged (verl backend), each rank's share is scaled back up
    assert agg_loss(L, M, "seq-mean-token-sum-norm", AggScale(tokens=2, seqs=1, t_pad=4, dp=2),
                    sum_norm_divisor="t_pad").item() == pytest.approx((6 + 10) / 4 * 2)
    for mode in ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean"):    # only the sum-norm mode reads it
        assert agg_loss(L, M, mode, sum_norm_divisor="t_pad").item() == agg_loss(L, M, mode).item()
    with pytest.raises(ValueError, match="sum_norm_divisor"):
        agg_loss(L, M, "seq-mean-token-sum-norm", sum_norm_divisor="T")


def test_microbatch_weighted_counts_every_row_of_the_mini_batch():
    # verl 0.2/0.3 weighs a micro-batch by len(micro) / ppo_mini_batch_size: rows, empty ones included
    scale = AggScale.of(M3)
    got = agg_loss(L3[1:], M3[1:], "token-mean", scale, microbatch_weighted=True)
    assert got.item() == pytest.approx(10.0 * 2 / 3)


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
@given(split_batch(), st.sampled_from(AGG_MODES), st.sampled_from(SUM_NORM_DIVISORS))
def test_split_into_micro_batches_gives_the_same_loss_and_gradient(case, mode, divisor):
    B, T, lengths, cuts, seed = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, dtype=torch.float64, generator=g, requires_grad=True)
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).double()
    per_token = x * x * 0.5 + x  # any per-token loss with a row-dependent gradient
    whole = agg_loss(per_token, mask, mode, sum_norm_divisor=divisor)
    (gw,) = torch.autograd.grad(whole, x)
    scale = AggScale.of(mask)
    bounds = [0, *cuts, B]
    parts = [agg_loss((x[a:b] ** 2 * 0.5 + x[a:b]), mask[a:b], mode, scale, sum_norm_divisor=divisor)
             for a, b in zip(bounds, bounds[1:])]
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


@pytest.mark.parametrize("ratio, adv, eps_low, eps_high, dual, want_loss, want_clipped, want_capped", [
    (1.0, 1.0, 0.2, 0.2, None, -1.0, False, False),
    (1.5, 1.0, 0.2, 0.2, None, -1.2, True, False),     # A > 0: ratio capped at 1 + eps_high
    (1.5, 1.0, 0.2, 0.28, None, -1.28, True, False),   # clip-higher
    (0.5, 1.0, 0.2, 0.2, None, -0.5, False, False),    # A > 0, ratio low: unclipped is the max
    (0.5, -1.0, 0.2, 0.2, None, 0.8, True, False),     # A < 0: ratio floored at 1 - eps_low
    (1.5, -1.0, 0.2, 0.2, None, 1.5, False, False),
    # dual clip caps the loss at -c A; verl counts it in pg_clipfrac_lower, not in pg_clipfrac
    (5.0, -1.0, 0.2, 0.2, 3.0, 3.0, False, True),
    (0.5, -1.0, 0.2, 0.2, 3.0, 0.8, True, False),      # clipped, not capped
    (2.0, -1.0, 0.2, 0.2, 3.0, 2.0, False, False),
    (5.0, 1.0, 0.2, 0.2, 3.0, -1.2, True, False),      # dual clip only acts on A < 0
])
def test_ppo_clip_case_table(ratio, adv, eps_low, eps_high, dual, want_loss, want_clipped, want_capped):
    loss, clipped, capped = ppo_clip_terms(torch.tensor([ratio]), torch.tensor([adv]), eps_low, eps_high, dual)
    assert loss.item() == pytest.approx(want_loss) and bool(clipped) == want_clipped and bool(capped) == want_capped
    assert ppo_clip_loss(torch.tensor([ratio]), torch.tensor([adv]), eps_low, eps_high, dual)[1] == clipped


def test_dual_clip_zeroes_the_gradient_beyond_c():
    logp = torch.tensor([math.log(4.0)], requires_grad=True)
    loss, _ = ppo_clip_loss(torch.exp(logp), torch.tensor([-1.0]), 0.2, 0.2, 3.0)
    loss.backward()
    assert logp.grad.item() == 0.0


def test_k3_worked_numbers_from_the_spec():
    # Lp-Reg's worked case, derived by hand: p = 0.03 on-policy, proxy q = 0.03 / 0.98; x = 0.020203, k3 = 2.0546e-4, d/dlogp = -0.020408
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
