"""Adapters to external training backends (verl: `harness.backends.verl`). Each imports its backend lazily,
so the core installs and tests without it."""
