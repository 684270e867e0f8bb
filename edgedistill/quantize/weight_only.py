"""4-bit weight-only quantization through ONNX Runtime's own `matmul_nbits_quantizer`.

- MatMul weights → `MatMulNBits` (block-wise int4, `accuracy_level` picks the kernel's compute type: 4 = int8
  compute). On x86 at sequence length 128 it was *slower* than fp32 for all-MiniLM-L6-v2 (docs/text.md), so the
  stage only ships it when the keep policy's measurement says so.
- The word-embedding table (a Gather on a constant) → `GatherBlockQuantized`: for a sentence encoder the table
  is most of the file (30522×384 of 22.7M parameters) and a lookup costs nothing, so int4 here shrinks the
  file without slowing it. The ops need int4 tensors, i.e. opset 21: the source is converted first, or the
  quantizer writes a file that ONNX Runtime rejects.

Both need the `onnx_ir` package, which ORT's quantizer imports (pip install "edgedistill[text]").
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import UserError
from ..io import atomic_path

INT4_OPSET = 21


def _quantizer():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:  # the module calls logging.basicConfig(level=INFO) on import: undo it, or every later ORT call logs
        from onnxruntime.quantization import matmul_nbits_quantizer as mnq
    except ImportError as exc:  # onnx_ir (or ml_dtypes) missing
        raise UserError(f"4-bit quantization needs ONNX Runtime's weight-only quantizer, which failed to import: {exc}",
                        where="quantize.weight_bits", fix='pip install "edgedistill[text]" (adds onnx_ir)') from exc
    finally:
        root.setLevel(level)
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    return mnq


def to_opset(model, opset: int = INT4_OPSET):
    """The model converted to `opset` for the default domain (int4 tensors exist from opset 21 on)."""
    import onnx
    from onnx import version_converter

    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current >= opset:
        return model
    converted = version_converter.convert_version(model, opset)
    converted.ir_version = max(converted.ir_version, 10)
    onnx.checker.check_model(converted)
    return converted


def quantize_int4(src: Path, out: Path, *, ops: tuple[str, ...] = ("MatMul",), block_size: int = 32,
                  accuracy_level: int = 4, symmetric: bool = True) -> Path:
    """Block-wise int4 weights for the constant-weight `ops` ("MatMul" and/or "Gather"), written to `out`."""
    import onnx

    bad = [o for o in ops if o not in ("MatMul", "Gather")]
    if bad or not ops:
        raise UserError(f"int4 weight-only quantization supports MatMul and Gather, not {bad or 'nothing'}",
                        where="quantize.int4_ops", fix="use [MatMul], [Gather] or both")
    if block_size < 16 or block_size & (block_size - 1):
        raise UserError(f"block_size {block_size} is not a power of two ≥ 16", where="quantize.block_size", fix="use 32")
    mnq = _quantizer()
    model = onnx.load(str(src))
    if "Gather" in ops:
        model = to_opset(model)
    config = mnq.DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=symmetric,
                                              accuracy_level=accuracy_level, op_types_to_quantize=tuple(ops),
                                              quant_axes=(("MatMul", 0), ("Gather", 1)))
    quant = mnq.MatMulNBitsQuantizer(model, algo_config=config)
    quant.process()
    with atomic_path(out) as tmp:
        quant.model.save_model_to_file(str(tmp), use_external_data_format=False)
    return out
