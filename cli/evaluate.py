"""`evaluate`: the metric of an ONNX file on a dataset, measured with ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgedistill.errors import UserError

from .main import cli


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", "data_spec", required=True, metavar="SPEC",
              help="dataset: a built-in name (digits) or NAME:PATH (mnist:../shared/data/mnist, npz:file.npz, "
                   "sts:../shared/data/stsb with --tokenizer)")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--tokenizer", default=None, metavar="DIR",
              help="text data (sts:, text_corpus:, text_labelled:): the tokenizer folder, e.g. a bundle's tokenizer/")
@click.option("--max-length", type=click.IntRange(2, 8192), default=128, show_default=True,
              help="text data: tokens per text")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document")
def evaluate(model: str, data_spec: str, split: str, tokenizer: str | None, max_length: int, as_json: bool) -> None:
    """Score an exported file on a dataset by running it in its runtime (.onnx: ONNX Runtime, .pte: ExecuTorch)."""
    from edgedistill.data import load_dataset, parse_data_spec
    from edgedistill.data.check import check_outputs
    from edgedistill.report.runtimes import file_runtime, predictor
    from edgedistill.tasks import build_task

    path = Path(model)
    if not path.exists():
        raise UserError("model file not found", where=str(path), fix="pass the path of an .onnx file")
    spec = parse_data_spec(data_spec)
    if tokenizer:
        spec = spec.model_copy(update={"tokenizer": tokenizer, "max_length": max_length})
    data = load_dataset(spec)
    samples = data.split(split)
    if not len(samples):
        raise UserError(f"the {split} split is empty", where=f"--split {split}", fix="choose another split")
    task = build_task(None, data)
    try:
        predict = predictor(path, task)
        first = predict(task.feed(samples, slice(0, 1)))[task.output_names[0]]
    except Exception as exc:  # onnxruntime raises several types for unloadable or mismatched files
        shapes = ", ".join(f"{k} {list(v)}" for k, v in data.input_shapes().items())
        raise UserError(f"cannot run the model on {data.name}: {str(exc).splitlines()[0][:300]}", where=str(path),
                        fix=f"the model's inputs must accept {data.name} samples ({shapes})") from exc
    check_outputs(int(first.shape[-1]), data, str(path))
    value = task.score(predict, samples)
    name = task.metric.name
    if as_json:
        click.echo(json.dumps({"model": str(path), "data": data_spec, "split": split, "samples": len(samples),
                               "metric": {"name": name, "value": value}, "measured_on": file_runtime(path)}))
    else:
        runtime = {"onnxruntime": "ONNX Runtime", "executorch": "ExecuTorch"}[file_runtime(path)]
        click.echo(f"{path}: {name} {value:.4f} on {len(samples)} {data.name} {split} samples ({runtime})")
