"""GRPO (and Dr. GRPO / DAPO by override): advantages as verl, loss as docs/methods/grpo.md."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rlvr.methods.advantages import group_normalized
from rlvr.methods.aggregation import AggScale
from rlvr.methods.base import TokenBatch, count_kept_groups
from rlvr.methods.grpo import DAPO_OVERRIDES

from rlvr import methods


@st.composite
def grouped_rewards(draw):
    sizes = draw(st.lists(st.integers(1, 8), min_size=1, max_size=6))
    rewards = [draw(st.sampled_from([0.0, 1.0])) for s in sizes for _ in range(s)]
    gids = [g for g, s in enumerate(sizes) for _ in range(s)]
    perm = draw(st.permutations(range(len(gids))))
    return torch.tensor([rewards[i] for i in perm], dtype=torch.float64), torch.tensor([gids[i] * 7 for i in perm])


@settings(max_examples=80, deadline=None)
@given(grouped_rewards(), st.booleans())
def test_advantages_sum_to_zero_per_group_of_two_or_more(case, norm):
    rewards, gids = case
    a = group_normalized(rewards, gids, norm)
    for g in gids.unique():
        sel = gids == g
        if sel.sum() > 1:
            assert a[sel].sum().item() == pytest.approx(0.0, abs=1e-9)
            if torch.all(rewards[sel] == rewards[sel][0]):
                assert torch.all(a[sel] == 0)


@pytest.mark.parametrize("rewards, want", [
    # unbiased std: [1, 0, 0, 0] has mean 0.25, std sqrt(0.25) = 0.5 (N-1), not 0.433 (N)
    ([1, 0, 0, 0], [0.75 / (0.5 + 1e-6), -0.25 / (0.5 + 1e-6), -0.25 / (0.5 + 1e-6), -0.25 / (0.5 + 1e-6)]),
    ([1, 1], [0.0, 0.0]),
    ([0, 0, 0], [0.0, 0.0, 0.0]),
    ([1, 0], [0.5 / (math.sqrt(0.5) + 1e-6), -0.5 / (math.sqrt(0.5) + 1e-6)]),
])
def test_group_advantage_case_table(rewards, want):
    r = torch.tensor(rewards, dtype=torch.float64)
    got = group_normalized(r, torch.zeros(len(rewards), dtype=torch.long))
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reward, norm, want", [(1.0, True, 1 / (1 + 1e-6)), (0.0, True, 0.0), (1.0, False, 1.0)])
def test_group_of_size_one_has_mean_zero_std_one(reward, norm, want):
    got = group_normalized(torch.tensor([reward, 1.0, 0.0], dtype=torch.float64), torch.tensor([5, 6, 6]), norm)
    assert got[0].item() == pytest.approx(want, abs=1e-15)


def test_dr_grpo_drops_the_std():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(group_normalized(r, torch.zeros(4, dtype=torch.long), False),
                               torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_advantages_broadcast_over_tokens_and_vanish_on_padding():
    m = methods.build("grpo")
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 1]])
    a = m.advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), mask)
    assert a[0, 2] == 0 and a[0, 0] == a[0, 1] > 0 and a[1, 0] == a[1, 2] < 0


def test_dapo_overlong_penalty_is_linear_over_the_cache_zone():
    m = methods.build("grpo", {"overlong_max_len": 20, "overlong_cache": 4, "norm_adv_by_std": False})
    mask = (torch.arange(30)[None, :] < torch.tensor([16, 17, 18, 20, 21, 30])[:, None]).float()
    shaped = m.shaped_rewards(torch.ones(6), mask)
    # past L_max the penalty stays at -1 (DAPO Eq. 13)
    torch.testing.assert_close(shaped, torch.tensor([1.0, 0.75, 0.5, 0.0, 0.0, 0.0]))


def test_dynamic_sampling_drops_all_equal_groups_and_asks_for_refill():
    m = methods.build("grpo", DAPO_OVERRIDES)
    rewards = torch.tensor([1.0, 1, 0, 1, 0, 0, 1, 1])
    gids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    keep = m.select_rows(rewards, gids)
    assert keep.tolist() == [False, False, True, True, False, False, False, False]
    assert m.refill and count_kept_groups(keep, gids) == 1
    plain = methods.build("grpo")
    assert plain.select_rows(rewards, gids).all() and not plain.refill


def batch_for(m, seed=0, B=4, T=6):
    g = torch.Generator().manual_seed(seed)
    logp = (torch.rand(B, T, dtype=torch.float64, generator=g) * -3).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(B, T, dtype=torch.float64, generator=g)
    ref = logp.detach() + 0.3 * torch.randn(B, T, dtype=torch.float64, generator=g)
    mask = (torch.arange(T)[None, :] < torch.tensor([6, 3, 5, 1])[:, None]).double()
    rewards = torch.tensor([1.0, 0, 0, 1])
    gids = torch.tensor([0, 0, 1, 1])
    ent = torch.rand(B, T, dtype=torch.float64, generator=g).requires_grad_()
    return TokenBatch(logp=logp, old_logp=old, mask=mask, advantages=m.advantages(rewards, gids, mask),
                      rewards=rewards, group_ids=gids, ref_logp=ref, entropy=ent)


def test_loss_equals_the_spec_pseudocode():
    m = methods.build("grpo", {"eps_high": 0.28, "entropy_coef": 0.01, "kl_coef": 0.04})
    b = batch_for(m)
    loss, stats = m.loss(b)
    A, ratio = b.advantages, torch.exp(b.logp - b.old_logp)
    L = torch.maximum(-A * ratio, -A * ratio.clamp(0.8, 1.28))
    rowmean = lambda x: ((x * b.mask).sum(-1) / b.mask.sum(-1)).mean()  # noqa: E731  seq-mean-token-mean
    x = b.ref_logp - b.logp
    want = rowmean(L) + 0.04 * rowmean((torch.exp(x) - x - 1).clamp(-10, 10)) - 0.01 * rowmean(b.entropy)
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    assert stats["loss"] == pytest.approx(want.item()) and 0 <= stats["pg_clipfrac"] <= 1
    assert m.requires == {"ref_logp", "entropy"}


def test_on_policy_ratio_is_one_and_gradient_is_minus_advantage():
    m = methods.build("grpo", {"kl_coef": 0.0, "loss_agg_mode": "token-mean"})
    b = batch_for(m)
    b.old_logp = b.logp.detach().clone()
    loss, stats = m.loss(b)
    loss.backward()
    torch.testing.assert_close(b.logp.grad, -b.advantages * b.mask / b.mask.sum())
    assert stats["pg_clipfrac"] == 0.0


def test_micro_batches_sum_to_the_mini_batch_gradient():
    m = methods.build("grpo", {"kl_coef": 0.02, "entropy_coef": 0.01, "loss_agg_mode": "seq-mean-token-mean"})
    b = batch_for(m, seed=3)
    whole, _ = m.loss(b)
    gw = torch.autograd.grad(whole, [b.logp, b.entropy])
    scale = AggScale.of(b.mask)
    parts = []
    for idx in (slice(0, 1), slice(1, 4)):
        mb = b.rows(idx)
        mb.agg_scale = scale
        parts.append(m.loss(mb)[0])
    gs = torch.autograd.grad(sum(parts), [b.logp, b.entropy])
    for x, y in zip(gs, gw):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_missing_required_field_is_named():
    m = methods.build("grpo")
    b = batch_for(m)
    b.ref_logp = None
    with pytest.raises(ValueError, match="ref_logp"):
        m.loss(b)
