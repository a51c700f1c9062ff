"""GRPO and its common variants (Dr. GRPO, DAPO) as one config (docs/methods/grpo.md)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from rlvr.methods import register
from rlvr.methods.advantages import group_normalized, per_token
from rlvr.methods.aggregation import AggMode, k3_kl, masked_mean, ppo_clip_terms, ppo_ratio
from rlvr.methods.base import Method, TokenBatch
from torch import Tensor

__all__ = ["GRPO", "DAPO", "DrGRPO", "DAPO_OVERRIDES", "DR_GRPO_OVERRIDES", "ppo_stats", "clipped_pg_loss", "with_entropy_bonus"]


def ppo_stats(batch: TokenBatch, ratio: Tensor, clipped: Tensor, capped: Tensor | None = None) -> dict[str, float]:
    """Stats every PPO-style loss logs: clip fraction, dual-clip fraction, mean ratio, approx. KL to the old
    policy. As verl 0.9.1 logs them, `pg_clipfrac` counts the tokens whose clipped branch is active and
    `pg_clipfrac_lower` those the dual clip caps (0 when there is no dual clip), apart."""
    m = batch.mask
    return {
        "pg_clipfrac": masked_mean(clipped.to(ratio.dtype), m),
        "pg_clipfrac_lower": 0.0 if capped is None else masked_mean(capped.to(ratio.dtype), m),
        "ratio_mean": masked_mean(ratio, m),
        "ppo_kl": masked_mean(batch.old_logp - batch.logp, m),
        "adv_mean": masked_mean(batch.advantages, m),
    }


def clipped_pg_loss(method: Method, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
    """The PPO clipped surrogate with `method`'s eps_low / eps_high / dual_clip_c, aggregated with its
    loss_agg_mode, and the stats every PPO-style loss logs (shared by GRPO and the NSR family)."""
    ratio = ppo_ratio(batch.logp, batch.old_logp)
    tok, clipped, capped = ppo_clip_terms(ratio, batch.advantages, method.eps_low, method.eps_high,
                                          method.dual_clip_c)
    loss = method.agg(tok, batch)
    stats = ppo_stats(batch, ratio, clipped, capped)
    stats["pg_loss"] = float(loss.detach())
    return loss, stats


def with_entropy_bonus(method: Method, batch: TokenBatch, loss: Tensor, stats: dict[str, float],
                       rows: Tensor | None = None) -> Tensor:
    """loss - entropy_coef * agg(entropy), the entropy keeping its gradient; records the entropy.
    rows: bool [B], the rows the bonus applies to (None: all); the others add 0 under the same normaliser."""
    if method.entropy_coef <= 0:
        return loss
    entropy = batch.entropy if rows is None else batch.entropy * rows[:, None].to(batch.entropy.dtype)
    ent = method.agg(entropy, batch)
    stats["entropy"] = float(ent.detach())
    return loss - method.entropy_coef * ent


@register("grpo")
@dataclass(frozen=True)
class GRPO(Method):
    """GRPO: group-normalised outcome advantage, PPO clip, k3 KL to a reference, in the loss.

    Paper: DeepSeekMath, arXiv 2402.03300 (sec. 4.1.2). Code: verl (https://github.com/volcengine/verl),
    `verl/trainer/ppo/core_algos.py` (`compute_grpo_outcome_advantage`, `compute_policy_loss_vanilla`,
    `kl_penalty`, `agg_loss`). User documentation: docs/methods/grpo.md.
    Defaults are DeepSeekMath's main setting: beta 0.04, std normalisation, per-response mean then
    group mean (`seq-mean-token-mean`); eps is not stated in the paper, so verl's 0.2 is used.
    Variants as presets (the same fields, other defaults): `dapo` (arXiv 2503.14476: clip-higher
    0.2/0.28, token-mean, dynamic sampling, overlong shaping, no KL) and `dr_grpo` (arXiv 2503.20783: no
    std normalisation, `seq-mean-token-sum-norm`, no KL); `DAPO_OVERRIDES` and `DR_GRPO_OVERRIDES` hold
    their differences from `grpo`.

    eps_low, eps_high: PPO clip range [1 - eps_low, 1 + eps_high].
    dual_clip_c: verl's dual clip for A < 0 (on at 3.0 in verl 0.9.1, absent in verl 0.2).
    norm_adv_by_std: divide by the unbiased group std + 1e-6 (False: Dr. GRPO).
    kl_coef: beta of the k3 KL to the reference policy, clamped to [-10, 10]; > 0 needs ref_logp.
    entropy_coef: subtract c * agg(entropy); the entropy keeps its gradient (RLVR-Decomposed's 0.001
        baseline); > 0 needs entropy.
    dynamic_sampling: drop groups whose rewards are all equal and refill the batch (DAPO).
    overlong_max_len, overlong_cache: DAPO's soft overlong penalty
        min(-(|y| - (max_len - cache)) / cache, 0) added to the reward before the group advantage,
        |y| = response tokens (mask sum); None turns it off.
    loss_agg_mode, microbatch_weighted: see methods/aggregation.py.
    """

    loss_agg_mode: AggMode = "seq-mean-token-mean"
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip_c: float | None = None
    norm_adv_by_std: bool = True
    kl_coef: float = 0.04
    entropy_coef: float = 0.0
    dynamic_sampling: bool = False
    overlong_max_len: int | None = None
    overlong_cache: int = 4096

    def __post_init__(self) -> None:
        if not (0 <= self.eps_low <= 1 and self.eps_high >= 0):
            raise ValueError(f"eps_low must be in [0, 1] and eps_high >= 0, got {self.eps_low}, {self.eps_high}")
        if self.dual_clip_c is not None and self.dual_clip_c <= 1:
            raise ValueError(f"dual_clip_c must be > 1 (or null), got {self.dual_clip_c}")
        if self.kl_coef < 0 or self.entropy_coef < 0:
            raise ValueError("kl_coef and entropy_coef must be >= 0")
        if self.overlong_max_len is not None and not 0 < self.overlong_cache < self.overlong_max_len:
            raise ValueError(f"overlong_cache must be in (0, overlong_max_len), got {self.overlong_cache}")

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({"ref_logp"} if self.kl_coef > 0 else set()) | (
            {"entropy"} if self.entropy_coef > 0 else set())

    @property
    def refill(self) -> bool:
        return self.dynamic_sampling

    def shaped_rewards(self, rewards: Tensor, mask: Tensor) -> Tensor:
        """Rewards [B] plus DAPO's overlong penalty when it is on."""
        r = rewards.to(torch.float32) if not rewards.is_floating_point() else rewards
        if self.overlong_max_len is None:
            return r
        length = mask.sum(-1).to(r.dtype)
        start = self.overlong_max_len - self.overlong_cache
        # DAPO Eq. 13: 0 up to L_max - L_cache, then linear down to -1 at L_max, and -1 beyond (verl's code has
        # no floor: its responses cannot outgrow L_max; ours can when max_new_tokens > overlong_max_len)
        return r + torch.clamp(-(length - start) / self.overlong_cache, min=-1.0, max=0.0)

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor) -> Tensor:
        a = group_normalized(self.shaped_rewards(rewards, mask), group_ids, self.norm_adv_by_std)
        return per_token(a, mask)

    def select_rows(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        keep = super().select_rows(rewards, group_ids)
        if not self.dynamic_sampling:
            return keep
        # DAPO filters on the verifier outcome; a group is informative iff its rewards are not all equal
        _, inverse = torch.unique(group_ids, return_inverse=True)
        r = rewards.to(torch.float64)
        g = int(inverse.max()) + 1
        lo = torch.full((g,), float("inf"), dtype=r.dtype, device=r.device).scatter_reduce(0, inverse, r, "amin")
        hi = torch.full((g,), float("-inf"), dtype=r.dtype, device=r.device).scatter_reduce(0, inverse, r, "amax")
        return keep & (hi > lo)[inverse]

    def loss(self, batch: TokenBatch) -> tuple[Tensor, dict[str, float]]:
        batch.check(self.requires)
        loss, stats = clipped_pg_loss(self, batch)
        if self.kl_coef > 0:
            kl = self.agg(k3_kl(batch.logp, batch.ref_logp), batch)
            loss = loss + self.kl_coef * kl
            stats["kl_ref"] = float(kl.detach())
        loss = with_entropy_bonus(self, batch, loss, stats)
        stats["loss"] = float(loss.detach())
        return loss, stats


@register("dapo")
@dataclass(frozen=True)
class DAPO(GRPO):
    """DAPO: GRPO with clip-higher (eps 0.2 / 0.28), token-mean, dynamic sampling, the soft overlong
    penalty (L_max 20480, cache 4096) and no KL: the paper's settings as defaults of GRPO's fields.

    Paper: Yu et al., "DAPO: An Open-Source LLM Reinforcement Learning System at Scale", arXiv 2503.14476.
    Code: verl `recipe/dapo` (https://github.com/volcengine/verl). The overlong penalty follows Eq. 13 (a floor of -1 past
    L_max; verl's code has none, as its responses cannot outgrow L_max). See `GRPO` for every field and
    docs/methods/dapo.md.
    """

    loss_agg_mode: AggMode = "token-mean"
    eps_high: float = 0.28
    kl_coef: float = 0.0
    dynamic_sampling: bool = True
    overlong_max_len: int | None = 20480
    overlong_cache: int = 4096


@register("dr_grpo")
@dataclass(frozen=True)
class DrGRPO(GRPO):
    """GRPO Done Right: GRPO without the std normalisation of the advantage and without the per-response length
    normalisation (`seq-mean-token-sum-norm`: sum over tokens / (G * L_max)), no KL.

    Dr. GRPO. Paper: Liu et al., "Understanding R1-Zero-Like Training: A Critical Perspective", arXiv 2503.20783.
    Code: github.com/sail-sg/understand-r1-zero (on oat); verl `norm_adv_by_std_in_grpo=False` with
    `loss_agg_mode=seq-mean-token-sum-norm`. See `GRPO` for every field; the normaliser's constant is
    the trainer's max response length (methods/aggregation.py). docs/methods/dr_grpo.md.
    """

    loss_agg_mode: AggMode = "seq-mean-token-sum-norm"
    norm_adv_by_std: bool = False
    kl_coef: float = 0.0


def _differences(cls: type[GRPO]) -> dict[str, object]:
    base, preset = GRPO(), cls()
    return {f.name: getattr(preset, f.name) for f in dataclasses.fields(base)
            if getattr(preset, f.name) != getattr(base, f.name)}


DAPO_OVERRIDES: dict[str, object] = _differences(DAPO)
DR_GRPO_OVERRIDES: dict[str, object] = _differences(DrGRPO)
