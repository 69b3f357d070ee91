"""tensorflow-datasets (tfds) image-classification data sets: find the builder, make
sure the data is prepared, and read its splits.

A data set is named as tfds names it: ``cifar10``, ``cifar10:3.0.2``,
``imagenet2012_subset/10pct``. Any tfds data set with an ``Image`` and a
``ClassLabel`` feature (its supervised keys, else ``image`` and ``label``) works.

tfds retries a failed download for minutes; on machines without network (cluster
compute nodes) :func:`ensure_prepared` instead fails within seconds, after
:func:`bnno.data.network.can_reach` says the download host is unreachable.
"""

import difflib
from typing import Dict, List, NamedTuple, Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from bnno.data import network
from bnno.data.preprocess import SPECIFIC, ImageSpec
from bnno.errors import RunError, UsageError
from bnno.registry import closest_match, unknown_choice_message

CATALOG_URL = "https://www.tensorflow.org/datasets/catalog/overview"


def is_registered(name: str) -> bool:
    """Whether ``name`` (no version, no config) is a tfds data set."""
    try:
        tfds.builder_cls(name)
    except Exception:  # DatasetNotFoundError, or a name tfds cannot even parse
        return False
    return True


def builder(dataset: str, data_dir: Optional[str] = None):
    """The tfds builder of ``dataset`` (``name[/config][:version]``); ``UsageError``
    naming close tfds names, configs or versions if there is none."""
    try:
        return tfds.builder(dataset, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, AssertionError, ValueError) as error:
        failure = error
    base, _, version = dataset.partition(":")
    name, _, config = base.partition("/")
    if not is_registered(name):
        raise UsageError(_unknown_dataset_message(dataset, name, sorted(SPECIFIC))) from None
    configs = sorted(getattr(tfds.builder(name, data_dir=data_dir), "builder_configs", None) or {})
    if config and not configs:
        raise UsageError(
            f"Data set '{name}' has no configurations; write it as '{name}' or '{name}:VERSION'."
        ) from None
    if config and config not in configs:
        raise UsageError(unknown_choice_message(f"{name} configuration", config, configs)) from None
    versions = [str(v) for v in tfds.builder(base, data_dir=data_dir).versions]
    if version and version not in versions:
        raise UsageError(unknown_choice_message(f"{base} version", version, versions)) from None
    raise failure  # a known name, config and version: tfds failed for another reason


def _unknown_dataset_message(dataset: str, name: str, paper_datasets: List[str]) -> str:
    close = difflib.get_close_matches(name, tfds.list_builders(with_community_datasets=False), n=6, cutoff=0.6)
    # The paper's data sets come first: "imagenet" most likely means imagenet2012, not
    # the closer "imagenette".
    paper_match = closest_match(name, paper_datasets)
    if paper_match:
        close = [paper_match] + [other for other in close if other != paper_match]
    hint = f"close tfds names are: {', '.join(close)}" if close else f"see {CATALOG_URL}"
    message = (
        f"Unknown data set '{dataset}': neither a tfds data set ({hint}) nor an image folder; "
        "give a tfds name or the path of a folder <root>/train/<class>/<image>."
    )
    return message + (f" Did you mean '{close[0]}'?" if close else "")


class Features(NamedTuple):
    image_key: str
    label_key: str
    image: ImageSpec
    num_classes: int


def features(builder, label: str) -> Features:
    """The image and label features of an image-classification data set, read from the
    builder's code (no download); ``UsageError`` for other kinds of data set."""
    info = builder.info
    keys = info.supervised_keys
    image_key, label_key = keys if _is_key_pair(keys) else ("image", "label")
    all_features = info.features
    image = all_features[image_key] if image_key in all_features else None
    classes = all_features[label_key] if label_key in all_features else None
    if not isinstance(image, tfds.features.Image) or not isinstance(classes, tfds.features.ClassLabel):
        raise UsageError(
            f"Data set '{label}' is not an image-classification data set (it needs an image "
            f"feature and a class-label feature, e.g. 'image' and 'label'); choose one such as "
            f"cifar10, mnist or imagenet2012."
        )
    spec = ImageSpec(shape=tuple(image.shape), dtype=tf.as_dtype(image.np_dtype))
    return Features(image_key, label_key, spec, classes.num_classes)


def _is_key_pair(keys) -> bool:
    return isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(key, str) for key in keys)


def split_sizes(builder, label: str) -> Optional[Dict[str, int]]:
    """Examples per split, from the prepared data set's metadata; ``None`` when tfds
    does not know its splits (only inside ``tfds.testing.mock_data`` without metadata,
    where any split name is accepted)."""
    splits = builder.info.splits
    if not splits:
        return None
    sizes = {name: split.num_examples for name, split in splits.items()}
    if "train" not in sizes:
        raise RunError(
            f"Data set '{label}' has no train split (it has: {', '.join(sorted(sizes))}); choose another data set."
        )
    return sizes


def validation_split(split_names, label: str) -> str:
    """"validation" if the data set has it, else "test"; ``RunError`` if neither."""
    for name in ("validation", "test"):
        if name in split_names:
            return name
    raise RunError(
        f"Data set '{label}' has neither a validation nor a test split (it has: "
        f"{', '.join(sorted(split_names))}); choose another data set."
    )


def _download_is_mocked() -> bool:
    """Inside ``tfds.testing.mock_data``, ``download_and_prepare`` is a no-op and
    ``as_dataset`` yields random examples: nothing is prepared and nothing needs to be."""
    from tensorflow_datasets.core import dataset_builder

    function = dataset_builder.DatasetBuilder.download_and_prepare
    return getattr(function, "__module__", "").startswith("tensorflow_datasets.testing")


def ensure_prepared(builder, label: str) -> None:
    """Download and prepare ``builder``'s data unless it is prepared (or tfds is mocked);
    ``RunError`` within seconds when that cannot work here."""
    if builder.is_prepared() or _download_is_mocked():
        return
    download_and_prepare(builder, label, for_load=True)


def download_and_prepare(builder, label: str, for_load: bool = False) -> None:
    """``builder.download_and_prepare()``, or a ``RunError`` saying what to do: place
    the files by hand (ImageNet), or prepare on a machine with network access."""
    data_dir = builder.data_dir_root
    advice = f"run `bnno prepare {label} --data-dir DIR` on a machine with network access"
    if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        try:
            builder.download_and_prepare()
        except AssertionError as error:
            if "Manual directory" not in str(error):
                raise
            raise RunError(
                f"Data set '{label}' is not prepared under {data_dir} and must be downloaded by "
                f"hand into {data_dir / 'downloads' / 'manual'} "
                f"({_one_line(builder.MANUAL_DOWNLOAD_INSTRUCTIONS).rstrip('.')}); then run "
                f"`bnno prepare {label} --data-dir {data_dir}`."
            ) from None
        return
    url = _download_url(builder)
    if not network.can_reach(url):
        if for_load:
            raise RunError(
                f"Data set '{label}' is not prepared under {data_dir} and cannot be downloaded "
                f"(no network): {advice}, then pass --data-dir DIR."
            )
        raise RunError(
            f"Data set '{label}' cannot be downloaded to {data_dir}: {url} is unreachable "
            f"(no network); {advice} and copy DIR here."
        )
    try:
        builder.download_and_prepare()
    except OSError as error:  # ConnectionError, requests' errors, a full disk
        raise RunError(
            f"Downloading data set '{label}' to {data_dir} failed ({_one_line(str(error))}); "
            "check the network and the disk, then run again."
        ) from None


def _download_url(builder) -> str:
    """The first URL the builder downloads from (from its checksums file), else the
    tfds mirror it tries first."""
    try:
        urls = sorted(builder.url_infos or {})
    except Exception:  # builders without a checksums file
        urls = []
    return urls[0] if urls else network.FALLBACK_URL


def _one_line(text: str) -> str:
    return " ".join(text.split())


class TfdsSource:
    """Reads the splits of a prepared tfds data set as (image, int32 label)."""

    def __init__(self, builder, features: Features):
        self._builder = builder
        self._features = features

    def cardinality(self, split: str) -> int:
        """Examples in ``split`` as the dataset itself reports (for mocked tfds)."""
        return int(self._builder.as_dataset(split=split).cardinality())

    def reader(self, decodes_jpeg: bool):
        image_key, label_key = self._features.image_key, self._features.label_key
        decoders = {image_key: tfds.decode.SkipDecoding()} if decodes_jpeg else None

        def read(split: str, shuffle_seed: Optional[int], autocache: bool) -> tf.data.Dataset:
            read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, try_autocache=autocache)
            dataset = self._builder.as_dataset(
                split=split,
                decoders=decoders,
                shuffle_files=shuffle_seed is not None,
                read_config=read_config,
            )
            return dataset.map(
                lambda example: (example[image_key], tf.cast(example[label_key], tf.int32)),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )

        return read
