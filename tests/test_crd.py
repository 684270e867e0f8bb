"""CRD (contrast.py, terms/crd.py): the NCE loss and the memory against their formulas, Z fixed on the first
batch, the heads trained but never exported, the memory restored by --resume, bad settings refused."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from edgedistill.distill.contrast import ContrastMemory, CRDHeads, memory_dots, nce_loss, sample_negatives
from edgedistill.distill.features import Recorder, check_layers
from edgedistill.distill.kd import train_student
from edgedistill.errors import UserError
from edgedistill.models import build_model
from edgedistill.recipe import load_recipe
from tests.builders import interrupt_at_call
from tests.test_distill import distill, stage_inputs
from tests.test_terms import _train

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
CRD_KL_CE = "[{name: crd, weight: 0.8}, {name: kl, weight: 0.9}, {name: ce, weight: 0.1}]"


def _unit(rows: list[list[float]]) -> torch.Tensor:
    t = torch.tensor(rows, dtype=torch.float32)
    return t / t.norm(dim=1, keepdim=True)


def test_nce_loss_equals_the_formula_computed_by_hand():
    """Both directions, with a fixed memory, fixed contrast rows and Z set: every term spelled out in floats."""
    n, t = 5, 0.5
    mem = ContrastMemory(feat_dim=2, n_data=n, nce_k=2, nce_t=t, momentum=0.5)
    mem.memory_s.copy_(_unit([[1, 0], [0, 1], [1, 1], [1, -1], [-1, 0.5]]))
    mem.memory_t.copy_(_unit([[0, 1], [1, 2], [-1, 1], [2, 1], [1, 0]]))
    mem.z.copy_(torch.tensor([3.0, 7.0]))
    v_s, v_t = _unit([[1, 2], [3, -1]]), _unit([[-1, 1], [1, 1]])
    rows = torch.tensor([[0, 2, 4], [3, 1, 0]])  # column 0 the positives (batch rows 0 and 3 of the split)
    out_s, out_t = mem.scores(v_s, v_t, rows)

    def by_hand(anchor, memory, z):
        loss = 0.0
        for b in range(2):
            p = [math.exp(float(anchor[b] @ memory[j]) / t) / z for j in rows[b].tolist()]
            noise = 2 / n  # m · P_n with m = 2 negatives, P_n = 1/n
            loss -= math.log(p[0] / (p[0] + noise + 1e-7))
            loss -= sum(math.log(noise / (q + noise + 1e-7)) for q in p[1:])
        return loss / 2

    expect_s = by_hand(v_s, mem.memory_t, 3.0)  # student anchor against the teacher's memory
    expect_t = by_hand(v_t, mem.memory_s, 7.0)  # teacher anchor against the student's memory
    assert nce_loss(out_s, n).item() == pytest.approx(expect_s, rel=1e-5)
    assert nce_loss(out_t, n).item() == pytest.approx(expect_t, rel=1e-5)
    assert expect_s != pytest.approx(expect_t)  # the two directions really read different banks


def test_z_is_estimated_on_the_first_batch_then_fixed():
    torch.manual_seed(0)
    n = 50
    mem = ContrastMemory(feat_dim=4, n_data=n, nce_k=8, nce_t=0.07, momentum=0.5)
    v_s, v_t = torch.nn.functional.normalize(torch.randn(6, 4), dim=1), torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    rows = sample_negatives(torch.arange(6), n, 8)
    w_t, w_s = mem.memory_t[rows], mem.memory_s[rows]
    first_s = torch.exp(torch.einsum("bkd,bd->bk", w_t, v_s) / 0.07).mean() * n
    first_t = torch.exp(torch.einsum("bkd,bd->bk", w_s, v_t) / 0.07).mean() * n
    mem.scores(v_s, v_t, rows)
    assert mem.z.tolist() == pytest.approx([first_s.item(), first_t.item()], rel=1e-5)
    z = mem.z.clone()
    mem.update(v_s, v_t, torch.arange(6))
    mem.scores(-v_s, v_t * 2, sample_negatives(torch.arange(6, 12), n, 8))  # other rows, other scores
    assert torch.equal(mem.z, z)


def test_memory_update_is_momentum_then_renormalise():
    mem = ContrastMemory(feat_dim=3, n_data=4, nce_k=2, nce_t=0.07, momentum=0.25)
    before_s, before_t = mem.memory_s.clone(), mem.memory_t.clone()
    v_s, v_t = _unit([[1, 0, 0], [0, 2, 1]]), _unit([[0, 0, 1], [1, 1, 1]])
    idx = torch.tensor([3, 1])
    mem.update(v_s, v_t, idx)
    for memory, before, v in ((mem.memory_s, before_s, v_s), (mem.memory_t, before_t, v_t)):
        for b, row in enumerate(idx.tolist()):
            mixed = [0.25 * before[row, d].item() + 0.75 * v[b, d].item() for d in range(3)]
            norm = math.sqrt(sum(x * x for x in mixed))
            assert memory[row].tolist() == pytest.approx([x / norm for x in mixed], rel=1e-5)
        untouched = [0, 2]
        assert torch.equal(memory[untouched], before[untouched])


def test_negatives_are_uniform_over_the_other_rows():
    torch.manual_seed(0)
    idx = torch.tensor([0, 3, 6])
    rows = sample_negatives(idx, 7, 3000)
    assert torch.equal(rows[:, 0], idx)
    neg = rows[:, 1:]
    assert not (neg == idx.unsqueeze(1)).any() and int(neg.min()) >= 0 and int(neg.max()) <= 6
    for b in range(3):  # each of the 6 other rows about 1/6 of the draws
        counts = torch.bincount(neg[b], minlength=7).float() / 3000
        others = [j for j in range(7) if j != idx[b]]
        assert counts[others].sub(1 / 6).abs().max() < 0.03


def test_heads_train_the_projections_not_the_teacher_and_the_loss_has_gradients():
    torch.manual_seed(0)
    heads = CRDHeads(6, 10, feat_dim=4, n_data=20, nce_k=5, nce_t=0.1, momentum=0.5)
    f_s = torch.randn(4, 6, requires_grad=True)
    f_t = torch.randn(4, 10, requires_grad=True)
    loss, v_s, _ = heads(f_s, f_t, torch.tensor([0, 5, 7, 19]))
    loss.backward()
    assert f_s.grad.abs().sum() > 0 and f_t.grad is None  # the teacher's features are detached
    assert heads.embed_s.linear.weight.grad.abs().sum() > 0 and heads.embed_t.linear.weight.grad.abs().sum() > 0
    assert v_s.norm(dim=1).tolist() == pytest.approx([1.0] * 4)


def test_recorder_input_suffix_records_what_a_module_receives():
    torch.manual_seed(0)
    model = build_model({"name": "cnn", "channels": [4, 8]}, (1, 8, 8), 10).eval()
    x = torch.randn(3, 1, 8, 8)
    rec = Recorder(model, ["1.2:input", "1.2"])
    with torch.no_grad():
        out = model(x)
        flat = model[1][:2](model[0](x))
    assert torch.equal(rec.outputs["1.2:input"], flat) and torch.equal(rec.outputs["1.2"], out)
    rec.remove()
    check_layers(model, ["1.2:input"], "here")
    with pytest.raises(UserError, match=r"\"1\.22\""):
        check_layers(model, ["1.22:input"], "here")


@pytest.mark.parametrize(("setting", "where", "text"), [
    ("nce_t: 0", "losses.1.nce_t", "greater than 0"),
    ("nce_t: -1", "losses.1.nce_t", "greater than 0"),
    ("nce_mom: 1", "losses.1.nce_mom", "less than 1"),
    ("feat_dims: 64", "losses.1.feat_dims", 'did you mean "feat_dim"'),
    ("evenly: 2", "losses.1.evenly", "student_layer / teacher_layer"),
])
def test_bad_settings_fail_validation_at_their_file_line(tmp_path, setting, where, text):
    src = (RECIPES / "mobile.yaml").read_text()
    recipe = tmp_path / "crd.yaml"
    recipe.write_text(src.replace("    alpha: 0.9\n", f"    losses:\n      - {{name: ce}}\n      - name: crd\n        {setting}\n"))
    line = recipe.read_text().splitlines().index(f"        {setting}") + 1
    with pytest.raises(UserError) as err:
        load_recipe(str(recipe))
    assert err.value.where == f"{recipe}:{line}: stages.0.{where}", err.value.where
    assert text in f"{err.value.message} {err.value.fix}"


def test_an_unknown_layer_is_refused_before_training_with_the_closest_names(tmp_path):
    with pytest.raises(UserError) as err:
        _train(tmp_path, "[{name: crd, teacher_layer: '1.44:input'}, {name: ce}]")
    assert err.value.where == "stages.0.losses.0.teacher_layer" and '"1.44"' in err.value.message
    assert "1.4" in err.value.message


def test_crd_kl_ce_distills_heads_train_and_stay_out_of_the_export(tmp_path):
    import onnx

    from edgedistill.export import export_onnx

    def onnx_params(out, name):
        graph = onnx.load(str(export_onnx(out.model, tmp_path / name, (1, 8, 8)))).graph
        return sum(int(np.prod(i.dims)) for i in graph.initializer), sorted(n.op_type for n in graph.node)

    out, d, _ = distill(tmp_path / "crd", [f"stages.0.losses={CRD_KL_CE}", "stages.0.cache.enabled=false"])
    plain, _, _ = distill(tmp_path / "plain", ["stages.0.losses=[{name: kl, weight: 0.9}, {name: ce, weight: 0.1}]",
                                               "stages.0.cache.enabled=false"])
    step = d["steps"][0]
    crd = next(r for r in step["terms"] if r["loss"] == "crd")
    # the student is a cnn [8, 16] (input of its head 16 wide), the teacher a cnn with a 32-wide hidden layer
    assert crd["contrasted"] == ["1.2:input", "1.4:input"] and crd["nce_k"] == step["train_rows"] - 1 and "capped" in crd["note"]
    assert step["connector_params"] == crd["head_params"] == (16 * 128 + 128) + (32 * 128 + 128)
    assert step["connector_update_norm"] > 0 and all(z > 0 for z in crd["z"])
    assert step["teacher_forward_calls"][0] > 0  # the teacher's activations: it runs live
    assert all(math.isfinite(h["train_loss"]) for h in d["history"])
    assert onnx_params(out, "crd.onnx") == onnx_params(plain, "plain.onnx")
    assert sum(p.numel() for p in out.model.parameters()) == sum(p.numel() for p in plain.model.parameters())


def test_resume_restores_the_memory_banks_and_z(tmp_path):
    """Interrupted in epoch 2 and resumed, the run ends with the memory, Z and losses of an uninterrupted one."""

    def run(run_dir, interrupt_at=None, resume=False):
        state, cfg, ctx = stage_inputs(run_dir, [f"stages.0.losses={CRD_KL_CE}", "stages.0.train.epochs=3",
                                                 "stages.0.cache.enabled=false"])
        ctx.resume = resume
        torch.manual_seed(0)
        with interrupt_at_call(state.teacher, interrupt_at):
            info = train_student("s", state.model, [state.teacher], [1.0], cfg, ctx, seed=0,
                                 checkpoint=run_dir / "state.pt")
        return info, torch.load(run_dir / "state.pt", weights_only=True)

    full, saved_full = run(tmp_path / "full")
    per_epoch = full["history"][0]["step"]
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", interrupt_at=1 + per_epoch + 2)  # the dry pass, then epoch 2, step 2
    cut = torch.load(tmp_path / "cut" / "state.pt", weights_only=True)  # epoch 1's checkpoint
    resumed, saved_resumed = run(tmp_path / "cut", resume=True)
    assert resumed["resumed_from_epoch"] == 1

    def memory(saved):
        return next(v for v in saved["state"].values() if isinstance(v, dict) and "memory_s" in v)

    a, b, c = memory(saved_full), memory(saved_resumed), memory(cut)
    assert set(a) == {"memory_s", "memory_t", "z"} and not torch.equal(a["memory_s"], c["memory_s"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in full["history"]] == [h["train_loss"] for h in resumed["history"]]


def test_the_command_line_exits_2_naming_file_and_line(tmp_path):
    from tests.conftest import run_cli

    recipe = tmp_path / "crd.yaml"
    recipe.write_text((RECIPES / "mobile.yaml").read_text().replace(
        "    alpha: 0.9\n", "    losses:\n      - {name: ce}\n      - name: crd\n        nce_t: 0\n"))
    line = recipe.read_text().splitlines().index("        nce_t: 0") + 1
    done = run_cli("validate", str(recipe))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{recipe}:{line}: stages.0.losses.1.nce_t" in done.stderr + done.stdout


def test_text_embedding_contrasts_the_pooled_embeddings_from_the_cache(tmp_path, tiny_tokenizer):
    """No class logits: the student's and the (cached) teacher's sentence embeddings are contrasted, 16 vs 32 wide
    (k = 8 of ~90 rows: the gathered-rows path of memory_dots; the digits runs take the whole-bank one)."""
    pytest.importorskip("transformers")
    from edgedistill.distill.stage import run_distill
    from tests.test_distill_transformer import stage_inputs as text_stage_inputs

    stages = ("  - kind: distill\n    student: {name: hf, config: {model_type: bert, hidden_size: 16, "
              "num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 64}}\n"
              "    train: {epochs: 2, lr: 0.003}\n    losses: [{name: crd, feat_dim: 8, nce_k: 8}]\n")
    state, cfg, ctx = text_stage_inputs(tmp_path, tiny_tokenizer, stages, tmp_path / "run")
    out = run_distill(state, cfg, ctx)
    step = out.lineage[-1].details["steps"][0]
    crd = next(r for r in step["terms"] if r["loss"] == "crd")
    assert crd["contrasted"] == "outputs" and crd["nce_k"] == 8 and "note" not in crd
    assert step["connector_params"] == (16 * 8 + 8) + (32 * 8 + 8) and step["connector_update_norm"] > 0
    assert step["cache"]["use"] == "once"  # the outputs come from the cache: the teacher does not run per step
    assert all(math.isfinite(h["train_loss"]) for h in out.lineage[-1].details["history"])


def test_scores_stay_float32_under_float16_autocast():
    """exp(v·m/T) reaches e^(1/0.07) ≈ 1.6e6, past float16's range: the loss must not become inf under AMP."""
    torch.manual_seed(0)
    heads = CRDHeads(6, 10, feat_dim=16, n_data=100, nce_k=50, nce_t=0.07, momentum=0.5)
    with torch.autocast("cpu", dtype=torch.float16):
        loss, v_s, _ = heads(torch.randn(8, 6), torch.randn(8, 10), torch.arange(8))
    assert loss.dtype == v_s.dtype == torch.float32 and math.isfinite(loss.item())


def test_a_row_index_outside_the_memory_is_refused():
    from edgedistill.distill.stage import LossTerm
    from edgedistill.distill.terms import Batch, TermSetup
    from edgedistill.distill.terms.crd import CRDTerm

    torch.manual_seed(0)
    model = build_model({"name": "cnn", "channels": [4]}, (1, 8, 8), 10)
    setup = TermSetup(student=model, teacher=model, task=None, probe=None, num_classes=10, n_train=20, cfg=None,
                      where="stages.0.losses.0")
    term = CRDTerm(LossTerm(name="crd", feat_dim=4), setup)
    assert term.record() == (["1.2:input"], ["1.2:input"]) and term.nce_k == 19
    feats = {"1.2:input": torch.randn(3, 4)}
    term.build(feats, feats)
    batch = Batch(x={}, y=torch.zeros(3), idx=torch.tensor([0, 7, 19]), student=torch.zeros(3, 10),
                  student_kd=torch.zeros(3, 10), temperature=1.0, s_features=feats, t_features=feats)
    assert math.isfinite(term.loss(batch).item())
    batch.idx = torch.tensor([0, 7, 20])
    with pytest.raises(UserError, match="row index 20") as err:
        term.loss(batch)
    assert err.value.where == "stages.0.losses.0"


def test_the_whole_bank_matmul_gives_the_gathered_scores_and_gradients():
    """memory_dots picks one of two computations by size; both are v_b · M[rows[b, j]], with the same gradient."""
    torch.manual_seed(0)
    memory = torch.randn(30, 8)
    rows = sample_negatives(torch.tensor([0, 4, 29]), 30, 5)
    grads = []
    for full in (True, False):
        v = torch.randn(3, 8, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        out = memory_dots(memory, v, rows, full=full)
        expect = torch.stack([torch.stack([v[b] @ memory[j] for j in rows[b]]) for b in range(3)])
        assert torch.allclose(out, expect, atol=1e-5)
        out.pow(2).sum().backward()
        grads.append(v.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_streamed_shuffled_batches_carry_their_row_index_and_crd_trains_on_them(tmp_path):
    """The memory slot is the batch's `idx`: with a streamed image folder read by a worker in a shuffled order,
    each row's decoded input is the split's row `idx`, and a crd run on that data trains."""
    from edgedistill.data import DataConfig, load_dataset
    from edgedistill.data.loader import Batch as Planned
    from edgedistill.data.loader import batches
    from tests.test_streaming import write_images

    write_images(tmp_path / "imgs", per_class=8, size=10)
    train = load_dataset(DataConfig(name="image_folder", path=str(tmp_path / "imgs"), image_size=10, workers=1)).train
    assert train.streamed
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).numpy()
    plan = [Planned(order[i:i + 5], 0, i // 5) for i in range(0, len(order), 5)]
    got = list(batches(train, plan, workers=1))
    assert np.array_equal(torch.cat([g["idx"] for g in got]).numpy(), order)
    for g in got:
        assert np.array_equal(g["inputs"]["input"].numpy(), train.x[g["idx"].numpy()])

    state, cfg, ctx = stage_inputs(tmp_path / "run", [
        f"data={{name: image_folder, path: {tmp_path / 'imgs'}, image_size: 10, workers: 1, val_fraction: 0.25}}",
        "stages.0.losses=[{name: crd, feat_dim: 8}, {name: ce}]", "stages.0.cache.enabled=false"])
    assert ctx.data.train.streamed
    torch.manual_seed(0)
    info = train_student("s", state.model, [state.teacher], [1.0], cfg, ctx, seed=0, checkpoint=None)
    crd = next(r for r in info["terms"] if r["loss"] == "crd")
    assert crd["nce_k"] == info["train_rows"] - 1 and info["connector_update_norm"] > 0
