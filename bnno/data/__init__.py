"""Data sets for training and evaluation, with the paper's preprocessing.

A data set is either a tensorflow-datasets (tfds) image-classification data set,
named as tfds names it (``cifar10``, ``cifar10:3.0.2``, ``mnist``, ``imagenet2012``,
``imagenet2012_subset/10pct``), or a folder of images laid out as
``<root>/<split>/<class>/<image>`` (see :mod:`bnno.data.folder_source`).

- :func:`load` returns a :class:`~bnno.data.dataset.Data`, whose ``train(batch_size,
  epoch, seed)`` and ``validation(batch_size)`` build the ``tf.data`` pipelines;
- :func:`describe` answers (input shape, number of classes) without reading any data;
- :func:`prepare` downloads and prepares tfds data sets ahead of time (on a machine
  with network access);
- preprocess functions are registered per data set (:mod:`bnno.data.preprocess`,
  :mod:`bnno.data.imagenet`): the paper's ``resize_and_flip`` for CIFAR-10 and
  ``default`` for ImageNet (plumerai/rethinking-bnn-optimization,
  ``bnn_optimization/data/``), and generic ``default`` and ``resize_and_flip`` for
  every other data set.

Importing this package imports TensorFlow; the CLI imports it inside commands only.
"""

import numbers
import os
from typing import List, Optional, Tuple

from bnno.data import folder_source, tfds_source
from bnno.data import imagenet as _imagenet  # noqa: F401  (registers imagenet2012's preprocessing)
from bnno.data import preprocess as preprocess_lib
from bnno.data.dataset import Data
from bnno.errors import UsageError

__all__ = [
    "Data", "default_preprocess", "describe", "is_folder", "known_datasets", "load", "prepare",
    "preprocess_names",
]


def is_folder(dataset: str) -> bool:
    """Whether ``dataset`` names an image folder rather than a tfds data set: an
    existing directory, a path (absolute, ``./``, ``~``), or a name with a path
    separator whose first part is not a tfds data set (tfds configs look like paths:
    ``imagenet2012_subset/10pct``)."""
    if folder_source.looks_like_path(dataset):
        return True
    separators = {os.sep, os.altsep or os.sep, "/"}
    if not any(separator in dataset for separator in separators):
        return False
    first = dataset.replace("\\", "/").split("/")[0].split(":")[0]
    return not tfds_source.is_registered(first)


def load(
    dataset: str,
    *,
    preprocess: str = "default",
    data_dir: Optional[str] = None,
    cache: Optional[str] = None,
    image_size: Optional[int] = None,
) -> Data:
    """Data set ``dataset`` with preprocess function ``preprocess``.

    ``data_dir``: where tfds data sets are (or are downloaded to; tfds's default if
    None). ``cache``: None, "memory", or a directory for ``tf.data`` cache files of the
    decoded images. ``image_size``: resize (bilinear) images to this square size; needed
    for folders whose images differ in size; for ImageNet, the crop size (224).

    A tfds data set that is not prepared is downloaded and prepared first; without
    network this is a ``RunError`` within seconds saying to run ``bnno prepare``.
    """
    image_size = _checked_options(cache, image_size)
    if is_folder(dataset):
        return _load_folder(dataset, preprocess, cache, image_size)
    return _load_tfds(dataset, preprocess, data_dir, cache, image_size)


def _load_tfds(dataset, preprocess, data_dir, cache, image_size) -> Data:
    builder = tfds_source.builder(dataset, data_dir)
    features = tfds_source.features(builder, dataset)
    factory = preprocess_lib.get(builder.name, preprocess, dataset)
    functions = factory(features.image._replace(size=image_size))
    _check_batchable(functions, dataset)
    tfds_source.ensure_prepared(builder, dataset)
    source = tfds_source.TfdsSource(builder, features)
    split_sizes = tfds_source.split_sizes(builder, dataset)
    if split_sizes is None:
        # Mocked tfds that does not know the splits accepts any name, so the
        # validation split cannot be chosen from them; "test" is the common one.
        validation_split = "test"
        split_sizes = {split: source.cardinality(split) for split in ("train", validation_split)}
    else:
        validation_split = tfds_source.validation_split(split_sizes, dataset)
    cache_name = builder.info.full_name.replace("/", "-") + _cache_variant(functions, image_size)
    return Data(
        dataset,
        read=source.reader(functions.decodes_jpeg),
        preprocess=functions,
        num_classes=features.num_classes,
        split_sizes=split_sizes,
        validation_split=validation_split,
        cache=cache,
        cache_name=cache_name,
    )


def _load_folder(dataset, preprocess, cache, image_size) -> Data:
    factory = preprocess_lib.get(None, preprocess, dataset)
    index = folder_source.scan(dataset)
    spec = folder_source.image_spec(index, dataset, image_size)
    functions = factory(spec)
    _check_batchable(functions, dataset)
    source = folder_source.FolderSource(index, spec)
    return Data(
        dataset,
        read=source.reader(functions.decodes_jpeg),
        preprocess=functions,
        num_classes=len(index.classes),
        split_sizes={split: len(files) for split, files in index.files.items()},
        validation_split=index.validation_split,
        cache=cache,
        cache_name=folder_source.cache_name(index) + _cache_variant(functions, image_size),
    )


def _cache_variant(functions: preprocess_lib.Preprocess, image_size: Optional[int]) -> str:
    """What distinguishes caches of one data set: JPEG bytes, or images resized."""
    if functions.decodes_jpeg:
        return "-jpeg"
    return f"-{image_size}px" if image_size else ""


def _checked_options(cache: Optional[str], image_size) -> Optional[int]:
    """``image_size`` as an int (or None); ``UsageError`` for a bad size or cache."""
    integral = isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool)
    if image_size is not None and not (integral and image_size >= 1):
        raise UsageError(f"Image size {image_size!r} is not a positive whole number of pixels; pass e.g. 32 or 224.")
    if cache not in (None, "memory") and os.path.isfile(cache):
        raise UsageError(f"Cache '{cache}' is a file; pass 'memory' or a directory for the cache files.")
    return None if image_size is None else int(image_size)


def _check_batchable(functions: preprocess_lib.Preprocess, label: str) -> None:
    if None in tuple(functions.input_shape):
        raise UsageError(
            f"Images of data set '{label}' differ in size; pass an image size (--image-size N) "
            "to resize them all to N x N."
        )


def describe(
    dataset: str,
    *,
    preprocess: str = "default",
    data_dir: Optional[str] = None,
    image_size: Optional[int] = None,
) -> Tuple[Tuple[int, ...], int]:
    """(input shape, number of classes) of ``dataset`` as ``load`` would give them,
    without downloading or reading the data: from the tfds builder's features, or from
    the file names and first image of a folder (``load`` checks all images)."""
    image_size = _checked_options(None, image_size)
    if is_folder(dataset):
        factory = preprocess_lib.get(None, preprocess, dataset)
        index = folder_source.scan(dataset)
        functions = factory(folder_source.image_spec(index, dataset, image_size, check_all=False))
        num_classes = len(index.classes)
    else:
        builder = tfds_source.builder(dataset, data_dir)
        features = tfds_source.features(builder, dataset)
        factory = preprocess_lib.get(builder.name, preprocess, dataset)
        functions = factory(features.image._replace(size=image_size))
        num_classes = features.num_classes
    _check_batchable(functions, dataset)
    return tuple(functions.input_shape), num_classes


def prepare(datasets: List[str], data_dir: Optional[str] = None) -> None:
    """Download and prepare each tfds data set under ``data_dir`` (skipping prepared
    ones); an image folder needs no preparation and is only checked."""
    for dataset in datasets:
        if is_folder(dataset):
            folder_source.scan(dataset)
            continue
        builder = tfds_source.builder(dataset, data_dir)
        tfds_source.features(builder, dataset)
        if not builder.is_prepared():
            tfds_source.download_and_prepare(builder, dataset)


def preprocess_names(dataset: str) -> List[str]:
    """The preprocess functions valid for ``dataset`` (a tfds name or an image folder)."""
    if is_folder(dataset):
        return preprocess_lib.names(None)
    return preprocess_lib.names(tfds_source.builder(dataset).name)


def default_preprocess(dataset: str) -> str:
    """The preprocess function ``dataset`` uses when none is named: the paper's for its
    data sets (``resize_and_flip`` for cifar10, ``default`` for imagenet2012), the generic
    ``default`` for every other data set and image folder. Reads only the name: no tfds
    builder is made, so an unknown name is left for ``load`` to refuse."""
    if is_folder(dataset):
        return preprocess_lib.default_name(None)
    name = dataset.partition(":")[0].partition("/")[0].lower()  # tfds' name: no version, no config
    return preprocess_lib.default_name(name)


def known_datasets() -> List[str]:
    """Data sets with preprocess functions of their own (the paper's); every other tfds
    image-classification data set and every image folder takes the generic ones."""
    return sorted(preprocess_lib.SPECIFIC)
