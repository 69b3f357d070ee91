"""Small image-folder data sets made in tests: ``<root>/<split>/<class>/<image>.png``.

The classes are learnable patterns (stripes of different orientation) under noise, so
a model that trains correctly reaches high accuracy, and one that does not, does not.
"""

import pathlib

import numpy as np
from PIL import Image

PATTERNS = ("horizontal", "vertical", "diagonal")


def _pattern(name: str, size: int, phase: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    coordinate = {"horizontal": y, "vertical": x, "diagonal": x + y}[name]
    return ((coordinate + phase) // 2) % 2  # stripes two pixels wide


def make_image_folder(root, *, size=16, train_per_class=40, validation_per_class=12,
                      classes=PATTERNS, validation_split="validation", seed=0) -> pathlib.Path:
    """Write a data set of striped images; returns ``root``."""
    rng = np.random.default_rng(seed)
    root = pathlib.Path(root)
    for split, count in (("train", train_per_class), (validation_split, validation_per_class)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                stripes = _pattern(name, size, phase=int(rng.integers(0, 4)))
                gray = 60 + 140 * stripes + rng.normal(0, 25, size=(size, size))
                rgb = np.clip(np.stack([gray] * 3, axis=-1), 0, 255).astype(np.uint8)
                Image.fromarray(rgb).save(folder / f"{i:03d}.png")
    return root
