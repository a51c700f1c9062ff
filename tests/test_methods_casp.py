"""CaSP (docs/methods/casp.md): the logit-gradient direction worked by hand, the GRPO limit, the code's literal formula."""

import pytest
import torch
from rlvr.methods.base import TokenBatch
from rlvr.methods.casp import forking_tokens

from rlvr import methods

Z = [2.0, 1.5, 0.5, 0.0, -1.0]


def logit_batch(first_logits, y0, adv, rewards, old_shift=0.0):
    """One response of two tokens: token 0 has `first_logits` (high entropy), token 1 is near-certain
    (low entropy), so with q = 0.8 only token 0 is a forking token."""
    z = torch.tensor([first_logits, [12.0, 0, 0, 0, 0]], dtype=torch.float64, requires_grad=True)
    lsm = torch.log_softmax(z, -1)
    tokens = torch.tensor([[y0, 0]])
    logp = lsm.gather(-1, tokens.T).T
    vals, ids = lsm.topk(3, -1)
    b = TokenBatch(logp=logp, old_logp=logp.detach() - old_shift, mask=torch.ones(1, 2, dtype=torch.float64),
                   advantages=torch.full((1, 2), adv, dtype=torch.float64), rewards=torch.tensor([rewards]),
                   group_ids=torch.tensor([0]), tokens=tokens, entropy=-(lsm.exp() * lsm).sum(-1)[None],
                   topk_logp=vals[None], topk_ids=ids[None])
    return z, b


def objective_grad(m, z, b):
    loss, stats = m.loss(b)
    loss.backward()
    return -z.grad[0] * 2  # the objective's gradient at token 0 (token-mean over two tokens)


@pytest.mark.parametrize("y, direction", [
    (0, [0.49700, -0.29771, -0.10741, -0.06717, -0.02471]),
    (3, [-0.49300, -0.29771, -0.10741, 0.92283, -0.02471]),
])
def test_positive_direction_worked_numbers_from_the_spec(y, direction):
    z, b = logit_batch(Z, y, 1.0, 1.0)
    assert forking_tokens(b.entropy, b.mask, 0.8).tolist() == [[True, False]]
    got = objective_grad(methods.build("casp"), z, b)
    torch.testing.assert_close(got, torch.tensor(direction, dtype=torch.float64), atol=1e-5, rtol=0)
    pi = torch.softmax(torch.tensor(Z, dtype=torch.float64), -1)
    target = 0.99 * torch.eye(5, dtype=torch.float64)[y] + 0.01 / 3 * torch.tensor([1.0, 1, 1, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(got, target - pi, atol=1e-12, rtol=0)


def test_non_forking_token_gets_the_plain_policy_gradient():
    z, b = logit_batch(Z, 3, 1.0, 1.0)
    got = objective_grad(methods.build("casp", {"entropy_quantile": 1.0}), z, b)  # nothing is > the max
    pi = torch.softmax(torch.tensor(Z, dtype=torch.float64), -1)
    torch.testing.assert_close(got, torch.eye(5, dtype=torch.float64)[3] - pi, atol=1e-12, rtol=0)


@pytest.mark.parametrize("y, factor", [(0, 1.1), (1, 1.0)])
def test_negative_rows_penalise_a_sampled_argmax_harder(y, factor):
    z, b = logit_batch(Z, y, -1.0, 0.0)
    got = objective_grad(methods.build("casp"), z, b)
    pi = torch.softmax(torch.tensor(Z, dtype=torch.float64), -1)
    torch.testing.assert_close(got, -factor * (torch.eye(5, dtype=torch.float64)[y] - pi), atol=1e-12, rtol=0)


def test_ratio_and_advantage_scaling_agree_on_policy_and_differ_at_the_clip():
    grads = {}
    for shift in (0.0, torch.log(torch.tensor(0.75)).item()):   # ratio 1, then 0.75 (below 1 - eps)
        for mode in ("advantage", "ratio"):
            z, b = logit_batch(Z, 0, -1.0, 0.0, old_shift=shift)
            grads[shift, mode] = objective_grad(methods.build("casp", {"top1_penalty": mode}), z, b)
    torch.testing.assert_close(grads[0.0, "advantage"], grads[0.0, "ratio"], atol=1e-12, rtol=0)
    s = torch.log(torch.tensor(0.75)).item()
    assert torch.all(grads[s, "advantage"] == 0)        # 1.1 * clipped 0.8: no gradient
    assert grads[s, "ratio"].abs().sum() > 0           # 1.1 * 0.75 = 0.825 is inside the clip range


def random_batch(seed=0, B=6, T=7, V=11, N=3):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, V, dtype=torch.float64, generator=g, requires_grad=True)
    lsm = torch.log_softmax(z, -1)
    tokens = torch.distributions.Categorical(logits=z.detach()).sample()
    logp = lsm.gather(-1, tokens[..., None]).squeeze(-1)
    vals, ids = lsm.topk(N, -1)
    mask = (torch.arange(T)[None, :] < torch.tensor([7, 5, 7, 2, 6, 7])[:, None]).double()
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 0])
    gids = torch.tensor([0, 0, 0, 1, 1, 1])
    old = logp.detach() + 0.1 * torch.randn(B, T, dtype=torch.float64, generator=g)
    adv = methods.build("casp").advantages(rewards, gids, mask)
    b = TokenBatch(logp=logp, old_logp=old, mask=mask, advantages=adv, rewards=rewards, group_ids=gids,
                   tokens=tokens, entropy=-(lsm.exp() * lsm).sum(-1), topk_logp=vals, topk_ids=ids)
    return z, b, g


def value_and_grad(m, z, b):
    z.grad = None
    loss, _ = m.loss(b)
    loss.backward(retain_graph=True)
    return loss.item(), z.grad.clone()


def test_alpha_zero_lambda_one_is_grpo_exactly():
    z, b, _ = random_batch()
    casp = value_and_grad(methods.build("casp", {"alpha": 0.0, "lambda_top1": 1.0}), z, b)
    grpo = value_and_grad(methods.build("grpo", {"kl_coef": 0.0, "loss_agg_mode": "token-mean"}), z, b)
    assert casp[0] == grpo[0]
    torch.testing.assert_close(casp[1], grpo[1], rtol=0, atol=0)


def test_alpha_changes_the_gradient_not_the_value():
    z, b, _ = random_batch(seed=1)
    a = value_and_grad(methods.build("casp", {"alpha": 0.0}), z, b)
    c = value_and_grad(methods.build("casp", {"alpha": 0.05}), z, b)
    assert c[0] == pytest.approx(a[0], rel=1e-12)
    assert (c[1] - a[1]).abs().max() > 1e-4


def test_matches_the_codes_literal_rank_paired_formula():
    # SimKO: gamma_n = exp(current top-n log-prob - old n-th largest log-prob), paired by rank, and
    # mix = sum_n sg(gamma) / sg(gamma_n) * gamma_n; here the old top-N log-probs are perturbed (as on a
    # later mini-batch); the loss and gradient must not depend on them (measured < 1e-11)
    z, b, g = random_batch(seed=2)
    m = methods.build("casp", {"alpha": 0.05})
    ours = value_and_grad(m, z, b)
    old_top = b.topk_logp.detach() + 0.3 * torch.randn(b.topk_logp.shape, dtype=torch.float64, generator=g)
    gamma = torch.exp(b.logp - b.old_logp)
    gamma_n = torch.exp(b.topk_logp - old_top)
    mix = (gamma.detach()[..., None] / gamma_n.detach() * gamma_n).sum(-1)
    w = forking_tokens(b.entropy, b.mask, 0.8).double()
    pos = (b.rewards == 1)[:, None]
    ratio = torch.where(pos, (1 - 0.05 * w) * gamma + 0.05 * w / 3 * mix, gamma)
    top1 = (b.advantages < 0) & (w > 0) & (b.tokens == b.topk_ids[..., 0])
    A = torch.where(top1, b.advantages * 1.1, b.advantages)
    tok = torch.maximum(-A * ratio, -A * ratio.clamp(0.8, 1.2))
    z.grad = None
    literal = (tok * b.mask).sum() / b.mask.sum()
    literal.backward()
    assert ours[0] == pytest.approx(literal.item(), rel=1e-12)
    torch.testing.assert_close(ours[1], z.grad, rtol=1e-10, atol=1e-13)


def test_positive_rows_by_reward_or_by_advantage_agree_under_grpo_advantages():
    z, b, _ = random_batch(seed=3)
    r = value_and_grad(methods.build("casp", {"positive_rows": "reward"}), z, b)
    a = value_and_grad(methods.build("casp", {"positive_rows": "advantage"}), z, b)
    torch.testing.assert_close(r[1], a[1], rtol=0, atol=0)


@pytest.mark.parametrize("ent, mask, q, want", [
    ([1.0, 2, 3, 4, 5], [1, 1, 1, 1, 1], 0.8, [0, 0, 0, 0, 1]),      # threshold 4.2 (linear)
    ([1.0, 2, 3, 4, 9], [1, 1, 1, 1, 0], 0.5, [0, 0, 1, 1, 0]),      # padding is neither counted nor chosen
    ([2.0, 2, 2, 2, 2], [1, 1, 1, 1, 1], 0.8, [0, 0, 0, 0, 0]),      # strict >
    ([3.0, 1, 0, 0, 0], [1, 0, 0, 0, 0], 0.8, [0, 0, 0, 0, 0]),      # one token is never above itself
])
def test_forking_tokens_case_table(ent, mask, q, want):
    got = forking_tokens(torch.tensor([ent]), torch.tensor([mask]), q)
    assert got.int().tolist() == [want]


def test_old_candidates_need_old_ids_and_gathered_logps():
    m = methods.build("casp", {"candidates": "old"})
    assert {"old_topk_ids", "logp_at_old_topk"} <= m.requires and "topk_logp" not in m.requires
    z, b, _ = random_batch(seed=4)
    b.old_topk_ids, b.logp_at_old_topk = b.topk_ids, b.topk_logp   # on the first mini-batch they coincide
    cur = value_and_grad(methods.build("casp"), z, b)
    old = value_and_grad(m, z, b)
    assert cur[0] == old[0]
    torch.testing.assert_close(cur[1], old[1], rtol=0, atol=0)
