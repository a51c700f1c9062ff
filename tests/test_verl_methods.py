"""The methods verl 0.9.1 implements itself (tox -e verl; skipped when verl is absent): on the same random
tensors our advantages equal verl's registered estimators, and our losses and their gradients w.r.t. the
log-probs (hence the logits) equal verl's registered policy losses, with verl's config set to the method's
hyperparameters. Pass@k training has no verl counterpart (verl's `grpo_passk` is another estimator);
tests/test_methods_new.py checks it against an enumeration of k-subsets.
"""

import numpy as np
import pytest
import torch

pytest.importorskip("verl")
core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")

from rlvr.methods.base import TokenBatch  # noqa: E402

from rlvr import methods  # noqa: E402

TOL = dict(rtol=1e-12, atol=1e-12)


def rollouts(B=16, T=9, G=4, seed=0, dtype=torch.float64):
    """Rewards [B] in {0, 1} in groups of G, a mask [B, T] with ragged lengths (one row of one token)."""
    g = torch.Generator().manual_seed(seed)
    rewards = (torch.rand(B, generator=g) > 0.5).to(dtype)
    rewards[:G] = torch.tensor([1.0, 0.0] * (G // 2), dtype=dtype)        # one mixed group at least
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0], lengths[1] = T, 1
    mask = (torch.arange(T)[None] < lengths[:, None]).to(dtype)
    return rewards, torch.arange(B) // G, mask


def verl_advantages(estimator, rewards, group_ids, mask, **config):
    token_rewards = torch.zeros_like(mask)
    token_rewards[torch.arange(len(rewards)), mask.sum(-1).long() - 1] = rewards   # the score on the last token
    index = np.array([f"uid-{int(i)}" for i in group_ids], dtype=object)
    fn = core_algos.get_adv_estimator_fn(estimator)
    from omegaconf import OmegaConf
    adv, _ = fn(token_level_rewards=token_rewards, response_mask=mask, index=index,
                config=OmegaConf.create(config), **({"norm_adv_by_std_in_grpo": config["norm_adv_by_std_in_grpo"]}
                                                    if "norm_adv_by_std_in_grpo" in config else {}))
    return adv


ADVANTAGES = [
    ("rloo", {}, "rloo", {}),
    ("reinforce_pp", {}, "reinforce_plus_plus", {"gamma": 1.0}),
    ("reinforce_pp", {"gamma": 0.9}, "reinforce_plus_plus", {"gamma": 0.9}),
    ("reinforce_pp_baseline", {}, "reinforce_plus_plus_baseline", {}),
    ("gspo", {}, "grpo", {"norm_adv_by_std_in_grpo": True}),
    ("cispo", {}, "grpo", {"norm_adv_by_std_in_grpo": True}),
    ("gmpo", {}, "grpo", {"norm_adv_by_std_in_grpo": True}),
    ("clip_cov", {}, "grpo", {"norm_adv_by_std_in_grpo": True}),
    ("kl_cov", {}, "grpo", {"norm_adv_by_std_in_grpo": True}),
    ("dapo", {}, "grpo", {"norm_adv_by_std_in_grpo": True}),
    ("dr_grpo", {}, "grpo", {"norm_adv_by_std_in_grpo": False}),
]


@pytest.mark.parametrize("name, overrides, estimator, config", ADVANTAGES)
@pytest.mark.parametrize("seed", [0, 1])
def test_advantages_equal_verls_estimator(name, overrides, estimator, config, seed):
    method = methods.build(name, overrides)
    rewards, gids, mask = rollouts(seed=seed)
    if name == "rloo":       # verl keeps the raw reward of a group of one: a singleton group at the end
        gids = gids.clone()
        gids[-1] = 99
    want = verl_advantages(estimator, rewards, gids, mask, **config)
    got = method.advantages(rewards, gids, mask)
    assert got.abs().sum() > 0
    torch.testing.assert_close(got, want, **TOL)


def actor_config(loss_mode, eps_low=0.2, eps_high=0.2, clip_ratio_c=3.0, **policy_loss):
    from verl.workers.config import FSDPActorConfig, PolicyLossConfig

    return FSDPActorConfig(strategy="fsdp", ppo_mini_batch_size=4, ppo_micro_batch_size_per_gpu=2, rollout_n=1,
                           clip_ratio=eps_low, clip_ratio_low=eps_low, clip_ratio_high=eps_high,
                           clip_ratio_c=clip_ratio_c,
                           policy_loss=PolicyLossConfig(loss_mode=loss_mode, **policy_loss))


def token_batch(method, seed=0, noise=0.3, spread=3.0):
    rewards, gids, mask = rollouts(seed=seed)
    g = torch.Generator().manual_seed(100 + seed)
    B, T = mask.shape
    logp = (-torch.rand(B, T, generator=g, dtype=mask.dtype) * spread).requires_grad_()
    old = (logp + noise * torch.randn(B, T, generator=g, dtype=mask.dtype)).detach()
    return TokenBatch(logp=logp, old_logp=old, mask=mask, advantages=method.advantages(rewards, gids, mask),
                      rewards=rewards, group_ids=gids)


NO_DUAL_CLIP = 1e300     # verl's vanilla loss always applies its dual clip; this cap never binds

LOSSES = [
    # (our method, overrides, verl loss, verl actor config)
    ("gspo", {}, "gspo", dict(eps_low=3e-4, eps_high=4e-4)),
    ("gspo", {"ratio_level": "token"}, "gspo", dict(eps_low=3e-4, eps_high=4e-4)),
    ("gspo", {"eps_low": 0.2, "eps_high": 0.25}, "gspo", dict(eps_low=0.2, eps_high=0.25)),
    ("gspo", {"eps_low": 0.2, "eps_high": 0.25, "loss_agg_mode": "token-mean"}, "gspo",
     dict(eps_low=0.2, eps_high=0.25)),
    ("gspo", {"ratio_level": "token", "eps_low": 0.2, "eps_high": 0.25, "loss_agg_mode": "token-mean"}, "gspo",
     dict(eps_low=0.2, eps_high=0.25)),
    ("cispo", {}, "cispo", dict(eps_low=1.0, eps_high=0.28)),
    ("cispo", {"eps_low": 0.2, "eps_high": 0.2, "loss_agg_mode": "seq-mean-token-mean"}, "cispo", dict()),
    ("gmpo", {}, "geo_mean", dict(eps_low=0.4, eps_high=0.4)),
    ("gmpo", {"eps_low": 0.1, "eps_high": 0.2}, "geo_mean", dict(eps_low=0.1, eps_high=0.2)),
    ("kl_cov", {}, "kl_cov", dict(kl_cov_ratio=2e-4, ppo_kl_coef=1.0)),
    ("kl_cov", {"kl_cov_ratio": 0.2, "kl_coef": 0.5}, "kl_cov", dict(kl_cov_ratio=0.2, ppo_kl_coef=0.5)),
    ("clip_cov", {}, "clip_cov", dict(clip_cov_ratio=2e-4, clip_cov_lb=1.0, clip_cov_ub=5.0)),
    ("clip_cov", {"clip_ratio": 0.1, "cov_lb": 0.2, "cov_ub": 3.0, "eps_high": 0.28}, "clip_cov",
     dict(eps_high=0.28, clip_cov_ratio=0.1, clip_cov_lb=0.2, clip_cov_ub=3.0)),
    ("rloo", {}, "vanilla", dict(clip_ratio_c=NO_DUAL_CLIP)),
    ("rloo", {"dual_clip_c": 3.0, "eps_high": 0.28}, "vanilla", dict(eps_high=0.28, clip_ratio_c=3.0)),
    ("reinforce_pp", {}, "vanilla", dict(clip_ratio_c=NO_DUAL_CLIP)),
    ("reinforce_pp_baseline", {"dual_clip_c": 3.0}, "vanilla", dict(clip_ratio_c=3.0)),
    ("passk", {"k": 2}, "vanilla", dict(clip_ratio_c=NO_DUAL_CLIP)),
    ("dapo", {}, "vanilla", dict(eps_high=0.28, clip_ratio_c=NO_DUAL_CLIP)),
    ("dr_grpo", {}, "vanilla", dict(clip_ratio_c=NO_DUAL_CLIP)),
]


@pytest.mark.parametrize("name, overrides, loss_mode, config", LOSSES)
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_and_gradient_equal_verls_policy_loss(name, overrides, loss_mode, config, seed):
    method = methods.build(name, overrides)
    spread = 8.0 if name == "clip_cov" else 3.0     # covariances inside Clip-Cov's window
    b = token_batch(method, seed, spread=spread)
    fn = core_algos.get_policy_loss_fn(loss_mode)
    torch.manual_seed(seed)                          # Clip-Cov draws its tokens with torch's global generator
    loss, metrics = fn(old_log_prob=b.old_logp, log_prob=b.logp, advantages=b.advantages,
                       response_mask=b.mask, loss_agg_mode=method.loss_agg_mode,
                       config=actor_config(loss_mode, **config))
    (g_verl,) = torch.autograd.grad(loss, b.logp)
    torch.manual_seed(seed)
    want, stats = method.loss(b)
    (g_ours,) = torch.autograd.grad(want, b.logp)
    # verl's seq-mean-token-mean divides each row by (its token count + 1e-8): a relative 1e-8 at most
    tol = dict(rtol=1e-7, atol=1e-12) if method.loss_agg_mode == "seq-mean-token-mean" and name != "gmpo" else TOL
    torch.testing.assert_close(want, loss, **tol)
    torch.testing.assert_close(g_ours, g_verl, **tol)
    assert g_ours.abs().sum() > 0
    # verl's masked_mean divides by (count + 1e-8)
    # (GMPO: verl counts every token outside the log range, ours the tokens whose clip bound)
    if "actor/pg_clipfrac" in metrics and name not in ("clip_cov", "gmpo"):
        assert stats["pg_clipfrac"] == pytest.approx(metrics["actor/pg_clipfrac"], rel=1e-8, abs=1e-12)
    if name == "clip_cov":     # verl logs the detached tokens as its clip fraction
        assert stats["cov/detached_frac"] == pytest.approx(metrics["actor/pg_clipfrac"], rel=1e-8, abs=1e-12)
        assert stats["cov/detached_frac"] > 0
    if name == "kl_cov":
        assert stats["ppo_kl_abs"] == pytest.approx(metrics["actor/ppo_kl"], rel=1e-8)


def test_the_settings_exercise_clipping():
    """The random tensors above clip some tokens under each method's default range (else equality of
    the clipped branch would be untested)."""
    for name in ("gspo", "cispo", "gmpo", "rloo"):
        method = methods.build(name)
        _, stats = method.loss(token_batch(method))
        assert 0 < stats["pg_clipfrac"] < 1, name


@pytest.mark.parametrize("block", [{"name": "dapo"}, {"name": "gspo", "ratio_level": "token"}, {"name": "clip_cov"},
                                   {"name": "passk", "k": 2}])
def test_the_new_methods_launch_through_verls_config_loader(block, tmp_path):
    """`rlvr train --backend verl` with a new method (or the DAPO preset, whose dynamic sampling is a
    default, not a field in the block) composes a config verl accepts, with our plugin's loss."""
    from hydra import compose, initialize_config_module
    from rlvr.harness.backends.verl import launch, verl_name
    from rlvr.harness.config import from_dict
    from rlvr.harness.train.trainer import TrainConfig

    cfg = from_dict(TrainConfig, {
        "model": str(tmp_path / "model"), "out": str(tmp_path / "out"), "tasks": ["micro_arith"], "method": block,
        "prompts_per_step": 16, "rollouts_per_prompt": 8, "micro_batch_size": 4, "mini_batch_size": 64, "steps": 2,
        "sampling": {"max_new_tokens": 512}})
    plan = launch.translate(cfg, from_dict(launch.VerlSection, {}, "verl"), str(tmp_path / "train.parquet"),
                            str(tmp_path / "val.parquet"), n_train=1000, max_prompt_tokens=300, has_val_tasks=False)
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        conf = compose(config_name="ppo_trainer", overrides=plan.overrides)
    method = methods.build_spec(block)
    assert conf.algorithm.adv_estimator == conf.actor_rollout_ref.actor.policy_loss.loss_mode == verl_name(block["name"])
    assert conf.actor_rollout_ref.actor.loss_agg_mode == method.loss_agg_mode
    assert conf.algorithm.filter_groups.enable == (block["name"] == "dapo")
