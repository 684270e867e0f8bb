"""TensorRT: engines and profiling where tensorrt and an NVIDIA GPU exist; a clear reason everywhere else."""

from __future__ import annotations

import pytest

from edgedistill.errors import UserError
from edgedistill.profile import profile_models
from edgedistill.profile.synthetic import synthetic_mlp
from edgedistill.profile.tensorrt import build_engine, tensorrt_status
from edgedistill.target import availability, load_target

TRT_OK, TRT_WHY = tensorrt_status()
gpu = pytest.mark.gpu
needs_trt = pytest.mark.skipif(not TRT_OK, reason=f"TensorRT unavailable: {TRT_WHY}")


def test_without_tensorrt_the_reason_is_clear(tmp_path):
    if TRT_OK:
        pytest.skip("TensorRT is available here; the GPU tests cover it")
    for name in ("nvidia_trt_fp16", "nvidia_trt_int8"):
        ok, why = availability(load_target(name))
        assert not ok and ("GPU" in why or "tensorrt" in why)
    model = synthetic_mlp(tmp_path / "m.onnx")
    with pytest.raises(UserError, match="TensorRT") as e:
        build_engine(model, tmp_path / "m.engine", load_target("nvidia_trt_fp16"))
    assert e.value.fix
    with pytest.raises(UserError, match="not usable"):
        profile_models({"m": model}, load_target("nvidia_trt_fp16"))


@gpu
@needs_trt
@pytest.mark.parametrize("name", ["nvidia_trt_fp16", "nvidia_trt_int8"])
def test_build_engine(tmp_path, name):
    target = load_target(name)
    model = synthetic_mlp(tmp_path / "m.onnx")
    if target.precision == "int8":  # explicit quantization: the engine takes its scales from Q/DQ nodes
        import numpy as np
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = iter([{"x": np.random.default_rng(i).standard_normal((1, 64)).astype(np.float32)}
                                   for i in range(8)])

            def get_next(self):
                return next(self.items, None)

        qdq = tmp_path / "qdq.onnx"
        quantize_static(str(model), str(qdq), Reader(), quant_format=QuantFormat.QDQ)
        model = qdq
    engine = build_engine(model, tmp_path / "m.engine", target)
    assert engine.stat().st_size > 1000


@gpu
@needs_trt
def test_profile_native_tensorrt(tmp_path):
    target = load_target("nvidia_trt_fp16")
    model = synthetic_mlp(tmp_path / "m.onnx")
    s = profile_models({"m": model}, target, runs=50, warmup=5)["m"]
    assert s["runs"] == 50 and s["p50_ms"] > 0 and s["providers"] == ["TensorRT"]
