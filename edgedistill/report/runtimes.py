"""Artifacts for runtimes other than ONNX Runtime (ExecuTorch's .pte), measured beside the ONNX files.

`report.build.finish_run` asks this module three things: which extra files the run ships (`extra_artifacts`,
found in the lineage, so `--resume` finds them too), how to score a file (`score_file`: the same task scoring
path, in the runtime the file names) and which files a target times (`files_for_target`: an ExecuTorch target
times the .pte beside the ONNX files, in one interleaved run, so the two runtimes are compared as ratios).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..state import ModelState
    from ..target import Target
    from ..tasks import Task

EXECUTORCH_MODEL = "deployed_executorch"  # its key in report.json's models


def executorch_details(state: ModelState) -> dict[str, Any] | None:
    """The last executorch stage's details (what it shipped and why), or None."""
    for record in reversed(state.lineage):
        if record.kind == "executorch":
            return (record.details or {}).get("executorch")
    return None


def extra_artifacts(state: ModelState, run_dir: Path, compare: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """{report model name: (a copy under compare/, its report entry without metric/latency)}."""
    import shutil

    from ..io import atomic_path

    et = executorch_details(state)
    if not et:
        return {}
    src = Path(run_dir) / et["shipped"]
    dst = compare / "deployed.pte"
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    info = et["files"][et["precision"]]
    from ..export.executorch import EXECUTORCH_PIN

    entry = {"path": "bundle/model.pte", "runtime": "executorch", "runtime_version": _executorch_version(),
             "runtime_pin": EXECUTORCH_PIN, "delegate": et["delegate"], "precision": et["precision"],
             "metric_measured_on": "executorch", "portable_ops": info["portable_ops"],
             "delegated_nodes": info["delegated_nodes"], "portable_nodes": info["portable_nodes"],
             "keep": (et.get("keep") or {}).get("reason")}
    return {EXECUTORCH_MODEL: (dst, entry)}


def _executorch_version() -> str | None:
    try:
        from executorch.version import __version__
    except ImportError:
        return None
    return str(__version__)


def file_runtime(path: Path) -> str:
    """The runtime an exported file is scored in: its suffix says (.pte: ExecuTorch, else ONNX Runtime)."""
    return "executorch" if Path(path).suffix == ".pte" else "onnxruntime"


def predictor(path: Path, task: Task):
    """`predict({name: array}) -> {name: array}` for an exported file, in its own runtime."""
    if file_runtime(path) == "executorch":
        from ..export.executorch import pte_predictor

        return pte_predictor(path, task)
    from ..evaluate import onnx_predictor

    return onnx_predictor(path, output_names=task.output_names)


def score_file(path: Path, split: Any, task: Task) -> float:
    """The task's metric of an exported file, run in the runtime its suffix names (one scoring path)."""
    return task.score(predictor(path, task), split)


def files_for_target(files: Mapping[str, Path], target: Target, batch: int) -> dict[str, Path]:
    """What `target` times: ONNX files everywhere; .pte files only on ExecuTorch targets (at batch 1, the
    shape they are exported with), together with the ONNX files so both runtimes share one interleaved run."""
    runs_pte = target.runtime == "executorch" and batch == 1
    return {n: p for n, p in files.items() if Path(p).suffix != ".pte" or runs_pte}


def runtime_of(path: Path, target: Target) -> str:
    """The runtime a file is timed in on `target` (ONNX files run in TensorRT on a TensorRT target)."""
    runtime = file_runtime(path)
    return "tensorrt" if runtime == "onnxruntime" and target.runtime == "tensorrt" else runtime


def model_options(files: Mapping[str, Path], task: Task) -> dict[str, dict[str, Any]]:
    """Per-file probe options: a .pte carries no input names, so the probe gets the task's."""
    return {n: {"input_names": list(task.input_names)} for n, p in files.items() if Path(p).suffix == ".pte"}


def bundle_extras(files: Mapping[str, Path], models: Mapping[str, Mapping[str, Any]]) -> list[Any]:
    """What `write_bundle` ships beside model.onnx: the .pte with its measured entry."""
    if EXECUTORCH_MODEL not in files:
        return []
    from .bundle_executorch import PteArtifact

    return [PteArtifact(Path(files[EXECUTORCH_MODEL]), dict(models[EXECUTORCH_MODEL]),
                        dict(models["deployed"].get("latency") or {}))]
