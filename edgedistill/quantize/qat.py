"""Quantized distillation (Polino et al. 2018): a fake-quantized student learns from the full-precision teacher.

How, with torch.ao.quantization (FX graph mode; still works in torch 2.13, with a deprecation warning):
1. BatchNorm is folded into the preceding convolutions first (`fuse_fx` in eval mode), so what trains is
   exactly what ORT will run: Conv(+bias)+ReLU, no batch statistics to drift.
2. `prepare_qat_fx` inserts fake-quantize modules on weights and activations, with the target preset's
   types (u8/s8, symmetric for TensorRT, per-channel, 7-bit weights for `reduce_range`).
3. The shared trainer (`distill.trainer.fit`) trains it against the teacher with the Hinton KD loss at the
   stage's own temperature (low temperatures suit low bit-widths). Observers (the scales) update only in
   training mode and are frozen after `observe_epochs`, so late epochs fine-tune weights to fixed grids.
4. The fake-quantized graph is exported as QDQ ONNX with those scales; ORT fuses it into int8 kernels.
   The stage then scores that file, never the torch model.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from .presets import Preset


def qconfig_for(preset: Preset, per_channel: bool) -> Any:
    """The torch QConfig that matches an ONNX Runtime preset (the file must hold the grids we trained on)."""
    from torch.ao.quantization import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        QConfig,
    )

    if preset.activation_type == "QInt8":
        act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127,
                                     dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    else:
        scheme = torch.per_tensor_symmetric if preset.activation_symmetric else torch.per_tensor_affine
        act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                     dtype=torch.quint8, qscheme=scheme)
    qmin, qmax = (-64, 63) if preset.reduce_range else (-128, 127)
    if per_channel:
        weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=qmin,
                                        quant_max=qmax, dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                        ch_axis=0)
    else:
        weight = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=qmin, quant_max=qmax,
                                        dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    return QConfig(activation=act, weight=weight)


def _backend_config(preset: Preset):
    from torch.ao.quantization.backend_config import get_native_backend_config, get_tensorrt_backend_config

    # The native (fbgemm/qnnpack) config only places u8 activation observers; TensorRT's allows s8 ones.
    return get_tensorrt_backend_config() if preset.activation_type == "QInt8" else get_native_backend_config()


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
        from torch.ao.quantization import disable_observer, enable_observer

        super().train(mode)
        if mode:
            self.epochs_started += 1
        observing = mode and (self.observe_epochs is None or int(self.epochs_started) <= self.observe_epochs)
        self.model.apply(enable_observer if observing else disable_observer)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def prepare_qat(student: nn.Module, input_shape: tuple[int, ...], preset: Preset, per_channel: bool,
                calib_x: torch.Tensor | None = None) -> nn.Module:
    """BN-folded, fake-quantized copy of `student`, its observers primed on `calib_x` when given."""
    from torch.ao.quantization import QConfigMapping
    from torch.ao.quantization.quantize_fx import fuse_fx, prepare_qat_fx

    backend = _backend_config(preset)
    example = (torch.zeros((1, *input_shape)),)
    try:
        fused = fuse_fx(copy.deepcopy(student).eval(), backend_config=backend)
        prepared = prepare_qat_fx(fused.train(), QConfigMapping().set_global(qconfig_for(preset, per_channel)),
                                  example, backend_config=backend)
    except Exception as exc:  # FX tracing fails on data-dependent control flow
        raise UserError(f"cannot prepare the student for QAT (torch.fx could not trace it): {exc}",
                        where="quantize.method: qat",
                        fix="use method: static (post-training), or make the model symbolically traceable") from exc
    if calib_x is not None:
        prepared.train()
        with torch.no_grad():
            for i in range(0, len(calib_x), 64):
                prepared(calib_x[i : i + 64])
    return prepared


def export_qdq(prepared: nn.Module, path: Path, input_shape: tuple[int, ...], opset: int = 17) -> Path:
    """Write the fake-quantized graph as QDQ ONNX, scales frozen.

    The exporter only accepts full 8-bit ranges, so 7-bit (`reduce_range`) weight quantizers are widened to
    [-128, 127] with their trained scales unchanged, after clipping the weights to the 7-bit grid's ends:
    the file then stores exactly the integers the model trained with."""
    from torch.ao.quantization import FakeQuantize, disable_observer

    from ..export import export_onnx

    model = copy.deepcopy(prepared).eval()
    model.apply(disable_observer)
    with torch.no_grad():
        for module in model.modules():
            fq = getattr(module, "weight_fake_quant", None)
            if not isinstance(fq, FakeQuantize) or fq.quant_min == -128:
                continue
            # clip the float weights to the trained grid's ends, so the file's wider Q lands on the same values
            shape = [-1] + [1] * (module.weight.dim() - 1) if fq.scale.numel() > 1 else [1]
            s, zp = fq.scale.reshape(shape), fq.zero_point.reshape(shape).float()
            lo, hi = (fq.quant_min - zp) * s, (fq.quant_max - zp) * s
            module.weight.copy_(torch.maximum(torch.minimum(module.weight, hi), lo))
            fq.quant_min, fq.quant_max = -128, 127
            fq.activation_post_process.quant_min, fq.activation_post_process.quant_max = -128, 127
    export_onnx(model, path, input_shape, opset)
    return fold_weight_quantizers(path)


def fold_weight_quantizers(path: Path) -> Path:
    """Store weights as int8 initializers read by DequantizeLinear, instead of float + QuantizeLinear.

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
    from torch import fx

    out = copy.deepcopy(student).eval()
    try:
        graph = fx.symbolic_trace(out).graph
    except Exception:
        return None
    modules = dict(out.named_modules())
    trained = dict(prepared.named_modules())
    bn_of: dict[str, str] = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(node.target), nn.BatchNorm2d | nn.BatchNorm1d):
            src = node.args[0]
            if getattr(src, "op", None) == "call_module" and isinstance(modules.get(src.target), nn.Conv2d | nn.Linear):
                bn_of[src.target] = node.target
    with torch.no_grad():
        for name, module in modules.items():
            if not isinstance(module, nn.Conv2d | nn.Linear):
                continue
            src = trained.get(name)
            if src is None or getattr(src, "weight", None) is None or src.weight.shape != module.weight.shape:
                return None
            module.weight.copy_(src.weight)
            bias = src.bias if src.bias is not None else torch.zeros(module.weight.shape[0])
            bn = modules[bn_of[name]] if name in bn_of else None
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


def fake_vs_file(prepared: nn.Module, path: Path, x: np.ndarray) -> dict[str, Any]:
    """Does the exported file compute what the fake-quantized model computed? (the classic QAT drift)."""
    from torch.ao.quantization import disable_observer

    from ..evaluate import onnx_predictor, torch_predictor

    model = copy.deepcopy(prepared).eval()
    model.apply(disable_observer)
    ref, got = torch_predictor(model)(x), onnx_predictor(path)(x)
    return {"samples": len(x), "max_abs_diff": float(np.abs(ref - got).max()),
            "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean())}
