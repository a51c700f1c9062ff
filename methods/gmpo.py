"""GMPO: geometric-mean policy optimisation (docs/methods/gmpo.md).

Paper: Zhao et al., "Geometric-Mean Policy Optimization", arXiv 2507.20673. Code:
github.com/callsys/GMPO (`train_zero_math_gmpo.py`, on oat); verl 0.9.1
`verl/trainer/ppo/core_algos.py::compute_policy_loss_geo_mean` (registered as `geo_mean`, adapted from it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rlvr.methods import register
from rlvr.methods.advantages import group_normalized, per_token
from rlvr.methods.aggregation import AggMode, masked_mean
from rlvr.methods.base import Method, TokenBatch
from torch import Tensor

__all__ = ["GMPO"]


@register("gmpo")
@dataclass(frozen=True)
class GMPO(Method):
    """GMPO: loss -A_i exp(mean_t clip_A(log r_t)) per sequence, averaged over sequences: the geometric mean
    of the token ratios, each clipped in log space on the side its advantage's sign makes harmful
    (A > 0: log r_t <= eps_high; A < 0: log r_t >= -eps_low), as PPO's min does per token.

    eps_low, eps_high: the clip range in log space, 0.4 each: ratios in [e^-0.4, e^0.4], the paper's
        choice (verl reads actor.clip_ratio*, 0.2 by default).
    norm_adv_by_std: GRPO's group-normalised advantage (the paper's setting).
    loss_agg_mode: seq-mean-token-mean only; the loss is per sequence (verl: a plain mean over the rows
        of the batch, whatever actor.loss_agg_mode says). Rows without a response token add 0 and still
        count, as in verl's mean.
    No clamp of the log-ratio (verl's is commented out). docs/methods/gmpo.md.
    """

    loss_agg_mode: AggMode = "seq-mean-token-mean"
    eps_low: float = 0.4
    eps_high: float = 0.4
    norm_adv_by_std: bool = True

    def __post_init__(self) -> None:
        if self.eps_low < 0 or self.eps_high < 0:
            raise ValueError(f"eps_low and eps_high must be >= 0, got {self.eps_low}, {self.eps_high}")
        if self.loss_agg_mode != "seq-mean-token-mean" or self.microbatch_weighted:
            raise ValueError("GMPO's loss is per sequence: loss_agg_mode must be 'seq-mean-token-mean' "
                             "and microbatch_weighted false")

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        return per_token(group_normalized(rewards, group_ids, self.norm_adv_by_std), mask)

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        batch.check(self.requires)
        m, A = batch.mask, batch.advantages
        log_ratio = batch.logp - batch.old_logp
        sign = torch.sign(A)
        clamped = log_ratio.clamp(-self.eps_low, self.eps_high)
        log_r = sign * torch.minimum(sign * log_ratio, sign * clamped)
        n = m.sum(-1)
        ratio = torch.exp((log_r * m).sum(-1) / (n + 1e-8))
        adv = (A * m).sum(-1) / (n + 1e-8)
        seqs = batch.agg_scale.seqs if batch.agg_scale is not None else m.shape[0]
        loss = (-adv * ratio).sum() / max(seqs, 1)
        # tokens whose clip bound (verl's stat counts every token outside the range, bound or not)
        clipped = (log_r != log_ratio).to(m.dtype)
        stats = {"pg_clipfrac": masked_mean(clipped * (A > 0), m),
                 "pg_clipfrac_lower": masked_mean(clipped * (A < 0), m),
                 "ratio_mean": float((ratio.detach() * (n > 0)).sum() / (n > 0).sum().clamp_min(1)),
                 "ppo_kl": masked_mean(-log_ratio, m), "adv_mean": masked_mean(A, m),
                 "pg_loss": float(loss.detach()), "loss": float(loss.detach())}
        return loss, stats
