"""Pruning: real Torch-Pruning cuts, real ONNX exports run in ONNX Runtime, masks, schedules, plan replay."""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from edgedistill.errors import UserError
from edgedistill.evaluate import onnx_predictor
from edgedistill.export import export_onnx
from edgedistill.models import build_model
from edgedistill.prune.allocate import spread
from edgedistill.prune.pattern import parse_pattern
from edgedistill.prune.plan import apply_plan, merge_plans
from edgedistill.prune.sparsity import (
    cubic_sparsity,
    magnitude_masks,
    nm_mask,
    nm_masks,
    prunable_weights,
    sparsity_of,
)
from edgedistill.prune.structured import prunable_layers, prune_structured

SHAPE = (1, 8, 8)


def _model(name="cnn", seed=0, **kw):
    torch.manual_seed(seed)
    model = build_model({"name": name, **kw}, SHAPE, 10).eval()
    for m in model.modules():  # non-trivial BN statistics, so a wrong slice would change the outputs
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return model


def _x(n=16):
    return torch.from_numpy(np.random.default_rng(0).standard_normal((n, *SHAPE)).astype(np.float32))


def _convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_pruned_cnn_has_fewer_channels_and_a_smaller_onnx_file_that_runs(tmp_path):
    model = _model(channels=[16, 32])
    pruned = copy.deepcopy(model)
    result = prune_structured(pruned, _x(1), ratio=0.5)
    assert [c.out_channels for c in _convs(model)] == [16, 32]
    assert [c.out_channels for c in _convs(pruned)] == [8, 16]
    assert result.channels == {"0.0": [16, 8], "0.4": [32, 16]}
    head = [m for m in pruned.modules() if isinstance(m, nn.Linear)][-1]
    assert head.out_features == 10 and head.in_features == 16  # classes kept, inputs follow the last conv

    a = export_onnx(model, tmp_path / "a.onnx", SHAPE)
    b = export_onnx(pruned, tmp_path / "b.onnx", SHAPE)
    assert b.stat().st_size < 0.5 * a.stat().st_size
    x = _x(32).numpy()
    out = onnx_predictor(b)({"input": x})["logits"]
    assert out.shape == (32, 10) and np.isfinite(out).all()
    with torch.no_grad():
        np.testing.assert_allclose(out, pruned(torch.from_numpy(x)).numpy(), atol=1e-4)


def test_residual_network_prunes_consistently_and_replays(tmp_path):
    model = _model("resnet", channels=[16, 32], blocks=2)
    pruned = copy.deepcopy(model)
    result = prune_structured(pruned, _x(1), ratio=0.5)
    blocks = [m for m in pruned.modules() if type(m).__name__ == "_Residual"]
    assert len(blocks) == 4
    for block in blocks:  # the add ties the block's output to its input: both must shrink together
        first, second = block.body[0], block.body[3]
        assert first.in_channels == second.out_channels
        assert block.body[1].num_features == first.out_channels and block.body[4].num_features == second.out_channels
    stem = [c for c in _convs(pruned) if c.stride == (2, 2)]
    assert [c.out_channels for c in stem] == [8, 16]
    assert all(c.out_channels % 8 == 0 for c in _convs(pruned))
    with torch.no_grad():
        out = pruned(_x())
    assert out.shape == (16, 10)

    # the plan is plain JSON and rebuilds the same architecture on a fresh model; the weights then load
    plan = json.loads(json.dumps(result.plan))
    fresh = build_model({"name": "resnet", "channels": [16, 32], "blocks": 2, "prune_plan": plan}, SHAPE, 10).eval()
    fresh.load_state_dict(pruned.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(_x()), out)
    # replaying the plan on the unpruned *trained* model gives the pruned model, weights included
    replayed = apply_plan(copy.deepcopy(model).eval(), plan)
    with torch.no_grad():
        torch.testing.assert_close(replayed(_x()), out)


def test_channel_counts_round_to_the_nearest_multiple():
    a = _model(channels=[16, 32])
    prune_structured(a, _x(1), ratio=0.3, round_to=8)
    assert [c.out_channels for c in _convs(a)] == [8, 24]  # 11.2 and 22.4 kept -> nearest multiples of 8
    b = _model(channels=[16, 32])
    prune_structured(b, _x(1), ratio=0.3, round_to=1)
    assert [c.out_channels for c in _convs(b)] == [11, 22]
    c = _model(channels=[16, 32])
    prune_structured(c, _x(1), ratio=0.8, round_to=8)
    assert [c.out_channels for c in _convs(c)] == [8, 8]  # 3.2 kept would round to 0: one multiple stays
    d = _model(channels=[64, 128])
    prune_structured(d, _x(1), ratio=0.5, layer_ratios={"0.0": 0.7577, "0.4": 0.3711}, round_to=8)
    assert [c.out_channels for c in _convs(d)] == [16, 80]  # 15.5 -> 16 (rounding down would give 8)


@pytest.mark.parametrize("importance", ["l1", "l2", "bn_scale"])
def test_importance_removes_the_weakest_channels(importance):
    model = _model(channels=[16, 32])
    conv, bn = model[0][0], model[0][1]
    weak = [1, 4, 6, 9, 11, 12, 13, 15]
    with torch.no_grad():
        conv.weight[weak] *= 1e-3
        bn.weight[weak] *= 1e-3
    result = prune_structured(model, _x(1), ratio=0.5, importance=importance)
    kept = next(g for g in result.plan["groups"] if g["module"] == "0.0")["keep"]
    assert kept == [i for i in range(16) if i not in weak]


def test_taylor_importance_uses_gradients_of_real_batches():
    model = _model(channels=[16, 32])
    x, y = _x(32), torch.arange(32) % 10
    a = prune_structured(copy.deepcopy(model), _x(1), ratio=0.5, importance="taylor", grad_batches=[(x, y)])
    b = prune_structured(copy.deepcopy(model), _x(1), ratio=0.5, importance="taylor", grad_batches=[(x, (y + 3) % 10)])
    assert [len(g["keep"]) for g in a.plan["groups"]] == [16, 8]
    assert a.plan != b.plan  # other labels, other gradients, other channels
    with pytest.raises(UserError):
        prune_structured(copy.deepcopy(model), _x(1), ratio=0.5, importance="taylor")


def test_global_scope_prunes_the_weak_layer_more():
    def skewed():
        model = _model(channels=[16, 32])
        weak = list(range(24))  # 24 of the second layer's 32 channels barely matter, in every coupled layer
        with torch.no_grad():
            model[0][4].weight[weak] *= 1e-3
            model[0][5].weight[weak] *= 1e-3
            model[1][2].weight[:, weak] *= 1e-3
        return model

    local, ranked = skewed(), skewed()
    prune_structured(local, _x(1), ratio=0.5, scope="layer")
    prune_structured(ranked, _x(1), ratio=0.5, scope="global")
    assert [c.out_channels for c in _convs(local)] == [8, 16]
    assert [c.out_channels for c in _convs(ranked)] == [16, 8]  # same 24 channels removed, all where they are weak


def test_layer_ratios_and_max_ratio():
    model = _model(channels=[16, 32])
    assert prunable_layers(model, _x(1)) == {"0.0": 16, "0.4": 32}
    prune_structured(model, _x(1), ratio=0.5, layer_ratios={"0.0": 0.0, "0.4": 0.75})
    assert [c.out_channels for c in _convs(model)] == [16, 8]
    with pytest.raises(UserError, match="no layer named"):
        prune_structured(_model(channels=[16, 32]), _x(1), ratio=0.5, layer_ratios={"0.9": 0.5})


def test_apply_plan_refuses_a_plan_for_another_architecture():
    model = _model(channels=[16, 32])
    plan = prune_structured(copy.deepcopy(model), _x(1), ratio=0.5).plan
    with pytest.raises(UserError, match="expects 32 channels"):
        build_model({"name": "cnn", "channels": [16, 24], "prune_plan": plan}, SHAPE, 10)
    with pytest.raises(UserError, match="not a pruning plan"):
        apply_plan(_model(channels=[16, 32]), {"groups": []})


def test_chained_plans_replay_in_order():
    model = _model(channels=[16, 32])
    first = prune_structured(model, _x(1), ratio=0.5).plan
    second = prune_structured(model, _x(1), ratio=0.5, round_to=1).plan
    assert [c.out_channels for c in _convs(model)] == [4, 8]
    fresh = build_model({"name": "cnn", "channels": [16, 32], "prune_plan": merge_plans(first, second)}, SHAPE, 10)
    fresh.load_state_dict(model.state_dict(), strict=True)


def test_cubic_schedule_matches_zhu_gupta():
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n Δt))^3 with t0 = 100, n Δt = 800, s_i = 0.1, s_f = 0.9
    kw = {"initial": 0.1, "begin": 100, "end": 900}
    assert cubic_sparsity(0, 0.9, **kw) == pytest.approx(0.1)
    assert cubic_sparsity(100, 0.9, **kw) == pytest.approx(0.1)
    assert cubic_sparsity(500, 0.9, **kw) == pytest.approx(0.9 - 0.8 / 8)  # halfway: (1/2)^3 of the gap left
    assert cubic_sparsity(300, 0.9, **kw) == pytest.approx(0.9 - 0.8 * 0.75**3)
    assert cubic_sparsity(900, 0.9, **kw) == pytest.approx(0.9)
    assert cubic_sparsity(5000, 0.9, **kw) == pytest.approx(0.9)
    # between pruning steps (every Δt = 100) the sparsity holds its last value
    assert cubic_sparsity(399, 0.9, every=100, **kw) == pytest.approx(cubic_sparsity(300, 0.9, **kw))
    values = [cubic_sparsity(t, 0.9, **kw) for t in range(0, 1000, 10)]
    assert all(b >= a for a, b in itertools.pairwise(values))
    gains = np.diff([cubic_sparsity(t, 0.9, **kw) for t in range(100, 901, 100)])
    assert all(b < a for a, b in itertools.pairwise(gains))  # prunes fast first, slowly near the end


def test_two_four_masks_have_exactly_two_zeros_in_every_group_of_four():
    torch.manual_seed(0)
    linear, conv = nn.Linear(16, 24), nn.Conv2d(8, 12, 3)
    for w in (linear.weight, conv.weight):
        mask = nm_mask(w, 2, 4)
        assert mask.shape == w.shape
        groups = (mask.permute(0, 2, 3, 1) if w.dim() == 4 else mask).reshape(-1, 4)  # along input channels
        assert ((~groups).sum(1) == 2).all()
        mags = (w.detach().abs().permute(0, 2, 3, 1) if w.dim() == 4 else w.detach().abs()).reshape(-1, 4)
        kept_min = torch.where(groups, mags, torch.inf).min(1).values
        dropped_max = torch.where(~groups, mags, -torch.inf).max(1).values
        assert (kept_min >= dropped_max).all()  # the two largest of each four survive
    model = _model(channels=[16, 32])
    masks, skipped = nm_masks(prunable_weights(model), *parse_pattern("2:4"))
    assert skipped == ["0.0.weight"]  # one input channel: no group of four along it
    assert set(masks) == {"0.4.weight", "1.2.weight"}
    with pytest.raises(UserError):
        parse_pattern("4:2")


def test_magnitude_masks_hit_the_sparsity_per_layer_and_globally():
    model = _model(channels=[16, 32])
    weights = prunable_weights(model)
    for name, mask in magnitude_masks(weights, 0.75).items():
        assert (~mask).sum().item() == int(0.75 * weights[name].numel())
    masks = magnitude_masks(weights, 0.75, "global")
    dropped = sum((~m).sum().item() for m in masks.values())
    assert dropped == int(0.75 * sum(w.numel() for w in weights.values()))
    with torch.no_grad():
        for name, m in masks.items():
            weights[name].mul_(m)
    assert sparsity_of(weights) == pytest.approx(0.75, abs=1e-3)


def test_latency_budget_spread():
    channels = {"a": 16, "b": 32, "c": 64}
    ratios = spread(0.5, channels, {"a": 0.0, "b": 1.0, "c": 2.0}, cap=0.9)
    assert ratios["a"] == 0.0 and ratios["c"] > ratios["b"] > 0
    assert sum(ratios[n] * c for n, c in channels.items()) == pytest.approx(0.5 * 112, rel=1e-3)
    assert spread(0.5, channels, dict.fromkeys(channels, 0.0), cap=0.9) == dict.fromkeys(channels, 0.5)
    assert max(spread(0.8, channels, {"a": 0.0, "b": 0.0, "c": 1.0}, cap=0.9).values()) == 0.9


def test_missing_torch_pruning_is_a_user_error_with_the_install_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # what an absent package looks like to import
    with pytest.raises(UserError) as info:
        prune_structured(_model(channels=[16, 32]), _x(1), ratio=0.5)
    assert "edgedistill[prune]" in info.value.fix


def test_transformer_loses_heads_and_ffn_neurons_but_keeps_hidden_size():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32, num_labels=3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).eval()
    ids = torch.randint(0, 64, (2, 16))
    result = prune_structured(model, ids[:1], ratio=0.5, head_ratio=0.5)
    for layer in model.bert.encoder.layer:
        assert layer.attention.self.num_attention_heads == 2
        assert layer.attention.self.query.out_features == 16  # 2 heads of 8
        assert layer.intermediate.dense.out_features == 32
        assert layer.output.dense.out_features == 32  # the residual stream keeps its width
    assert result.heads == {f"bert.encoder.layer.{i}.attention.self": [4, 2] for i in range(2)}
    with torch.no_grad():
        out = model(ids).logits
    fresh = apply_plan(transformers.BertForSequenceClassification(cfg).eval(), json.loads(json.dumps(result.plan)))
    fresh.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids).logits, out)
