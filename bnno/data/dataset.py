"""``Data``: the training and validation pipelines of one data set.

Every pipeline is: read (decoded images, or JPEG bytes for preprocess functions that
decode their own crop) -> ``prepare`` (deterministic, e.g. resize) -> optional cache ->
[training: shuffle -> per-example augmentation] or [evaluation preprocessing] ->
batch -> prefetch. Labels are int32.

A training epoch is a deterministic function of ``(seed, epoch)``: the shuffle uses the
seed ``seed * 100003 + epoch`` and the augmentation of the example at position ``i`` of
the epoch uses stateless random ops seeded by ``fold_in([seed, epoch], i)``. A run
resumed at epoch ``e`` therefore sees exactly the batches an uninterrupted run would,
given the same data options (cache, batch size) and the same TensorFlow global seed,
which ``tf.data``'s shuffle mixes into its own seed. A run resumed inside an epoch skips
the batches it has trained (``train(..., skip_batches=k)``) before they are augmented.

The paper's pipeline (zookeeper 0.5.5 ``Dataset.train_data``) is the same except that
it shuffled 10 batches' worth of examples after shuffling the files; here small data
sets are shuffled completely (see :data:`SHUFFLE_BUFFER_BYTES`).
"""

import math
import os
from typing import Callable, Dict, Optional, Tuple

import tensorflow as tf

from bnno.data.preprocess import Preprocess

#: Shuffle-buffer budget: a data set whose stored images fit is shuffled completely
#: (CIFAR-10, MNIST: 150 MB); larger ones shuffle this much (but at least 10 batches,
#: the paper's buffer) after a seeded shuffle of their files.
SHUFFLE_BUFFER_BYTES = 512 * 2**20

#: Assumed stored size of an image whose size varies (ImageNet's mean JPEG is ~110 kB).
VARIABLE_IMAGE_BYTES = 110 * 2**10

#: Multiplier turning (seed, epoch) into the seed of an epoch's shuffle.
EPOCH_SEED_STRIDE = 100003

AUTOTUNE = tf.data.AUTOTUNE

#: ``read(split, shuffle_seed, autocache) -> Dataset of (image, int32 label)``; files
#: (or shards) in a seeded random order when ``shuffle_seed`` is not None.
Reader = Callable[[str, Optional[int], bool], tf.data.Dataset]


class Data:
    """A data set ready for training: what ``bnno.data.load`` returns.

    Attributes: ``name`` (as the user wrote it), ``input_shape`` (of one preprocessed
    image), ``num_classes``, ``train_examples``, ``validation_examples``,
    ``validation_split`` ("validation" if the data set has one, else "test").
    """

    def __init__(
        self,
        name: str,
        *,
        read: Reader,
        preprocess: Preprocess,
        num_classes: int,
        split_sizes: Dict[str, int],
        validation_split: str,
        cache: Optional[str] = None,
        cache_name: str = "",
    ):
        self.name = name
        self.input_shape: Tuple[int, ...] = tuple(preprocess.input_shape)
        self.num_classes = int(num_classes)
        self.train_examples = int(split_sizes["train"])
        self.validation_examples = int(split_sizes[validation_split])
        self.validation_split = validation_split
        self._read = read
        self._preprocess = preprocess
        self._cache = cache
        self._cache_name = cache_name
        # One prepared (and cached) dataset per split, reused by every epoch so that a
        # memory cache is filled once.
        self._prepared: Dict[str, tf.data.Dataset] = {}

    def __repr__(self) -> str:
        return (
            f"Data({self.name!r}, input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"train_examples={self.train_examples}, "
            f"{self.validation_split}_examples={self.validation_examples})"
        )

    def train(self, batch_size: int, epoch: int, seed: int, skip_batches: int = 0) -> tf.data.Dataset:
        """One shuffled, augmented pass over the training split in full batches of
        ``(float32 images [B, *input_shape], int32 labels [B])``; a deterministic
        function of ``(seed, epoch)``.

        ``skip_batches``: start after that many batches of the epoch (a run resumed
        from a checkpoint inside it), with exactly the batches that would follow them.
        The skipped examples are dropped after the shuffle and before augmentation,
        which is where JPEG data sets (ImageNet) decode: they are read, not decoded."""
        shuffle_seed = seed * EPOCH_SEED_STRIDE + epoch
        buffer_size = self.shuffle_buffer_size(batch_size)
        # A partial shuffle starts from a seeded file order; a complete one (or one over
        # a cache, which must hold the same order whichever epoch fills it) does not.
        shuffle_files = buffer_size < self.train_examples and self._cache is None
        dataset = self._prepared_split("train", shuffle_seed if shuffle_files else None)
        dataset = dataset.shuffle(buffer_size, seed=shuffle_seed, reshuffle_each_iteration=False)
        epoch_seed = tf.constant([seed, epoch], dtype=tf.int64)
        train = self._preprocess.train

        def augment(index, example):
            image, label = example
            example_seed = tf.random.experimental.stateless_fold_in(epoch_seed, index)
            return self._fix_shape(train(image, example_seed)), label

        # Positions are counted before the skip: each example keeps its augmentation seed.
        dataset = dataset.enumerate().skip(skip_batches * batch_size)
        dataset = dataset.map(augment, num_parallel_calls=AUTOTUNE, deterministic=True)
        return dataset.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)

    def validation(self, batch_size: int) -> tf.data.Dataset:
        """The validation split in order, with the evaluation preprocessing, in batches
        of ``batch_size`` (the last one may be smaller)."""
        evaluate = self._preprocess.evaluate
        dataset = self._prepared_split(self.validation_split, None).map(
            lambda image, label: (self._fix_shape(evaluate(image)), label),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
        return dataset.batch(batch_size).prefetch(AUTOTUNE)

    def shuffle_buffer_size(self, batch_size: int) -> int:
        """Examples in the training shuffle buffer: all of them if their stored images
        fit in :data:`SHUFFLE_BUFFER_BYTES`, else that budget but at least 10 batches."""
        if self._preprocess.decodes_jpeg or None in self.input_shape:
            example_bytes = VARIABLE_IMAGE_BYTES
        else:
            example_bytes = math.prod(self.input_shape)
        return max(1, min(self.train_examples, max(10 * batch_size, SHUFFLE_BUFFER_BYTES // example_bytes)))

    def _fix_shape(self, image: tf.Tensor) -> tf.Tensor:
        return tf.ensure_shape(image, self.input_shape)

    def _prepared_split(self, split: str, shuffle_seed: Optional[int]) -> tf.data.Dataset:
        """The split read, prepared and cached; memoized unless files are shuffled
        (then every epoch reads its own file order)."""
        if shuffle_seed is None and split in self._prepared:
            return self._prepared[split]
        prepare = self._preprocess.prepare
        dataset = self._read(split, shuffle_seed, self._cache is None).map(
            lambda image, label: (prepare(image), label),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
        if self._cache == "memory":
            dataset = dataset.cache()
        elif self._cache:
            os.makedirs(self._cache, exist_ok=True)
            dataset = dataset.cache(os.path.join(self._cache, f"{self._cache_name}-{split}"))
        if shuffle_seed is None:
            self._prepared[split] = dataset
        return dataset
