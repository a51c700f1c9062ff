"""Reproduction: the micro world (`rlvr reproduce micro`), the paper recipes under reproduce/, and their runner."""
