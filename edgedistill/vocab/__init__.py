"""Vocabulary pruning as a pipeline stage (see stage.py)."""
