"""REINFORCE++ and REINFORCE++-baseline: batch-whitened REINFORCE advantages (docs/methods/reinforce_pp.md).

Paper: Hu et al., "REINFORCE++: An Efficient RLHF Algorithm with Robustness to Both Prompt and Reward
Models", arXiv 2501.03262. Code: OpenRLHF (https://github.com/OpenRLHF/OpenRLHF) (`advantage_estimator` `reinforce`, `reinforce_baseline`);
verl 0.9.1 `verl/trainer/ppo/core_algos.py` (`compute_reinforce_plus_plus_outcome_advantage`,
`compute_reinforce_plus_plus_baseline_outcome_advantage`, with the `vanilla` PPO loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rlvr.methods import register
from rlvr.methods.advantages import group_index, group_sum
from rlvr.methods.pg import ClippedPG
from torch import Tensor

__all__ = ["ReinforcePP", "ReinforcePPBaseline", "masked_whiten"]


@torch.no_grad()
def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(x - mean) / sqrt(var + eps) over the tokens where mask == 1 (each token one sample, unbiased var),
    times the mask: verl's `masked_whiten` (its `masked_mean` divides by count + 1e-8)."""
    m = mask.to(x.dtype)
    count = m.sum()
    if count < 2:
        raise ValueError("REINFORCE++ whitens over the batch's tokens and needs at least 2 of them")
    mean = (x * m).sum() / (count + 1e-8)
    var = ((x - mean) ** 2 * m).sum() / (count + 1e-8) * (count / (count - 1))
    return (x - mean) * torch.rsqrt(var + eps) * m


@register("reinforce_pp")
@dataclass(frozen=True)
class ReinforcePP(ClippedPG):
    """REINFORCE++: the return of the outcome reward at every token (discounted by gamma from the last
    token), whitened over all response tokens of the batch; PPO clip, token-mean.

    gamma: discount (verl's `algorithm.gamma`, 1.0; with an outcome reward on the last token the return at
        token t is gamma^(tokens after t) * r).
    The paper folds a k1 KL to the reference into the per-token reward before the return; here the
    advantage sees the outcome reward only (verl's estimator too: its KL-in-reward is a separate switch,
    `use_kl_in_reward`), and kl_coef adds a k3 KL to the loss instead. See `ClippedPG` for the other
    fields. docs/methods/reinforce_pp.md.
    """

    gamma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        r = rewards.to(mask.dtype)
        m = mask.to(r.dtype)
        after = m.flip(-1).cumsum(-1).flip(-1) - m          # response tokens after t (verl skips masked ones)
        returns = r[:, None] * (self.gamma ** after) * m
        return masked_whiten(returns, m)


@register("reinforce_pp_baseline")
@dataclass(frozen=True)
class ReinforcePPBaseline(ClippedPG):
    """REINFORCE++-baseline: the reward minus its group's mean, then whitened over all response tokens of
    the batch (each token one sample, so long responses weigh more, as in verl and OpenRLHF); PPO clip,
    token-mean. A group of one keeps its raw reward before whitening (verl).
    See `ClippedPG` for the fields. docs/methods/reinforce_pp.md.
    """

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        r = rewards.to(mask.dtype)
        inverse, g = group_index(group_ids)
        n = group_sum(torch.ones_like(r), inverse, g)
        mean = torch.where(n > 1, group_sum(r, inverse, g) / n, torch.zeros_like(n))
        m = mask.to(r.dtype)
        return masked_whiten((r - mean[inverse])[:, None] * m, m)
