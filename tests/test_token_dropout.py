"""augment.token_dropout: seeded per-epoch token (span) dropout of unlabelled sentences (#22)."""

from __future__ import annotations

import torch

from edgedistill.distill.augment import AugmentConfig, augment_inputs, drop_tokens, epoch_shifts


def _batch(rows: int = 200, width: int = 40):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, width - 5, (rows,), generator=g)
    pos = torch.arange(width)[None, :]
    mask = (pos < lengths[:, None]).long()
    ids = torch.randint(1000, 2000, (rows, width), generator=g) * mask
    ids[:, 0] = 101
    ids[torch.arange(rows), lengths - 1] = 102
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}, lengths


def _is_subsequence(small: list[int], big: list[int]) -> bool:
    it = iter(big)
    return all(any(v == w for w in it) for v in small)


def test_dropout_keeps_cls_sep_and_order_drops_about_the_rate_and_pads_with_zeros():
    x, lengths = _batch()
    seeds = epoch_shifts(AugmentConfig(token_dropout=0.2), len(lengths), seed=0, epoch=1)
    out = drop_tokens(x, seeds, 0.2)
    new_len = out["attention_mask"].sum(1)
    for r in range(len(lengths)):
        row = out["input_ids"][r, : int(new_len[r])].tolist()
        orig = x["input_ids"][r, : int(lengths[r])].tolist()
        assert row[0] == 101 and row[-1] == 102 and _is_subsequence(row, orig)
        assert (out["input_ids"][r, int(new_len[r]):] == 0).all()
        assert out["attention_mask"][r].tolist() == [1] * int(new_len[r]) + [0] * (40 - int(new_len[r]))
    inner = (lengths - 2).sum().item()
    dropped = (lengths - new_len).sum().item()
    assert 0.15 < dropped / inner < 0.25


def test_a_rows_draw_does_not_depend_on_the_padded_width_and_follows_seed_and_epoch():
    x, lengths = _batch(50, 40)
    cfg = AugmentConfig(token_dropout=0.3)
    seeds = epoch_shifts(cfg, 50, seed=3, epoch=0)
    full = augment_inputs(cfg, x, seeds)
    cut = int(lengths.max())
    trimmed = augment_inputs(cfg, {k: v[:, :cut] for k, v in x.items()}, seeds)
    assert torch.equal(full["input_ids"][:, :cut], trimmed["input_ids"])
    assert torch.equal(augment_inputs(cfg, x, epoch_shifts(cfg, 50, 3, 0))["input_ids"], full["input_ids"])
    assert not torch.equal(augment_inputs(cfg, x, epoch_shifts(cfg, 50, 3, 1))["input_ids"], full["input_ids"])


def test_spans_drop_runs_of_neighbouring_tokens():
    width = 60
    ids = torch.arange(1, width + 1)[None, :].repeat(300, 1)
    ids[:, 0], ids[:, -1] = 101, 102
    x = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    seeds = torch.arange(300)
    singles = drop_tokens(x, seeds, 0.3, 1)
    spans = drop_tokens(x, seeds, 0.3, 4)

    def runs(out):  # mean length of the runs of dropped positions
        lengths = []
        for r in range(len(ids)):
            kept = set(out["input_ids"][r][out["attention_mask"][r].bool()].tolist())
            run = 0
            for v in ids[r].tolist():
                if v not in kept:
                    run += 1
                elif run:
                    lengths.append(run)
                    run = 0
        return sum(lengths) / len(lengths)

    assert runs(spans) > 2 * runs(singles)


def test_rate_zero_changes_nothing():
    x, _ = _batch(20)
    out = drop_tokens(x, torch.arange(20), 0.0)
    assert all(torch.equal(out[k], x[k]) for k in x)
