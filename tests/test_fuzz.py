"""Fuzzing the CLI with broken recipes, --set values, data files and reports (fixed seed, runs in CI).

Every case must end with exit 0 (ok), 1 (a gate failed / a bundle is damaged) or 2 (bad input, with a
message), and never with a traceback, an uncaught exception or exit 3 (internal error). The cases are
mutations of the built-in recipes (keys, values, types, lists, nesting, unicode, huge and non-finite numbers,
missing and extra fields, raw-text damage), of `--set` arguments, of an npz / MNIST IDX data set fed to
`evaluate`, and of a report fed to `check`; a few go through a real `compress`.

Most cases run in-process through click's CliRunner, so a few hundred take seconds. The counts per kind and
exit code are printed (`pytest -s`) and any failing case is listed with its input.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import os
import random
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from edgedistill.cli.main import cli

from .conftest import ROOT

SEED = 20261129
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))

VALUES = [None, True, False, 0, 1, -1, 2, 0.5, 1.5, -0.5, 2**31, 10**30, -(10**30), 1e308, 5e-324,
          math.nan, math.inf, -math.inf, "", "x", "0", "1e3", "null", "ü漢字🙂", "\u202e\u0000", "a" * 5000,
          "../../outside", "/tmp/abs", "os:system", "builtins:eval", "~/x.yaml", [], {}, [1, "a", None],
          {"name": "cnn"}, {"k": {"k": {"k": {"k": 1}}}}, [[[[[[[[1]]]]]]]], [16, 32], ["16", "32"], [-8, 0],
          "cnn", "mnist", "npz", "kl", "sampled", "dense", "quantize", "prune", "distill", "export", "x86_vnni"]
KEYS = ["name", "kind", "epochs", "lr", "channels", "stages", "data", "teacher", "targets", "gates", "seed",
        "unknown", "ÿ", "", "0", "__class__", "<<"]


def _paths(node, prefix=()):
    """Every (path, value) in a parsed recipe, containers included."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def mutate_doc(rng: random.Random, doc):
    """One structural mutation of a parsed recipe, in place (returns the new root)."""
    path, node = rng.choice(list(_paths(doc)))
    op = rng.choice(["value", "value", "value", "delete", "add", "wrap", "duplicate", "empty", "rename", "retype"])
    if not path:  # the root itself (once it is not a mapping, nothing more is mutated)
        if not isinstance(doc, dict):
            return doc
        return rng.choice([[doc], "just text", None, 42, {**doc, rng.choice(KEYS): copy.deepcopy(rng.choice(VALUES))}])
    parent, key = _get(doc, path[:-1]), path[-1]
    if op == "value":
        parent[key] = copy.deepcopy(rng.choice(VALUES))
    elif op == "delete":
        del parent[key]
    elif op == "add" and isinstance(node, dict):
        node[rng.choice(KEYS)] = copy.deepcopy(rng.choice(VALUES))
    elif op == "wrap":
        parent[key] = rng.choice([[node], {"value": node}])
    elif op == "duplicate" and isinstance(node, list) and node:
        node.extend(copy.deepcopy(node[: rng.randint(1, len(node))]))
    elif op == "empty":
        parent[key] = type(node)() if isinstance(node, (dict, list, str)) else None
    elif op == "rename" and isinstance(parent, dict):
        new = rng.choice([str(key)[:-1], str(key).upper(), f"{key}_", rng.choice(KEYS)])
        parent[new] = parent.pop(key)
    elif op == "retype":
        parent[key] = {"number": 10**rng.randint(1, 40), "string": str(node), "list": [node] * 3,
                       "float": float(rng.choice([-1, 1])) * 10.0**rng.randint(-30, 300)}[
            rng.choice(["number", "string", "list", "float"])]
    else:
        parent[key] = copy.deepcopy(rng.choice(VALUES))
    return doc


def damage_text(rng: random.Random, text: str) -> bytes:
    """Raw damage a YAML parser must survive: truncation, stray syntax, duplicate keys, bad encodings, nesting."""
    op = rng.choice(["truncate", "insert", "duplicate_line", "bytes", "nesting", "tabs", "anchor", "swap", "bomb",
                     "huge_int", "same_key"])
    pos = rng.randrange(len(text) + 1)
    if op == "truncate":
        return text[:pos].encode()
    if op == "insert":
        junk = rng.choice([":", "- ", "{", "}", "[", "]", "&a ", "*a", "<<: *a", "!!python/object/apply:os.system ['true']",
                           "!!binary AAAA", "%YAML 1.1\n", "---\n", "? ", "|", ">", "'", '"', "\t", "#", "\n  - x: [1,"])
        return (text[:pos] + junk + text[pos:]).encode()
    if op == "duplicate_line":
        lines = text.splitlines(keepends=True)
        i = rng.randrange(len(lines))
        return "".join([*lines[:i + 1], lines[i], *lines[i + 1:]]).encode()
    if op == "bytes":
        raw = text.encode()
        return raw[:pos] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + raw[pos:]
    if op == "nesting":
        depth = rng.choice([50, 500, 5000])
        return (text + f"\nextra: {'[' * depth}{']' * depth}\n").encode()
    if op == "tabs":
        return text.replace("  ", "\t", rng.randint(1, 5)).encode()
    if op == "bomb":  # "billion laughs": a few hundred bytes that expand to 10^9 nodes without an alias budget
        levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        levels += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]" for k in range(1, 9)]
        return (text + "\n" + "\n".join(levels) + "\n").encode()
    if op == "huge_int":  # past Python's 4300-digit limit for int(): a ValueError deep in the YAML constructor
        return (text + f"\nseed: {'7' * rng.choice([70, 4301, 5000])}\n").encode()
    if op == "same_key":  # two spellings of one key: PyYAML keeps the last silently
        pair = rng.choice([("1", "0x1"), ("on", "yes"), ("true", "on"), ("~", "null"), ("1", "1.0"), ("07", "7")])
        return (text + f"\nextra:\n  {pair[0]}: a\n  {pair[1]}: b\n").encode()
    if op == "anchor":
        return (text + "\nx: &big [" + ", ".join(["1"] * 20) + "]\ny: [*big, *big, *big]\n").encode()
    lines = text.splitlines(keepends=True)
    rng.shuffle(lines)
    return "".join(lines).encode()


SET_VALUES = ["[[", "{a: 1", "]", "!!python/object/apply:os.system ['true']", ".nan", ".inf", "-.inf", "1e400", "ü",
              "", "null", "*a", "&a x", "[1, 2", "{}", "[]", "0", "-1", "10000000000000000000000000000000", "yes",
              "'unterminated", "a: b: c", "\x00", "- x", "{name: cnn, channels: [8]}", "x86_vnni", "[x86_vnni, x]",
              "9" * 5000, "{1: a, 0x1: b}", "{on: 1, yes: 2}"]


def set_args(rng: random.Random, doc: dict) -> list[str]:
    keys = [".".join(map(str, p)) for p, _ in _paths(doc) if p]
    out = []
    for _ in range(rng.randint(1, 3)):
        key = rng.choice([*keys, *keys, "stages.99.kind", "a..b", "", ".", "stages.-1.kind", "stages.x", "ü",
                          "teacher.model.name.extra", "=", "data=", "gates.nope", ".".join(["a"] * 1000),
                          "data.val_fraction"])
        out += ["--set", rng.choice([f"{key}={rng.choice(SET_VALUES)}", key, f"={rng.choice(SET_VALUES)}"])]
    return out


# ----------------------------------------------------------------------------------------------- data
def _npz_arrays(rng_np: np.random.Generator, n: int = 90) -> dict[str, np.ndarray]:
    x = rng_np.standard_normal((n, 1, 8, 8)).astype(np.float32)
    y = np.arange(n) % 10
    return {"x_train": x, "y_train": y, "x_test": x[:30], "y_test": y[:30]}


def mutate_npz(rng: random.Random, rng_np: np.random.Generator, folder: Path, i: int) -> Path:
    a = _npz_arrays(rng_np)
    key = rng.choice(["x_train", "y_train", "x_test", "y_test"])
    op = rng.choice(["neg_label", "big_label", "float_label", "nan", "inf", "shape", "length", "empty", "missing",
                     "one_class", "labels_names", "strings", "bool", "2d_labels", "val_half", "truncate", "garbage",
                     "huge_value", "object", "scalar_file"])
    path = folder / f"d{i}.npz"
    if op == "neg_label":
        a["y_train"] = a["y_train"] - rng.randint(1, 5)
    elif op == "big_label":
        a["y_test"] = a["y_test"].copy()
        a["y_test"][0] = rng.choice([10, 99, 2**40, 10**6])
    elif op == "float_label":
        a[rng.choice(["y_train", "y_test"])] = a["y_train"][: len(a["y_train"])].astype(np.float32)[: len(a[key])]
    elif op in ("nan", "inf", "huge_value"):
        a[key if key.startswith("x") else "x_train"] = a["x_train"].copy()
        a["x_train"][rng.randrange(90), 0, 0, 0] = {"nan": np.nan, "inf": -np.inf, "huge_value": 3e38}[op]
    elif op == "shape":
        a[rng.choice(["x_train", "x_test"])] = rng_np.standard_normal(rng.choice([(90,), (30, 64), (90, 2, 8, 8), (90, 1, 3, 3)])).astype(np.float32)
    elif op == "length":
        a[key] = a[key][: rng.randint(0, len(a[key]) - 1)]
    elif op == "empty":
        a[key] = a[key][:0]
    elif op == "missing":
        del a[key]
    elif op == "one_class":
        a["y_train"], a["y_test"] = np.zeros(90, np.int64), np.zeros(30, np.int64)
    elif op == "labels_names":
        a["labels"] = np.array([f"c{k}" for k in range(rng.choice([0, 3, 9, 11]))])
    elif op == "strings":
        a[key] = np.array(["a"] * len(a[key]))
    elif op == "bool":
        a[key] = a[key].astype(bool)
    elif op == "2d_labels":
        a["y_train"] = np.stack([a["y_train"], a["y_train"]], 1)
    elif op == "val_half":
        a["x_val"] = a["x_train"][:10]
    elif op == "object":
        a["x_train"] = np.array([object()] * 90, dtype=object)
    if op == "object":
        np.savez(path, **a, allow_pickle=True)  # a pickled array: must be refused, never unpickled
    elif op == "scalar_file":
        np.save(path.with_suffix(".npy"), a["x_train"])
        path.with_suffix(".npy").rename(path)
    else:
        np.savez(path, **a)
    if op == "truncate":
        raw = path.read_bytes()
        path.write_bytes(raw[: rng.randrange(len(raw))])
    elif op == "garbage":
        raw = bytearray(path.read_bytes())
        for _ in range(rng.randint(1, 20)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        path.write_bytes(bytes(raw))
    return path


def _idx(data: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">II", magic, len(data)) + b"".join(struct.pack(">I", d) for d in data.shape[1:])
    return header + data.astype(np.uint8).tobytes()


def mutate_mnist(rng: random.Random, rng_np: np.random.Generator, folder: Path) -> Path:
    folder.mkdir()
    images = rng_np.integers(0, 256, (40, 28, 28))
    labels = np.arange(40) % 10
    img, lab = _idx(images, 2051), _idx(labels, 2049)
    op = rng.choice(["truncate_gz", "bad_magic", "count", "huge_count", "label_range", "garbage_gz", "empty"])
    if op == "bad_magic":
        img = struct.pack(">I", rng.randrange(2**32)) + img[4:]
    elif op == "count":
        lab = struct.pack(">II", 2049, 39) + lab[8:-1]
    elif op == "huge_count":
        img = img[:4] + struct.pack(">I", 2**31) + img[8:]
    elif op == "label_range":
        lab = lab[:-1] + bytes([rng.choice([10, 200, 255])])
    elif op == "empty":
        img = b""
    gz_img, gz_lab = gzip.compress(img), gzip.compress(lab)
    if op == "truncate_gz":
        gz_img = gz_img[: rng.randrange(len(gz_img))]
    elif op == "garbage_gz":
        gz_lab = gz_lab[:10] + bytes(rng.randrange(256) for _ in range(30)) + gz_lab[40:]
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gz_img)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gz_lab)
    return folder


# ----------------------------------------------------------------------------------------------- reports
def base_report(sha: str) -> dict:
    lat = {"p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "mean_ms": 1.0, "std_ms": 0.0, "batch": 1, "threads": 1,
           "runs": 10}
    model = {"params": 10, "size_mb": 0.01, "metric": 0.9, "latency": {}}
    return {"schema_version": 1, "recipe": {"name": "t", "sha256": "0" * 64,
                                            "resolved": {"gates": {"accuracy_drop": 0.05, "size_growth": 0.1,
                                                                   "min_metric": 0.5}}},
            "task": "classification", "metric": {"name": "accuracy", "higher_is_better": True},
            "models": {"teacher": {**model, "latency": {"x86_vnni": lat}}, "student": copy.deepcopy(model),
                       "deployed": {**model, "path": "bundle/model.onnx", "sha256": sha,
                                    "metric_measured_on": "onnxruntime"}},
            "targets": {}, "stages": [], "gates": [], "passed": True}


# ----------------------------------------------------------------------------------------------- the test
class Outcomes:
    def __init__(self, runner: CliRunner) -> None:
        self.runner, self.counts, self.failures = runner, Counter(), []

    def run(self, kind: str, args: list[str], what: str) -> int:
        result = self.runner.invoke(cli, args, catch_exceptions=True)
        code = result.exit_code
        out = result.output + (result.stderr if result.stderr_bytes is not None else "")
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        self.counts[(kind, code)] += 1
        if code not in (0, 1, 2) or crashed or "Traceback" in out:
            why = repr(result.exception)[:200] if crashed else out.strip().splitlines()[-1:]
            self.failures.append(f"{kind} exit {code}: {why} <- {what[:300]!r}")
        return code

    def report(self) -> None:
        summary = {f"{k} exit {c}": n for (k, c), n in sorted(self.counts.items())}
        print("\nfuzz outcomes:", json.dumps(summary), f"failures: {len(self.failures)}")
        assert not self.failures, "\n".join(self.failures[:40])


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    import torch

    from edgedistill.export import export_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    return export_onnx(model, tmp_path_factory.mktemp("fuzz_model") / "m.onnx", (1, 8, 8))


@pytest.mark.slow  # about 20 s on a quiet machine
def test_fuzzed_inputs_never_crash(tmp_path, tiny_onnx, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths a mutated recipe names stay in here
    rng, rng_np = random.Random(SEED), np.random.default_rng(SEED)
    fuzz = Outcomes(CliRunner())
    texts = {p.stem: p.read_text() for p in RECIPES}
    folder = tmp_path / "cases"
    folder.mkdir()

    for i in range(300):  # mutated recipes through `validate`
        name = rng.choice(sorted(texts))
        if rng.random() < 0.25:
            raw = damage_text(rng, texts[name])
        else:
            doc = yaml.safe_load(texts[name])
            for _ in range(rng.randint(1, 4)):
                doc = mutate_doc(rng, doc)
            raw = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode()
        path = folder / f"r{i}.yaml"
        path.write_bytes(raw)
        fuzz.run("recipe", ["validate", str(path)], raw.decode("utf-8", "replace"))

    for _ in range(60):  # --set arguments
        name = rng.choice(sorted(texts))
        args = set_args(rng, yaml.safe_load(texts[name]))
        fuzz.run("set", ["validate", name, *args], " ".join(args))

    for i in range(40):  # data sets through `evaluate`
        if rng.random() < 0.75:
            spec = f"npz:{mutate_npz(rng, rng_np, folder, i)}"
        else:
            spec = f"mnist:{mutate_mnist(rng, rng_np, folder / f'mnist{i}')}"
        fuzz.run("data", ["evaluate", str(tiny_onnx), "--data", spec], spec)

    for i in range(40):  # reports through `check`
        run = folder / f"run{i}"
        (run / "bundle").mkdir(parents=True)
        (run / "bundle" / "model.onnx").write_bytes(tiny_onnx.read_bytes())
        from edgedistill.io import sha256_file

        base = base_report(sha256_file(run / "bundle" / "model.onnx"))
        (run / "base.json").write_text(json.dumps(base))
        doc = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            doc = mutate_doc(rng, doc)
        (run / "report.json").write_text(json.dumps(doc))
        fuzz.run("report", ["check", str(run / "report.json"), "--baseline", str(run / "base.json")], json.dumps(doc))

    import shutil

    from edgedistill.report.bundle import write_bundle

    meta = {"task": "classification", "input_shape": [1, 8, 8], "num_classes": 10,
            "class_labels": [str(k) for k in range(10)], "preprocessing": {}}
    pristine = write_bundle(folder / "pristine", tiny_onnx, dataset_meta=meta, report=base_report("0" * 64),
                            targets=[])
    for i in range(30):  # bundles through `verify`
        bundle = folder / f"bundle{i}"
        shutil.copytree(pristine, bundle)
        manifest = json.loads((bundle / "manifest.json").read_text())
        op = rng.choice(["manifest", "manifest", "flip", "extra", "delete", "garbage"])
        if op == "manifest":
            for _ in range(rng.randint(1, 3)):
                manifest = mutate_doc(rng, manifest)
            (bundle / "manifest.json").write_text(json.dumps(manifest))
        elif op == "flip":
            f = rng.choice(sorted(p for p in bundle.rglob("*") if p.is_file()))
            raw = bytearray(f.read_bytes())
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            f.write_bytes(bytes(raw))
        elif op == "extra":
            (bundle / rng.choice(["x.py", "usage/y.sh", ".z"])).write_text("echo hi\n")
        elif op == "delete":
            rng.choice(sorted(p for p in bundle.rglob("*") if p.is_file())).unlink()
        else:
            (bundle / "manifest.json").write_bytes(rng.choice([b"", b"\xff\xfe{", b"[]", b"{\"files\": 3}", b"null"]))
        fuzz.run("bundle", ["verify", str(bundle)], f"{op}: {(bundle / 'manifest.json').read_bytes()[:300]!r}"
                 if (bundle / "manifest.json").exists() else op)

    fuzz.report()


TINY = ["data.train_limit=150", "teacher.train.epochs=1", "stages.0.train.epochs=1", "stages.1.calibration.samples=16",
        "profile.runs=20", "profile.warmup=2", "targets=[x86_vnni]"]


@pytest.mark.slow
def test_fuzzed_compress_runs_end_cleanly(tmp_path, monkeypatch):
    """A few real runs: mutated mobile recipes (shrunk with --set) and a mutated data set, end to end."""
    monkeypatch.chdir(tmp_path)
    rng, rng_np = random.Random(SEED + 1), np.random.default_rng(SEED + 1)
    fuzz = Outcomes(CliRunner())
    text = (ROOT / "recipes" / "mobile.yaml").read_text()
    ran = 0
    for i in range(200):  # mutate until two recipes validate, and run those for real
        doc = yaml.safe_load(text)
        for _ in range(rng.randint(1, 2)):
            doc = mutate_doc(rng, doc)
        path = tmp_path / f"m{i}.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        tiny = [a for o in TINY for a in ("--set", o)]
        if fuzz.run("recipe", ["validate", str(path), *tiny], path.read_text()) != 0:
            continue
        fuzz.run("compress", ["compress", "--recipe", str(path), "--out", str(tmp_path / f"run{i}"), *tiny],
                 path.read_text())
        ran += 1
        if ran == 2:
            break
    assert ran == 2
    data = mutate_npz(rng, rng_np, tmp_path, 0)
    fuzz.run("compress", ["compress", "--recipe", "mobile", "--out", str(tmp_path / "npz"), "--set", "data.name=npz",
                          "--set", f"data.path={data}", *[a for o in TINY for a in ("--set", o)]], str(data))
    fuzz.report()


# ----------------------------------------------------------------------------------------------- issue 19's shapes
def _deep_json_text(rng: random.Random, doc: dict) -> str:
    """`doc` with a deeply nested array at a random place (as text: json.dumps itself cannot write 100000 levels)."""
    path, _ = rng.choice([(p, v) for p, v in _paths(doc) if p and isinstance(_get(doc, p[:-1]), dict)])
    depth = rng.choice([101, 900, 5000, 100_000])
    marker = "__deep__"
    copy_ = copy.deepcopy(doc)
    _get(copy_, path[:-1])[path[-1]] = marker
    return json.dumps(copy_).replace(json.dumps(marker), "[" * depth + "]" * depth)


WRONG_TYPES = {("models", "deployed", "path"): str, ("models", "deployed", "sha256"): str, ("task",): str,
               ("metric", "name"): str, ("metric", "higher_is_better"): bool, ("models", "deployed", "latency"): dict,
               ("recipe", "resolved", "gates"): dict, ("targets",): dict, ("models", "deployed", "metric"): float,
               ("models", "deployed", "size_mb"): float}


def _special_output(rng: random.Random, folder: Path, i: int) -> str:
    """An output path no write may replace or that cannot hold a file."""
    victim = folder / f"victim{i}.txt"
    victim.write_text("precious")
    kind = rng.choice(["symlink", "fifo", "folder", "proc", "under_file", "long", "dangling"])
    path = folder / f"out{i}"
    if kind == "symlink":
        path.symlink_to(victim)
    elif kind == "dangling":
        path.symlink_to(folder / "nowhere" / "x")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "proc":
        return f"/proc/edgedistill-fuzz-{i}"
    elif kind == "under_file":
        return str(victim / "x")
    else:
        return str(folder / ("x" * rng.choice([256, 300, 5000])))
    return str(path)


def _control_name(rng: random.Random) -> str:
    return "class" + rng.choice(["\n", "\r", "\t", "\x00", "\x1b[31m", "\u2028", "\u2029", "\x85", "\x7f"]) + "x"


@pytest.mark.slow  # about 15 s: imports transformers for the folder and tokenizer cases
def test_fuzzed_hostile_shapes_end_as_bad_input(tmp_path, tiny_onnx, monkeypatch):
    """Every shape issue 19 found ending as a crash or a silent success: each must now be bad input (exit 2; a
    damaged bundle: exit 1), and nothing outside the case's own folder may change."""
    from transformers import BertTokenizerFast

    from edgedistill.io import sha256_file
    from edgedistill.report.bundle import write_bundle

    monkeypatch.chdir(tmp_path)
    rng, rng_np = random.Random(SEED + 19), np.random.default_rng(SEED + 19)
    fuzz = Outcomes(CliRunner())
    folder = tmp_path / "cases"
    folder.mkdir()
    tok = folder / "tok"
    tok.mkdir()
    (tok / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefgh"]) + "\n")
    BertTokenizerFast(vocab_file=str(tok / "vocab.txt")).save_pretrained(str(tok))
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("name: tiny\ndata: {name: digits}\nteacher:\n  model: {name: cnn, channels: [8]}\n"
                    "  train: {epochs: 1}\nstages:\n  - kind: export\ntargets: [x86_avx2]\n")
    expected: dict[str, int] = {}

    def case(kind: str, args: list[str], what: str, want: int = 2) -> None:
        code = fuzz.run(kind, args, what)
        if code != want:
            fuzz.failures.append(f"{kind}: exit {code}, expected {want} <- {what[:200]!r}")
        expected[kind] = want

    for i in range(12):  # reports: nested too deep, or a field the gate reads of the wrong type
        run = folder / f"run{i}"
        (run / "bundle").mkdir(parents=True)
        (run / "bundle" / "model.onnx").write_bytes(tiny_onnx.read_bytes())
        base = base_report(sha256_file(run / "bundle" / "model.onnx"))
        (run / "base.json").write_text(json.dumps(base))
        if i % 2:
            text = _deep_json_text(rng, base)
        else:
            path, kind = rng.choice(sorted(WRONG_TYPES.items(), key=str))
            wrong = [v for v in VALUES if v is not None and not isinstance(v, kind)
                     and not (kind is float and isinstance(v, (int, float)) and not isinstance(v, bool))]
            doc = copy.deepcopy(base)
            _get(doc, path[:-1])[path[-1]] = copy.deepcopy(rng.choice(wrong))
            text = json.dumps(doc)
        (run / "report.json").write_text(text)
        pair = [str(run / "report.json"), "--baseline", str(run / "base.json")]
        case("report", ["check", *(pair if rng.random() < 0.5 else [pair[2], "--baseline", pair[0]])], text[:300])

    meta = {"task": "classification", "input_shape": [1, 8, 8], "num_classes": 10,
            "class_labels": [str(k) for k in range(10)], "preprocessing": {}}
    pristine = write_bundle(folder / "pristine", tiny_onnx, dataset_meta=meta, report=base_report("0" * 64), targets=[])
    for i in range(4):  # a manifest nested too deep: a damaged bundle
        import shutil

        bundle = folder / f"bundle{i}"
        shutil.copytree(pristine, bundle)
        text = _deep_json_text(rng, json.loads((bundle / "manifest.json").read_text()))
        (bundle / "manifest.json").write_text(text)
        case("manifest", ["verify", str(bundle)], text[:200], want=1)

    for i in range(8):  # --junit and --out where nothing may be written
        run = folder / "run0"
        base = str(run / "base.json")
        out = _special_output(rng, folder, i)
        before = os.lstat(out).st_mode if os.path.lexists(out) else None
        case("junit", ["check", base, "--baseline", base, "--junit", out], out)
        if not os.path.isdir(out):  # (an existing folder is a fine --out; only --junit refuses it)
            case("out", ["compress", "--recipe", str(tiny), "--out", out], out)
        assert (os.lstat(out).st_mode if os.path.lexists(out) else None) == before, out
        assert (folder / f"victim{i}.txt").read_text() == "precious"
    case("out", ["compress", "--recipe", str(tiny), "--out", ""], "--out ''")

    for i in range(4):  # links inside a run folder, on --resume and --overwrite
        outside = folder / f"outside{i}"
        outside.mkdir()
        (outside / "keep.txt").write_text("precious")
        run = folder / f"linked{i}"
        (run / "stages").mkdir(parents=True)
        (run / "recipe.resolved.json").write_text("{}")
        name = rng.choice(["stages/0-teacher", "bundle", "compare", "cache", "report.json"])
        (run / name).symlink_to(outside, target_is_directory=True)
        case("run_folder", ["compress", "--recipe", str(tiny), "--out", str(run),
                            rng.choice(["--resume", "--overwrite"])], name)
        assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]

    for i in range(6):  # data: class names with control characters, text files that cannot give a metric
        x = rng_np.standard_normal((40, 1, 8, 8)).astype(np.float32)
        y = np.arange(40) % 10
        names = [str(k) for k in range(10)]
        names[rng.randrange(10)] = _control_name(rng)
        np.savez(folder / f"names{i}.npz", x_train=x, y_train=y, x_test=x[:20], y_test=y[:20], labels=np.array(names))
        case("data", ["evaluate", str(tiny_onnx), "--data", f"npz:{folder / f'names{i}.npz'}"], repr(names))
    deep_line = "[" * rng.choice([101, 5000, 100_000]) + "]" * 3
    (folder / "deep.jsonl").write_text('{"text": "a b", "label": "x"}\n' + deep_line + "\n")
    case("data", ["evaluate", str(tiny_onnx), "--data", f"text_labelled:{folder / 'deep.jsonl'}", "--tokenizer",
                  str(tok)], "deep jsonl")
    for i, (train, dev) in enumerate([([1, 2, 3, 4, 5, 1.5, 2.5], [3]), ([1, 2, 3, 4, 5, 1.5, 2.5], [2, 2, 2]),
                                      ([3], [1, 2, 3])]):
        sts = folder / f"sts{i}"
        sts.mkdir()
        line = "g\tf\t2012\t{i}\t{s}\ta b {i}\tc d {i}\n"
        (sts / "sts-train.csv").write_text("".join(line.format(i=k, s=s) for k, s in enumerate(train)))
        (sts / "sts-dev.csv").write_text("".join(line.format(i=k, s=s) for k, s in enumerate(dev)))
        case("data", ["evaluate", str(tiny_onnx), "--data", f"sts:{sts}", "--tokenizer", str(tok)], f"sts {train} {dev}")

    for i in range(6):  # recipes: an empty validation split, Hugging Face folders asking to run their own code
        if i < 2:
            case("recipe", ["validate", str(tiny), "--set", "data.val_fraction=0"], "val_fraction 0")
            continue
        hf = folder / f"hf{i}"
        hf.mkdir()
        file = rng.choice(["config.json", "tokenizer_config.json"])
        (hf / "evilmod.py").write_text(f"open({str(tmp_path / 'imported.marker')!r}, 'w').write('ran')\n")
        (hf / "config.json").write_text(json.dumps({"model_type": "evilnet"}))
        (hf / file).write_text(json.dumps({"model_type": "evilnet", "auto_map": {"AutoConfig": "evilmod.C",
                                                                                  "AutoTokenizer": ["evilmod.T", None]}}))
        case("recipe", ["validate", str(tiny), "--set", f"teacher.model={{name: hf, path: {hf}}}"], file)
        case("data", ["evaluate", str(tiny_onnx), "--data", f"sts:{folder / 'sts0'}", "--tokenizer", str(hf)], file)
    assert not (tmp_path / "imported.marker").exists()

    fuzz.report()
    assert set(expected) == {"report", "manifest", "junit", "out", "run_folder", "data", "recipe"}
