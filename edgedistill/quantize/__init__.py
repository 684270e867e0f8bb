"""Quantization: post-training through ONNX Runtime's tools, with per-target presets."""
