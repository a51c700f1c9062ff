"""Lp-Reg: low-probability regularisation towards a min-p proxy of the policy.

Paper: Huang et al., "Low-probability Tokens Sustain Exploration in Reinforcement Learning with
Verifiable Reward", arXiv 2510.03222 (https://arxiv.org/abs/2510.03222). Code:
https://github.com/CarlanLark/Lp-Reg-dev @ 33b27e27 (which its README says reproduces the paper):
`verl/trainer/ppo/core_algos.py::compute_policy_loss_lp_reg`, `verl/workers/actor/dp_actor.py::apply_min_p`.
User documentation: docs/methods/lp_reg.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from rlvr.methods import register
from rlvr.methods.advantages import group_normalized, per_token
from rlvr.methods.aggregation import k3_kl, masked_mean, ppo_clip_loss, ppo_ratio
from rlvr.methods.base import Method, TokenBatch
from rlvr.methods.grpo import ppo_stats
from torch import Tensor

__all__ = ["LpReg", "minp_proxy_logprobs", "PROXY_FILL"]

# the code sets filtered logits to -1e4, not -inf, so filtered tokens get a log-prob of about -1e4
PROXY_FILL = -1e4


@torch.no_grad()
def minp_proxy_logprobs(logits: Tensor, tokens: Tensor, kappa: float, strict: bool = False) -> Tensor:
    """Log-prob of `tokens` under the min-p proxy of softmax(logits) (paper sec. 3, code `apply_min_p`).

    logits [..., V], tokens [...] -> [...]. Token v survives iff p_v >= kappa * max(p) (code; `strict`:
    the paper's >); the survivors are renormalised and the others get logit -1e4 (code), so a filtered
    token's proxy log-prob is -1e4 - log(sum of kept exp(logits)) (probability 0).
    The code's log_softmax over the filled logits is computed here with one [..., V] buffer, p / max(p)
    = exp(z - max z), instead of three; exp(-1e4) is 0 in floating point, so the result is the same.
    """
    zmax = logits.amax(dim=-1, keepdim=True)
    rel = (logits - zmax).exp_()                                   # p / max(p)
    keep = rel > kappa if strict else rel >= kappa
    lse_kept = zmax.squeeze(-1) + rel.masked_fill_(~keep, 0.0).sum(-1).log()
    del rel
    y = tokens.unsqueeze(-1)
    z_y = torch.where(keep.gather(-1, y), logits.gather(-1, y), torch.full_like(zmax, PROXY_FILL)).squeeze(-1)
    return z_y - lse_kept


@register("lp_reg")
@dataclass(frozen=True)
class LpReg(Method):
    """Lp-Reg: GRPO advantage, ratio capped at U, plus beta * k3(proxy || pi) on the lowest-probability
    negative-advantage tokens that the min-p proxy keeps. Paper: arXiv 2510.03222
    (https://arxiv.org/abs/2510.03222). Code: https://github.com/CarlanLark/Lp-Reg-dev @ 33b27e27.
    Defaults: the official code (Lp-Reg-dev) and its
    Qwen3-14B-Base script (rho 1%, kappa 0.02, beta 1, U 10, token-mean, no KL to a reference, no entropy
    bonus, no dual clip: Lp-Reg-dev has it commented out). docs/methods/lp_reg.md lists every difference
    between the paper and the code.

    rho: fraction of tokens regularised (0.005 for Qwen2.5-32B).
    kappa: min-p threshold relative to the max probability (`minp_proxy_logprobs`).
    beta: coefficient of the k3 term (`ppo_kl_coef=1`); the term is clamped to [-10, 10] as in verl.
    ratio_max: U; the PPO clip is [1 - 1, 1 + (U - 1)] = [0, U].
    minp_compare: ">=" (code) or ">" (paper) for the min-p filter.
    percentile_scope: "negatives" (code: the k = max(1, floor(rho * n_neg)) lowest-logp tokens among the
        negative-advantage tokens of the batch passed to `loss`, and nothing at all unless k > 1) or
        "batch" (paper: the floor(rho * n) lowest among all n valid tokens of the batch passed, then
        those with A < 0; ranked by the detached current log-prob, equal to the sampling probability
        on-policy). Either way the scope is the batch `loss` is given: under `rlvr train` one
        micro-batch. The code's micro-batches are token budgets (verl's dynamic batch size,
        `ppo_max_token_len_per_gpu` 30,720 in its scripts: a handful of long responses), so set
        `micro_batch_tokens` in the training config to size them the same way; `micro_batch_size`
        (rows) gives a scope of a fixed number of responses instead, whatever their length. For the
        paper's whole-batch scope, make one micro-batch hold the whole training batch.
    clip_form: "ppo_max" (code: max(-A r, -A clip(r, 0, U)), which never clips A < 0) or "paper"
        (Eq. 6: -clip(r, 0, U) A for both signs). The same on-policy (r = 1); off-policy "paper" also stops
        the gradient of negative tokens whose ratio exceeds U.
    proxy_logits: "raw" (code: the min-p filter and the renormalisation use the old policy's logits
        before the division by the sampling temperature) or "scaled" (the proxy of the temperature-scaled
        policy that sampled the tokens, the distribution the paper writes). The same at temperature 1,
        where both released scripts sample; at temperature T != 1 "raw" keeps a token iff
        (p / max p)^T >= kappa for the sampling distribution p (more tokens when T < 1, fewer when
        T > 1), and its proxy log-prob is of the unscaled distribution, while the log-prob it is
        compared with stays the scaled one.
    microbatch_weighted (default True here, the code's form): each micro-batch's token-mean times its
        share of the mini-batch's rows (verl 0.3 with dynamic batch sizes), so a micro-batch of a few
        long responses weighs as much per row as one of many short ones; False: one global token-mean
        over the mini-batch, where every token weighs the same. The same with a single micro-batch.
    norm_adv_by_std: GRPO's std normalisation of the advantage (on in the code).
    Both scopes keep a candidate only if its current log-prob is below its proxy log-prob (code). The KL
    is the code's single-token k3 estimate, not the paper's full-distribution KL; the proxy is computed
    from the old policy at old-log-prob time (code, `minp_old_log_prob=True`; the same distribution as the
    paper's at the on-policy step).
    """

    split_invariant: ClassVar[bool] = False   # its percentile runs over the micro-batch

    rho: float = 0.01
    kappa: float = 0.02
    beta: float = 1.0
    ratio_max: float = 10.0
    minp_compare: Literal[">=", ">"] = ">="
    percentile_scope: Literal["negatives", "batch"] = "negatives"
    clip_form: Literal["ppo_max", "paper"] = "ppo_max"
    proxy_logits: Literal["raw", "scaled"] = "raw"
    microbatch_weighted: bool = True
    norm_adv_by_std: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.rho <= 1:
            raise ValueError(f"rho must be in (0, 1], got {self.rho}")
        if not 0 < self.kappa <= 1:
            raise ValueError(f"kappa must be in (0, 1], got {self.kappa}")
        if self.beta < 0 or self.ratio_max <= 1:
            raise ValueError(f"beta must be >= 0 and ratio_max > 1, got {self.beta}, {self.ratio_max}")
        if self.microbatch_weighted and self.loss_agg_mode != "token-mean":
            raise ValueError(f"microbatch_weighted (on by default for lp_reg) applies to loss_agg_mode "
                             f"'token-mean' only; set microbatch_weighted: false for {self.loss_agg_mode!r}")

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({"proxy_logp"})

    def stat_params(self) -> dict[str, float | int | bool]:
        return {"minp_kappa": self.kappa, "minp_strict": self.minp_compare == ">",
                "minp_raw": self.proxy_logits == "raw"}

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        return per_token(group_normalized(rewards, group_ids, self.norm_adv_by_std), mask)

    def regularised(self, batch: TokenBatch) -> Tensor:
        """bool [B, T]: the tokens that get the k3 term."""
        lp = batch.logp.detach()
        valid = batch.mask > 0
        neg = valid & (batch.advantages < 0)
        pool = neg if self.percentile_scope == "negatives" else valid
        n = int(pool.sum())
        k = max(1, math.floor(self.rho * n))
        sel = torch.zeros_like(valid)
        if self.percentile_scope == "negatives" and k <= 1:
            return sel
        if n == 0:
            return sel
        idx = torch.where(pool.flatten(), lp.flatten(), torch.full_like(lp.flatten(), math.inf)).topk(
            k, largest=False).indices
        sel.view(-1)[idx] = True
        return sel & neg & (lp < batch.proxy_logp)

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        batch.check(self.requires)
        A = batch.advantages
        ratio = ppo_ratio(batch.logp, batch.old_logp)
        if self.clip_form == "ppo_max":
            tok, clipped = ppo_clip_loss(ratio, A, 1.0, self.ratio_max - 1.0)
        else:
            tok, clipped = -A * ratio.clamp(0.0, self.ratio_max), ratio > self.ratio_max
        sel = self.regularised(batch)
        # the proxy is a fixed target; where() keeps unselected tokens (whose k3 may be clamped) out of the graph
        target = torch.where(sel, batch.proxy_logp, batch.logp.detach())
        kl = torch.where(sel, k3_kl(batch.logp, target), torch.zeros_like(tok))
        loss = self.agg(tok + self.beta * kl, batch)
        stats = ppo_stats(batch, ratio, clipped)     # no dual clip: pg_clipfrac_lower is 0
        stats["lp_reg/reg_frac"] = masked_mean(sel.to(tok.dtype), batch.mask)
        stats["lp_reg/kl_mean"] = float(kl.detach().sum() / sel.sum().clamp_min(1))
        stats["loss"] = float(loss.detach())
        return loss, stats
