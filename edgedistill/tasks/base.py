"""The task: what every stage asks instead of assuming one float image in and one logits tensor out.

In the spirit of optimum's `OnnxConfig` and Olive's `IoConfig`, a task object owns:
- the model's named inputs and outputs (`TensorSpec`: name, numpy dtype, dims where strings such as
  "batch" and "sequence" are dynamic axes) -- the exporter, the calibration reader, the profiler and the
  bundle all read them;
- how to call a model with a batch of named inputs and read its outputs, whatever it returns (a tensor, a
  tuple, a dict, or a Hugging Face `ModelOutput`) -> `forward`;
- the label loss and the metric, computed from named outputs by one function for torch models and ONNX
  sessions alike (`score` takes a `predict(batch) -> {name: array}` of either kind);
- example inputs for export, tracing, pruning, QAT, calibration and profiling;
- what the bundle needs (preprocessing, labels, input/output spec).

A task is built for one dataset (`build_task`), because the input shape and the number of classes come
from the data. New tasks register a subclass with `@register_task`; each may declare a pydantic `Config`
for the recipe's `task:` section (extra keys forbidden, like every recipe section).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from ..config import Strict
from ..errors import UserError, did_you_mean

if TYPE_CHECKING:  # building the recipe schema imports this module; it must not import torch
    import torch
    from torch import nn

    from ..data import Dataset, Split

# example sizes of dynamic axes, when a caller does not say
DEFAULT_AXES = {"batch": 1, "sequence": 16}

Batch = dict[str, np.ndarray]
# the one predictor signature for torch modules and ONNX sessions: named inputs -> named outputs
Predict = Callable[[Batch], dict[str, np.ndarray]]


@dataclass(frozen=True)
class TensorSpec:
    """One named model input or output. `dims` holds ints (fixed) and strings (dynamic axes, e.g. "batch")."""

    name: str
    dtype: str
    dims: tuple[int | str, ...]

    def shape(self, **axes: int) -> tuple[int, ...]:
        """A concrete shape: dynamic axes take `axes[name]` (default DEFAULT_AXES, else 1)."""
        sizes = {**DEFAULT_AXES, **axes}
        return tuple(d if isinstance(d, int) else int(sizes.get(d, 1)) for d in self.dims)

    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.dims) if isinstance(d, str)}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.dims)}


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool

    def better(self, a: float, b: float) -> bool:
        """Is `a` strictly better than `b`?"""
        return a > b if self.higher_is_better else a < b

    @property
    def worst(self) -> float:
        return -float("inf") if self.higher_is_better else float("inf")


class TaskConfig(Strict):
    """The recipe's `task:` section (a plain string `task: NAME` is short for `task: {kind: NAME}`)."""

    kind: str = Field("image_classification", description="what the model does: picks inputs, outputs, loss and metric")


# ---------------------------------------------------------------- calling models


def unwrap_outputs(out: Any, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Named tensors from whatever a model returned: a tensor, a tuple/list, a dict or a HF `ModelOutput`.

    Dict-like outputs are read by name (the first tensor stands in for the first name when that key is
    missing, e.g. a model that returns {"out": ...}); sequences are read in order."""
    import torch

    if isinstance(out, torch.Tensor):
        return {names[0]: out}
    if isinstance(out, Mapping) or hasattr(out, "to_tuple"):  # HF ModelOutput is an OrderedDict subclass
        items = {k: v for k, v in dict(out).items() if isinstance(v, torch.Tensor)}
        got = {n: items[n] for n in names if n in items}
        if names[0] not in got and items:
            got[names[0]] = next(iter(items.values()))
        return got
    if isinstance(out, tuple | list):
        tensors = [v for v in out if isinstance(v, torch.Tensor)]
        return dict(zip(names, tensors, strict=False))
    return {}


class OutputError(TypeError):
    """A model returned nothing the task can use (the probe turns this into a recipe error)."""


class Task:
    """Base of every task: generic named-I/O behaviour; subclasses set the specs, the loss and the metric."""

    kind: ClassVar[str] = ""
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    # the value of report.json's "task" field (kept stable for the contract's consumers)
    report_name: ClassVar[str] = ""
    # transformers' Auto class a Hugging Face model of this task is built with (models/hf.py)
    hf_auto_class: ClassVar[str] = "AutoModel"

    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    metric: MetricSpec = MetricSpec("metric", True)

    def __init__(self, cfg: TaskConfig, data: Dataset | None) -> None:
        self.cfg, self.data = cfg, data

    # ---- names
    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.outputs)

    # ---- calling a torch model
    def to_torch(self, batch: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        import torch

        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}

    def call(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> Any:
        """The raw call: inputs positionally in the task's order (override for keyword-only models)."""
        return model(*(batch[n] for n in self.input_names))

    def forward(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named output tensors of `model` on a batch of named input tensors."""
        out = unwrap_outputs(self.call(model, batch), self.output_names)
        if self.output_names[0] not in out:
            raise OutputError(f"the model returned {type(out).__name__}, with no tensor for "
                              f'"{self.output_names[0]}"')
        return out

    def primary(self, outputs: Mapping[str, Any]) -> Any:
        """The output the loss and the metric read first (logits, embedding, ...)."""
        return outputs[self.output_names[0]]

    # ---- examples and batches
    def example_inputs(self, batch: int = 1, **axes: int) -> Batch:
        """Zero inputs of the right names, dtypes and shapes (zeros are valid pixels and token ids alike)."""
        return {s.name: np.zeros(s.shape(batch=batch, **axes), dtype=s.dtype) for s in self.inputs}

    def trim(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The batch without padding every row shares (text: trailing all-padding columns); the same by default.

        Padding is masked, so dropping it changes no result, only the cost of the forward pass."""
        return dict(batch)

    def feed(self, split: Split, rows: Any) -> Batch:
        """Named inputs of `rows` (a slice or an index array) of a split, as the model/file expects them.

        The whole of a streamed input (`rows` = `slice(None)`) stays a lazy column: callers that want all rows
        (calibration by index, profiling's first batch) read only the rows they use."""
        from ..data.stream import is_lazy

        whole = isinstance(rows, slice) and rows == slice(None)
        return {n: split.inputs[n] if whole and is_lazy(split.inputs[n]) else np.ascontiguousarray(split.inputs[n][rows])
                for n in self.input_names}

    def feeds(self, split: Split, batch_size: int = 256) -> Iterator[Batch]:
        """`feed` over the whole split in order; a streamed split is decoded by the loader's worker processes."""
        if not getattr(split, "streamed", False):
            for i in range(0, len(split), batch_size):
                yield self.feed(split, slice(i, i + batch_size))
            return
        from ..data.loader import batches, in_order

        for got in batches(split, in_order(len(split), batch_size)):
            yield {n: got["inputs"][n].numpy() for n in self.input_names}

    # ---- loss and metric
    def label_loss(self, outputs: Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute_metric(self, outputs: Mapping[str, np.ndarray], targets: np.ndarray) -> float:
        raise NotImplementedError

    def check_outputs(self, outputs: Mapping[str, Any], batch: int) -> tuple[str, str] | None:
        """(problem, fix) when a model's named outputs on a probe batch cannot serve this task, else None."""
        missing = [n for n in self.output_names[:1] if n not in outputs]
        if missing:
            return f"the model returns no {missing[0]}", f"return {missing[0]} (a tensor) from the model"
        return None

    def score(self, predict: Predict, split: Split, batch_size: int | None = None) -> float:
        """Run `predict` over `split` in batches and compute the metric from the named outputs.

        The default batch is 256 rows, fewer for large inputs (see `rows_per_batch`), so memory stays bounded."""
        from ..data.stream import rows_per_batch

        batch_size = batch_size or rows_per_batch(split, 256)
        outs: dict[str, list[np.ndarray]] = {}
        for batch in self.feeds(split, batch_size):
            got = predict(self.trim(batch))
            for k, v in got.items():
                outs.setdefault(k, []).append(v)
        joined = {k: np.concatenate(v) for k, v in outs.items()}
        return self.compute_metric(joined, split.targets)

    # ---- the bundle
    def io_spec(self) -> dict[str, Any]:
        return {"inputs": [s.to_json() for s in self.inputs], "outputs": [s.to_json() for s in self.outputs]}

    def bundle_meta(self) -> dict[str, Any]:
        """What the bundle's README, model card and snippets need to feed the model the same way."""
        return {"task": self.report_name or self.kind, "task_kind": self.kind, **self.io_spec()}

    def snippets(self, spec: Mapping[str, Any], meta: Mapping[str, Any], mobile_file: str) -> dict[str, str]:
        """The bundle's `usage/` files ({file name: text}), from the file's I/O spec and `bundle_meta()`.
        None by default: a task without snippets still ships the manifest's I/O spec."""
        return {}


TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.kind] = cls
    return cls


# Task modules are imported for registration only; each keeps torch out of its module level.
BUILTIN_TASK_MODULES: tuple[str, ...] = ("edgedistill.tasks.image_classification", "edgedistill.tasks.text_classification",
                                          "edgedistill.tasks.text_embedding")


def load_tasks() -> dict[str, type[Task]]:
    import importlib

    for name in BUILTIN_TASK_MODULES:
        importlib.import_module(name)
    return TASKS


def normalize_task_section(raw: Any, where: str = "task") -> dict[str, Any]:
    """`task: NAME` is short for `task: {kind: NAME}`; an unknown kind is named with the registered ones."""
    tasks = load_tasks()
    if raw is None:
        raw = {}
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, dict):
        raise UserError("task must be a name or a mapping", where=where, fix="e.g. task: image_classification")
    kind = raw.setdefault("kind", "image_classification")
    if kind not in tasks:
        raise UserError(f'unknown task "{kind}"{did_you_mean(str(kind), tasks)}', where=f"{where}.kind",
                        fix=f"use one of: {', '.join(sorted(tasks))}")
    return raw


def build_task(cfg: TaskConfig | None, data: Dataset) -> Task:
    """The task object for one dataset (its input shape and classes come from the data). Without a config,
    the task the dataset's loader names (`Dataset.task`), e.g. for `edgedistill evaluate --data`."""
    tasks = load_tasks()
    if cfg is None:
        kind = data.task if data.task in tasks else "image_classification"
        cfg = tasks[kind].Config()
    return tasks[cfg.kind](cfg, data)

