"""Adapters to external training backends (verl: `rlvr.harness.backends.verl`). Each imports its backend lazily,
so the core installs and tests without it."""
