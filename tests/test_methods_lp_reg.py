"""Lp-Reg (docs/methods/lp_reg.md): the min-p proxy, the regularised-token selection, the code-vs-paper flags."""

import math

import pytest
import torch
from rlvr.methods.aggregation import AggScale
from rlvr.methods.base import TokenBatch
from rlvr.methods.lp_reg import PROXY_FILL, minp_proxy_logprobs

from rlvr import methods

P = torch.tensor([0.6, 0.25, 0.1, 0.03, 0.011, 0.009], dtype=torch.float64)


def test_proxy_worked_numbers_from_the_spec():
    # worked by hand: kappa 0.02, threshold 0.012: the first four survive and are renormalised
    logits = (P.log() + 1.7).expand(6, 6)
    got = minp_proxy_logprobs(logits, torch.arange(6), 0.02)
    torch.testing.assert_close(got[:4].exp(), torch.tensor([0.61224, 0.25510, 0.10204, 0.03061], dtype=torch.float64),
                               atol=5e-6, rtol=0)
    assert got[4].exp() == 0 and got[5].exp() == 0
    assert got[4].item() == pytest.approx(PROXY_FILL - (math.log(0.98) + 1.7), abs=1e-9)


@pytest.mark.parametrize("strict, kept", [(False, 2), (True, 1)])
def test_threshold_comparison_flag(strict, kept):
    # p_1 / p_0 is exactly 0.25 = kappa: kept under the code's >=, dropped under the paper's >
    logits = torch.tensor([[0.0, math.log(0.25)]] * 2, dtype=torch.float64)
    got = minp_proxy_logprobs(logits, torch.tensor([0, 1]), 0.25, strict=strict)
    assert got[0].exp().item() == pytest.approx(0.8 if kept == 2 else 1.0)
    assert (got[1].exp().item() > 0) == (kept == 2)


def make_batch(seed=0, B=6, T=40, on_policy=True):
    """Groups of 3; proxy = min-p of random logits over a vocab of 8, tokens sampled from them."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, 8, dtype=torch.float64, generator=g) * 2
    tokens = torch.distributions.Categorical(logits=logits).sample()
    logp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1).requires_grad_()
    old = logp.detach().clone() if on_policy else logp.detach() + 0.5 * torch.randn(B, T, dtype=torch.float64, generator=g)
    mask = (torch.arange(T)[None, :] < torch.randint(T // 2, T + 1, (B,), generator=g)[:, None]).double()
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 0])
    gids = torch.tensor([0, 0, 0, 1, 1, 1])
    proxy = minp_proxy_logprobs(logits, tokens, 0.02)
    adv = methods.build("lp_reg").advantages(rewards, gids, mask)
    return TokenBatch(logp=logp, old_logp=old, mask=mask, advantages=adv, rewards=rewards, group_ids=gids,
                      proxy_logp=proxy)


def loss_and_grad(m, b):
    b.logp.grad = None
    loss, stats = m.loss(b)
    loss.backward()
    return loss.item(), b.logp.grad.clone(), stats


BASE = {"eps_low": 1.0, "eps_high": 9.0, "kl_coef": 0.0, "loss_agg_mode": "token-mean"}


@pytest.mark.parametrize("on_policy", [True, False])
def test_beta_zero_is_the_base_loss(on_policy):
    b = make_batch(on_policy=on_policy)
    got = loss_and_grad(methods.build("lp_reg", {"beta": 0.0, "rho": 0.5}), b)
    want = loss_and_grad(methods.build("grpo", BASE), b)
    assert got[0] == want[0]
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)


def test_scripts_rho_never_regularises_a_small_batch():
    # the code: k = floor(0.01 * n_neg) must exceed 1, i.e. at least 200 negative tokens
    b = make_batch()
    assert int(((b.advantages < 0) & (b.mask > 0)).sum()) < 200
    got = loss_and_grad(methods.build("lp_reg"), b)
    want = loss_and_grad(methods.build("grpo", BASE), b)
    assert got[0] == want[0] and got[2]["lp_reg/reg_frac"] == 0.0


def test_regularised_tokens_and_their_gradient_follow_the_code():
    rho = 0.3
    b = make_batch(seed=1)
    m = methods.build("lp_reg", {"rho": rho})
    sel = m.regularised(b)
    lp, neg = b.logp.detach(), (b.advantages < 0) & (b.mask > 0)
    k = math.floor(rho * int(neg.sum()))
    lowest = lp[neg].sort().values[:k]
    want = neg & (lp <= lowest[-1]) & (lp < b.proxy_logp)
    assert torch.equal(sel, want) and sel.sum() > 0
    loss, grad, stats = loss_and_grad(m, b)
    _, base_grad, _ = loss_and_grad(methods.build("grpo", BASE), b)
    n = b.mask.sum()
    # d/dlogp of beta * k3(q || pi) = beta * (1 - q / pi) on the selected tokens, /n for token-mean
    extra = torch.where(sel, (1 - torch.exp(b.proxy_logp - lp)) / n, torch.zeros_like(lp))
    torch.testing.assert_close(grad, base_grad + extra, rtol=1e-12, atol=1e-15)
    assert stats["lp_reg/reg_frac"] == pytest.approx(sel.sum().item() / n.item())


def test_paper_scope_ranks_all_tokens_of_the_batch():
    b = make_batch(seed=2)
    m = methods.build("lp_reg", {"rho": 0.2, "percentile_scope": "batch"})
    lp, valid = b.logp.detach(), b.mask > 0
    k = math.floor(0.2 * int(valid.sum()))
    cut = lp[valid].sort().values[k - 1]
    want = valid & (lp <= cut) & (b.advantages < 0) & (lp < b.proxy_logp)
    assert torch.equal(m.regularised(b), want)


def test_clip_form_matters_only_for_negative_advantages_beyond_u():
    b = make_batch(seed=3)
    with torch.no_grad():
        b.old_logp.copy_(b.logp.detach() - math.log(20.0) * (b.advantages < 0))  # ratio 20 on negatives
    code = loss_and_grad(methods.build("lp_reg", {"beta": 0.0}), b)[1]
    paper = loss_and_grad(methods.build("lp_reg", {"beta": 0.0, "clip_form": "paper"}), b)[1]
    neg = (b.advantages < 0) & (b.mask > 0)
    assert torch.all(paper[neg] == 0) and torch.all(code[neg] > 0)
    torch.testing.assert_close(paper[~neg], code[~neg], rtol=0, atol=0)


def test_default_weights_micro_batches_by_their_row_share_as_the_code():
    """Lp-Reg-dev (verl 0.3, dynamic batch size) multiplies each micro-batch's token-mean by its share of the
    mini-batch's rows; microbatch_weighted=False is one token-mean over the mini-batch."""
    b = make_batch(seed=4)
    scale = AggScale.of(b.mask)
    parts = (b.rows(slice(0, 2)), b.rows(slice(2, 6)))
    for p in parts:
        p.agg_scale = scale
    code, flat = methods.build("lp_reg", {"beta": 0.0}), methods.build("lp_reg", {"beta": 0.0, "microbatch_weighted": False})
    assert code.microbatch_weighted and code.proxy_logits == "raw"
    ratio = torch.exp(b.logp - b.old_logp).detach()          # on-policy: ratio 1, token loss -A
    tok = -b.advantages * ratio
    want_code = sum(float((tok[s] * b.mask[s]).sum() / b.mask[s].sum()) * (len(range(6)[s]) / 6)
                    for s in (slice(0, 2), slice(2, 6)))
    want_flat = float((tok * b.mask).sum() / b.mask.sum())
    assert sum(code.loss(p)[0].item() for p in parts) == pytest.approx(want_code, rel=1e-12)
    assert sum(flat.loss(p)[0].item() for p in parts) == pytest.approx(want_flat, rel=1e-12)
    assert want_code != pytest.approx(want_flat, rel=1e-6)      # the split makes them differ here
    # one micro-batch: the same loss
    assert code.loss(b)[0].item() == pytest.approx(flat.loss(b)[0].item(), rel=1e-12)


def test_microbatch_weighted_needs_token_mean():
    with pytest.raises(ValueError, match="microbatch_weighted"):
        methods.build("lp_reg", {"loss_agg_mode": "seq-mean-token-mean"})
    assert methods.build("lp_reg", {"loss_agg_mode": "seq-mean-token-mean", "microbatch_weighted": False})
