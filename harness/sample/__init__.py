"""Sampling: models (local or hub), the `hf` engine with its shared-prefix (cascade) decoder, the vLLM engine, and
vLLM rollouts for training. Reads tasks only through the prompts it is given."""
