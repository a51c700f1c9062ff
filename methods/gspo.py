"""GSPO: group sequence policy optimisation, a sequence-level importance ratio clipped per sequence
(docs/methods/gspo.md).

Paper: Zheng et al., "Group Sequence Policy Optimization", arXiv 2507.18071. Code: no training code from
the authors; verl 0.9.1 (https://github.com/volcengine/verl) `verl/trainer/ppo/core_algos.py::compute_policy_loss_gspo` (registered as `gspo`,
the GSPO-token form), with verl's `grpo` advantage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from rlvr.methods import register
from rlvr.methods.advantages import group_normalized, per_token
from rlvr.methods.aggregation import AggMode
from rlvr.methods.base import Method, TokenBatch
from rlvr.methods.grpo import ppo_stats
from torch import Tensor

__all__ = ["GSPO"]

_LOG_RATIO_MAX = 10.0     # verl clamps the sequence log-ratio from above before exp


@register("gspo")
@dataclass(frozen=True)
class GSPO(Method):
    """GSPO: s_i = (pi(y_i) / pi_old(y_i))^(1/|y_i|), loss -min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high)
    A_i) per sequence, averaged over sequences; GRPO's group-normalised advantage, no KL.

    eps_low, eps_high: 3e-4 and 4e-4, the paper's clip range (a sequence-level ratio is a geometric mean,
        so its useful range is two orders smaller than PPO's 0.2).
    ratio_level: "sequence" (the paper's GSPO: s_i with its gradient through every token of the response) or
        "token" (the paper's GSPO-token and verl's `gspo`: s_i,t = sg[s_i] pi(y_t) / sg[pi(y_t)], each
        token with its own advantage). For outcome advantages (one value per response) the two give the
        same loss and gradient under every loss_agg_mode; they differ only for per-token advantages.
    norm_adv_by_std: divide the group advantage by its std (GRPO, as in the paper).
    loss_agg_mode: seq-mean-token-mean, the paper's per-sequence average (verl's function default; verl's
        actor default is token-mean, which weights a sequence by its length).
    The sequence log-ratio is clamped at 10 from above before exp (verl), so a runaway sequence gets no
    gradient instead of an overflow. docs/methods/gspo.md.
    """

    loss_agg_mode: AggMode = "seq-mean-token-mean"
    eps_low: float = 3e-4
    eps_high: float = 4e-4
    ratio_level: Literal["sequence", "token"] = "sequence"
    norm_adv_by_std: bool = True

    def __post_init__(self) -> None:
        if not (0 <= self.eps_low <= 1 and self.eps_high >= 0):
            raise ValueError(f"eps_low must be in [0, 1] and eps_high >= 0, got {self.eps_low}, {self.eps_high}")

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        return per_token(group_normalized(rewards, group_ids, self.norm_adv_by_std), mask)

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        batch.check(self.requires)
        m, A = batch.mask, batch.advantages
        log_ratio = batch.logp - batch.old_logp
        seq = (log_ratio * m).sum(-1) / m.sum(-1).clamp_min(1)              # log s_i [B]
        if self.ratio_level == "sequence":
            log_s = seq.clamp(max=_LOG_RATIO_MAX)[:, None].expand_as(A)
        else:
            log_s = (batch.logp - batch.logp.detach() + seq.detach()[:, None]).clamp(max=_LOG_RATIO_MAX)
        s = torch.exp(log_s)
        unclipped = -A * s
        clipped = -A * s.clamp(1.0 - self.eps_low, 1.0 + self.eps_high)
        loss = self.agg(torch.maximum(unclipped, clipped), batch)
        stats = ppo_stats(batch, s, clipped > unclipped)
        stats["pg_loss"] = float(loss.detach())
        stats["loss"] = float(loss.detach())
        return loss, stats
