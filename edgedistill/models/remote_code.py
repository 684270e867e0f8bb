"""Hugging Face folders never run their own Python.

A model or tokenizer folder whose `config.json` or `tokenizer_config.json` holds `auto_map` asks transformers
to import a `.py` file from that folder. transformers then asks "Do you wish to run the custom code? [y/N]" on
the terminal, so one keystroke (or `yes |` in a script) runs a stranger's code with the user's rights. We
refuse such a folder before transformers sees it (exit 2, naming the file and the key, whatever stdin says),
and every `from_pretrained` passes `trust_remote_code=False` as a second lock.
"""

from __future__ import annotations

from pathlib import Path

from .. import jsonsafe
from ..errors import UserError

# The files transformers' Auto classes read for `auto_map` (configs, tokenizers, image/audio processors).
CONFIG_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json",
                "image_processor_config.json", "feature_extractor_config.json")
# Keys that make transformers import code from the folder.
CODE_KEYS = ("auto_map", "custom_pipelines")


def refuse_remote_code(folder: str | Path, where: str) -> None:
    """UserError when any config file in `folder` asks for code from the folder (or cannot be read as JSON)."""
    folder = Path(folder)
    for name in CONFIG_FILES:
        path = folder / name
        if not path.exists():
            continue
        try:
            doc = jsonsafe.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise UserError(f"{name} is not readable JSON: {str(exc).splitlines()[0][:200]}", where=f"{where} ({path})",
                            fix=f"restore {name} (it is written by save_pretrained)") from None
        if not isinstance(doc, dict):
            raise UserError(f"{name} must hold a JSON object", where=f"{where} ({path})",
                            fix=f"restore {name} (it is written by save_pretrained)")
        for key in CODE_KEYS:
            if key in doc:
                raise UserError(f'{path} has "{key}": the folder asks to run its own Python code, which edgedistill '
                                "never does", where=f"{where} ({path}: {key})",
                                fix=f'use a model whose architecture transformers ships, and remove "{key}" from {name}')
