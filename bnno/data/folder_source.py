"""Image folders: ``<root>/<split>/<class>/<image>``, the data users bring themselves.

Splits are ``train`` plus ``validation`` (or, failing that, ``test``). The classes are
the sorted names of the subdirectories of ``train`` (hidden ones, such as
``.ipynb_checkpoints``, are ignored); class ``i`` has label ``i``. Images are the
files ending in .png, .jpg, .jpeg, .bmp or .gif (any case) anywhere below a class
directory, read in sorted order and decoded to RGB (the first frame of a GIF).

All images must have one size, checked at load time from their headers (Pillow reads
only the header), unless an image size is given: then every image is resized to it.
"""

import hashlib
import os
from typing import Dict, List, NamedTuple, Optional, Tuple

import tensorflow as tf

from bnno.data.preprocess import ImageSpec
from bnno.errors import UsageError
from bnno.registry import unknown_choice_message

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
VALIDATION_SPLITS = ("validation", "test")
LAYOUT = "<root>/train/<class>/<image> and <root>/validation/<class>/<image> (or test instead of validation)"


class FolderIndex(NamedTuple):
    """What a scan of the folder found."""

    root: str
    classes: List[str]
    #: split -> [(path, label)], in sorted order.
    files: Dict[str, List[Tuple[str, int]]]
    validation_split: str


def looks_like_path(dataset: str) -> bool:
    """Whether ``dataset`` names a directory rather than a tfds data set: it exists as
    one, or it is written as a path (absolute, ``./``, ``~``, ``..``). Names with a "/"
    are left to the caller, because tfds configs use "/" too (``imagenet2012_subset/10pct``)."""
    return os.path.isdir(dataset) or os.path.isabs(dataset) or dataset.startswith(("./", "../", "~", ".\\", "..\\"))


def scan(dataset: str) -> FolderIndex:
    """Find the splits, classes and image files of the folder ``dataset``;
    ``UsageError`` saying what is missing from the expected layout."""
    root = os.path.expanduser(dataset)
    if not os.path.isdir(root):
        raise UsageError(f"Image folder '{dataset}' does not exist; an image folder is laid out as {LAYOUT}.")
    subdirectories = _subdirectories(root)
    if "train" not in subdirectories:
        raise UsageError(
            f"Image folder '{dataset}' has no train split (it has: {', '.join(subdirectories) or 'nothing'}); "
            f"lay it out as {LAYOUT}."
        )
    validation_split = next((name for name in VALIDATION_SPLITS if name in subdirectories), None)
    if validation_split is None:
        raise UsageError(
            f"Image folder '{dataset}' has no validation or test split (it has: {', '.join(subdirectories)}); "
            f"lay it out as {LAYOUT}."
        )
    classes = _subdirectories(os.path.join(root, "train"))
    if not classes:
        raise UsageError(f"Image folder '{dataset}' has no class directories in train; lay it out as {LAYOUT}.")
    files = {}
    for split in ("train", validation_split):
        files[split] = _split_files(root, dataset, split, classes)
    return FolderIndex(root, classes, files, validation_split)


def _subdirectories(path: str) -> List[str]:
    return sorted(
        entry.name for entry in os.scandir(path) if entry.is_dir() and not entry.name.startswith(".")
    )


def _split_files(root: str, dataset: str, split: str, classes: List[str]) -> List[Tuple[str, int]]:
    split_dir = os.path.join(root, split)
    labels = {name: label for label, name in enumerate(classes)}
    files = []
    for name in _subdirectories(split_dir):
        if name not in labels:
            raise UsageError(
                unknown_choice_message(
                    f"class in {os.path.join(dataset, split)} (classes come from train)", name, classes
                )
            )
        files.extend((path, labels[name]) for path in _image_files(os.path.join(split_dir, name)))
    if not files:
        raise UsageError(
            f"Image folder '{dataset}' has no images in its {split} split; put "
            f"{', '.join(IMAGE_EXTENSIONS)} files in {os.path.join(dataset, split, '<class>')}."
        )
    return files


def _image_files(directory: str) -> List[str]:
    found = []
    for parent, subdirectories, names in os.walk(directory, followlinks=True):
        subdirectories.sort()
        found.extend(os.path.join(parent, name) for name in sorted(names) if name.lower().endswith(IMAGE_EXTENSIONS))
    return found


def read_image_size(path: str) -> Tuple[int, int]:
    """(height, width) of an image file, from its header."""
    from PIL import Image, UnidentifiedImageError  # installed with tensorboard

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError) as error:
        raise UsageError(
            f"Cannot read image '{path}' ({error}); remove it or replace it with a valid image."
        ) from None
    return height, width


def common_size(index: FolderIndex, dataset: str) -> Tuple[int, int]:
    """The (height, width) all images share; ``UsageError`` if they differ."""
    first_path, first_size = None, None
    for split_files in index.files.values():
        for path, _ in split_files:
            size = read_image_size(path)
            if first_size is None:
                first_path, first_size = path, size
            elif size != first_size:
                raise UsageError(
                    f"Images in '{dataset}' differ in size ({_size_text(first_size)} for {first_path}, "
                    f"{_size_text(size)} for {path}); pass an image size (--image-size N) to resize "
                    "them all to N x N."
                )
    return first_size


def _size_text(size: Tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def image_spec(index: FolderIndex, dataset: str, image_size: Optional[int], check_all: bool = True) -> ImageSpec:
    """The spec of the decoded images: their common size (checked over all of them, or
    read from the first when ``check_all`` is False), or varying sizes when
    ``image_size`` is given, since then they are resized anyway."""
    if image_size is not None:
        return ImageSpec((None, None, 3), tf.uint8, image_size)
    if check_all:
        height, width = common_size(index, dataset)
    else:
        height, width = read_image_size(index.files["train"][0][0])
    return ImageSpec((height, width, 3), tf.uint8, None)


def cache_name(index: FolderIndex) -> str:
    """A file-name-safe name for caches of this folder: its base name and a hash of
    its absolute path and file list (two folders may share a base name; a folder whose
    files change must not read an old cache)."""
    path = os.path.abspath(index.root)
    digest = hashlib.sha1(path.encode("utf-8"))
    for split in sorted(index.files):
        for file_path, label in index.files[split]:
            digest.update(f"\0{split}\0{file_path}\0{label}".encode("utf-8"))
    digest = digest.hexdigest()[:8]
    return f"{os.path.basename(path.rstrip(os.sep)) or 'root'}-{digest}"


class FolderSource:
    """Reads a split of an image folder as (image, int32 label)."""

    def __init__(self, index: FolderIndex, spec: ImageSpec):
        self._index = index
        self._spec = spec

    def reader(self, decodes_jpeg: bool):
        shape = self._spec.shape

        def load(path, label):
            contents = tf.io.read_file(path)
            if decodes_jpeg:
                return contents, label
            image = tf.io.decode_image(contents, channels=3, expand_animations=False)
            image.set_shape(shape)
            return image, label

        def read(split: str, shuffle_seed: Optional[int], autocache: bool) -> tf.data.Dataset:
            del autocache  # decoding files is all there is; cache with load(cache=...)
            files = self._index.files[split]
            if shuffle_seed is not None:
                order = tf.random.experimental.stateless_shuffle(
                    tf.range(len(files)), seed=tf.constant([shuffle_seed, 0], tf.int64)
                ).numpy()
                files = [files[i] for i in order]
            paths = tf.constant([path for path, _ in files], dtype=tf.string)
            labels = tf.constant([label for _, label in files], dtype=tf.int32)
            return tf.data.Dataset.from_tensor_slices((paths, labels)).map(
                load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )

        return read
