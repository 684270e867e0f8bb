"""The profiler: statistics against known numbers, and real timing of real ONNX files in fresh processes."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from edgedistill.errors import UserError
from edgedistill.profile import interleaved_ratio, latency_stats, probe, profile_models
from edgedistill.profile.compare import burst_medians
from edgedistill.profile.probe import ProbeError, op_breakdown
from edgedistill.profile.synthetic import synthetic_mlp
from edgedistill.target import Target, load_target

from .conftest import run_cli

CPU = Target(name="cpu_any", arch="any", threads=1)


def test_latency_stats_on_known_samples():
    s = latency_stats(list(range(1, 101)), batch=4)  # 1..100 ms
    assert s["p50_ms"] == pytest.approx(50.5)
    assert s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01)
    assert s["mean_ms"] == pytest.approx(50.5)
    assert s["std_ms"] == pytest.approx(math.sqrt((100**2 - 1) / 12))
    assert s["min_ms"] == 1 and s["max_ms"] == 100
    assert s["cv"] == pytest.approx(s["std_ms"] / 50.5)
    assert s["throughput_per_s"] == pytest.approx(4 * 1000 / 50.5)


def test_latency_stats_constant_and_empty():
    s = latency_stats([2.0] * 10)
    assert s["std_ms"] == 0 and s["cv"] == 0 and s["p99_ms"] == 2.0
    with pytest.raises(ValueError):
        latency_stats([])


def test_interleaved_ratio_ignores_load_shared_by_both_bursts():
    # B is exactly 2x A, but bursts 3-5 ran while the machine was 3x slower for both.
    load = [1, 1, 1, 3, 3, 3, 1, 1, 1, 1]
    a = [1.0 * load[b] for b in range(10) for _ in range(10)]
    b = [2.0 * load[b] for b in range(10) for _ in range(10)]
    r = interleaved_ratio(a, b, burst=10)
    assert r["ratio"] == pytest.approx(2.0) and r["bursts"] == 10


def test_interleaved_ratio_ignores_spikes_that_hit_only_one_model():
    # B is 1.5x A; a neighbour job slows half of the runs in A's bursts 0-4 and B's bursts 5-9 by 40 %.
    a = [1.0 * (1.4 if b < 5 and i % 2 else 1.0) for b in range(10) for i in range(10)]
    b = [1.5 * (1.4 if b >= 5 and i % 2 else 1.0) for b in range(10) for i in range(10)]
    r = interleaved_ratio(a, b, burst=10)
    assert r["ratio"] == pytest.approx(1.5) and r["q25"] == pytest.approx(1.5)


def test_burst_medians_drop_incomplete_tail():
    assert list(burst_medians([1, 2, 3, 10, 20, 30, 99], burst=3)) == [2, 20]
    assert list(burst_medians([5, 7], burst=3)) == [6]


def _trace(tmp_path):
    """A hand-written ORT profile: 3 model runs (first is warm-up), known kernel times."""
    ev = []
    for r in range(3):
        t = 1000 * r
        ev.append({"cat": "Session", "name": "model_run", "ts": t, "dur": 900})
        ev.append({"cat": "Node", "name": "q_kernel_time", "ts": t + 1, "dur": 10 if r else 999,
                   "args": {"op_name": "DynamicQuantizeLinear", "provider": "CPUExecutionProvider",
                            "input_type_shape": [{"float": [1, 4]}]}})
        ev.append({"cat": "Node", "name": "mm_kernel_time", "ts": t + 2, "dur": 60,
                   "args": {"op_name": "MatMulInteger", "provider": "CPUExecutionProvider",
                            "input_type_shape": [{"uint8": [1, 4]}, {"int8": [4, 4]}]}})
        ev.append({"cat": "Node", "name": "relu_kernel_time", "ts": t + 3, "dur": 30,
                   "args": {"op_name": "Relu", "input_type_shape": [{"float": [1, 4]}]}})
        ev.append({"cat": "Node", "name": "relu_fence_before", "ts": t + 3, "dur": 500, "args": {"op_name": "Relu"}})
    p = tmp_path / "trace.json"
    p.write_text(json.dumps(ev))
    return p


def test_op_breakdown_from_a_known_trace(tmp_path):
    ops = op_breakdown(str(_trace(tmp_path)), skip_runs=1)
    assert ops["runs"] == 2
    assert ops["total_ms"] == pytest.approx(0.1)  # (10 + 60 + 30) us per run; warm-up and fences excluded
    assert ops["share"] == {"int8": 0.6, "float": 0.3, "convert": 0.1, "other": 0.0}
    assert [r["op"] for r in ops["top"]] == ["MatMulInteger", "Relu", "DynamicQuantizeLinear"]
    assert ops["top"][0]["ms"] == pytest.approx(0.06) and ops["top"][0]["precision"] == "int8"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"base": synthetic_mlp(d / "base.onnx", width=512, depth=3),
            "slow": synthetic_mlp(d / "slow.onnx", width=512, depth=3, extra_ops=80)}


def test_profile_models_times_each_model_in_its_own_fresh_process(models):
    res = profile_models(models, CPU, runs=60, warmup=5, burst=10)
    assert set(res) == {"base", "slow"}
    for s in res.values():
        for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "cv", "batch", "threads", "runs"):
            assert key in s
        assert s["runs"] == 60 and len(s["samples_ms"]) == 60
        assert 0 < s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
        assert s["throughput_per_s"] == pytest.approx(1000 / s["mean_ms"])
        assert 10 < s["peak_rss_mb"] < 2000 and s["session_rss_mb"] > 0
        assert s["providers"] == ["CPUExecutionProvider"] and s["cpu"] and s["target"] == "cpu_any"
        assert s["pid"] != os.getpid()
    assert res["base"]["pid"] != res["slow"]["pid"]
    # 160 extra element-wise ops on a 512-wide tensor: the profiler must see it, and the op breakdown must say why
    # a very wide robust ratio (interleaved bursts), not a speedup figure
    assert interleaved_ratio(res["base"]["samples_ms"], res["slow"]["samples_ms"], 10)["ratio"] > 1.05
    top_slow = {r["op"] for r in res["slow"]["ops"]["top"][:3]}
    assert top_slow & {"Mul", "Relu"}
    share = res["base"]["ops"]["share"]  # an all-float model: no int8 or conversion kernels at all
    assert share["int8"] == 0 and share["convert"] == 0 and share["float"] > 0


def test_int8_share_of_a_quantized_model(models, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q = tmp_path / "int8.onnx"
    quantize_dynamic(str(models["base"]), str(q), weight_type=QuantType.QInt8)
    ops = profile_models({"q": q}, CPU, runs=20, warmup=2)["q"]["ops"]
    # structure, not a time share (ORT's profiler shares move with machine load: 0.18 was seen for > 0.2)
    assert ops["share"]["int8"] > 0, ops
    assert sum(ops["share"].values()) == pytest.approx(1.0, abs=1e-3)
    int8_rows = [r for r in ops["top"] if r["precision"] == "int8"]
    assert int8_rows and all(r["ms"] > 0 and r["nodes"] >= 1 for r in int8_rows)
    assert {r["op"] for r in int8_rows} & {"MatMulInteger", "DynamicQuantizeMatMul", "QGemm", "MatMulIntegerToFloat"}


def test_time_budget_stops_early(models):
    s = profile_models({"m": models["slow"]}, CPU, runs=1_000_000, warmup=1, burst=10, time_budget_s=0.3,
                       op_profile_runs=0)["m"]
    assert s["time_budget_hit"] is True
    assert 20 <= s["runs"] < 1_000_000
    assert len(s["pids"]) == 3  # every round got its share of the budget


def test_bursts_are_split_over_rounds_of_fresh_processes(models):
    """One process can run an identical file 10-25% slower for its whole life; rounds of fresh ones outvote it."""
    res = probe.coordinate({"models": {"a": str(models["base"]), "b": str(models["slow"])}, "runs": 50,
                            "warmup": 1, "burst": 10, "rounds": 3})["models"]
    for s in res.values():
        assert s["rounds"] == 3 and s["runs"] == 50 and len(s["samples_ms"]) == 50
        assert len(set(s["pids"])) == 3 and s["pid"] == s["pids"][-1]
    assert not set(res["a"]["pids"]) & set(res["b"]["pids"])
    one = probe.coordinate({"models": {"a": str(models["base"])}, "runs": 20, "warmup": 0, "burst": 10,
                            "rounds": 1})["models"]["a"]
    assert one["rounds"] == 1 and len(one["pids"]) == 1 and one["runs"] == 20
    few = probe.coordinate({"models": {"a": str(models["base"])}, "runs": 10, "warmup": 0, "burst": 10,
                            "rounds": 3})["models"]["a"]  # one burst cannot be split: one round
    assert few["rounds"] == 1 and few["runs"] == 10
    with pytest.raises(UserError, match="rounds"):
        profile_models({"m": models["base"]}, CPU, rounds=0)


def test_given_feed_and_batch_are_used(models):
    feed = {"x": np.ones((3, 64), np.float32)}
    s = profile_models({"m": models["base"]}, CPU, batch=3, runs=10, warmup=1, feed=feed, op_profile_runs=0)["m"]
    assert s["input_shapes"] == {"x": [3, 64]} and s["batch"] == 3
    s = profile_models({"m": models["base"]}, CPU, batch=5, runs=10, warmup=1, op_profile_runs=0)["m"]
    assert s["input_shapes"] == {"x": [5, 64]}


def test_bad_inputs_are_user_errors(tmp_path, models):
    with pytest.raises(UserError, match="not found"):
        profile_models({"m": tmp_path / "nope.onnx"}, CPU)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot time the model"):
        profile_models({"m": junk}, CPU, runs=5)
    with pytest.raises(UserError, match="cannot time the model") as err:  # the error names the file that failed
        profile_models({"ok": models["base"], "bad": junk}, CPU, runs=5)
    assert err.value.where == str(junk.resolve())
    arm = load_target("arm64_mobile")
    if arm.arch != __import__("platform").machine().lower():
        with pytest.raises(UserError, match="not usable"):
            profile_models({"m": models["base"]}, arm)


def _child_workers() -> list[int]:
    """Running probe workers whose parent is this test process (from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"probe.py" in cmd:
            out.append(int(d))
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_worker_that_fails_to_load_is_not_left_running(tmp_path, models):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ProbeError, match="junk"):
        probe.coordinate({"models": {"ok": str(models["base"]), "junk": str(junk)}, "runs": 5, "warmup": 0})
    assert _child_workers() == []


def test_probe_config_keys_may_be_missing_or_null(models):
    # `python probe.py run CONFIG.json` on a device: absent and null keys both mean "the default"
    res = probe.coordinate({"models": {"m": str(models["base"])}, "runs": 4, "warmup": 0, "burst": 2,
                            "threads": None, "batch": None, "seed": None, "time_budget_s": None})
    s = res["models"]["m"]
    assert s["runs"] == 4 and s["batch"] == 1 and s["threads"] == 1 and s["input_shapes"] == {"x": [1, 64]}


def test_cli_profile_json_is_one_document(models):
    proc = run_cli("profile", str(models["base"]), "--runs", "20", "--warmup", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["runs"] == 20 and doc["p50_ms"] > 0 and doc["ops"]["top"]


@pytest.mark.slow  # each CLI start imports torch (~4 s here)
def test_cli_profile_text_and_errors(models, tmp_path):
    proc = run_cli("profile", str(models["base"]), "--runs", "20", "--target", "x86_avx2")
    if proc.returncode == 2:  # a machine without AVX2
        assert "x86_avx2" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert "p50" in proc.stdout and "peak RSS" in proc.stdout and "operator time" in proc.stdout
    for args, needle in ((["profile", str(tmp_path / "x.onnx")], "not found"),
                         (["profile", str(models["base"]), "--runs", "0"], "--runs"),
                         (["profile", str(models["base"]), "--target", "x86_vnnni"], 'did you mean "x86_vnni"')):
        proc = run_cli(*args)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
