"""Self-contained latency probe: the one piece of code that times a model, here or on a remote device.

It needs only the standard library, numpy and onnxruntime (tensorrt for native engines), so the profiler can
copy this single file to a Raspberry Pi or Jetson over SSH and get the same statistics as locally.

Two modes:
  python probe.py run CONFIG.json   coordinate: fresh worker processes per model and round, bursts
                                    interleaved across the workers, prints one JSON result on stdout
  python probe.py worker            a worker: JSON-lines commands on stdin, replies on stdout

Why one process per model: a session's allocations (arena, thread pool, page cache of weights) would
otherwise color the next model's timings and make peak memory meaningless. Why interleaved bursts: on a
shared machine load comes and goes; alternating short bursts exposes every model to the same conditions.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Sequence

import numpy as np

ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
               "tensor(int8)": np.int8, "tensor(bool)": np.bool_}
CONVERT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
INT8_TYPES = {"int8", "uint8", "int4", "uint4"}
FLOAT_TYPES = {"float", "float16", "double", "bfloat16"}


def latency_stats(samples_ms: Sequence[float], batch: int = 1) -> dict[str, float]:
    """Percentiles, mean, std, coefficient of variation and throughput (items per second) of a sample."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latency samples")
    mean = float(a.mean())
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": mean,
        "std_ms": float(a.std()),
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
        "cv": float(a.std() / mean) if mean > 0 else 0.0,
        "throughput_per_s": float(batch * 1000.0 / mean) if mean > 0 else 0.0,
    }


def synthetic_feed(inputs, batch: int, shapes=None, seed: int = 0, sequence: int | None = None) -> dict:
    """Random inputs for `inputs` [(name, shape, onnx type)]: symbolic dims become `batch` (first), `sequence`
    (later symbolic dims, when given: a text model's token axis) or 1.

    A named entry in `shapes` wins. Integer inputs get 0/1 values, which are valid token ids and masks."""
    rng = np.random.default_rng(seed)
    feed = {}
    for name, dims, typ in inputs:
        if shapes and name in shapes:
            shape = [int(d) for d in shapes[name]]
        else:
            shape = [d if isinstance(d, int) and d > 0 else int(sequence or 1) for d in dims]
            if shape:
                shape[0] = batch
        dtype = ONNX_DTYPES.get(typ, np.float32)
        if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
            feed[name] = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            feed[name] = rng.standard_normal(shape).astype(dtype)
    return feed


def _status_mb(key: str) -> float | None:
    """A memory line of /proc/self/status (Linux), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb() -> float:
    """Current resident memory of this process."""
    return _status_mb("VmRSS") or peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process image. VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec
    and would report the parent's size for a freshly spawned worker."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def host_info() -> dict:
    """CPU model and the flags that matter for int8 kernels, where the timing actually ran."""
    cpu, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model")) and ":" in line:
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith(("flags", "Features")) and not flags:
                    flags = sorted(line.split(":", 1)[1].split())
    except OSError:
        pass
    import onnxruntime as ort

    keep = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm", "sve", "fphp")
    return {"cpu": cpu, "cpu_flags": [f for f in flags if f in keep], "machine": platform.machine(),
            "node": platform.node(), "python": platform.python_version(), "onnxruntime": ort.__version__,
            "cores": os.cpu_count()}


# ----------------------------------------------------------------------------------------------- sessions
SESSION_OPTION_KEYS = ("graph_optimization_level", "session_config")  # all a per-model entry may set
def ort_session(path: str, cfg: dict, profile_prefix: str | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(cfg.get("threads", 1))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    level = cfg.get("graph_optimization_level")
    if level:
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    for key, value in (cfg.get("session_config") or {}).items():  # e.g. optimization.disable_specified_optimizers
        opts.add_session_config_entry(str(key), str(value))
    poptions = cfg.get("provider_options") or {}
    providers = [(p, poptions.get(p, {})) for p in cfg.get("providers") or ["CPUExecutionProvider"]]
    return ort.InferenceSession(path, sess_options=opts, providers=providers)


class TrtSession:
    """A native TensorRT engine behind the two calls the probe uses (inputs(), run(feed)).

    The engine is built from the ONNX file on this device (engines are device-specific); fp16, or int8
    from the QDQ model's explicit scales. Buffers live on the GPU through torch.cuda."""

    def __init__(self, path: str, cfg: dict) -> None:
        import torch

        self.torch = torch
        self.engine = build_trt_engine(path, cfg.get("precision", "fp16"), int(cfg.get("batch", 1)),
                                       cfg.get("shapes") or {})
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()

    def inputs(self):
        import tensorrt as trt

        out = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
                typ = {v: k for k, v in ONNX_DTYPES.items()}.get(dtype.type, "tensor(float)")
                out.append((name, list(self.engine.get_tensor_shape(name)), typ))
        return out

    def providers(self) -> list[str]:
        return ["TensorRT"]

    def run(self, feed: dict) -> None:
        import tensorrt as trt

        torch = self.torch
        keep = []
        for name, arr in feed.items():
            t = torch.from_numpy(np.ascontiguousarray(arr)).cuda()
            self.context.set_input_shape(name, tuple(arr.shape))
            self.context.set_tensor_address(name, t.data_ptr())
            keep.append(t)
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                shape = tuple(self.context.get_tensor_shape(name))
                dtype = torch.from_numpy(np.zeros(1, trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
                t = torch.empty(shape, dtype=dtype, device="cuda")
                self.context.set_tensor_address(name, t.data_ptr())
                keep.append(t)
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()


def build_trt_engine(onnx_path: str, precision: str, batch: int, shapes: dict, workspace_mb: int = 1024,
                     save_to: str | None = None):
    """Parse ONNX, build a TensorRT engine (fp16, or int8 from Q/DQ nodes), optionally save it."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # explicit quantization: scales come from the Q/DQ nodes
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        shape = shapes.get(inp.name) or [batch if j == 0 and d < 0 else (1 if d < 0 else d)
                                         for j, d in enumerate(inp.shape)]
        profile.set_shape(inp.name, shape, shape, shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} ({precision})")
    if save_to:
        with open(save_to, "wb") as f:
            f.write(serialized)
    return trt.Runtime(logger).deserialize_cuda_engine(serialized)


class OrtRunner:
    def __init__(self, path: str, cfg: dict, profile_prefix: str | None = None) -> None:
        self.session = ort_session(path, cfg, profile_prefix)

    def inputs(self):
        return [(i.name, i.shape, i.type) for i in self.session.get_inputs()]

    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, feed: dict) -> None:
        self.session.run(None, feed)


class PteRunner:
    """An ExecuTorch program (.pte) behind the same calls, run by ExecuTorch's runtime with its delegates
    (XNNPACK) on a threadpool of the target's size. The file has no input names: they come from
    `cfg["input_names"]` (the task's), else `input` for a single input."""

    # ExecuTorch ScalarType codes → the ONNX type names the feed code uses
    TYPES: typing.ClassVar[dict[int, str]] = {0: "tensor(uint8)", 1: "tensor(int8)", 3: "tensor(int32)", 4: "tensor(int64)", 5: "tensor(float16)",
             6: "tensor(float)", 7: "tensor(double)", 11: "tensor(bool)"}

    def __init__(self, path: str, cfg: dict) -> None:
        import torch

        self.torch = torch
        self.method = load_pte(path, int(cfg.get("threads", 1)))
        meta = self.method.method_meta()
        n = meta.num_inputs()
        names = list(cfg.get("input_names") or (["input"] if n == 1 else [f"input_{i}" for i in range(n)]))
        self._inputs = [(names[i], [int(d) for d in meta.input_tensor_meta(i).sizes()],
                         self.TYPES.get(int(meta.input_tensor_meta(i).dtype()), "tensor(float)")) for i in range(n)]
        self._fed: dict | None = None
        self._tensors: list = []

    def inputs(self):
        return self._inputs

    def providers(self) -> list[str]:
        return ["executorch", "XnnpackBackend"]  # the delegate the exporter lowers to (export/executorch.py)

    def run(self, feed: dict) -> None:
        if feed is not self._fed:  # the same arrays every call: wrap them once (zero-copy)
            self._tensors = [self.torch.from_numpy(np.ascontiguousarray(feed[name])) for name, _, _ in self._inputs]
            self._fed = feed
        self.method(self._tensors)


def load_pte(path: str, threads: int | None = None):
    """The `forward` method of a .pte in ExecuTorch's runtime, on a threadpool of `threads` threads.

    The runtime's C extension is imported directly, after torch (it links libtorch): the public
    `executorch.runtime` module also imports the exporter, about 10 s more per process on these machines.
    Verification is InternalConsistency, as `executorch.runtime.Runtime.load_program` does by default."""
    import torch  # noqa: F401
    from executorch.extension.pybindings import _C

    if threads and _C._threadpool_get_thread_count() != int(threads):
        _C._unsafe_reset_threadpool(int(threads))
    program = _C._load_program(str(path), program_verification=_C.Verification.InternalConsistency)
    return program.load_method("forward")


def open_runner(path: str, cfg: dict, profile_prefix: str | None = None):
    if str(path).endswith(".pte"):  # the file names its runtime: an .onnx and a .pte can be timed in one run
        return PteRunner(path, cfg)
    if cfg.get("runtime") == "tensorrt":
        return TrtSession(path, cfg)
    return OrtRunner(path, cfg, profile_prefix)


# ------------------------------------------------------------------------------------ operator breakdown
def op_breakdown(trace_path: str, skip_runs: int, top: int = 10) -> dict:
    """Time per operator type from an ONNX Runtime profile trace, split into int8 / float / convert / other.

    Only kernels that ran after the first `skip_runs` model runs count, so warm-up does not skew it."""
    with open(trace_path) as f:
        events = json.load(f)
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    start = runs[skip_runs] if len(runs) > skip_runs else 0
    counted = max(len(runs) - skip_runs, 1)
    per_op: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time") or e["ts"] < start:
            continue
        args = e.get("args", {})
        op = args.get("op_name", "?")
        types = {k for d in args.get("input_type_shape", []) for k in d}
        if op in CONVERT_OPS:
            kind = "convert"
        elif types & INT8_TYPES:
            kind = "int8"
        elif types & FLOAT_TYPES:
            kind = "float"
        else:
            kind = "other"
        key = f"{op}|{kind}"
        rec = per_op.setdefault(key, {"op": op, "precision": kind, "us": 0.0, "calls": 0,
                                      "provider": args.get("provider", "")})
        rec["us"] += float(e.get("dur", 0))
        rec["calls"] += 1
    total = sum(r["us"] for r in per_op.values()) or 1.0
    rows = sorted(per_op.values(), key=lambda r: -r["us"])
    share: dict[str, float] = {"int8": 0.0, "float": 0.0, "convert": 0.0, "other": 0.0}
    for r in rows:
        share[r["precision"]] += r["us"] / total
    return {
        "runs": counted,
        "total_ms": total / 1e3 / counted,
        "share": {k: round(v, 4) for k, v in share.items()},
        "top": [{"op": r["op"], "precision": r["precision"], "ms": r["us"] / 1e3 / counted,
                 "share": round(r["us"] / total, 4), "nodes": r["calls"] // counted or 1, "provider": r["provider"]}
                for r in rows[:top]],
    }


# ------------------------------------------------------------------------------------------------ worker
def worker() -> None:
    """Serve one model: JSON-lines commands on stdin. Anything the runtime prints goes to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    state: dict = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        try:
            reply = _handle(msg, state)
        except Exception as exc:  # reported to the coordinator, which names the model
            reply = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:400]}"}
        proto.write(json.dumps(reply) + "\n")
        if msg.get("cmd") == "quit":
            break


def _handle(msg: dict, state: dict) -> dict:
    cmd = msg["cmd"]
    if cmd == "load":
        cfg = msg["cfg"]
        state["cfg"], state["path"] = cfg, msg["path"]
        if cfg.get("feed"):
            loaded = np.load(cfg["feed"])
            state["feed"] = {k: loaded[k] for k in loaded.files}
        base = rss_mb()
        t0 = time.perf_counter()
        state["runner"] = open_runner(msg["path"], cfg)
        load_ms = (time.perf_counter() - t0) * 1e3
        runner_inputs = state["runner"].inputs()
        if "feed" in state:  # one feed serves files with and without token types (a BERT export may drop them)
            names = [name for name, _, _ in runner_inputs]
            fed = state["feed"]
            if "token_type_ids" in names and "token_type_ids" not in fed and "input_ids" in fed:
                fed["token_type_ids"] = np.zeros_like(fed["input_ids"])
            state["feed"] = {k: v for k, v in fed.items() if k in names}
        if "feed" not in state:
            state["feed"] = synthetic_feed(runner_inputs, int(cfg.get("batch", 1)), cfg.get("shapes"),
                                           int(cfg.get("seed", 0)), cfg.get("sequence"))
        state["base_rss"] = base
        return {"ok": True, "load_ms": load_ms, "providers": state["runner"].providers(), "pid": os.getpid(),
                "inputs": {k: list(v.shape) for k, v in state["feed"].items()}}
    if cmd == "run":
        runner, feed, out = state["runner"], state["feed"], []
        for _ in range(int(msg["n"])):
            t0 = time.perf_counter()
            runner.run(feed)
            out.append((time.perf_counter() - t0) * 1e3)
        peak = peak_rss_mb()
        return {"ok": True, "samples_ms": out, "peak_rss_mb": peak, "session_rss_mb": peak - state["base_rss"]}
    if cmd == "ops":
        if state["cfg"].get("runtime") == "tensorrt" or isinstance(state["runner"], PteRunner):
            return {"ok": True, "ops": None}  # per-op times come from ONNX Runtime's profiler only
        warm, runs = 2, int(msg["runs"])
        with tempfile.TemporaryDirectory() as tmp:
            runner = OrtRunner(state["path"], state["cfg"], profile_prefix=os.path.join(tmp, "ort"))
            for _ in range(warm + runs):
                runner.run(state["feed"])
            trace = runner.session.end_profiling()
            return {"ok": True, "ops": op_breakdown(trace, warm)}
    if cmd == "quit":
        return {"ok": True}
    raise ValueError(f"unknown command {cmd!r}")


class Worker:
    """The coordinator's handle on one worker process.

    The process starts and is told to load its model at once; `loaded()` waits for the reply, so the
    workers of a round load side by side instead of one after another."""

    def __init__(self, name: str, path: str, cfg: dict) -> None:
        self.name = name
        self.info: dict = {}
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self._send({"cmd": "load", "path": path, "cfg": cfg})

    def loaded(self) -> dict:
        self.info = self._receive()
        return self.info

    def ask(self, msg: dict) -> dict:
        self._send(msg)
        return self._receive()

    def _send(self, msg: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker died; _receive reads why

    def _receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().strip().splitlines()
            raise ProbeError(self.name, f"worker died ({err[-1] if err else 'no message'})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise ProbeError(self.name, str(reply.get("error")))
        return reply

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.ask({"cmd": "quit"})
        except (ProbeError, OSError):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                f.close()


class ProbeError(RuntimeError):
    """A model could not be loaded or run; the message names it, `model` is its key in config["models"]."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(f"{model}: {message}")
        self.model = model


# ------------------------------------------------------------------------------------------- coordinator
def coordinate(config: dict, on_burst=None) -> dict:
    """Time every model of `config["models"]` in its own worker, bursts interleaved A,B,A,B,...

    Each model gets `warmup` runs, then bursts of `burst` runs until `runs` are taken or `time_budget_s`
    has passed. The bursts are split over `rounds` rounds, each with fresh worker processes and the models'
    order rotated: a process's memory layout can make it run an identical file 10-25% slower for its whole
    life (seen on this project's machines and in CI), and pooling several processes per model outvotes
    one such draw (docs/profiling.md). Samples keep their order so burst-wise ratios can be formed.
    `on_burst(done, total)` is called once every model has timed a burst (the caller's progress display).
    A key that is missing or null takes its default."""
    config = {k: v for k, v in config.items() if v is not None}
    models: dict = config["models"]
    names = list(models)
    cfg = {k: config[k] for k in ("runtime", "providers", "provider_options", "threads", "batch", "shapes",
                                  "feed", "seed", "precision", "sequence") if k in config}
    per_model = config.get("model_options") or {}  # {name: {session_config: ..., ...}}: same target, other options
    runs, warmup = int(config.get("runs", 100)), int(config.get("warmup", 10))
    burst = max(1, min(int(config.get("burst", 10)), runs))
    n_bursts = -(-runs // burst)
    rounds = max(1, min(int(config.get("rounds", 3)), n_bursts))
    bounds = [round(k * n_bursts / rounds) for k in range(rounds + 1)]
    budget = config.get("time_budget_s")
    at_least = 2 if rounds == 1 else 1  # bursts before a budget stop: every round times something, a call 2+
    samples: dict[str, list[float]] = {n: [] for n in names}
    seen: dict[str, list[dict]] = {n: [] for n in names}  # each round's load reply and last run reply
    ops: dict = {}
    t_start, budget_hit = time.perf_counter(), False
    for k in range(rounds):
        order = names[k % len(names):] + names[:k % len(names)]
        workers: dict[str, Worker] = {}
        try:
            for name in order:
                # per-model entries may set session options only, never the batch, shapes or providers
                workers[name] = Worker(name, models[name], {**cfg, **{k: v for k, v in (per_model.get(name) or {}).items()
                                                             if k in SESSION_OPTION_KEYS}})
            for w in workers.values():
                w.loaded()
            for w in workers.values():
                if warmup:
                    w.ask({"cmd": "run", "n": warmup})
            last: dict[str, dict] = {}
            for b in range(bounds[k], bounds[k + 1]):
                if budget and b - bounds[k] >= at_least and \
                        time.perf_counter() - t_start > float(budget) * (k + 1) / rounds:
                    budget_hit = True  # this round's share of the budget is spent; the next round has its own
                    break
                n = min(burst, runs - b * burst)
                for name, w in workers.items():
                    last[name] = w.ask({"cmd": "run", "n": n})
                    samples[name].extend(last[name]["samples_ms"])
                if on_burst is not None:
                    on_burst(b + 1, n_bursts)
            for name, w in workers.items():
                seen[name].append({**w.info, **last[name]})
            if k == rounds - 1 and int(config.get("op_profile_runs") or 0) > 0:
                for name, w in workers.items():
                    ops[name] = w.ask({"cmd": "ops", "runs": int(config["op_profile_runs"])})["ops"]
        finally:
            for w in workers.values():
                w.close()
    batch = int(config.get("batch", 1))
    out = {}
    for name in names:
        s, rs = samples[name], seen[name]
        out[name] = {**latency_stats(s, batch), "batch": batch, "threads": int(config.get("threads", 1)),
                     "runs": len(s), "burst": burst, "warmup": warmup, "rounds": rounds,
                     "samples_ms": [round(x, 5) for x in s],
                     "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rs), 2),
                     "session_rss_mb": round(max(r["session_rss_mb"] for r in rs), 2),
                     "load_ms": round(min(r["load_ms"] for r in rs), 3), "providers": rs[-1]["providers"],
                     "input_shapes": rs[-1]["inputs"], "time_budget_hit": budget_hit, "pid": rs[-1]["pid"],
                     "pids": [r["pid"] for r in rs], "isolation": "subprocess-per-model", "ops": ops.get(name)}
    return {"models": out, "host": host_info()}


def main(argv: list[str]) -> int:
    if argv[:1] == ["worker"]:
        worker()
        return 0
    if len(argv) == 2 and argv[0] == "run":
        with open(argv[1]) as f:
            config = json.load(f)
        try:
            result = coordinate(config)
        except Exception as exc:  # one JSON document either way, so the caller can report it
            result = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(result) + "\n")
        return 0 if "error" not in result else 3
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
