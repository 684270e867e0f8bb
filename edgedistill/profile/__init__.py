"""Latency and memory of exported files, per hardware target."""

from .compare import interleaved_ratio
from .latency import latency_stats, profile_models, profile_on_first_target

__all__ = ["interleaved_ratio", "latency_stats", "profile_models", "profile_on_first_target"]
