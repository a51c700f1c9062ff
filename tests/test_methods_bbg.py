"""BBG (docs/methods/bbg.md, a reconstruction): the boundary utility, the gate, and the k = 1 limit."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from rlvr.harness.report.passk import pass_at_k
from rlvr.methods.base import TokenBatch
from rlvr.methods.bbg import boundary_utility

from rlvr import methods


@pytest.mark.parametrize("m, n, k, want, tol", [
    (0, 8, 256, 8.727273, 1e-6), (1, 8, 16, 2.086957, 1e-6), (2, 8, 16, 0.664032, 1e-6),   # hand-computed from the closed form
    (0, 8, 4, 3.0, 1e-12), (3, 8, 4, 1.0182, 1e-4), (8, 8, 4, 0.0182, 1e-4),                # the n = 8 utility table of docs/methods/bbg.md
    (1, 8, 64, 0.9014, 1e-4), (3, 8, 16, 0.1897, 1e-4), (1, 8, 256, 0.2655, 1e-4), (2, 8, 256, 0.0071, 1e-4),
])
def test_utility_table(m, n, k, want, tol):
    assert boundary_utility(m, n, k) == pytest.approx(want, abs=tol)


@given(st.integers(0, 64), st.integers(1, 300))
def test_utility_of_an_unsolved_problem(n, k):
    assert boundary_utility(0, n, k) == pytest.approx(k * (n + 1) / (n + k), rel=1e-10)


@given(st.integers(0, 32).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_k_one_is_flat(mn):
    assert boundary_utility(mn[0], mn[1], 1) == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("m, n, k", [(0, 8, 16), (1, 8, 16), (3, 8, 4), (5, 16, 7), (2, 4, 32)])
def test_utility_is_the_posterior_mean_of_d_passk_dp(m, n, k):
    # E_{p ~ Beta(m+1, n-m+1)} [ d/dp (1 - (1-p)^k) ] by quadrature
    p = np.linspace(0, 1, 200_001)
    log_beta = math.lgamma(m + 1) + math.lgamma(n - m + 1) - math.lgamma(n + 2)
    dens = np.exp(m * np.log(np.clip(p, 1e-300, 1)) + (n - m) * np.log(np.clip(1 - p, 1e-300, 1)) - log_beta)
    integrand = dens * k * (1 - p) ** (k - 1)
    assert boundary_utility(m, n, k) == pytest.approx(np.trapezoid(integrand, p), rel=1e-6)


def test_tensor_input_matches_scalar_and_bad_input_raises():
    got = boundary_utility(torch.tensor([0, 1, 2]), torch.tensor([8, 8, 8]), 16)
    torch.testing.assert_close(got, torch.tensor([boundary_utility(m, 8, 16) for m in range(3)], dtype=torch.float64))
    with pytest.raises(ValueError):
        boundary_utility(9, 8, 16)
    with pytest.raises(ValueError):
        boundary_utility(0, 8, 0)


def test_pass_at_k_worked_number():
    # pass@k is the metric the utility targets
    assert pass_at_k(16, 2, 8) == pytest.approx(0.766667, abs=1e-6)


REWARDS = torch.tensor([0.0] * 8 + [1.0] + [0.0] * 7 + [1.0, 1] + [0.0] * 6 + [1.0] * 8)
GIDS = torch.arange(32) // 8          # groups with m = 0, 1, 2, 8 successes out of n = 8


def test_gate_at_k256_keeps_only_zero_and_one_success():
    m = methods.build("bbg", {"k_ref": 256})   # threshold tau * (n + 1) = 0.09
    keep = m.select_rows(REWARDS, GIDS)
    assert keep.view(4, 8).all(-1).tolist() == [True, True, False, False] and m.refill


def test_weights_are_utility_over_u1_on_the_signed_base():
    m = methods.build("bbg")   # k_ref 16
    a = m.advantages(REWARDS, GIDS, torch.ones(32, 1))[:, 0].view(4, 8)
    u1 = boundary_utility(1, 8, 16)
    assert a[0, 0].item() == pytest.approx(-boundary_utility(0, 8, 16) / u1)          # m = 0: all wrong
    assert a[1, 0].item() == pytest.approx(0.1) and a[1, 1].item() == pytest.approx(-1.0)
    assert a[2, 0].item() == pytest.approx(0.1 * boundary_utility(2, 8, 16) / u1)
    assert torch.all(a[3] == 0)                                                          # gated out


def test_grpo_base_gives_nothing_to_unsolved_groups():
    a = methods.build("bbg", {"base": "grpo", "weighting": "none"}).advantages(REWARDS, GIDS, torch.ones(32, 1))
    assert torch.all(a[:8] == 0) and a[8:16].abs().sum() > 0


def test_k_one_equals_the_base_objective():
    g = torch.Generator().manual_seed(0)
    B, T = 32, 5
    logp = (torch.rand(B, T, dtype=torch.float64, generator=g) * -2).requires_grad_()
    ent = torch.rand(B, T, dtype=torch.float64, generator=g).requires_grad_()
    old = logp.detach() + 0.2 * torch.randn(B, T, dtype=torch.float64, generator=g)
    mask = torch.ones(B, T, dtype=torch.float64)
    results = []
    for m in (methods.build("bbg", {"k_ref": 1}), methods.build("w_reinforce")):
        assert m.select_rows(REWARDS, GIDS).all()
        b = TokenBatch(logp=logp, old_logp=old, mask=mask, advantages=m.advantages(REWARDS, GIDS, mask),
                       rewards=REWARDS, group_ids=GIDS, entropy=ent)
        loss, _ = m.loss(b)
        results.append((loss.item(), torch.autograd.grad(loss, [logp, ent])))
    assert results[0][0] == results[1][0]
    for x, y in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
