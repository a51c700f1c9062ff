"""vLLM rollouts for `rlvr train` (`rollout_engine: vllm`): one GPU, vLLM colocated with the training model, the
policy's weights pushed into vLLM after every optimizer step.

The mechanism is vLLM's native weight-transfer API with its CUDA-IPC backend (vLLM >= 0.27; sources and the
history of the API in docs/vllm-rollouts.md):

  inference side  `LLM(..., weight_transfer_config=WeightTransferConfig(backend="ipc"))`
  trainer side    `WeightTransferTrainerFactory.trainer_init(init_info=IPCTrainerInitInfo(rank=0, packed=False),
                   client=..., source=ModuleSource(model))`, then `send_weights()` once per sync

`send_weights()` drives start_weight_update -> update_weights -> finish_weight_update through a client. vLLM ships
clients for Ray actors and HTTP servers; `LLMWeightSyncClient` is the same four-method protocol over the `LLM`
object in this process (vLLM's docs: any object with those four methods is a client). `ModuleSource` sends
`named_parameters()` under their Hugging Face names, which are the checkpoint names `LLM.load_weights` expects,
so no name mapping is needed. Unpacked IPC hands vLLM views of the parameters themselves: no copy on the
trainer side. vLLM leaves resetting its prefix cache to the caller after a weight update (vllm#46125), so
`sync_weights` does it: cached prompt KV computed with the old weights must not be reused.

With `vllm.sleep`, vLLM's weights and KV cache are discarded (sleep level 2) for the update phase and come back
in the order vLLM's sleep-mode docs give for RLHF weight updates: wake_up(tags=["weights"]), update the weights,
wake_up(tags=["kv_cache"]).

Untested on a GPU until a run is recorded (tests/test_vllm_rollout.py, marked gpu).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from rlvr.harness.errors import UserError
from rlvr.harness.sample.engine import encode_prompt, vllm_generate

INSTALL = "pip install 'rlvr-harness[vllm]'"
MIN_VLLM = "0.27"   # vllm#48981: the stateful trainer-side IPC engine (IPCTrainerInitInfo, send_weights)


def check_vllm_rollouts(device: str) -> None:
    """Fail before any model is loaded, with one line naming the field, when vLLM rollouts cannot run here."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise UserError(f"field 'rollout_engine': vllm is not installed ({INSTALL})") from None
    if not device.startswith("cuda"):
        raise UserError(f"field 'rollout_engine': vllm rollouts need a CUDA device (field 'device' resolved "
                        f"to {device!r})")
    if device not in ("cuda", "cuda:0"):
        # vLLM's engine takes the first visible GPU; the IPC handles must come from that same GPU
        raise UserError(f"field 'device': vllm rollouts run on the first visible GPU; choose it with "
                        f"CUDA_VISIBLE_DEVICES instead of {device!r}")
    if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0":
        # CUDA IPC passes memory between processes: vLLM's engine must run in its own process (vLLM's default)
        raise UserError("field 'rollout_engine': vllm rollouts need vLLM's engine in its own process; unset "
                        "VLLM_ENABLE_V1_MULTIPROCESSING=0")
    weight_transfer_api()


def weight_transfer_api() -> tuple[Any, Any, Any, Any]:
    """(WeightTransferConfig, ModuleSource, WeightTransferTrainerFactory, IPCTrainerInitInfo) from the import
    paths vLLM documents, or a one-line error naming the version this needs."""
    try:
        from vllm.config import WeightTransferConfig
        from vllm.distributed.weight_transfer import ModuleSource, WeightTransferTrainerFactory
        from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo
    except ImportError:
        import vllm

        version = getattr(vllm, "__version__", "unknown")
        raise UserError(f"field 'rollout_engine': vllm {version} lacks the weight-transfer API used for "
                        f"rollouts (needs vllm >= {MIN_VLLM})") from None
    return WeightTransferConfig, ModuleSource, WeightTransferTrainerFactory, IPCTrainerInitInfo


class LLMWeightSyncClient:
    """vLLM's `VLLMWeightSyncClient` protocol over an `LLM` in this process; the request dicts are the ones
    `LLM.init_weight_transfer_engine` / `update_weights` accept, as vLLM's Ray client sends them."""

    def __init__(self, llm: Any):
        self.llm = llm

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self.llm.init_weight_transfer_engine({"init_info": init_info})

    def start_weight_update(self) -> None:
        self.llm.start_weight_update()

    def update_weights(self, update_info: Any) -> None:
        self.llm.update_weights({"update_info": update_info})

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self.llm.finish_weight_update()
        if weight_version is not None:
            self.llm.update_weight_version(weight_version)


class VLLMRolloutEngine:
    """The `vllm` engine's sampling (one request per sample, its own seed) on token-id prompts, on an `LLM`
    built for weight transfer, plus the weight sync.

    Prompts go to vLLM as token ids encoded without special tokens, exactly the ids the trainer scores.
    `make_sender(model)` returns the trainer-side transfer engine for `model` (built once per model).
    """

    name = "vllm"

    def __init__(self, llm: Any, tokenizer: Any, make_sender: Callable[[Any], Any], sleep: bool = False):
        self.llm = llm
        self.tokenizer = tokenizer
        self.sleep_enabled = sleep
        self.asleep = False
        self.syncs = 0
        self._make_sender = make_sender
        self._sender = self._sender_model = None

    def generate(self, requests, params):
        if self.asleep:
            raise RuntimeError("vLLM is asleep: sync_weights must run after sleep and before generate")
        return vllm_generate(self.llm, [({"prompt_token_ids": encode_prompt(self.tokenizer, prompt)}, seeds)
                                        for prompt, seeds in requests], params)

    def sleep(self) -> None:
        """Before the update phase: with `vllm.sleep`, discard vLLM's weights and KV cache (level 2) so that the
        optimizer has that memory. No-op otherwise. `sync_weights` must follow."""
        if self.sleep_enabled and not self.asleep:
            self.llm.sleep(level=2)
            self.asleep = True

    def sync_weights(self, model: Any) -> None:
        """Push `model`'s parameters into vLLM (waking it first if it sleeps) and drop its prefix cache."""
        if self.asleep:
            self.llm.wake_up(tags=["weights"])
        if self._sender is None or self._sender_model is not model:
            self._sender, self._sender_model = self._make_sender(model), model
        self._sender.send_weights()
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        self.llm.reset_prefix_cache()
        self.syncs += 1


def build_vllm_rollout_engine(model_path: str, model: Any, tokenizer: Any, *, seed: int,
                              gpu_memory_utilization: float, max_model_len: int | None, enforce_eager: bool,
                              sleep: bool) -> VLLMRolloutEngine:
    """A vLLM engine on the GPU `model` is on, loaded from `model_path` (the directory or hub id `model` came
    from) in `model`'s dtype, with the IPC weight-transfer backend. Call `sync_weights(model)` before use when
    `model` may differ from `model_path` (the trainer always does)."""
    weight_transfer_config, module_source, factory, ipc_init_info = weight_transfer_api()
    from vllm import LLM

    # The IPC handles (rebuild_cuda_tensor arguments, which hold classes and dtypes) reach vLLM's engine process
    # through its msgpack encoder, which pickles such objects only with this set; vLLM's examples/rl/rlhf_ipc.py
    # sets it for the same reason. It must be set before the engine process starts.
    os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    llm = LLM(model=str(model_path), dtype=dtype, seed=seed, gpu_memory_utilization=gpu_memory_utilization,
              max_model_len=max_model_len, enforce_eager=enforce_eager, enable_sleep_mode=sleep,
              enable_prefix_caching=True, weight_transfer_config=weight_transfer_config(backend="ipc"))
    client = LLMWeightSyncClient(llm)

    def make_sender(m: Any) -> Any:
        # rank 0 = the sender (the only trainer rank here); unpacked: vLLM reads the parameters in place
        return factory.trainer_init(init_info=ipc_init_info(rank=0, packed=False), client=client,
                                    source=module_source(m))

    return VLLMRolloutEngine(llm, tokenizer, make_sender, sleep=sleep)
