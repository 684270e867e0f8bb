"""Dataset specs → in-memory splits.

Every dataset resolves to the same small structure (`Dataset`: train/val/test arrays plus the metadata the
bundle needs), so training, calibration, evaluation of torch models and of exported files all read one thing.
New sources register a loader function in `DATASETS`.
"""

from __future__ import annotations

from . import digits as _digits  # noqa: F401  (registers "digits")
from . import image_folder as _image_folder  # noqa: F401  (registers "image_folder"; Pillow loads lazily)
from . import mnist as _mnist  # noqa: F401  (registers "mnist")
from . import npz as _npz  # noqa: F401  (registers "npz")
from . import packed as _packed  # noqa: F401  (registers "packed"; Hugging Face datasets loads lazily)
from . import text as _text  # noqa: F401  (registers "sts", "text_corpus", "text_labelled"; tokenizers load lazily)
from .base import (
    DATASETS,
    INPUT,
    ArrayData,
    DataConfig,
    Dataset,
    Split,
    load_dataset,
    parse_data_spec,
    register_dataset,
)

__all__ = [
    "DATASETS",
    "INPUT",
    "ArrayData",
    "DataConfig",
    "Dataset",
    "Split",
    "load_dataset",
    "parse_data_spec",
    "register_dataset",
]
