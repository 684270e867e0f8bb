"""`verify_bundle`: the receiving side's check of a bundle — checksums, nothing unlisted, then load and run once.

An app team ships the whole folder, so anything in it that the manifest does not list is damage: an extra
file, a link, a FIFO or socket (which would also hang a reader), an empty folder. The one exception is what
Python itself writes when a snippet is imported: `__pycache__/` folders holding only `*.pyc` files. The
manifest is read only when it is a regular file inside the bundle (never through a link), and the model is
fed only inputs whose type and size its own graph declares, so a hostile manifest cannot make verify
allocate terabytes or block on a pipe: it reads "damaged" (exit 1).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import jsonsafe
from ..io import sha256_file

MANIFEST = "manifest.json"
BYTECODE_DIR, BYTECODE_SUFFIX = "__pycache__", ".pyc"
MAX_FEED_BYTES = 1 << 30  # a single verification run never allocates more than this for its inputs
# ONNX Runtime's type strings -> numpy dtype names (the manifest's spelling, from onnx's own mapping)
ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
             "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(uint16)": "uint16",
             "tensor(int32)": "int32", "tensor(uint32)": "uint32", "tensor(int64)": "int64",
             "tensor(uint64)": "uint64", "tensor(bool)": "bool"}


def integrity(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without this field, so edits to the manifest are caught too."""
    body = {k: v for k, v in manifest.items() if k != "integrity"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return word
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def _is_bytecode(path: Path) -> bool:
    """A file Python writes on import: a regular *.pyc inside a __pycache__ folder."""
    return (path.parent.name == BYTECODE_DIR and path.name.endswith(BYTECODE_SUFFIX)
            and stat.S_ISREG(path.lstat().st_mode))


def _unlisted(bdir: Path, listed: set[str]) -> list[str]:
    """Every entry under the bundle that the manifest does not account for (links are never followed)."""
    problems: list[str] = []
    for root, dirs, files in os.walk(bdir, followlinks=False):
        here = Path(root)
        for d in list(dirs):
            p = here / d
            rel = p.relative_to(bdir).as_posix()
            if p.is_symlink():  # os.walk lists a link to a folder among dirs: it is an unexpected entry
                dirs.remove(d)
                problems.append(f"{rel}: unexpected file (a symbolic link; not in the manifest)")
            elif d != BYTECODE_DIR and not any(os.scandir(p)):
                problems.append(f"{rel}: unexpected empty folder (not in the manifest)")
        for f in files:
            p = here / f
            rel = p.relative_to(bdir).as_posix()
            if rel in listed or _is_bytecode(p):
                continue
            mode = p.lstat().st_mode
            word = "" if stat.S_ISREG(mode) else f" ({_kind(mode)})"
            problems.append(f"{rel}: unexpected file{word} (not in the manifest; added after the bundle was written)")
    return sorted(problems)


def read_manifest(bdir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest as a dict, or why it cannot be trusted. Read only when it is a regular file (no link, FIFO)."""
    path = bdir / MANIFEST
    try:
        mode = path.lstat().st_mode
    except OSError as exc:
        return None, f"{MANIFEST}: unreadable ({exc.strerror})"
    if not stat.S_ISREG(mode):
        return None, f"{MANIFEST}: is {_kind(mode)}, not a regular file in the bundle"
    try:
        manifest = jsonsafe.loads(path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        return None, f"{MANIFEST}: unreadable ({str(exc)[:200]})"
    return manifest, None


def verify_bundle(path: str | Path) -> tuple[bool, list[str]]:
    """Checksums of every listed file, no entry that is not listed, the manifest's own integrity, then load and
    run the model once."""
    bdir = Path(path)
    manifest, why = read_manifest(bdir)
    if manifest is None:
        return False, [str(why)]
    problems: list[str] = []
    if manifest.get("integrity") != integrity(manifest):
        problems.append(f"{MANIFEST}: contents changed after it was written (integrity hash mismatch)")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return False, [*problems, f"{MANIFEST}: no files listed"]
    root = bdir.resolve()
    regular: set[str] = set()
    for rel, info in files.items():
        f = bdir / rel
        if not f.resolve().is_relative_to(root) or ".." in Path(rel).parts:
            problems.append(f"{rel}: points outside the bundle")
            continue
        try:
            mode = f.lstat().st_mode
        except OSError:
            problems.append(f"{rel}: missing")
            continue
        if not stat.S_ISREG(mode):  # never opened: a FIFO would block, a link could lead anywhere
            problems.append(f"{rel}: is {_kind(mode)}, not a regular file")
            continue
        regular.add(rel)
        digest, expected = sha256_file(f), info.get("sha256") if isinstance(info, dict) else None
        if digest != expected:
            problems.append(f"{rel}: sha256 {digest[:16]}… does not match the manifest's {str(expected)[:16]}…")
    problems += _unlisted(bdir, {MANIFEST, *files})
    for model_file in ("model.onnx", "model.ort"):
        if model_file in regular:
            problems += run_once(bdir / model_file, manifest)
    if "model.onnx" not in files:
        problems.append(f"{MANIFEST}: model.onnx is not listed")
    if "model.pte" in regular:
        from .bundle_executorch import verify_runtimes

        problems += verify_runtimes(bdir, manifest)  # model.pte: loaded and run in ExecuTorch
    return not problems, problems


def checksums_ok(bdir: Path, manifest: Mapping[str, Any]) -> bool:
    """The manifest is intact and every file it lists is a regular file with its recorded sha256 (no model run)."""
    files = manifest.get("files")
    if manifest.get("integrity") != integrity(manifest) or not isinstance(files, dict) or not files:
        return False
    root = bdir.resolve()
    for rel, info in files.items():
        f = bdir / rel
        try:
            regular = f.resolve().is_relative_to(root) and stat.S_ISREG(f.lstat().st_mode)
        except OSError:
            return False
        if not regular or not isinstance(info, dict) or sha256_file(f) != info.get("sha256"):
            return False
    return True


def run_once(model: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Load `model` and run it on zeros shaped and typed from its own graph, after checking the manifest agrees."""
    import numpy as np
    import onnxruntime as ort

    try:
        so = ort.SessionOptions()
        so.log_severity_level = 4
        sess = ort.InferenceSession(str(model), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # any load failure means a damaged or incompatible file
        return [f"{model.name}: does not load in onnxruntime ({str(exc).splitlines()[0][:200]})"]
    try:  # a damaged manifest is a finding like any other, never a traceback
        want_in = [v["name"] for v in manifest.get("inputs", [])]
        want_out = [v["name"] for v in manifest.get("outputs", [])]
        want_shapes = [[d if isinstance(d, int) else "?" for d in v["shape"]] for v in manifest.get("inputs", [])]
        want_types = [str(v["dtype"]) for v in manifest.get("inputs", [])]
    except (KeyError, TypeError, ValueError) as exc:
        return [f"{MANIFEST}: inputs/outputs are malformed ({type(exc).__name__}: {exc})"]
    inputs = sess.get_inputs()
    got_in, got_out = [i.name for i in inputs], [o.name for o in sess.get_outputs()]
    if got_in != want_in or got_out != want_out:
        return [f"{model.name}: inputs/outputs {got_in}/{got_out} differ from the manifest's {want_in}/{want_out}"]
    got_shapes = [[d if isinstance(d, int) else "?" for d in i.shape] for i in inputs]
    if got_shapes != want_shapes:
        return [f"{model.name}: input shapes {got_shapes} differ from the manifest's {want_shapes}"]
    # the feed's type comes from the graph; the manifest must name the same one (a made-up dtype is damage,
    # never an allocation)
    got_types = [ORT_TYPES.get(i.type, i.type) for i in inputs]
    if got_types != want_types:
        return [f"{model.name}: input dtypes {got_types} differ from the manifest's {[t[:40] for t in want_types]}"]
    if any(t not in ORT_TYPES.values() for t in got_types):
        return [f"{model.name}: input dtypes {got_types} cannot be fed by verify"]
    dims = [[d if isinstance(d, int) and d > 0 else 1 for d in i.shape] for i in inputs]
    need = sum(math.prod(s) * np.dtype(t).itemsize for s, t in zip(dims, got_types, strict=True))
    if need > MAX_FEED_BYTES:
        return [f"{model.name}: input is too large to run once ({need / 1e9:.3g} GB for shapes {dims})"]
    feed = {i.name: np.zeros(s, dtype=t) for i, s, t in zip(inputs, dims, got_types, strict=True)}
    try:
        sess.run(None, feed)
    except Exception as exc:  # a run failure is damage too
        return [f"{model.name}: fails to run ({str(exc).splitlines()[0][:200]})"]
    return []
