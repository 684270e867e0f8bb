"""Two packed formats for large image sets, measured side by side: Hugging Face `datasets` Arrow files (what
`edgedistill data pack` writes) and webdataset tar shards.

    python benchmarks/bench_pack.py --images 2000

For each: seconds to pack the generated 224×224 JPEG folder (see bench_stream.py), bytes on disk, images/s
read in the trainer's access pattern (batches of 32 random rows, decoded), and images/s read front to back.
webdataset has no random access: its "random" row is a sequential read up to that row (a tar is read front to
back; shuffling there is a buffer over the stream), which is what rules it out for a sampler that shuffles,
splits each global batch over ranks and resumes mid-epoch. Rounds alternate the formats; medians are reported.
Writes benchmarks/results/stream_pack.json.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_stream import WORK, make_images  # noqa: E402


def _decode(blob: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def pack_hf(src: Path, out: Path) -> float:
    from edgedistill.data.packed import pack

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    pack(src, out)
    return time.perf_counter() - t0


def pack_wds(src: Path, out: Path) -> float:
    import webdataset as wds

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    classes = sorted(p.name for p in src.iterdir() if p.is_dir())
    with wds.ShardWriter(str(out / "shard-%05d.tar"), maxsize=256 << 20, verbose=0) as sink:
        for c, name in enumerate(classes):
            for f in sorted((src / name).iterdir()):
                sink.write({"__key__": f"{name}_{f.stem}", "jpg": f.read_bytes(), "cls": str(c).encode()})
    return time.perf_counter() - t0


def read_hf_random(out: Path, rows: list[np.ndarray]) -> float:
    import datasets

    table = datasets.load_from_disk(str(out)).select_columns(["image"])
    t0 = time.perf_counter()
    for r in rows:
        for blob in table[r.tolist()]["image"]:
            _decode(blob)
    return sum(len(r) for r in rows) / (time.perf_counter() - t0)


def read_hf_sequential(out: Path, n: int) -> float:
    import datasets

    table = datasets.load_from_disk(str(out)).select_columns(["image"])
    t0 = time.perf_counter()
    for start in range(0, n, 32):
        for blob in table[start : start + 32]["image"]:
            _decode(blob)
    return n / (time.perf_counter() - t0)


def read_wds_sequential(out: Path, n: int) -> float:
    import webdataset as wds

    urls = [str(p) for p in sorted(out.glob("shard-*.tar"))]
    t0 = time.perf_counter()
    done = 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        _decode(sample["jpg"])
        done += 1
        if done >= n:
            break
    return done / (time.perf_counter() - t0)


def read_wds_random(out: Path, rows: list[np.ndarray]) -> float:
    """A row by index in a tar stream: read (without decoding) everything before it, then decode it."""
    import webdataset as wds

    urls = [str(p) for p in sorted(out.glob("shard-*.tar"))]
    wanted = sorted(int(i) for r in rows for i in r)[:64]  # 64 rows is enough to show the cost per row
    t0 = time.perf_counter()
    for target in wanted:
        for k, sample in enumerate(wds.WebDataset(urls, shardshuffle=False, empty_check=False)):
            if k == target:
                _decode(sample["jpg"])
                break
    return len(wanted) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    src = make_images(a.images)
    rng = np.random.default_rng(0)
    rows = [rng.choice(a.images, 32, replace=False) for _ in range(10)]
    res: dict[str, dict[str, list[float]]] = {"hf_datasets_arrow": {}, "webdataset_tar": {}}
    for r in range(a.rounds):
        order = ["hf_datasets_arrow", "webdataset_tar"][:: 1 if r % 2 == 0 else -1]
        for fmt in order:
            out = WORK / f"pack-{fmt}-{a.images}"
            got = res[fmt]
            if fmt == "hf_datasets_arrow":
                got.setdefault("pack_s", []).append(pack_hf(src, out))
                got.setdefault("random_images_per_s", []).append(read_hf_random(out, rows))
                got.setdefault("sequential_images_per_s", []).append(read_hf_sequential(out, 640))
            else:
                got.setdefault("pack_s", []).append(pack_wds(src, out))
                got.setdefault("random_images_per_s", []).append(read_wds_random(out, rows))
                got.setdefault("sequential_images_per_s", []).append(read_wds_sequential(out, 640))
            got["disk_mb"] = [sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6]
            print(fmt, {k: round(v[-1], 2) for k, v in got.items()}, flush=True)
    result = {"what": "packing 224x224 JPEGs: HF datasets Arrow vs webdataset tar", "images": a.images,
              "source_mb": round(sum(p.stat().st_size for p in src.rglob("*.jpg")) / 1e6, 1),
              "rounds": a.rounds,
              "median": {fmt: {k: round(float(np.median(v)), 2) for k, v in got.items()} for fmt, got in res.items()}}
    path = HERE / "results" / "stream_pack.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median"]), "\n→", path)


if __name__ == "__main__":
    main()
