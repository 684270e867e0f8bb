"""Per-target quantization presets (as Optimum keeps per-ISA ones); a target names its preset in `quant_preset`.

Why each differs:
- `x86_vnni`: u8 activations × s8 weights, full 8-bit range. VNNI's VPDPBUSD accumulates in 32 bits, so
  nothing saturates.
- `x86_avx2`: the same types but `reduce_range` (7-bit weights). Without VNNI, ORT's kernels use
  VPMADDUBSW, whose 16-bit intermediate saturates with full-range weights; the same int8 model then scores
  differently on CPUs with and without VNNI. 7-bit weights keep the result identical everywhere.
- `arm64`: u8 activations × s8 per-channel weights (ORT: on ARM64, U8S8 is as accurate as U8U8 and at least
  as fast; s8 keeps symmetric weights at zero-point 0).
- `tensorrt`: TensorRT's explicit quantization wants symmetric int8 everywhere: zero-points 0 for
  activations and weights, per-channel weights, and Q/DQ pairs kept on the weights (it folds them itself).
- `fp16`: no integer quantization; the float graph is converted to float16 (GPUs, Jetson).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..errors import UserError, did_you_mean


@dataclass(frozen=True)
class Preset:
    name: str
    precision: Literal["int8", "fp16"] = "int8"
    activation_type: Literal["QUInt8", "QInt8"] = "QUInt8"
    weight_type: Literal["QUInt8", "QInt8"] = "QInt8"
    activation_symmetric: bool = False
    weight_symmetric: bool = True
    per_channel: bool = True
    reduce_range: bool = False
    extra_options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    "x86_vnni": Preset("x86_vnni"),
    "x86_avx2": Preset("x86_avx2", reduce_range=True),
    "arm64": Preset("arm64"),
    "tensorrt": Preset("tensorrt", activation_type="QInt8", activation_symmetric=True,
                       extra_options={"AddQDQPairToWeight": True, "DedicatedQDQPair": True}),
    "fp16": Preset("fp16", precision="fp16", per_channel=False),
}


def get_preset(name: str, where: str = "quant_preset") -> Preset:
    """The named preset, or a UserError that lists the known ones."""
    if name not in PRESETS:
        raise UserError(f'unknown quantization preset "{name}"{did_you_mean(name, PRESETS)}', where=where,
                        fix=f"use one of: {', '.join(PRESETS)}")
    return PRESETS[name]
