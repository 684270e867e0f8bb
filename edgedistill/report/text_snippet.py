"""The bundle's Python snippet for text models: tokenize with the bundled tokenizer, run the file, read the output.

The app needs only `onnxruntime`, `numpy` and `tokenizers` (the fast tokenizer's own package, no torch); the
tokenizer folder ships in the bundle, so the ids are exactly those the model was trained and measured on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def text_python_snippet(spec: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    pre = meta.get("preprocessing") or {}
    inputs = [v["name"] for v in spec["inputs"]]
    output = spec["outputs"][0]["name"]
    max_length = int(pre.get("max_length", 128))
    embedding = meta.get("task_kind") == "text_embedding" or output == "embedding"
    if embedding:
        use = '''def embed(texts: list[str]) -> np.ndarray:
    """One L2-normalised embedding per text (pooling and normalisation happen inside the model)."""
    return session.run([OUTPUT_NAME], encode(texts))[0]


if __name__ == "__main__":
    a, b = embed(["A plane is taking off.", "An air plane is taking off."])
    print("cosine similarity:", float(a @ b))
'''
    else:
        use = '''LABELS = (BUNDLE / "labels.txt").read_text().splitlines() if (BUNDLE / "labels.txt").exists() else []


def predict(texts: list[str]) -> list:
    """Class label (or index) per text."""
    logits = session.run([OUTPUT_NAME], encode(texts))[0]
    return [LABELS[i] if i < len(LABELS) else int(i) for i in logits.argmax(1)]


if __name__ == "__main__":
    print(predict(["an example sentence"]))
'''
    opts = meta.get("session_options") or {}
    config = dict(opts.get("session_config") or {})
    level = opts.get("graph_optimization_level")
    version, threads = meta.get("onnxruntime_version") or "", int(meta.get("threads") or 1)
    options = (f"ORT_VERSION = {version!r}  # this bundle was verified with it\n"
               f"THREADS = {threads}  # the latency in the model card was measured with this many threads\n"
               "options = ort.SessionOptions()\noptions.intra_op_num_threads = THREADS\n")
    if level:
        options += f"options.graph_optimization_level = ort.GraphOptimizationLevel.{level}\n"
    if config:
        options += (f"SESSION_CONFIG = {config!r}  # chosen by measurement on the target (see manifest.json)\n"
                    "for key, value in SESSION_CONFIG.items():\n    options.add_session_config_entry(key, value)\n")
    return f'''"""Run the bundled text model with ONNX Runtime (pip install onnxruntime=={version} numpy tokenizers).

Usage: python usage/predict.py   (from the bundle directory or anywhere else)
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

BUNDLE = Path(__file__).resolve().parent.parent
INPUT_NAMES = {inputs!r}  # int64, shape (batch, sequence)
OUTPUT_NAME = {output!r}
MAX_LENGTH = {max_length}  # tokens per text, as in training and evaluation

tokenizer = Tokenizer.from_file(str(BUNDLE / "tokenizer" / "tokenizer.json"))
tokenizer.enable_truncation(MAX_LENGTH)
tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0)
{options}session = ort.InferenceSession(str(BUNDLE / "model.onnx"), options, providers=["CPUExecutionProvider"])


def encode(texts: list[str]) -> dict[str, np.ndarray]:
    """Token ids, attention mask and token types for a batch of texts (padded to the longest)."""
    batch = tokenizer.encode_batch(texts)
    arrays = {{"input_ids": [e.ids for e in batch], "attention_mask": [e.attention_mask for e in batch],
              "token_type_ids": [e.type_ids for e in batch]}}
    return {{name: np.asarray(arrays[name], dtype=np.int64) for name in INPUT_NAMES}}


{use}'''
