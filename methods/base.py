"""The batch every loss sees (`TokenBatch`) and the `Method` base class.

A method is a frozen dataclass of hyper-parameters with three pure functions:

* `advantages(rewards [B], group_ids [B], mask [B, T]) -> [B, T]` (no grad),
* `loss(batch: TokenBatch) -> (scalar loss, {stat name: float})`,
* `select_rows(rewards [B], group_ids [B]) -> bool [B]`: the rows the trainer keeps for the update.

plus `requires`, the `TokenBatch` fields beyond the core ones that the forward must fill, and
`stat_params()`, the settings those fields are computed with (top-N, min-p kappa).

Row selection and "keep sampling until the batch is full": the trainer samples groups of G rollouts,
scores them, calls `select_rows` and, when `method.refill` is true, keeps sampling new prompts until it
holds as many *kept groups* as it wants (DAPO dynamic sampling, BBG gating; `count_kept_groups` counts
them). When `refill` is false, dropped rows are simply gone (PSR/NSR's batch subsetting).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from rlvr.methods.aggregation import AggMode, AggScale, SumNormDivisor, agg_loss
from torch import Tensor

__all__ = ["TokenBatch", "Method", "AUX_FIELDS", "count_kept_groups"]

# The optional per-token fields a method may name in `requires` (harness/train/token_stats.py computes them).
AUX_FIELDS: frozenset[str] = frozenset({
    "ref_logp",          # [B, T]     reference-model log-prob of the sampled token, no grad
    "tokens",            # [B, T]     sampled token ids
    "entropy",           # [B, T]     entropy of the current policy (with grad)
    "topk_logp",         # [B, T, N]  current policy's N largest log-probs (with grad)
    "topk_ids",          # [B, T, N]  their token ids, rank order (rank 0 = argmax)
    "old_topk_ids",      # [B, T, N]  the old policy's top-N ids, computed at old-log-prob time
    "logp_at_old_topk",  # [B, T, N]  current log-probs at old_topk_ids (with grad)
    "proxy_logp",        # [B, T]     Lp-Reg: log-prob of the token under the old min-p proxy, no grad
})


@dataclass
class TokenBatch:
    """Per-token tensors of one (micro-)batch of B responses padded to T tokens.

    logp        [B, T]  current-policy log-prob of the sampled token (requires grad), logits / temperature
    old_logp    [B, T]  behaviour-policy log-prob, recomputed by the trainer before the update (no grad)
    mask        [B, T]  1 on response tokens (EOS included), 0 on padding
    advantages  [B, T]  from `method.advantages` over the whole rollout batch, then sliced
    rewards     [B]     verifier outcome in {0, 1}
    group_ids   [B]     prompt id; the G rollouts of one prompt share it
    agg_scale   normalisers of the whole mini-batch when this is one micro-batch of it (None: it is the
                mini-batch); see methods/aggregation.py
    The optional fields are listed in `AUX_FIELDS`; a method names the ones it needs in `requires`.
    """

    logp: Tensor
    old_logp: Tensor
    mask: Tensor
    advantages: Tensor
    rewards: Tensor
    group_ids: Tensor
    ref_logp: Tensor | None = None
    tokens: Tensor | None = None
    entropy: Tensor | None = None
    topk_logp: Tensor | None = None
    topk_ids: Tensor | None = None
    old_topk_ids: Tensor | None = None
    logp_at_old_topk: Tensor | None = None
    proxy_logp: Tensor | None = None
    agg_scale: AggScale | None = None

    def check(self, requires: frozenset[str]) -> None:
        """Raise ValueError naming a required field that is missing or a tensor of the wrong shape."""
        B, T = self.logp.shape
        for name in ("old_logp", "mask", "advantages"):
            if getattr(self, name).shape != (B, T):
                raise ValueError(f"TokenBatch.{name}: shape {tuple(getattr(self, name).shape)}, want {(B, T)}")
        for name in ("rewards", "group_ids"):
            if getattr(self, name).shape != (B,):
                raise ValueError(f"TokenBatch.{name}: shape {tuple(getattr(self, name).shape)}, want {(B,)}")
        for name in sorted(requires):
            value = getattr(self, name)
            if value is None:
                raise ValueError(f"TokenBatch.{name} is required by this method but is None")
            if tuple(value.shape[:2]) != (B, T):
                raise ValueError(f"TokenBatch.{name}: shape {tuple(value.shape)}, want ({B}, {T}, ...)")

    def rows(self, index: Tensor | slice) -> TokenBatch:
        """The same batch restricted to some rows (a micro-batch); agg_scale is kept as is."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v[index] if isinstance(v, Tensor) else v
        return TokenBatch(**out)


@dataclass(frozen=True)
class Method:
    """Base of every method config. Subclasses are frozen dataclasses registered with `methods.register`.

    loss_agg_mode: verl's aggregation name (methods/aggregation.py, docs/methods/README.md).
    microbatch_weighted: the per-micro-batch token-mean weighted by row share of verl 0.2/0.3 with dynamic
        batch sizes (the NSR, CaSP and Lp-Reg code); off: the global token-mean of the mini-batch.
    sum_norm_divisor: what `seq-mean-token-sum-norm` divides the masked total by: "seqs_t_pad" (verl 0.9.1:
        the sequence count times t_pad) or "t_pad" (verl's main branch of January 2026: t_pad alone).
    """

    name: ClassVar[str] = ""
    # False when the loss of a micro-batch depends on which rows share it (beyond AggScale's normalisers)
    split_invariant: ClassVar[bool] = True
    loss_agg_mode: AggMode = "token-mean"
    microbatch_weighted: bool = False
    sum_norm_divisor: SumNormDivisor = "seqs_t_pad"

    @property
    def requires(self) -> frozenset[str]:
        return frozenset()

    @property
    def refill(self) -> bool:
        """True when rows dropped by `select_rows` should be replaced by sampling more prompts."""
        return False

    def stat_params(self) -> dict[str, float | int | bool]:
        """Settings for harness/train/token_stats.py: {"top_n": N} and/or {"minp_kappa": k, "minp_strict": b}."""
        return {}

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def select_rows(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        return torch.ones(rewards.shape, dtype=torch.bool, device=rewards.device)

    def agg(self, loss: Tensor, batch: TokenBatch) -> Tensor:
        return agg_loss(loss, batch.mask, self.loss_agg_mode, batch.agg_scale, self.microbatch_weighted,
                        self.sum_norm_divisor)


def count_kept_groups(keep: Tensor, group_ids: Tensor) -> int:
    """Number of distinct groups with at least one kept row (keep: bool [B], group_ids [B])."""
    return int(torch.unique(group_ids[keep]).numel())
