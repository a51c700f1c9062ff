"""Our methods and verifiers inside verl (multi-GPU, multi-node training with Ray, FSDP and vLLM).

Four pieces, each a module:

* `launch`  -- translates a `rlvr train` YAML into a `python -m verl.trainer.main_ppo` launch (Hydra
  overrides, environment, parquet data files). Pure Python: needs neither verl nor a GPU.
* `plugin`  -- imported in every Ray worker through verl's `VERL_USE_EXTERNAL_MODULES` hook; registers
  every method of ours as a verl advantage estimator and policy loss named `rlvr_<method>`, reading the
  method's hyperparameters from the `RLVR_VERL_METHOD` environment variable (JSON of our `method:` block).
* `patch`   -- the version-gated monkeypatch of verl 0.9.1 that gives our losses what verl's loss never
  receives: entropy, reference log-probs, sampled tokens, rewards, and the per-token statistics of the
  full next-token distribution (Lp-Reg's min-p proxy, CaSP's top-N).
* `reward`  -- verl's custom reward function, calling our task verifiers in a process pool.

Names shared by the pieces live here, so the launcher can use them without importing verl.
"""

from __future__ import annotations

__all__ = ["VERL_VERSION", "NAME_PREFIX", "PLUGIN_MODULE", "METHOD_ENV", "VERIFY_WORKERS_ENV",
           "VERIFY_DEADLINE_ENV", "UNSUPPORTED_FIELDS", "verl_name"]

# The one verl release the plugin and the patch are written and tested against (pyproject's `verl` extra).
VERL_VERSION = "0.9.1"

# verl already has an estimator called "grpo"; ours are all registered under this prefix.
NAME_PREFIX = "rlvr_"

PLUGIN_MODULE = "rlvr.harness.backends.verl.plugin"
METHOD_ENV = "RLVR_VERL_METHOD"              # JSON of the `method:` block: {"name": "lp_reg", "rho": 0.01}
VERIFY_WORKERS_ENV = "RLVR_VERIFY_WORKERS"    # verifier processes per verl reward worker
VERIFY_DEADLINE_ENV = "RLVR_VERIFY_DEADLINE_S"

# TokenBatch fields the verl backend cannot produce (CaSP's `candidates: old`; see patch.py)
UNSUPPORTED_FIELDS = frozenset({"old_topk_ids", "logp_at_old_topk"})


def verl_name(method: str) -> str:
    """The name a method of ours has in verl's registries: `rlvr_<method>`."""
    return NAME_PREFIX + method
