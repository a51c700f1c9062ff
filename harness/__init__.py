"""rlvr-harness core: pass@k, run store, sampling, verification, training loop, reports, CLI.

Heavy optional dependencies (vllm, verl, lm-eval) are imported only inside the modules that need them.
"""

__version__ = "0.1.0"
