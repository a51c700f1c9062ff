"""verl plugin: every method of ours as a verl advantage estimator and policy loss, `rlvr_<method>`.

Loaded in every Ray worker by verl's own hook (`verl/__init__.py` imports each module named in the
comma-separated `VERL_USE_EXTERNAL_MODULES`), which `rlvr train --backend verl` sets both in the
launching process and in `ray_kwargs.ray_init.runtime_env.env_vars`, so workers started by
`ray start` on other nodes get it too. Registering only in the driver would not reach them.

Hyperparameters come from our typed method configs, not from verl's structured config: the
`RLVR_VERL_METHOD` environment variable holds the JSON of the `method:` block of the training YAML
(`{"name": "lp_reg", "rho": 0.01}`), validated by `methods.build`. The registered functions for other
methods use the paper defaults.

The wrappers take verl 0.9.1's keyword arguments plus `**kwargs`, so keywords verl adds later do not
break them, and extra per-token tensors (entropy, ref_logp, tokens, rewards, proxy_logp, topk_logp,
topk_ids: the `TokenBatch` field names) arrive through the same `**kwargs` from the patched `ppo_loss`
(harness/backends/verl/patch.py). Methods that need any of them install that patch at import, which
refuses any verl release but the pinned one.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from rlvr.harness.backends.verl import METHOD_ENV, NAME_PREFIX, VERL_VERSION, verl_name
from rlvr.methods.aggregation import AggScale
from rlvr.methods.base import AUX_FIELDS, Method, TokenBatch
from torch import Tensor

from rlvr import methods

__all__ = ["method_spec", "method_for", "group_ids_from_index", "agg_scale_from", "make_advantage_fn",
           "make_policy_loss_fn", "register_all", "REGISTERED"]

# Names this module registered, in registration order (filled by `register_all`).
REGISTERED: list[str] = []


def method_spec() -> dict[str, Any]:
    """The `method:` block passed in RLVR_VERL_METHOD ({} when unset)."""
    raw = os.environ.get(METHOD_ENV, "").strip()
    if not raw:
        return {}
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{METHOD_ENV}: not valid JSON ({e.msg})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"{METHOD_ENV}: expected a JSON object with a 'name', got {raw[:80]!r}")
    return spec


def method_for(name: str) -> Method:
    """Method `name` with the hyperparameters of RLVR_VERL_METHOD when it names this method, else the
    paper defaults. Built on every call (a frozen dataclass: cheap), so there is no stale state."""
    spec = method_spec()
    overrides = {k: v for k, v in spec.items() if k != "name"} if spec.get("name") == name else {}
    return methods.build(name, overrides)


def group_ids_from_index(index: Any, n: int, device: torch.device) -> Tensor:
    """verl's prompt uids (a numpy array of strings, one per row) as group ids 0..G-1 [n].
    Without an index every row is its own group."""
    if index is None:
        return torch.arange(n, device=device)
    first: dict[Any, int] = {}
    ids = [first.setdefault(u, len(first)) for u in list(index)]
    if len(ids) != n:
        raise ValueError(f"index has {len(ids)} entries for {n} rows")
    return torch.tensor(ids, dtype=torch.long, device=device)


def agg_scale_from(config: Any, mask: Tensor) -> AggScale | None:
    """Our mini-batch normalisers from verl's `config.global_batch_info` (set by `ppo_loss`).

    verl scales each data-parallel rank's loss so that FSDP's *average* of the ranks' gradients is the
    gradient of the global mini-batch (core_algos.agg_loss: `sum / batch_num_tokens * dp_size`). Our
    losses divide by `AggScale`, so the per-rank token and sequence counts are the global ones divided by
    dp_size; seq-mean-token-sum-norm's constant (it multiplies the sequence count, so it is not divided) is
    verl's `loss_scale_factor` (the launcher sets it to the max response length, as our trainer does),
    else the padded width. None: no global info, so the
    batch given is the mini-batch (a direct call, as in the tests).
    """
    info = getattr(config, "global_batch_info", None) if config is not None else None
    if not info:
        return None
    dp = int(info.get("dp_size") or 1)
    tokens, seqs, factor = info.get("batch_num_tokens"), info.get("global_batch_size"), info.get("loss_scale_factor")
    if dp > 1 and (tokens is None or seqs is None):
        raise ValueError("rlvr loss: batch_num_tokens and global_batch_size are required when dp_size > 1")
    local = AggScale.of(mask, t_pad=factor)
    # verl's global_batch_size is the mini-batch's row count (ppo_mini_batch_size); without it verl counts the
    # rows that hold a response token, as AggScale.of does
    return AggScale(tokens=float(tokens) / dp if tokens is not None else local.tokens,
                    seqs=seqs / dp if seqs is not None else local.seqs,
                    t_pad=local.t_pad, rows=seqs / dp if seqs is not None else local.rows, dp=dp)


def make_advantage_fn(name: str):
    """verl advantage estimator for method `name`: (advantages [B, T], returns [B, T]).

    verl 0.9.1 (`ray_trainer.compute_advantage`) passes token_level_rewards [B, T], response_mask [B, T],
    config (AlgoConfig) and, when present, index (uids) and reward_baselines. The outcome reward of a
    row is the sum of its token rewards (the verifier score sits on the last token). As for verl's GRPO,
    the returns are the advantages.
    """

    def advantage_fn(token_level_rewards: Tensor, response_mask: Tensor, index: Any = None, config: Any = None,
                     **kwargs: Any) -> tuple[Tensor, Tensor]:
        method = method_for(name)
        rewards = token_level_rewards.sum(-1)
        group_ids = group_ids_from_index(index, rewards.shape[0], rewards.device)
        adv = method.advantages(rewards, group_ids, response_mask.to(rewards.dtype))
        return adv, adv

    advantage_fn.__name__ = f"{NAME_PREFIX}{name}_advantages"
    advantage_fn.rlvr_method = name
    return advantage_fn


def make_policy_loss_fn(name: str):
    """verl policy loss for method `name`: (loss, {stat: float}), exactly `method.loss(TokenBatch)`.

    verl 0.9.1's `ppo_loss` calls it with old_log_prob, log_prob, advantages, response_mask [B, T],
    loss_agg_mode, config (ActorConfig) and rollout_is_weights; the patched `ppo_loss` adds the
    `TokenBatch` fields the method requires as keyword arguments. `rewards` and `group_ids` default to
    NaN and the row index: no loss that can run without the patch reads them (CaSP reads rewards, and
    its other fields need the patch anyway).
    """

    def policy_loss_fn(old_log_prob: Tensor, log_prob: Tensor, advantages: Tensor, response_mask: Tensor,
                       loss_agg_mode: str | None = None, config: Any = None, rollout_is_weights: Tensor | None = None,
                       **kwargs: Any) -> tuple[Tensor, dict[str, float]]:
        method = method_for(name)
        if rollout_is_weights is not None:
            raise ValueError(f"{verl_name(name)}: rollout-correction weights are not applied by rlvr methods; "
                             f"leave algorithm.rollout_correction.rollout_is unset")
        if loss_agg_mode is not None and loss_agg_mode != method.loss_agg_mode:
            raise ValueError(f"{verl_name(name)}: actor.loss_agg_mode is {loss_agg_mode!r} but the method's "
                             f"loss_agg_mode is {method.loss_agg_mode!r}; set it in the method config")
        B = log_prob.shape[0]
        mask = response_mask.to(log_prob.dtype)
        aux = {k: v for k, v in kwargs.items() if k in AUX_FIELDS and v is not None}
        batch = TokenBatch(
            logp=log_prob, old_logp=old_log_prob, mask=mask, advantages=advantages,
            rewards=kwargs.get("rewards") if kwargs.get("rewards") is not None
            else torch.full((B,), float("nan"), device=log_prob.device),
            group_ids=kwargs.get("group_ids") if kwargs.get("group_ids") is not None
            else torch.arange(B, device=log_prob.device),
            agg_scale=agg_scale_from(config, mask), **aux)
        missing = sorted(f for f in method.requires if getattr(batch, f) is None)
        if missing:
            raise ValueError(f"{verl_name(name)} needs {', '.join(missing)}, which verl's stock loss does not pass; "
                             f"the plugin installs the verl {VERL_VERSION} patch for that (is the plugin loaded in "
                             f"this worker, and the method set in {METHOD_ENV}?)")
        return method.loss(batch)

    policy_loss_fn.__name__ = f"{NAME_PREFIX}{name}_loss"
    policy_loss_fn.rlvr_method = name
    return policy_loss_fn


def register_all() -> list[str]:
    """Register `rlvr_<name>` for every method in verl's estimator and loss registries; idempotent
    (a second import, e.g. in a test, keeps the first functions)."""
    from verl.trainer.ppo import core_algos

    for name in methods.available():
        key = verl_name(name)
        if getattr(core_algos.ADV_ESTIMATOR_REGISTRY.get(key), "rlvr_method", None) != name:
            core_algos.register_adv_est(key)(make_advantage_fn(name))
        if getattr(core_algos.POLICY_LOSS_REGISTRY.get(key), "rlvr_method", None) != name:
            core_algos.register_policy_loss(key)(make_policy_loss_fn(name))
        if key not in REGISTERED:
            REGISTERED.append(key)
    return list(REGISTERED)


def _activate() -> None:
    register_all()
    spec = method_spec()
    if spec:
        from rlvr.harness.backends.verl import patch

        method = method_for(spec["name"])
        if method.requires:
            patch.install(method)


_activate()
