"""RLOO: REINFORCE with a leave-one-out group baseline (docs/methods/rloo.md).

Paper: Ahmadian et al., "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
Feedback in LLMs", arXiv 2402.14740. Code: verl 0.9.1 (https://github.com/volcengine/verl) `verl/trainer/ppo/core_algos.py`
(`compute_rloo_outcome_advantage`, registered as `rloo`, with the `vanilla` PPO loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rlvr.methods import register
from rlvr.methods.advantages import group_index, group_sum, per_token
from rlvr.methods.pg import ClippedPG
from torch import Tensor

__all__ = ["RLOO", "rloo_advantage"]


@torch.no_grad()
def rloo_advantage(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """r_i - mean_{j != i} r_j per row [B], computed as verl does: (n r_i - n mean_g) / (n - 1).
    A group of one keeps its raw reward (verl's `rloo`; its `rloo_vectorized` gives 0 there)."""
    r = rewards.to(torch.float32) if not rewards.is_floating_point() else rewards
    inverse, g = group_index(group_ids)
    n = group_sum(torch.ones_like(r), inverse, g)
    mean = group_sum(r, inverse, g) / n
    n_i, mean_i = n[inverse], mean[inverse]
    loo = r * n_i / (n_i - 1).clamp_min(1) - mean_i * n_i / (n_i - 1).clamp_min(1)
    return torch.where(n_i > 1, loo, r)


@register("rloo")
@dataclass(frozen=True)
class RLOO(ClippedPG):
    """RLOO: advantage r_i - mean_{j != i} r_j over the other rollouts of the prompt, PPO clip, token-mean.

    The paper's RLOO is on-policy REINFORCE (one update per batch, no ratio); with one update per batch
    the ratio is 1 and PPO's clip never binds, so this is the paper's gradient, and verl's setting
    otherwise. No KL by default (the paper folds a KL into the reward; RLVR runs use none).
    See `ClippedPG` for eps_low, eps_high, dual_clip_c, kl_coef, entropy_coef. docs/methods/rloo.md.
    """

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        return per_token(rloo_advantage(rewards, group_ids), mask)
