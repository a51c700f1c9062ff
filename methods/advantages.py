"""Per-group reductions and the outcome advantages shared by several methods (docs/methods/README.md)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["group_index", "group_sum", "group_normalized", "signed_reinforce", "per_token"]


def group_index(group_ids: Tensor) -> tuple[Tensor, int]:
    """(inverse [B] mapping each row to 0..G-1, G) for group ids [B] of any integer values."""
    _, inverse = torch.unique(group_ids, return_inverse=True)
    return inverse, int(inverse.max()) + 1 if inverse.numel() else 0


def group_sum(x: Tensor, inverse: Tensor, n_groups: int) -> Tensor:
    """Per-group sums [G] of x [B]."""
    return torch.zeros(n_groups, dtype=x.dtype, device=x.device).index_add_(0, inverse, x)


@torch.no_grad()
def group_normalized(rewards: Tensor, group_ids: Tensor, norm_by_std: bool = True, eps: float = 1e-6) -> Tensor:
    """GRPO outcome advantage per row [B]: (r - mean_g) / (std_g + eps), verl's `compute_grpo_outcome_advantage`.

    std is the unbiased (N-1) estimator (torch.std); a group of size 1 gets mean 0 and std 1 (so its
    advantage is r / (1 + eps), verl's convention); all-equal groups get 0. norm_by_std=False is
    Dr. GRPO (r - mean_g).
    """
    r = rewards.to(torch.float32) if not rewards.is_floating_point() else rewards
    inverse, g = group_index(group_ids)
    n = group_sum(torch.ones_like(r), inverse, g)
    mean = group_sum(r, inverse, g) / n
    dev = r - mean[inverse]
    var = group_sum(dev * dev, inverse, g) / (n - 1).clamp_min(1)
    single = n == 1
    mean = torch.where(single, torch.zeros_like(mean), mean)
    std = torch.where(single, torch.ones_like(var), var.sqrt())
    a = r - mean[inverse]
    return a / (std[inverse] + eps) if norm_by_std else a


@torch.no_grad()
def signed_reinforce(rewards: Tensor, positive: float, negative: float) -> Tensor:
    """Per-row advantage `positive` where reward == 1 and `negative` otherwise (NSR family)."""
    r = rewards if rewards.is_floating_point() else rewards.to(torch.float32)
    return torch.where(r == 1, torch.full_like(r, positive), torch.full_like(r, negative))


def per_token(a_seq: Tensor, mask: Tensor) -> Tensor:
    """Broadcast a per-row advantage [B] to the tokens [B, T], zero on padding."""
    return a_seq[:, None] * mask.to(a_seq.dtype)
