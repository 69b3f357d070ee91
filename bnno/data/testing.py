"""Offline stand-ins for tfds data sets, for tests.

``tfds.testing.mock_data`` replaces a data set's examples by random ones, but without
the data set's metadata tfds does not know its splits (it accepts any split name and
``info.splits`` is empty). :func:`mock_tfds` also writes metadata in which every split
of ``splits`` has ``num_examples`` examples, so that ``bnno.data.load`` sees a prepared
data set with real split names and sizes that match the mocked examples.

:class:`BnnoTestDigits` is a real tfds data set that needs no download, for tests of
the prepared (unmocked) path.
"""

import contextlib
import os
import tempfile
from typing import Dict, Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds


def write_metadata(dataset: str, data_dir: str, split_sizes: Dict[str, int]) -> None:
    """Write ``dataset``'s metadata (features from its code, the given split sizes)
    under ``data_dir`` as ``download_and_prepare`` would, without any examples."""
    builder = tfds.builder(dataset, data_dir=data_dir)
    builder.info.set_splits(
        tfds.core.SplitDict(
            [tfds.core.SplitInfo(name=name, shard_lengths=[size], num_bytes=0) for name, size in split_sizes.items()]
        )
    )
    os.makedirs(builder.data_path, exist_ok=True)
    builder.info.write_to_directory(builder.data_path)


@contextlib.contextmanager
def mock_tfds(
    datasets: Iterable[str] = ("cifar10",),
    num_examples: int = 64,
    splits: Iterable[str] = ("train", "test"),
) -> Iterator[None]:
    """``tfds.testing.mock_data(num_examples)`` in which ``datasets`` are prepared data
    sets with ``splits``, each of ``num_examples`` random examples."""
    with tempfile.TemporaryDirectory(prefix="bnno-mock-tfds-") as metadata_dir:
        for dataset in datasets:
            write_metadata(dataset, metadata_dir, {split: num_examples for split in splits})
        with tfds.testing.mock_data(num_examples=num_examples, data_dir=metadata_dir):
            yield


class BnnoTestDigits(tfds.core.GeneratorBasedBuilder):
    """tfds data set ``bnno_test_digits``, generated locally by ``download_and_prepare``
    (no download): 8x8x1 uint8 images, 4 classes; ``train`` has 40 examples and
    ``validation`` 10; image ``i`` of a split is filled with the value ``i`` and
    labelled ``i % 4``. Registered with tfds when this module is imported."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=(8, 8, 1)), "label": tfds.features.ClassLabel(num_classes=4)}
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(40), "validation": self._generate_examples(10)}

    def _generate_examples(self, count):
        for i in range(count):
            yield i, {"image": np.full((8, 8, 1), i, np.uint8), "label": i % 4}
