"""Latency and memory of exported files on a hardware target.

Milliseconds from separate runs on a shared machine are not comparable, so models that will be compared
are timed together: each in its own fresh worker process (so one model's allocations do not color
another's, and peak memory is the model's own), with bursts interleaved across the workers. The timing
code is `probe.py`, a self-contained script that also runs unchanged on remote devices over SSH.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..progress import progress_callback
from ..target import Target, availability
from . import probe
from .probe import ProbeError, latency_stats

__all__ = ["latency_stats", "probe_config", "profile_models"]


def probe_config(target: Target, *, batch: int, threads: int | None, runs: int, warmup: int, burst: int,
                 time_budget_s: float | None, op_profile_runs: int, sequence: int | None = None,
                 rounds: int = 3) -> dict[str, Any]:
    """The JSON the probe reads: everything about *how* to time, nothing about *where* the files are."""
    return {"runtime": target.runtime, "providers": target.providers, "provider_options": target.provider_options,
            "threads": threads or target.threads, "batch": batch, "shapes": target.input_shapes or None,
            "precision": target.precision, "runs": runs, "warmup": warmup, "burst": burst, "rounds": rounds,
            "time_budget_s": time_budget_s if time_budget_s is not None else target.time_budget_s,
            "op_profile_runs": op_profile_runs, "seed": 0, "sequence": sequence}


def profile_models(
    paths: Mapping[str, str | Path],
    target: Target,
    *,
    batch: int = 1,
    threads: int | None = None,
    runs: int = 100,
    warmup: int = 10,
    burst: int = 10,
    feed: Mapping[str, np.ndarray] | None = None,
    time_budget_s: float | None = None,
    op_profile_runs: int = 20,
    sequence: int | None = None,
    model_options: Mapping[str, Mapping[str, Any]] | None = None,
    rounds: int = 3,
) -> dict[str, dict[str, Any]]:
    """Time each model `runs` times (after `warmup`), interleaving bursts of `burst` runs across the models.

    The bursts are split over `rounds` rounds of fresh worker processes (probe.coordinate says why).

    Returns {name: {p50_ms, p90_ms, p99_ms, mean_ms, std_ms, min_ms, cv, throughput_per_s, batch, threads,
    runs, samples_ms, peak_rss_mb, session_rss_mb, ops, host, target, ...}}. A target this machine cannot
    run raises UserError with the reason: callers check `availability` first and record the skip.
    `model_options` sets ONNX Runtime session options per model ({name: {"session_config": {key: value},
    "graph_optimization_level": "ORT_ENABLE_ALL"}}), so one file can be timed under several options."""
    if rounds < 1:
        raise UserError("rounds must be at least 1", where="profile.rounds", fix="use 3 (the default)")
    if runs < 1:
        raise UserError("runs must be at least 1", where="--runs", fix="pass --runs 100 or more")
    files = {}
    for name, p in paths.items():
        p = Path(p)
        if not p.is_file():
            raise UserError("model file not found", where=str(p), fix="check the path to the .onnx file")
        files[name] = p.resolve()
    ok, why = availability(target)
    if not ok:
        raise UserError(f"target {target.name} is not usable on this machine: {why}", where="--target",
                        fix="pick a target that `edgedistill doctor` lists as usable, or set ssh_host in the target")
    config = probe_config(target, batch=batch, threads=threads, runs=runs, warmup=warmup, burst=burst,
                          time_budget_s=time_budget_s, op_profile_runs=op_profile_runs, sequence=sequence,
                          rounds=rounds)
    if model_options:
        config["model_options"] = {n: dict(o) for n, o in model_options.items()}
    with tempfile.TemporaryDirectory(prefix="edgedistill-feed-") as tmp:
        if feed:
            np.savez(Path(tmp) / "feed.npz", **{k: np.asarray(v) for k, v in feed.items()})
            config["feed"] = str(Path(tmp) / "feed.npz")
        if target.remote:
            from .remote import run_remote

            result = run_remote(files, target, config)
        else:
            config["models"] = {n: str(p) for n, p in files.items()}
            try:
                with progress_callback(f"profiling on {target.name}") as on_burst:
                    result = probe.coordinate(config, on_burst=on_burst)
            except ProbeError as exc:
                raise UserError(f"cannot time the model: {exc}", where=str(files[exc.model]),
                                fix="check that the file is a valid ONNX model for this target's runtime") from exc
    host = result["host"]
    if feed and sequence is None:  # a fed text model: its token axis is the feed's second dimension
        seq = {int(v.shape[1]) for v in feed.values() if np.asarray(v).ndim == 2 and np.issubdtype(np.asarray(v).dtype, np.integer)}
        sequence = seq.pop() if len(seq) == 1 else None
    extra = {"sequence": int(sequence)} if sequence else {}
    return {name: {**stats, **extra, "target": target.name, "cpu": host["cpu"], "host": host,
                   "remote": target.ssh_destination if target.remote else None}
            for name, stats in result["models"].items()}



def real_feed(samples: Mapping[str, np.ndarray] | None, batch: int) -> dict[str, np.ndarray] | None:
    """The first `batch` rows of every named input, or None (synthetic inputs) when there are too few."""
    if not samples or any(len(v) < batch for v in samples.values()):
        return None
    return {k: np.ascontiguousarray(v[:batch]) for k, v in samples.items()}


def fit_sequence(samples: Mapping[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """Token inputs (2-D integer arrays) made exactly `length` real tokens long, so a text model is timed at
    the sequence length a target asks for on what an app would send.

    A longer row is cut. A shorter row is filled by repeating its own tokens (attention mask 1 throughout),
    not by masked padding: at batch 1 an app pads nothing, and masked padding drives the attention softmax
    to values so small (denormal floats) that x86 CPUs slow down on them, which real text never does."""
    arrays = {k: np.asarray(v) for k, v in samples.items()}
    tokens = {k for k, v in arrays.items() if v.ndim == 2 and np.issubdtype(v.dtype, np.integer)}
    if not tokens:
        return {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    first = arrays[next(iter(tokens))]
    mask = arrays.get("attention_mask")
    valid = (mask != 0).sum(axis=1) if "attention_mask" in tokens else np.full(len(first), first.shape[1])
    index = np.stack([np.arange(length) % max(int(n), 1) for n in valid])  # row i: its first valid tokens, cycled
    out = {}
    for k, v in arrays.items():
        out[k] = np.ascontiguousarray(np.take_along_axis(v, index, axis=1) if k in tokens else v)
    return out


def recipe_feed(samples: Mapping[str, np.ndarray] | None, target: Target, profile_cfg: Any) -> dict[str, np.ndarray] | None:
    """Real samples shaped as the recipe profiles them on `target`: its first batch size and, for a text model,
    its first sequence length (the recipe's `profile:` settings win over the target's)."""
    lengths = getattr(profile_cfg, "sequence_lengths", None) or target.sequence_lengths
    if samples and lengths:  # a text model is judged at the token length the target is profiled at
        samples = fit_sequence(samples, lengths[0])
    return real_feed(samples, profile_cfg.batch or target.batch_sizes[0])


def profile_on_first_target(
    files: Mapping[str, str | Path],
    target_names: Sequence[str],
    profile_cfg: Any,
    samples: Mapping[str, np.ndarray] | None = None,
) -> tuple[Target | None, dict[str, dict[str, Any]], list[str]]:
    """Time `files` side by side on the first of the recipe's targets this machine can run.

    Stages that must judge a change by latency (pruning ratios, the quantization keep policy) use this, with
    the recipe's `profile:` settings and real samples as input (`samples`: a split's named inputs, which are
    the exported files' input names). Returns (target, stats per file, why other
    targets were skipped); the target is None, with no stats, when none is usable here — never a guess.
    """
    from ..target import first_available

    target, reasons = first_available(list(target_names))
    if target is None:
        return None, {}, reasons or ["the recipe lists no targets"]
    batch = profile_cfg.batch or target.batch_sizes[0]
    feed = recipe_feed(samples, target, profile_cfg)
    stats = profile_models(files, target, batch=batch, threads=profile_cfg.threads, runs=profile_cfg.runs,
                           warmup=profile_cfg.warmup, burst=profile_cfg.burst, feed=feed, op_profile_runs=0)
    return target, stats, reasons
