"""Latency and memory of exported files, per hardware target."""

from .latency import latency_stats, profile_models

__all__ = ["latency_stats", "profile_models"]
