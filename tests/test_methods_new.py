"""The methods compared against (GSPO, CISPO, RLOO, REINFORCE++(-baseline), Clip-Cov, KL-Cov, Pass@k
training, GMPO) and the DAPO / Dr. GRPO presets: their defining identities on small worked numbers and
brute-force enumerations. tests/test_verl_methods.py checks the ones verl implements against verl."""

import itertools
import math
from pathlib import Path

import pytest
import torch
from rlvr.methods.aggregation import AGG_MODES
from rlvr.methods.base import TokenBatch
from rlvr.methods.grpo import DAPO_OVERRIDES, DR_GRPO_OVERRIDES

from rlvr import methods

NEW = ["gspo", "cispo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "clip_cov", "kl_cov", "passk", "gmpo",
       "dapo", "dr_grpo"]


def batch_for(method, logp, old_logp, mask, rewards, group_ids, advantages=None):
    adv = method.advantages(rewards, group_ids, mask) if advantages is None else advantages
    return TokenBatch(logp=logp, old_logp=old_logp, mask=mask, advantages=adv, rewards=rewards,
                      group_ids=group_ids)


def random_batch(method, B=8, T=6, seed=0, noise=0.3):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(T)[None] < torch.randint(1, T + 1, (B,), generator=g)[:, None]).double()
    logp = (-torch.rand(B, T, generator=g, dtype=torch.float64) * 3).requires_grad_()
    old = (logp + noise * torch.randn(B, T, generator=g, dtype=torch.float64)).detach()
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0] * (B // 4), dtype=torch.float64)
    return batch_for(method, logp, old, mask, rewards, torch.arange(B) // 4)


@pytest.mark.parametrize("name", NEW)
def test_listed_built_from_yaml_and_documented(name):
    assert name in methods.available()
    m = methods.build_spec({"name": name})
    assert m.name == name
    doc = methods.describe(name)["doc"]
    page = f"docs/methods/{name.replace('_baseline', '')}.md"
    assert page in doc and (Path(__file__).resolve().parents[1] / page).exists()


# ---- presets ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset, overrides", [("dapo", DAPO_OVERRIDES), ("dr_grpo", DR_GRPO_OVERRIDES)])
def test_presets_are_grpo_with_the_papers_settings(preset, overrides):
    p, g = methods.build(preset), methods.build("grpo", overrides)
    assert {f: getattr(p, f) for f in overrides} == {f: getattr(g, f) for f in overrides}
    b = random_batch(p)
    lp, lg = p.loss(b)[0], g.loss(b)[0]
    assert torch.equal(lp, lg)
    assert methods.build(preset, {"eps_high": 0.3}).eps_high == 0.3      # every GRPO field stays tunable


def test_preset_values():
    dapo, dr = methods.build("dapo"), methods.build("dr_grpo")
    assert (dapo.eps_low, dapo.eps_high, dapo.loss_agg_mode, dapo.kl_coef, dapo.refill) == (0.2, 0.28, "token-mean",
                                                                                            0.0, True)
    assert (dapo.overlong_max_len, dapo.overlong_cache) == (20480, 4096)
    assert (dr.norm_adv_by_std, dr.loss_agg_mode, dr.kl_coef) == (False, "seq-mean-token-sum-norm", 0.0)


# ---- advantages -------------------------------------------------------------------------------------

def test_rloo_is_reward_minus_the_mean_of_the_others():
    m = methods.build("rloo")
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    gids = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    a = m.advantages(r, gids, torch.ones(7, 1))[:, 0]
    want = [1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3, 1 - 0, 0 - 1, 1.0]     # a group of one keeps r (verl)
    assert a.tolist() == pytest.approx(want)


def test_reinforce_pp_baseline_whitens_over_tokens():
    m = methods.build("reinforce_pp_baseline")
    r = torch.tensor([1.0, 0.0, 1.0, 1.0])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    a = m.advantages(r, torch.tensor([0, 0, 1, 1]), mask)
    # group means 0.5 and 1: centred rewards 0.5, -0.5, 0, 0 on 3, 1, 2, 1 tokens
    x = torch.tensor([0.5] * 3 + [-0.5] + [0.0] * 3)
    want = (x - x.mean()) / x.std()
    got = a[mask > 0]
    assert got.tolist() == pytest.approx(want.tolist(), rel=1e-6)
    assert (a[mask == 0] == 0).all()


def test_reinforce_pp_discounts_from_the_last_token():
    m = methods.build("reinforce_pp", {"gamma": 0.5})
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    a = m.advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), mask)
    x = torch.tensor([0.25, 0.5, 1.0, 0.0, 0.0])         # returns gamma^(tokens after t) * r
    assert a[mask > 0].tolist() == pytest.approx(((x - x.mean()) / x.std()).tolist(), rel=1e-6)


def enumerated_passk_advantage(rewards, k):
    """The paper's definition: the pass@k reward of every k-subset of the group, normalised over the
    subsets; a response's advantage is the mean normalised reward of the subsets that hold it."""
    n = len(rewards)
    subsets = list(itertools.combinations(range(n), k))
    R = {s: max(rewards[i] for i in s) for s in subsets}
    mean = sum(R.values()) / len(subsets)
    std = math.sqrt(sum((v - mean) ** 2 for v in R.values()) / len(subsets))
    return [sum(R[s] - mean for s in subsets if i in s) / sum(1 for s in subsets if i in s) / (std + 1e-6)
            for i in range(n)]


@pytest.mark.parametrize("n, k", [(4, 1), (4, 2), (5, 3), (6, 4), (8, 4), (8, 8)])
def test_passk_closed_form_equals_enumeration_over_k_subsets(n, k):
    m = methods.build("passk", {"k": k})
    for c in range(n + 1):
        rewards = [1.0] * c + [0.0] * (n - c)
        a = m.advantages(torch.tensor(rewards, dtype=torch.float64), torch.zeros(n, dtype=torch.long),
                         torch.ones(n, 1, dtype=torch.float64))[:, 0]
        assert a.tolist() == pytest.approx(enumerated_passk_advantage(rewards, k), abs=1e-9), (n, k, c)


def test_passk_with_k_1_is_grpo_with_the_population_std():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    a = methods.build("passk", {"k": 1}).advantages(r, torch.zeros(4, dtype=torch.long), torch.ones(4, 1))[:, 0]
    want = (r - r.mean()) / (r.std(unbiased=False) + 1e-6)
    assert a.tolist() == pytest.approx(want.tolist())


def test_passk_refuses_a_group_smaller_than_k():
    with pytest.raises(ValueError, match="k <= rollouts per prompt"):
        methods.build("passk", {"k": 4}).advantages(torch.ones(3), torch.zeros(3, dtype=torch.long), torch.ones(3, 1))


# ---- losses -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", AGG_MODES)
def test_gspo_sequence_and_token_levels_agree_on_outcome_advantages(mode):
    seq = methods.build("gspo", {"loss_agg_mode": mode, "eps_low": 0.05, "eps_high": 0.05})
    tok = methods.build("gspo", {"loss_agg_mode": mode, "eps_low": 0.05, "eps_high": 0.05, "ratio_level": "token"})
    b = random_batch(seq, noise=0.1)
    l1, s1 = seq.loss(b)
    (g1,) = torch.autograd.grad(l1, b.logp)
    l2, s2 = tok.loss(b)
    (g2,) = torch.autograd.grad(l2, b.logp)
    torch.testing.assert_close(l1, l2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
    assert 0 < s1["pg_clipfrac"] < 1


def test_gspo_levels_differ_for_per_token_advantages():
    seq, tok = methods.build("gspo", {"eps_high": 10.0}), methods.build("gspo", {"eps_high": 10.0, "ratio_level": "token"})
    logp = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    b = TokenBatch(logp=logp, old_logp=logp.detach(), mask=torch.ones(1, 2, dtype=torch.float64),
                   advantages=torch.tensor([[1.0, 3.0]], dtype=torch.float64), rewards=torch.ones(1),
                   group_ids=torch.zeros(1))
    (g_seq,) = torch.autograd.grad(seq.loss(b)[0], logp)
    (g_tok,) = torch.autograd.grad(tok.loss(b)[0], logp)
    # sequence: d/dlogp_t of -mean_t(A_t) s = -(A_1 + A_2)/2 * 1/2 on each token; token: -A_t / 2
    assert g_seq.flatten().tolist() == pytest.approx([-1.0, -1.0]) and g_tok.flatten().tolist() == pytest.approx([-0.5, -1.5])


def test_gspo_worked_example():
    m = methods.build("gspo", {"eps_low": 0.2, "eps_high": 0.2})
    logp = torch.tensor([[-1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[-1.1, -0.7], [-1.5, -1.5]], dtype=torch.float64)      # log s = -0.1 and 0.5
    A = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    b = TokenBatch(logp=logp, old_logp=old, mask=torch.ones(2, 2, dtype=torch.float64), advantages=A,
                   rewards=torch.ones(2), group_ids=torch.zeros(2))
    loss, stats = m.loss(b)
    # row 1: -s = -e^-0.1 (inside the clip); row 2: s = e^0.5 > 1.2, clipped: -1.2, no gradient
    assert float(loss) == pytest.approx((-math.exp(-0.1) - 1.2) / 2)
    (g,) = torch.autograd.grad(loss, logp)
    assert g.flatten().tolist() == pytest.approx([-math.exp(-0.1) / 4] * 2 + [0.0, 0.0])
    assert stats["pg_clipfrac"] == 0.5


def test_cispo_keeps_the_gradient_of_clipped_tokens():
    m = methods.build("cispo")      # eps_high 0.28
    logp = torch.tensor([[-1.0, -1.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[-1.5, -1.0]], dtype=torch.float64)                  # ratios e^0.5 (clipped), 1
    b = TokenBatch(logp=logp, old_logp=old, mask=torch.ones(1, 2, dtype=torch.float64),
                   advantages=torch.ones(1, 2, dtype=torch.float64), rewards=torch.ones(1), group_ids=torch.zeros(1))
    loss, stats = m.loss(b)
    (g,) = torch.autograd.grad(loss, logp)
    assert g.flatten().tolist() == pytest.approx([-1.28 / 2, -1.0 / 2]) and stats["pg_clipfrac"] == 0.5
    assert float(loss) == pytest.approx(-(1.28 * -1.0 + 1.0 * -1.0) / 2)


def test_gmpo_clips_in_log_space_by_the_sign_of_the_advantage():
    m = methods.build("gmpo")       # eps 0.4 each side
    logp = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[-0.6, 0.6], [-0.6, 0.6]], dtype=torch.float64)       # log r = 0.6, -0.6 in each row
    A = torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    b = TokenBatch(logp=logp, old_logp=old, mask=torch.ones(2, 2, dtype=torch.float64), advantages=A,
                   rewards=torch.ones(2), group_ids=torch.zeros(2))
    loss, stats = m.loss(b)
    # A > 0 caps log r at +0.4: mean(0.4, -0.6) = -0.1; A < 0 floors it at -0.4: mean(0.6, -0.4) = 0.1
    assert float(loss) == pytest.approx((-math.exp(-0.1) + math.exp(0.1)) / 2)
    (g,) = torch.autograd.grad(loss, logp)
    assert g.flatten().tolist() == pytest.approx([0.0, -math.exp(-0.1) / 4, math.exp(0.1) / 4, 0.0])
    assert stats["pg_clipfrac"] == 0.25 and stats["pg_clipfrac_lower"] == 0.25


def test_gmpo_refuses_a_token_level_aggregation():
    with pytest.raises(ValueError, match="seq-mean-token-mean"):
        methods.build("gmpo", {"loss_agg_mode": "token-mean"})


def test_clip_cov_detaches_tokens_inside_the_window_only():
    m = methods.build("clip_cov", {"clip_ratio": 0.5, "cov_lb": 0.1, "cov_ub": 2.0})
    b = random_batch(m, B=8, T=6, seed=2, noise=0.05)
    from rlvr.methods.cov import token_covariance

    cov = token_covariance(b)
    torch.manual_seed(0)
    loss, stats = m.loss(b)
    (g,) = torch.autograd.grad(loss, b.logp)
    ratio = torch.exp(b.logp - b.old_logp).detach()
    by_ppo = ((-b.advantages * ratio.clamp(0.8, 1.2)) > (-b.advantages * ratio)) & (b.mask > 0)
    window = (cov > 0.1) & (cov < 2.0) & (b.mask > 0) & ~by_ppo
    dropped = (g == 0) & (b.mask > 0) & ~by_ppo & (b.advantages != 0)
    n_drop = min(max(int(0.5 * float(b.mask.sum())), 1), int(window.sum()))
    assert n_drop > 0 and int(dropped.sum()) == n_drop and bool((dropped <= window).all())
    assert stats["cov/detached_frac"] == pytest.approx(n_drop / float(b.mask.sum()))


def test_kl_cov_penalises_the_largest_covariances():
    m = methods.build("kl_cov", {"kl_cov_ratio": 0.25, "kl_coef": 2.0})
    b = random_batch(m, seed=3)
    from rlvr.methods.cov import token_covariance

    loss, stats = m.loss(b)
    (g,) = torch.autograd.grad(loss, b.logp)
    n = int(b.mask.sum())
    cov = token_covariance(b)[b.mask > 0]
    top = torch.zeros_like(cov, dtype=torch.bool)
    top[cov.topk(int(0.25 * n)).indices] = True
    ratio = torch.exp(b.logp - b.old_logp).detach()[b.mask > 0]
    lr = (b.logp - b.old_logp).detach()[b.mask > 0]
    want = (-b.advantages[b.mask > 0] * ratio + top * 2.0 * torch.sign(lr)) / n     # no clipping anywhere
    assert g[b.mask > 0].tolist() == pytest.approx(want.tolist())
    assert stats["cov/kl_frac"] == pytest.approx(int(0.25 * n) / n)


# ---- the micro world --------------------------------------------------------------------------------

def test_micro_world_selects_every_new_method_but_runs_only_the_default_arms_by_default():
    from rlvr.harness.errors import UserError
    from rlvr.harness.reproduce.micro import OPTIONAL_METHODS, MicroRecipe, select_arms

    recipe = MicroRecipe()
    assert select_arms(recipe, None) == list(recipe.methods)
    assert {n for n, _ in OPTIONAL_METHODS} == set(NEW)
    assert [n for n, _ in select_arms(recipe, ["gspo", "grpo", "passk"])] == ["grpo", "gspo", "passk"]
    with pytest.raises(UserError, match="unknown method 'nope'"):
        select_arms(recipe, ["grpo", "nope"])


def test_on_policy_several_losses_have_grpos_gradient():
    """At the on-policy step (ratio 1, one update per batch, as `rlvr reproduce micro` trains) GSPO and
    GMPO have the gradient of GRPO with seq-mean-token-mean, and CISPO and KL-Cov that of token-mean GRPO:
    they differ only once the policy moves off the sampling policy (several updates per batch). The micro
    world's table therefore shows them equal."""
    def grad(name, overrides):
        m = methods.build(name, overrides)
        b = random_batch(m, seed=4, noise=0.0)
        b = TokenBatch(**{**b.__dict__, "advantages": methods.build("grpo").advantages(b.rewards, b.group_ids, b.mask)})
        (g,) = torch.autograd.grad(m.loss(b)[0], b.logp)
        return g

    seq = grad("grpo", {"kl_coef": 0.0})
    tok = grad("grpo", {"kl_coef": 0.0, "loss_agg_mode": "token-mean"})
    for name in ("gspo", "gmpo"):        # GMPO divides by (length + 1e-8), as verl: a relative 1e-8
        torch.testing.assert_close(grad(name, {}), seq, rtol=1e-7, atol=1e-12)
    for name in ("cispo", "kl_cov"):
        torch.testing.assert_close(grad(name, {}), tok, rtol=1e-12, atol=1e-12)
