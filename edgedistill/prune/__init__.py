"""Pruning: structured (Torch-Pruning dependency graph, replayable JSON plans), gradual magnitude, N:M.

Modules: `structured` (channels, filters, heads, FFN neurons), `plan` (record / replay, used by
`models.build_model`), `sparsity` (cubic schedule, magnitude and N:M masks), `allocate` (latency-driven
per-layer ratios), `measure` (MACs, params, interleaved latency), `stage` (the recipe's `prune` stage).
Torch-Pruning is imported lazily (`pip install "edgedistill[prune]"`).
"""
