"""torch → ExecuTorch `.pte` with the XNNPACK delegate, float or static int8 (PT2E), and running it here.

The path is ExecuTorch's own: `torch.export` → (int8: `prepare_pt2e` with the `XNNPACKQuantizer`, calibrated on
real samples, `convert_pt2e`, export again) → `to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])`
→ `to_executorch()`. What the partitioner did not take runs on ExecuTorch's portable (reference) kernels,
which is the usual reason an ExecuTorch model is slow; `delegation_summary` lists those ops.

The file has a static batch of 1 (what a phone app sends); `pte_predictor` feeds larger batches row by row, so
the metric is computed by the task's own `score` on the file's outputs, as for ONNX. ExecuTorch's Python
runtime (`executorch.runtime`) links libtorch, so running a `.pte` in Python needs torch installed; on a phone
the C++/Java/Swift runtime does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UserError
from ..io import atomic_path

if TYPE_CHECKING:
    from torch import nn

    from ..tasks import Task

EXECUTORCH_PIN = "1.5.1"  # the version the bundle's snippets are written against (pyproject's [executorch] extra)
DELEGATES = ("xnnpack",)
# Graph nodes that are bookkeeping, not kernels: reading a delegate's outputs, calling the delegate.
_NOT_KERNELS = {"getitem", "executorch_call_delegate"}
# ExecuTorch's ScalarType codes (runtime/core/portable_type/scalar_type.h) for the dtypes a task can ask for
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
                11: "bool"}


def executorch_status() -> tuple[bool, str]:
    """(usable, reason): the ExecuTorch Python runtime imports and has the XNNPACK backend compiled in."""
    try:
        import executorch  # noqa: F401
    except ImportError:
        return False, f'executorch is not installed (pip install "edgedistill[executorch]", executorch=={EXECUTORCH_PIN})'
    try:
        import torch  # noqa: F401  (the runtime's extension links libtorch)
        from executorch.extension.pybindings import _C
    except Exception as exc:  # a broken install is "unusable, and why", never a crash
        return False, f"executorch does not load here ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    if not _C._is_available("XnnpackBackend"):
        return False, "this executorch build has no XNNPACK backend"
    from executorch.version import __version__

    return True, f"executorch {__version__} with the XNNPACK backend"


def require_executorch(where: str) -> None:
    ok, why = executorch_status()
    if not ok:
        raise UserError(f"ExecuTorch is needed here but unusable: {why}", where=where,
                        fix=f'pip install "edgedistill[executorch]" (executorch=={EXECUTORCH_PIN}), or remove the '
                        "executorch stage/target")


def _quiet():
    import contextlib
    import logging
    import warnings

    @contextlib.contextmanager
    def ctx():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            level = logging.getLogger().level
            logging.getLogger().setLevel(logging.ERROR)
            try:
                yield
            finally:
                logging.getLogger().setLevel(level)

    return ctx()


def _module(model: nn.Module, task: Task) -> tuple[nn.Module, tuple[Any, ...]]:
    """The module to export (taking the task's inputs positionally, returning its outputs) and a batch-1 example."""
    import torch

    from .onnx import _named_module

    arrays = task.example_inputs(batch=1)
    inputs = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    model.eval()  # (a converted PT2E module's patched eval() returns None)
    module = _named_module(model, task, inputs)
    return module, tuple(inputs[n] for n in task.input_names)


def quantize_pt2e(model: nn.Module, task: Task, calibration: Iterable[Mapping[str, np.ndarray]],
                  per_channel: bool = True) -> nn.Module:
    """Static int8 for XNNPACK: int8 symmetric activations and (per-channel) weights, ranges from `calibration`
    (batches of named inputs; fed one row at a time, the shape the file is exported with)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    module, example = _module(model, task)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    with _quiet():
        captured = torch.export.export(module, example).module()
        prepared = prepare_pt2e(captured, quantizer)
        with torch.no_grad():
            for batch in calibration:
                rows = len(next(iter(batch.values())))
                for i in range(rows):
                    prepared(*(torch.from_numpy(np.ascontiguousarray(batch[n][i:i + 1])) for n in task.input_names))
        converted = convert_pt2e(prepared)
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    allow_exported_model_train_eval(converted)  # export_pte calls .eval() on every model it gets
    return converted


def delegation_summary(edge_program: Any) -> dict[str, Any]:
    """Which ops the delegate took and which fell back to the portable kernels (op → count)."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge_program.exported_program().graph_module)
    portable: dict[str, int] = {}
    delegated: dict[str, int] = {}
    for op, d in info.delegation_by_operator.items():
        if op in _NOT_KERNELS:
            continue
        if d.non_delegated:
            portable[op] = portable.get(op, 0) + int(d.non_delegated)
        if d.delegated:
            delegated[op] = delegated.get(op, 0) + int(d.delegated)
    return {"delegated_subgraphs": int(info.num_delegated_subgraphs), "delegated_nodes": sum(delegated.values()),
            "portable_nodes": sum(portable.values()), "delegated_ops": dict(sorted(delegated.items())),
            "portable_ops": dict(sorted(portable.items()))}


def export_pte(model: nn.Module, path: str | Path, task: Task, *, delegate: str = "xnnpack",
               quantized_from: nn.Module | None = None) -> dict[str, Any]:
    """Write `path` (.pte) lowered to `delegate`; returns the delegation summary.

    `model` is the float student (or, for int8, the converted PT2E module from `quantize_pt2e`)."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if delegate not in DELEGATES:
        raise UserError(f'unknown ExecuTorch delegate "{delegate}"', where="delegate", fix="use xnnpack")
    path = Path(path)
    module, example = _module(model, task)
    with _quiet():
        program = torch.export.export(module, example)
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        summary = delegation_summary(edge)
        buffer = edge.to_executorch().buffer
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buffer)
    return {"delegate": delegate, **summary}


# ---------------------------------------------------------------------------------------------- running
def load_method(path: str | Path, threads: int | None = 1):
    """The `forward` method of a .pte, on a runtime whose threadpool has `threads` threads (the probe's loader,
    so scoring, verifying and timing open a file the same way)."""
    from ..profile.probe import load_pte

    return load_pte(str(path), threads)


def pte_io(method: Any) -> dict[str, list[dict[str, Any]]]:
    """Shapes and dtypes of the method's inputs and outputs, as the file declares them (names are the task's)."""
    meta = method.method_meta()

    def info(t: Any) -> dict[str, Any]:
        return {"shape": [int(d) for d in t.sizes()], "dtype": SCALAR_TYPES.get(int(t.dtype()), str(t.dtype()))}

    return {"inputs": [info(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())],
            "outputs": [info(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())]}


def pte_predictor(path: str | Path, task: Task, threads: int | None = 1):
    """`predict({name: array}) -> {name: array}` running the .pte in ExecuTorch, one row at a time (the file
    has a static batch of 1), so `task.score` computes the metric exactly as it does for ONNX."""
    import torch

    method = load_method(path, threads)
    names_in, names_out = list(task.input_names), list(task.output_names)

    def predict(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = len(batch[names_in[0]])
        outs: list[list[np.ndarray]] = []
        for i in range(rows):
            got = method([torch.from_numpy(np.ascontiguousarray(batch[n][i:i + 1])) for n in names_in])
            outs.append([o.detach().numpy().copy() for o in got])
        return {n: np.concatenate([o[j] for o in outs]) for j, n in enumerate(names_out[: len(outs[0]) if outs else 0])}

    return predict


def evaluate_pte(path: str | Path, split: Any, task: Task, threads: int | None = 1) -> float:
    """The task's metric of the .pte on `split`, measured in ExecuTorch's runtime."""
    return task.score(pte_predictor(path, task, threads), split)
