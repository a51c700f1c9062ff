"""`rlvr eval`, `rlvr regrade`, `rlvr merge`: sampling, verification and the run store put together."""
