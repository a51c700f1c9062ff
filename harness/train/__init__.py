"""Training: the RLVR loop (`rlvr train`), per-token statistics without full logits, and pre-training of the
micro base model."""
