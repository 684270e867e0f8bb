"""Quantized distillation (Polino et al. 2018): a fake-quantized student learns from the full-precision teacher.

How, with torchao's PT2E flow (the supported successor of torch.ao's deprecated FX mode):
1. BatchNorm is folded into the preceding convolutions first (eval-mode statistics), so what trains is
   exactly what ORT will run: Conv(+bias)+ReLU, no batch statistics to drift. (PT2E could simulate the
   fusion instead, but its convert step then exports ~100 pattern graphs: over a minute on two cores.)
2. `torch.export` captures it (dynamic batch), and `prepare_qat_pt2e` with the X86 Inductor quantizer
   inserts fake-quantize nodes on weights and activations, with the target preset's types (u8/s8,
   symmetric for TensorRT, per-channel, 7-bit weights for `reduce_range`).
3. The shared trainer (`train.fit`) trains it against the teacher with the shared KD objective (`train.distillation_objective`) at the
   stage's own temperature (low temperatures suit low bit-widths). Observers (the scales) update only in
   training mode and are frozen after `observe_epochs`, so late epochs fine-tune weights to fixed grids.
4. `convert_pt2e` turns weights into int8 constants; `torch.onnx.export(dynamo=True)` writes
   that graph as QDQ ONNX, which ORT fuses into int8 kernels. The stage then scores that file.

Supported: convolutional image models. Transformers fail inside the x86 quantizer's linear annotation
(measured with torchao 0.18), so the recipe check refuses QAT for text tasks and the stage turns any
capture/annotation failure into a UserError that names the alternative (post-training quantization).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from .presets import Preset

_FIX = "use method: static (post-training quantization), or a model torch.export can capture"


def require_torchao() -> None:
    """QAT's backends are an optional extra: say how to get them instead of an import traceback."""
    import importlib.util

    missing = [m for m in ("torchao", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"QAT needs {' and '.join(missing)}, which are not installed", where="quantize.method: qat",
                        fix='pip install "edgedistill[qat]", or use method: static')


def quantization_config(preset: Preset, per_channel: bool) -> Any:
    """The PT2E QuantizationConfig that matches an ONNX Runtime preset (the file must hold the grids we trained on)."""
    from torchao.quantization.pt2e import (
        FusedMovingAvgObsFakeQuantize,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationSpec
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import QuantizationConfig

    eps = 2**-12
    if preset.activation_type == "QInt8":
        act_range, act_dtype = (-128, 127), torch.int8
    else:
        act_range, act_dtype = (0, 255), torch.uint8
    symmetric_act = preset.activation_symmetric or act_dtype == torch.int8
    act = QuantizationSpec(
        dtype=act_dtype, quant_min=act_range[0], quant_max=act_range[1],
        qscheme=torch.per_tensor_symmetric if symmetric_act else torch.per_tensor_affine, is_dynamic=False,
        observer_or_fake_quant_ctr=FusedMovingAvgObsFakeQuantize.with_args(observer=MovingAverageMinMaxObserver,
                                                                           eps=eps))
    qmin, qmax = (-64, 63) if preset.reduce_range else (-128, 127)
    observer = MovingAveragePerChannelMinMaxObserver if per_channel else MovingAverageMinMaxObserver
    weight = QuantizationSpec(
        dtype=torch.int8, quant_min=qmin, quant_max=qmax,
        qscheme=torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
        ch_axis=0 if per_channel else None, is_dynamic=False,
        observer_or_fake_quant_ctr=FusedMovingAvgObsFakeQuantize.with_args(observer=observer, eps=eps))
    return QuantizationConfig(act, act, weight, None, is_qat=True)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.export / the ONNX exporter warn about internals a user cannot act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _conv_bn_pairs(model: nn.Module) -> dict[str, str] | None:
    """{conv name: BatchNorm name} for each BN that reads only a conv's output; None if fx cannot trace."""
    from torch import fx

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:
        return None
    modules = dict(model.named_modules())
    pairs = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(node.target), nn.BatchNorm2d | nn.BatchNorm1d):
            src = node.args[0]
            if (getattr(src, "op", None) == "call_module" and len(src.users) == 1
                    and isinstance(modules.get(src.target), nn.Conv2d | nn.Conv1d)):
                pairs[src.target] = node.target
    return pairs


def fold_batchnorm(student: nn.Module) -> nn.Module:
    """A copy with each Conv→BN pair folded into one conv (with bias) and the BN replaced by Identity;
    module names are kept, so the trained weights map back by name."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(student).eval()
    for conv_name, bn_name in (_conv_bn_pairs(model) or {}).items():
        fused = fuse_conv_bn_eval(model.get_submodule(conv_name), model.get_submodule(bn_name))
        model.set_submodule(conv_name, fused)
        model.set_submodule(bn_name, nn.Identity())
    return model


def _capture(model: nn.Module, input_shape: tuple[int, ...]) -> Any:
    batch = torch.export.Dim("batch", min=1)
    example = (torch.zeros((2, *input_shape)),)
    return torch.export.export(model, example, dynamic_shapes=({0: batch},)).module()


def prepare_qat(student: nn.Module, input_shape: tuple[int, ...], preset: Preset, per_channel: bool,
                calib_x: torch.Tensor | None = None) -> nn.Module:
    """A fake-quantized PT2E copy of `student` (train/eval switchable), its observers primed on `calib_x`."""
    require_torchao()
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

    quantizer = X86InductorQuantizer().set_global(quantization_config(preset, per_channel))
    try:
        with _quiet():
            captured = _capture(fold_batchnorm(student).train(), input_shape)
            prepared = prepare_qat_pt2e(captured, quantizer)
    except Exception as exc:  # data-dependent control flow, or a layer the x86 quantizer cannot annotate
        raise UserError(f"cannot prepare the student for QAT (torch.export + the PT2E x86 quantizer failed: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                        where="quantize.method: qat", fix=_FIX) from exc
    allow_exported_model_train_eval(prepared)  # the trainer calls train()/eval(): BN and dropout follow
    if calib_x is not None:
        prepared.train()
        with torch.no_grad():
            for i in range(0, len(calib_x), 64):
                if len(calib_x[i : i + 64]) > 1:  # a batch of one breaks BatchNorm in training mode
                    prepared(calib_x[i : i + 64])
    return prepared


def _copy(prepared: nn.Module) -> nn.Module:
    """A deep copy whose train()/eval() switch the copy: GraphModule's deepcopy rebuilds the module, so
    the methods PT2E patched in stay bound to a throwaway object and must be patched in again."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    model = copy.deepcopy(prepared)
    allow_exported_model_train_eval(model)
    return model


class ObserveInTraining(nn.Module):
    """Wraps a QAT graph so its observers update only in training mode, and only for `observe_epochs`.

    The trainer calls `train()` once per epoch and `eval()` for validation; without this, validation batches
    would move the scales. The epoch counter is a buffer, so a resumed run freezes at the same epoch."""

    def __init__(self, model: nn.Module, observe_epochs: int | None) -> None:
        super().__init__()
        self.model = model
        self.observe_epochs = observe_epochs
        self.register_buffer("epochs_started", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> ObserveInTraining:
        from torchao.quantization.pt2e.fake_quantize import disable_observer, enable_observer

        super().train(mode)
        if mode:
            self.epochs_started += 1
        observing = mode and (self.observe_epochs is None or int(self.epochs_started) <= self.observe_epochs)
        self.model.apply(enable_observer if observing else disable_observer)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def convert(prepared: nn.Module) -> nn.Module:
    """The integer model: BN folded, weights as int8 constants, activations as quantize/dequantize pairs."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.fake_quantize import disable_observer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    model = _copy(prepared)
    model.eval()
    model.apply(disable_observer)
    with _quiet():
        converted = convert_pt2e(model)
    allow_exported_model_train_eval(converted)
    converted.eval()
    return converted


def export_qdq(prepared: nn.Module, path: Path, input_shape: tuple[int, ...]) -> Path:
    """Convert the QAT graph and write it as QDQ ONNX."""
    return export_converted(convert(prepared), path, input_shape)


def export_converted(converted: nn.Module, path: Path, input_shape: tuple[int, ...]) -> Path:
    """Write a converted PT2E graph as QDQ ONNX with the dynamo exporter (the TorchScript one cannot read
    PT2E quantize ops); one self-contained file, dynamic batch, the project's input/output names."""
    from ..export.onnx import INPUT_NAME, OUTPUT_NAME
    from ..io import atomic_path

    path = Path(path)
    try:
        with _quiet():
            program = torch.onnx.export(converted, (torch.zeros((2, *input_shape)),), dynamo=True, verbose=False,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        with atomic_path(path) as tmp:
            program.save(str(tmp), external_data=False)
    except Exception as exc:
        raise UserError(f"cannot export the QAT model to ONNX: {type(exc).__name__}: {exc}",
                        where="quantize.method: qat", fix=_FIX) from exc
    return fold_weight_quantizers(path)


def fold_weight_quantizers(path: Path) -> Path:
    """Store weights as int8 initializers read by DequantizeLinear, instead of float + QuantizeLinear, and
    drop the exporter's per-node debug metadata (it made a small QAT file 7× larger than the float one).

    The exporter writes float weights followed by QuantizeLinear, so the QAT file would be *larger* than the
    float one; ORT's own quantizer stores the integers. Computed exactly as QuantizeLinear defines it
    (round half to even, saturate), so the file computes the same thing."""
    import onnx
    from onnx import numpy_helper

    from ..io import atomic_path

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    users: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    drop = []
    for n in graph.node:
        if n.op_type != "QuantizeLinear" or n.input[0] not in inits or len(n.input) < 3 or n.input[2] not in inits:
            continue
        w = numpy_helper.to_array(inits[n.input[0]]).astype(np.float32)
        scale, zp = numpy_helper.to_array(inits[n.input[1]]), numpy_helper.to_array(inits[n.input[2]])
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        shape = [1] * w.ndim
        if scale.size > 1:
            shape[axis % w.ndim] = -1
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(w / scale.reshape(shape)) + zp.reshape(shape).astype(np.int32), info.min, info.max)
        name = n.output[0]
        graph.initializer.append(numpy_helper.from_array(q.astype(zp.dtype), name))
        drop.append(n)
    for n in drop:
        graph.node.remove(n)
    for n in graph.node:  # the dynamo exporter's per-node provenance (fx node, scopes) outweighs a small model
        del n.metadata_props[:]
    still_used = {i for n in graph.node for i in n.input}
    for init in list(graph.initializer):
        if init.name not in still_used:
            graph.initializer.remove(init)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


def float_weights_back(student: nn.Module, prepared: nn.Module) -> nn.Module | None:
    """The QAT-trained weights in the student's own architecture (so checkpoints reload from its spec).

    Each Conv→BatchNorm pair was folded before QAT; the trained conv takes the conv's place and the BN
    becomes an exact identity carrying the bias (γ=1, mean=0, var=1−eps). None if the layers do not map."""
    out = copy.deepcopy(student).eval()
    pairs = _conv_bn_pairs(out)
    if pairs is None:
        return None
    trained = prepared.state_dict()
    with torch.no_grad():
        for name, module in out.named_modules():
            if not isinstance(module, nn.Conv2d | nn.Conv1d | nn.Linear):
                continue
            weight, bias = trained.get(f"{name}.weight"), trained.get(f"{name}.bias")
            if weight is None or weight.shape != module.weight.shape:
                return None
            module.weight.copy_(weight)
            bias = bias if bias is not None else torch.zeros(module.weight.shape[0])
            bn = out.get_submodule(pairs[name]) if name in pairs else None
            if bn is None:
                if module.bias is None:
                    return None
                module.bias.copy_(bias)
                continue
            bn.weight.fill_(1.0)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            if module.bias is not None:
                module.bias.copy_(bias)
                bn.bias.zero_()
            else:
                bn.bias.copy_(bias)
    return out


def fake_vs_file(prepared: nn.Module, path: Path, batch: dict[str, np.ndarray], task: Any) -> dict[str, Any]:
    """Does the exported file compute what the fake-quantized model computed? (the classic QAT drift)."""
    from torchao.quantization.pt2e.fake_quantize import disable_observer

    from ..evaluate import onnx_predictor, torch_predictor

    model = _copy(prepared)
    model.eval()
    model.apply(disable_observer)
    name = task.output_names[0]
    ref = torch_predictor(model, task)(batch)[name]
    got = onnx_predictor(path, output_names=task.output_names)(batch)[name]
    return {"samples": len(ref), "max_abs_diff": float(np.abs(ref - got).max()),
            "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean())}
