"""Pass@k training: the closed-form advantage of the pass@k reward of a group (docs/methods/passk.md).

Paper: Chen et al., "Pass@k Training for Adaptively Balancing Exploration and Exploitation of Large
Reasoning Models", arXiv 2508.10751 (analytical derivation). Code: github.com/RUCAIBox/Passk_Training
`code/passk_adv.py` (`calc_adv`, a verl advantage estimator). verl 0.9.1's `grpo_passk` is a different
estimator (arXiv 2503.19595: only the best response of a group gets a non-zero advantage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from rlvr.methods import register
from rlvr.methods.advantages import group_index, group_sum, per_token
from rlvr.methods.pg import ClippedPG
from torch import Tensor

__all__ = ["PassK", "passk_advantage"]


def passk_advantage(n: int, c: int, k: int, eps: float = 1e-6) -> tuple[float, float]:
    """(A_pos, A_neg) for a group of n rollouts with c correct (code `calc_adv`):
    rho = 1 - C(n-c, k)/C(n, k) (the group's pass@k), sigma = sqrt(rho (1 - rho)),
    A_pos = (1 - rho) / (sigma + eps), A_neg = (1 - rho - C(n-c-1, k-1)/C(n-1, k-1)) / (sigma + eps).
    These are the mean pass@k reward of the k-subsets holding a response, minus the mean over all
    k-subsets, over their std (tests/test_methods_new.py checks it against that enumeration)."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@k training needs k <= rollouts per prompt, got k={k} for a group of {n}")
    rho = 1 - math.comb(n - c, k) / math.comb(n, k)
    sigma = math.sqrt(rho * (1 - rho))
    a_pos = (1 - rho) / (sigma + eps)
    a_neg = (1 - rho - math.comb(n - c - 1, k - 1) / math.comb(n - 1, k - 1)) / (sigma + eps) if c < n else 0.0
    return a_pos, a_neg


@register("passk")
@dataclass(frozen=True)
class PassK(ClippedPG):
    """Pass@k training: each rollout's advantage is the closed form of the group-normalised pass@k reward
    over the k-subsets of its group (positive rows A_pos, negative rows A_neg); PPO clip, token-mean.

    k: the k of pass@k (the code takes it as an argument; 4 here, which needs at least 4 rollouts per
        prompt; k = 1 is GRPO's advantage with the population std).
    eps: added to sigma (code: 1e-6); all-correct and all-wrong groups get advantage 0.
    A row is positive when its reward is 1 (the code's test); any other reward counts as wrong.
    See `ClippedPG` for the loss fields. docs/methods/passk.md.
    """

    k: int = 4
    eps: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1 or self.eps < 0:
            raise ValueError(f"k must be >= 1 and eps >= 0, got {self.k}, {self.eps}")

    @torch.no_grad()
    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        r = rewards.to(mask.dtype) if mask.is_floating_point() else rewards.to(torch.float32)
        inverse, g = group_index(group_ids)
        pos = r == 1
        n = group_sum(torch.ones_like(r), inverse, g).long().tolist()
        c = group_sum(pos.to(r.dtype), inverse, g).long().tolist()
        table = torch.tensor([passk_advantage(ni, ci, self.k, self.eps) for ni, ci in zip(n, c, strict=True)],
                             dtype=r.dtype, device=r.device)
        a = torch.where(pos, table[inverse, 0], table[inverse, 1])
        return per_token(a, mask)
