"""Latency and memory of exported files, per hardware target."""

from .compare import interleaved_ratio
from .latency import latency_stats, profile_models

__all__ = ["interleaved_ratio", "latency_stats", "profile_models"]
