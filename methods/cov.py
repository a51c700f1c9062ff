"""Clip-Cov and KL-Cov: PPO with the gradient of a few high-covariance tokens removed or held back by a
KL term (docs/methods/clip_cov.md, docs/methods/kl_cov.md).

Paper: Cui et al., "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models",
arXiv 2505.22617. Code: github.com/PRIME-RL/Entropy-Mechanism-of-RL
`verl/trainer/ppo/core_algos.py` (`compute_policy_loss_clip_cov`, `compute_policy_loss_kl_cov`); verl
0.9.1 `verl/trainer/ppo/core_algos.py` registers both (`clip_cov`, `kl_cov`), adapted from it.

The covariance of a token is (A_t - mean A)(log pi_t - mean log pi), the means over the response tokens
of the batch passed to `loss` (one micro-batch in both codes; `rlvr train` passes micro-batches of
`micro_batch_size` rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from rlvr.methods import register
from rlvr.methods.advantages import group_normalized, per_token
from rlvr.methods.aggregation import masked_mean
from rlvr.methods.base import Method, TokenBatch
from rlvr.methods.grpo import ppo_stats
from torch import Tensor

__all__ = ["ClipCov", "KLCov", "token_covariance"]


def token_covariance(batch: TokenBatch) -> Tensor:
    """[B, T] (A_t - mean A)(log pi_t - mean log pi), means over the response tokens, no grad (code)."""
    m = batch.mask
    lp = batch.logp.detach()
    n = m.sum() + 1e-8                                           # verl's masked_mean
    return (batch.advantages - (batch.advantages * m).sum() / n) * (lp - (lp * m).sum() / n)


@dataclass(frozen=True)
class _CovBase(Method):
    # the covariance and the tokens it selects are of the micro-batch the loss sees (as in verl), so the
    # rows that share a micro-batch matter: the trainer keeps their order (no grouping by length)
    split_invariant: ClassVar[bool] = False
    norm_adv_by_std: bool = True

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        return per_token(group_normalized(rewards, group_ids, self.norm_adv_by_std), mask)


@register("clip_cov")
@dataclass(frozen=True)
class ClipCov(_CovBase):
    """Clip-Cov: PPO clip, then among the tokens PPO did not clip whose covariance lies in (cov_lb, cov_ub),
    max(1, floor(clip_ratio * tokens)) chosen at random get no gradient (their loss is multiplied by 0).

    clip_ratio: fraction of tokens detached, 2e-4 (code and verl default).
    cov_lb, cov_ub: 1 and 5, the covariance window (code and verl defaults).
    eps_low, eps_high: PPO clip, 0.2 (the code's recipe; the paper's Clip-Cov runs keep PPO's clip).
    norm_adv_by_std: GRPO's group-normalised advantage (the code's recipes: GRPO advantages).
    The random choice uses torch's global generator (torch.randperm, as both codes do), so set
    torch's seed to repeat it. No dual clip, no ratio clamp (code). loss_agg_mode: token-mean (code).
    docs/methods/clip_cov.md.
    """

    clip_ratio: float = 2e-4
    cov_lb: float = 1.0
    cov_ub: float = 5.0
    eps_low: float = 0.2
    eps_high: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.clip_ratio <= 1:
            raise ValueError(f"clip_ratio must be in (0, 1], got {self.clip_ratio}")
        if not self.cov_lb < self.cov_ub:
            raise ValueError(f"cov_lb must be < cov_ub, got {self.cov_lb}, {self.cov_ub}")
        if not (0 <= self.eps_low <= 1 and self.eps_high >= 0):
            raise ValueError(f"eps_low must be in [0, 1] and eps_high >= 0, got {self.eps_low}, {self.eps_high}")

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        batch.check(self.requires)
        m, A = batch.mask, batch.advantages
        ratio = torch.exp(batch.logp - batch.old_logp)
        unclipped = -A * ratio
        clipped = -A * ratio.clamp(1.0 - self.eps_low, 1.0 + self.eps_high)
        by_ppo = (clipped > unclipped) & (m > 0)
        cov = token_covariance(batch)
        cov = cov.masked_fill((m == 0) | by_ppo, -torch.inf)
        window = torch.nonzero((cov < self.cov_ub) & (cov > self.cov_lb) & (m > 0))
        n_drop = max(int(self.clip_ratio * float(m.sum())), 1)
        if len(window) > 0:
            window = window[torch.randperm(len(window))[:min(n_drop, len(window))]]
        keep = torch.ones_like(A)
        keep[window[:, 0], window[:, 1]] = 0
        loss = self.agg(torch.maximum(unclipped, clipped) * keep, batch)
        stats = ppo_stats(batch, ratio, by_ppo)
        stats["cov/detached_frac"] = masked_mean((keep == 0).to(A.dtype), m)
        stats["pg_loss"] = float(loss.detach())
        stats["loss"] = float(loss.detach())
        return loss, stats


@register("kl_cov")
@dataclass(frozen=True)
class KLCov(_CovBase):
    """KL-Cov: no ratio clipping; the max(1, floor(kl_cov_ratio * tokens)) tokens of largest covariance get
    kl_coef * |log pi_t - log pi_old,t| added to their loss -A_t r_t.

    kl_cov_ratio: fraction of tokens penalised, 2e-4 (verl's default and the code's recipe, `k_percent`
        0.02, in percent; the code's function default is 0.2 percent, 2e-3).
    kl_coef: 1, the coefficient of |log-ratio| (paper's beta, code's `ppo_kl_coef`).
    norm_adv_by_std: GRPO's group-normalised advantage (the code's recipes).
    No ratio clamp (code). loss_agg_mode: token-mean (code). docs/methods/kl_cov.md.
    """

    kl_cov_ratio: float = 2e-4
    kl_coef: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.kl_cov_ratio <= 1:
            raise ValueError(f"kl_cov_ratio must be in (0, 1], got {self.kl_cov_ratio}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        batch.check(self.requires)
        m, A = batch.mask, batch.advantages
        log_ratio = batch.logp - batch.old_logp
        ratio = torch.exp(log_ratio)
        valid = m > 0
        n = int(valid.sum())
        sel = torch.zeros_like(valid)
        if n > 0:
            a, lp = A[valid].detach(), batch.logp[valid].detach()
            cov = (a - a.mean()) * (lp - lp.mean())
            top = torch.topk(cov, max(1, int(n * self.kl_cov_ratio))).indices
            sel.view(-1)[torch.nonzero(valid.reshape(-1), as_tuple=True)[0][top]] = True
        tok = -A * ratio + torch.where(sel, self.kl_coef * log_ratio.abs(), torch.zeros_like(ratio))
        loss = self.agg(tok, batch)
        stats = ppo_stats(batch, ratio, torch.zeros_like(valid))
        stats["ppo_kl_abs"] = masked_mean(log_ratio.abs(), m)
        stats["cov/kl_frac"] = masked_mean(sel.to(A.dtype), m)
        stats["pg_loss"] = float(loss.detach())
        stats["loss"] = float(loss.detach())
        return loss, stats
