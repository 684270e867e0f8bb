"""Images in class-named folders (`root/<class>/*.png`, torchvision's ImageFolder layout), decoded by Pillow.

Class names are the sorted folder names; every image is converted to one mode (grayscale or RGB) and resized
to one size, so any mix of photos reads as float32 NCHW rows in [0, 1]. The split holds file names, not
pixels: rows are decoded when read (in the training loader's worker processes), so memory does not grow with
the number of images. Each file's header is checked when the folder is listed, so an undecodable file is
named before anything trains. `test_path` may name a second root with the same class folders; otherwise
`test_fraction` is held out (stratified, seeded).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import UserError
from .base import ArrayData, DataConfig, Dataset, register_dataset, stratified_split
from .stream import LazyColumn, files_fingerprint

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError as exc:
        raise UserError("the image_folder dataset needs Pillow", where="data.name",
                        fix='pip install "edgedistill[images]"') from exc
    return Image, ImageOps


def _classes(root: Path, where: str) -> list[str]:
    if not root.is_dir():
        raise UserError("folder not found", where=f"{where} ({root})",
                        fix="point it at a folder holding one sub-folder of images per class")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise UserError("no class folders", where=f"{where} ({root})",
                        fix="put the images of each class in a sub-folder named after the class, e.g. cat/1.png")
    return names


def _images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXTENSIONS)
    if not files:
        raise UserError("the class folder holds no images", where=str(folder),
                        fix=f"add images ({', '.join(EXTENSIONS)}) or remove the folder")
    return files


def _decode(path: Path | BinaryIO, mode: str, hw: tuple[int, int], name: str | None = None) -> np.ndarray:
    """One image (a file, or its bytes as a file object named `name`) as (channels, height, width) uint8; an
    image Pillow cannot decode is a UserError naming it."""
    Image, ImageOps = _pil()
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)  # photos stored rotated show as the camera saw them
            img = img.convert(mode).resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
            a = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot decode the image ({type(exc).__name__}: {str(exc)[:200]})", where=name or str(path),
                        fix="the file is truncated, corrupt or not an image: replace or remove it") from exc
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _check_header(path: Path) -> None:
    """Open the file's header (no pixels decoded): a file that is not an image is named now, not mid-training."""
    Image, _ = _pil()
    try:
        with Image.open(path):
            pass
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot decode the image ({type(exc).__name__}: {str(exc)[:200]})", where=str(path),
                        fix="the file is truncated, corrupt or not an image: replace or remove it") from exc


class ImageFiles(LazyColumn):
    """Image files decoded, converted and resized on read; rows are float32 (channels, height, width) in [0, 1]."""

    def __init__(self, paths: list[Path], mode: str, hw: tuple[int, int]) -> None:
        super().__init__(len(paths), (1 if mode == "L" else 3, *hw), np.float32)
        self.paths, self.mode, self.hw = [str(p) for p in paths], mode, hw

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.sample_shape), dtype=np.float32)
        for j, i in enumerate(indices.tolist()):
            out[j] = _decode(Path(self.paths[i]), self.mode, self.hw)
        return np.divide(out, np.float32(255.0), out=out)

    def source_fingerprint(self) -> str:
        return f"{files_fingerprint(self.paths)}:{self.mode}:{self.hw}"


def _read(root: Path, classes: list[str], mode: str, hw: tuple[int, int]) -> ArrayData:
    paths: list[Path] = []
    ys: list[int] = []
    for index, name in enumerate(classes):
        for path in _images(root / name):
            _check_header(path)
            paths.append(path)
            ys.append(index)
    return ArrayData(ImageFiles(paths, mode, hw), np.asarray(ys, dtype=np.int64))


@register_dataset("image_folder")
def load_image_folder(cfg: DataConfig) -> Dataset:
    if not cfg.path:
        raise UserError("the image_folder dataset needs a folder", where="data.path",
                        fix="set data.path to a folder with one sub-folder of images per class")
    root = Path(cfg.path).expanduser()
    classes = _classes(root, "data.path")
    if len(classes) < 2:
        raise UserError(f"only one class folder ({classes[0]}); classification needs at least 2",
                        where=f"data.path ({root})", fix="add a sub-folder of images for each class")
    _pil()  # a missing Pillow is reported before any folder is read
    mode = "L" if cfg.image_mode == "grayscale" else "RGB"
    hw = cfg.image_hw()
    rest = _read(root, classes, mode, hw)
    if cfg.test_path:
        test_root = Path(cfg.test_path).expanduser()
        unknown = sorted(set(_classes(test_root, "data.test_path")) - set(classes))
        if unknown:
            raise UserError(f"class folders {unknown} are not in the training folder {root}",
                            where=f"data.test_path ({test_root})",
                            fix="the test folder may only hold sub-folders named like the training classes")
        present = [c for c in classes if (test_root / c).is_dir()]
        part = _read(test_root, present, mode, hw)
        test = ArrayData(part.inputs, np.asarray([classes.index(present[i]) for i in part.y], dtype=np.int64))
    else:
        rest, test = stratified_split(rest.x, rest.y, cfg.test_fraction, cfg.seed)
    train, val = stratified_split(rest.x, rest.y, cfg.val_fraction, cfg.seed)
    return Dataset(
        name=root.name, task="image_classification", train=train, val=val, test=test,
        num_classes=len(classes), class_labels=classes,
        preprocessing=image_preprocessing(hw, mode),
    )


def image_preprocessing(hw: tuple[int, int], mode: str) -> dict:
    """What the bundle tells an app about feeding images the way training read them."""
    return {"layout": "NCHW", "image_size": list(hw), "channels": 1 if mode == "L" else 3, "mode": mode,
            "scale": 1 / 255.0, "resize": "bilinear to [height, width], aspect ratio not kept",
            "note": "EXIF orientation applied, converted to the mode, resized, pixels 0..255 multiplied by scale"}
