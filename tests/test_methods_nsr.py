"""PSR / NSR / W-REINFORCE (docs/methods/nsr.md): signed advantages, row selection, zero gradient from ignored rows."""

import pytest
import torch
from rlvr.methods.base import TokenBatch

from rlvr import methods

REWARDS = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
GIDS = torch.tensor([0, 0, 0, 1, 1])


def make_batch(m, rows=None):
    g = torch.Generator().manual_seed(0)
    B, T = 5, 4
    logp = (torch.rand(B, T, dtype=torch.float64, generator=g) * -2).requires_grad_()
    old = logp.detach() + 0.2 * torch.randn(B, T, dtype=torch.float64, generator=g)
    mask = torch.ones(B, T, dtype=torch.float64)
    mask[1, 2:] = 0
    b = TokenBatch(logp=logp, old_logp=old, mask=mask, advantages=m.advantages(REWARDS, GIDS, mask),
                   rewards=REWARDS, group_ids=GIDS, entropy=torch.zeros(B, T, dtype=torch.float64))
    return b if rows is None else b.rows(rows)


@pytest.mark.parametrize("name, lam, want", [
    ("psr", None, [1, 0, 1, 0, 0]), ("nsr", None, [0, -1, 0, -1, -1]),
    ("w_reinforce", None, [0.1, -1, 0.1, -1, -1]), ("w_reinforce", 1.0, [1, -1, 1, -1, -1]),
    ("w_reinforce", 0.0, [0, -1, 0, -1, -1]),
])
def test_signed_advantages(name, lam, want):
    m = methods.build(name, {} if lam is None else {"lam": lam})
    a = m.advantages(REWARDS, GIDS, torch.ones(5, 2))
    assert a[:, 0].tolist() == pytest.approx(want) and a[:, 1].tolist() == pytest.approx(want)


@pytest.mark.parametrize("name, subset, mask_mode", [
    ("psr", [True, False, True, False, False], [True] * 5),
    ("nsr", [False, True, False, True, True], [True] * 5),
    ("w_reinforce", [True] * 5, [True] * 5),
])
def test_row_selection(name, subset, mask_mode):
    assert methods.build(name).select_rows(REWARDS, GIDS).tolist() == subset
    assert methods.build(name, {"row_selection": "mask"}).select_rows(REWARDS, GIDS).tolist() == mask_mode
    assert not methods.build(name).refill


@pytest.mark.parametrize("entropy_coef", [0.0, 0.001])
def test_nsr_gets_zero_gradient_from_correct_rows(entropy_coef):
    m = methods.build("nsr", {"row_selection": "mask", "entropy_coef": entropy_coef})
    b = make_batch(m)
    b.entropy = None if entropy_coef == 0 else torch.zeros(5, 4, dtype=torch.float64)
    loss, _ = m.loss(b)
    loss.backward()
    correct = REWARDS == 1
    assert torch.all(b.logp.grad[correct] == 0)
    assert torch.all(b.logp.grad[~correct] * b.mask[~correct] >= 0)  # pushes the wrong tokens down
    assert b.logp.grad[~correct].abs().sum() > 0


@pytest.mark.parametrize("name, ignored", [("nsr", REWARDS == 1), ("psr", REWARDS == 0)])
def test_mask_mode_gives_ignored_rows_no_entropy_gradient(name, ignored):
    """Under "mask" the rows "subset" would drop keep advantage 0; they get no entropy bonus either."""
    m = methods.build(name, {"row_selection": "mask", "entropy_coef": 0.5})
    b = make_batch(m)
    ent = torch.rand(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_()
    b.entropy = ent
    m.loss(b)[0].backward()
    assert torch.all(ent.grad[ignored] == 0)
    assert torch.all(ent.grad[~ignored][b.mask[~ignored] > 0] < 0)    # the bonus raises the kept rows' entropy


def test_subset_and_mask_differ_only_in_the_denominator():
    sub, msk = methods.build("nsr", {"entropy_coef": 0.0}), methods.build("nsr", {"row_selection": "mask", "entropy_coef": 0.0})
    keep = sub.select_rows(REWARDS, GIDS)
    l_sub, _ = sub.loss(make_batch(sub, keep))
    full = make_batch(msk)
    l_mask, _ = msk.loss(full)
    n_all, n_kept = full.mask.sum(), full.mask[keep].sum()
    assert l_mask.item() == pytest.approx(l_sub.item() * n_kept.item() / n_all.item(), rel=1e-12)


def test_w_reinforce_on_policy_gradient_is_plus_lambda_minus_one():
    m = methods.build("w_reinforce", {"entropy_coef": 0.0})
    b = make_batch(m)
    b.old_logp = b.logp.detach().clone()
    m.loss(b)[0].backward()
    per_tok = -b.logp.grad * b.mask.sum()  # token-mean: gradient of the objective is A / n_tokens
    torch.testing.assert_close(per_tok[:, 0], torch.tensor([0.1, -1, 0.1, -1, -1], dtype=torch.float64))
    assert torch.all(b.logp.grad[b.mask == 0] == 0)
