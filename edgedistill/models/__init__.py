"""Model specs → nn.Module, through one small registry (as timm does).

A spec is a plain dict: `{"name": "cnn", "channels": [16, 32]}`. The spec, not a pickle, travels with the
weights, so any checkpoint can be rebuilt and loaded with `weights_only` safety.
"""

from . import cnn as _cnn  # noqa: F401  (registers the built-in CNNs)
from . import derive as _derive  # noqa: F401  (registers hf_derived)
from . import hf as _hf  # noqa: F401  (registers "hf"; transformers is imported only when one is built)
from . import tokens as _tokens  # noqa: F401  (registers the token models: mixer, vit)
from .registry import MODELS, ModelConfig, build_model, check_model_config, load_checkpoint, register_model

__all__ = ["MODELS", "ModelConfig", "build_model", "check_model_config", "load_checkpoint", "register_model"]
