"""Write scikit-learn's handwritten digits (UCI, 1,797 8x8 images of 0-16) as an image
folder bnno reads: ``DIR/{train,validation}/<digit>/<n>.png``, every fifth image in
validation. Real data that none of bnno's tests use; needs ``pip install scikit-learn``.

    python docs/example-report/digits_folder.py /tmp/digits
"""

import pathlib
import sys

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main(root: pathlib.Path) -> None:
    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        split = "validation" if index % 5 == 0 else "train"
        folder = root / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(image * 255 / 16).astype(np.uint8)  # 0..16 -> 0..255
        Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}.png")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
