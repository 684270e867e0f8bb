"""Per-target quantization presets (as Optimum keeps per-ISA ones).

`reduce_range` (7-bit weights) avoids VPMADDUBSW saturation on x86 CPUs without VNNI, which otherwise makes
the same int8 model score differently on different CPUs.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "x86_vnni": {"activation_type": "QUInt8", "weight_type": "QInt8", "reduce_range": False, "per_channel": True},
    "x86_avx2": {"activation_type": "QUInt8", "weight_type": "QInt8", "reduce_range": True, "per_channel": True},
}
