"""The version-gated patch of verl 0.9.1 that feeds our losses what verl's loss never receives.

verl's policy loss gets the sampled token's log-prob only (`compute_policy_loss` in verl/trainer/ppo/core_algos.py). Our losses also read
entropy, reference log-probs, the sampled tokens and the verifier rewards, and Lp-Reg and CaSP read
statistics of the whole next-token distribution. Two functions of verl 0.9.1 are replaced:

1. `FSDPEngineWithLMHead.prepare_model_outputs` (verl/workers/engine/fsdp/transformer_impl.py): after
   verl's own work, while the logits of the micro-batch are still alive, computes chunk-wise
   * in the no-grad old-log-prob pass (verl's `compute_log_prob` with `calculate_entropy`):
     `proxy_logp`, Lp-Reg's min-p proxy log-prob; verl stores every model output of that pass in its
     TransferQueue under the output's name, so it reaches the update as `data["rlvr_proxy_logp"]`;
   * in the update pass (grad enabled): `topk_logp` (with grad) and `topk_ids`, CaSP's candidates;
   each as a jagged tensor laid out like verl's `log_probs` (`model_output["rlvr_<field>"]`).
2. `verl.workers.engine_workers.ppo_loss` (the loss verl installs in the actor, a module global read
   when the worker builds its model): for `rlvr_*` loss modes, converts those fields and entropy,
   `ref_log_prob`, `responses` and `rm_scores` to padded [B, T] tensors and calls the registered loss
   with them as keyword arguments; other loss modes go to verl's own `ppo_loss` unchanged.

`check_targets()` raises `VerlPatchError` (one line) on any verl but 0.9.1 or when a target or a helper
it relies on is missing or has another signature; `install()` calls it first.
Not covered: the Megatron, VeOmni, torchtitan and automodel engines, Ulysses sequence parallelism for
the distribution statistics, fused-kernel forwards (they never form the logits), and CaSP's
`candidates: old` (ids from the old pass gathered in the update pass); `install` refuses those it
can see, and the patched loss names any field still missing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from rlvr.harness.backends.verl import NAME_PREFIX, UNSUPPORTED_FIELDS, VERL_VERSION
from rlvr.harness.train.token_stats import default_chunk_size
from rlvr.methods.base import Method
from rlvr.methods.lp_reg import minp_proxy_logprobs
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = ["VerlPatchError", "TARGETS", "check_targets", "install", "logits_stats", "FIELD_PREFIX"]

FIELD_PREFIX = "rlvr_"       # key prefix of our fields in verl's model_output and data

# Fields computed by the patched forward, by pass.
OLD_PASS_FIELDS = frozenset({"proxy_logp"})
UPDATE_PASS_FIELDS = frozenset({"topk_logp", "topk_ids"})

# (module, attribute path, parameter names) that the patch replaces or calls.
TARGETS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("verl.workers.engine.fsdp.transformer_impl", "FSDPEngineWithLMHead.prepare_model_outputs",
     ("self", "output", "output_args", "micro_batch", "logits_processor_func")),
    ("verl.workers.engine.fsdp.transformer_impl", "FSDPEngine._gather_and_unpad_packed",
     ("self", "tensor", "pad_size")),
    ("verl.workers.engine_workers", "ppo_loss", ("config", "model_output", "data", "dp_group")),
    ("verl.workers.utils.losses", "ppo_loss", ("config", "model_output", "data", "dp_group")),
    ("verl.workers.utils.padding", "no_padding_2_padding", ("tensor", "data")),
    ("verl.utils.tensordict_utils", "get_non_tensor_data", ("data", "key", "default")),
    ("verl.trainer.ppo.core_algos", "get_policy_loss_fn", ("name",)),
    ("verl.utils.metric", "Metric.from_dict", ("cls", "data", "aggregation")),
)


class VerlPatchError(RuntimeError):
    """The installed verl is not the release the patch was written for, or a target moved."""


_STATE: dict[str, Any] = {"method": None, "orig_forward": None, "orig_loss": None}


def _resolve(module: str, path: str) -> Any:
    import importlib

    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def check_targets() -> None:
    """Raise VerlPatchError unless verl is 0.9.1 and every target exists with the expected parameters."""
    try:
        import verl
    except ImportError:
        raise VerlPatchError(f"verl is not installed; the rlvr verl backend needs verl=={VERL_VERSION} "
                             f"(pip install 'rlvr-harness[verl]')") from None
    if verl.__version__ != VERL_VERSION:
        raise VerlPatchError(f"rlvr's verl patch is pinned to verl=={VERL_VERSION}, found verl=={verl.__version__}; "
                             f"install verl=={VERL_VERSION} or use a method that needs no patch")
    for module, path, params in TARGETS:
        try:
            obj = _resolve(module, path)
        except (ImportError, AttributeError) as e:
            raise VerlPatchError(f"rlvr's verl patch: {module}.{path} is missing in verl {verl.__version__} "
                                 f"({type(e).__name__}: {e})") from None
        fn = inspect.unwrap(getattr(obj, "__func__", obj))
        got = tuple(inspect.signature(fn).parameters)
        if got[:len(params)] != params:
            raise VerlPatchError(f"rlvr's verl patch: {module}.{path} has parameters {got}, expected {params}")


def install(method: Method) -> None:
    """Patch verl for `method` (idempotent; a second call switches the method). Raises VerlPatchError."""
    check_targets()
    bad = method.requires & UNSUPPORTED_FIELDS
    if bad:
        raise VerlPatchError(f"method {method.name}: {', '.join(sorted(bad))} cannot be computed on the verl "
                             f"backend (for CaSP set candidates: current)")
    from verl.workers import engine_workers
    from verl.workers.engine.fsdp import transformer_impl

    if _STATE["orig_forward"] is None:
        _STATE["orig_forward"] = transformer_impl.FSDPEngineWithLMHead.prepare_model_outputs
        _STATE["orig_loss"] = engine_workers.ppo_loss
        transformer_impl.FSDPEngineWithLMHead.prepare_model_outputs = _prepare_model_outputs
        engine_workers.ppo_loss = ppo_loss
    _STATE["method"] = method


# ---- statistics of the next-token distribution, from logits rows -----------------------------------

def _scaled(z: Tensor, temperature: Tensor) -> Tensor:
    # verl's _scale_logits_by_temperature, in float32 like harness/train/token_stats.py
    return z.float() / temperature.float().clamp(min=1e-8)[:, None]


def _topk_chunk(z: Tensor, temperature: Tensor, top_n: int) -> tuple[Tensor, Tensor]:
    s = _scaled(z, temperature)
    vals, ids = s.topk(top_n, dim=-1)
    return vals - torch.logsumexp(s, dim=-1, keepdim=True), ids


def logits_stats(logits: Tensor, temperature: Tensor, labels: Tensor, fields: frozenset[str], *, top_n: int = 0,
                 minp_kappa: float | None = None, minp_strict: bool = False, minp_raw: bool = False,
                 chunk_size: int | None = None) -> dict[str, Tensor]:
    """Per-row statistics of softmax(logits / temperature), `chunk_size` rows at a time.

    logits [M, V] (the raw model output rows), temperature [M], labels [M] the token each row predicts.
    fields: "proxy_logp" [M] (no grad; needs minp_kappa), "topk_logp" [M, N] (differentiable; each chunk
    is checkpointed, so no [M, V] buffer is kept for the backward) and "topk_ids" [M, N].
    The same quantities as harness/train/token_stats.py computes from hidden states, here from logits
    because verl's forward already formed them.
    """
    chunk = chunk_size or default_chunk_size(logits.shape[-1])
    out: dict[str, list[Tensor]] = {f: [] for f in fields}
    for s in range(0, logits.shape[0], chunk):
        z, t = logits[s:s + chunk], temperature[s:s + chunk]
        if "proxy_logp" in fields:
            with torch.no_grad():
                src = z.float() if minp_raw else _scaled(z, t)    # Lp-Reg's code: the logits before / temperature
                out["proxy_logp"].append(minp_proxy_logprobs(src, labels[s:s + chunk], minp_kappa, minp_strict))
        if "topk_logp" in fields or "topk_ids" in fields:
            if torch.is_grad_enabled() and z.requires_grad:
                lp, ids = checkpoint(_topk_chunk, z, t, top_n, use_reentrant=False)
            else:
                lp, ids = _topk_chunk(z, t, top_n)
            for name, v in (("topk_logp", lp), ("topk_ids", ids)):
                if name in fields:
                    out[name].append(v)
    return {k: torch.cat(v) if v else logits.new_empty((0,)) for k, v in out.items()}


# ---- patched engine forward ----------------------------------------------------------------------

def _logit_rows(engine: Any, output: Any, output_args: dict, micro_batch: Any, use_rmpad: bool
                ) -> tuple[Callable[[Tensor], Tensor], list[tuple[Tensor, Tensor, Tensor]]]:
    """(gather, [(logits rows, temperature, labels)]) laid out like verl's log_probs before they
    become a jagged tensor; `gather` applies what verl applies to log_probs (SP gather, unpad)."""
    from torch.distributed.tensor import DTensor

    logits = output.logits
    if isinstance(logits, DTensor):
        logits = logits.full_tensor()
    labels = output_args["input_ids_rmpad_rolled"]
    if use_rmpad:
        rows = logits.squeeze(0)
        temp = output_args["temperature_rmpad"].reshape(-1)
        if temp.numel() == 1:
            temp = temp.expand(rows.shape[0])
        pad = output_args["pad_size"]
        return (lambda v: engine._gather_and_unpad_packed(v, pad)), [(rows, temp, labels.reshape(-1))]
    temp = output_args["temperature"].reshape(-1)
    lengths = micro_batch["input_ids"].offsets().diff().tolist()
    parts, off = [], 0
    for i, n in enumerate(lengths):
        parts.append((logits[i, :n], temp[i].expand(n), labels[off:off + n]))
        off += n
    return (lambda v: v), parts


def _prepare_model_outputs(self, output, output_args, micro_batch, logits_processor_func):
    from verl.utils import tensordict_utils as tu

    model_output = _STATE["orig_forward"](self, output, output_args, micro_batch, logits_processor_func)
    method = _STATE["method"]
    if method is None:
        return model_output
    get = tu.get_non_tensor_data
    if torch.is_grad_enabled():
        fields = method.requires & UPDATE_PASS_FIELDS
    elif get(data=micro_batch, key="calculate_entropy", default=False):
        # verl 0.9.1's old-log-prob pass asks for entropy; its reference pass does not
        fields = method.requires & OLD_PASS_FIELDS
    else:
        fields = frozenset()
    if not fields:
        return model_output
    if get(data=micro_batch, key="use_fused_kernels", default=False):
        raise VerlPatchError(f"method {method.name} needs the logits, which fused kernels never form; set "
                             f"actor_rollout_ref.model.use_fused_kernels=False")
    if getattr(self, "use_ulysses_sp", False):
        raise VerlPatchError(f"method {method.name}: distribution statistics under Ulysses sequence parallelism "
                             f"are not supported; set ulysses_sequence_parallel_size=1")
    params = method.stat_params()
    use_rmpad = get(data=micro_batch, key="use_remove_padding", default=True)
    gather, parts = _logit_rows(self, output, output_args, micro_batch, use_rmpad)
    stats = [logits_stats(z, t, y, fields, top_n=int(params.get("top_n", 0)),
                          minp_kappa=params.get("minp_kappa"), minp_strict=bool(params.get("minp_strict", False)),
                          minp_raw=bool(params.get("minp_raw", False)))
             for z, t, y in parts]
    offsets = micro_batch["input_ids"].offsets()
    for name in sorted(fields):
        values = gather(torch.cat([s[name] for s in stats]))
        model_output[FIELD_PREFIX + name] = torch.nested.nested_tensor_from_jagged(values, offsets)
    return model_output


# ---- patched loss --------------------------------------------------------------------------------

def ppo_loss(config, model_output, data, dp_group=None):
    """verl's `ppo_loss` for `rlvr_*` loss modes: one call of the registered loss with every field the
    method needs; the method's loss already holds its KL and entropy terms, so verl's are not added
    (the launcher sets entropy_coeff=0; use_kl_loss only makes verl compute reference log-probs)."""
    from verl.trainer.ppo.core_algos import get_policy_loss_fn
    from verl.utils.metric import AggregationType, Metric
    from verl.workers.utils.padding import no_padding_2_padding

    loss_mode = config.policy_loss.get("loss_mode", "vanilla")
    if not loss_mode.startswith(NAME_PREFIX):
        return _STATE["orig_loss"](config, model_output, data, dp_group)

    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    config.global_batch_info["dp_size"] = data["dp_size"]
    config.global_batch_info["batch_num_tokens"] = data["batch_num_tokens"]
    config.global_batch_info["global_batch_size"] = data["global_batch_size"]
    config.global_batch_info["loss_scale_factor"] = config.loss_scale_factor
    global_norm = (data["dp_size"] > 1 or data["batch_num_tokens"] is not None
                   or data["global_batch_size"] is not None or config.loss_scale_factor is not None)

    extra: dict[str, Tensor] = {}
    if model_output.get("entropy", None) is not None:
        extra["entropy"] = no_padding_2_padding(model_output["entropy"], data)
    for source in (model_output, data):
        for key in list(source.keys()):
            if isinstance(key, str) and key.startswith(FIELD_PREFIX):
                extra[key[len(FIELD_PREFIX):]] = no_padding_2_padding(source[key], data)

    fields = ["response_mask", "old_log_probs", "advantages"] + [
        k for k in ("responses", "rm_scores", "ref_log_prob", "rollout_is_weights") if k in data.keys()]
    padded = data.select(*fields).to_padded_tensor()
    if "responses" in padded.keys():
        extra["tokens"] = padded["responses"]
    if "rm_scores" in padded.keys():
        extra["rewards"] = padded["rm_scores"].sum(-1)
    if "ref_log_prob" in padded.keys():
        extra["ref_logp"] = padded["ref_log_prob"]

    loss, stats = get_policy_loss_fn(loss_mode)(
        old_log_prob=padded["old_log_probs"], log_prob=log_prob, advantages=padded["advantages"],
        response_mask=padded["response_mask"].to(bool), loss_agg_mode=config.loss_agg_mode, config=config,
        rollout_is_weights=padded.get("rollout_is_weights", None), **extra)
    metrics = Metric.from_dict({f"rlvr/{k}": v for k, v in stats.items()}, aggregation=AggregationType.MEAN)
    metrics["actor/pg_loss"] = Metric(value=loss, aggregation=AggregationType.SUM if global_norm
                                      else AggregationType.MEAN)
    return loss, metrics
