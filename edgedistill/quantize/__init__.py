"""Quantization judged on the file: ORT PTQ (static QDQ / dynamic) and fp16 with per-target presets, QAT with
the teacher (quantized distillation), accuracy-aware fallback, a keep policy, and a per-op report."""
