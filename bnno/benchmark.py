"""Throughput: training images per second, and input-pipeline images per second.

Training is measured with bnno's own compiled training step (``bnno.training.Trainer``,
the one ``bnno train`` runs) on one synthetic batch held in memory, so the figure is
the model and optimizer alone, with no input cost. The pipeline is measured
separately, on synthetic images shaped like the data set's stored ones (uint8 pixels,
or JPEG files for ImageNet) through the set's preprocess function, the same
``bnno.data.Data`` pipeline as in training.

Both count only steps after a warm-up (the first steps trace and compile).
"""

import io
import pathlib
import statistics
import tempfile
import time
from typing import Any, Dict, Optional

import numpy as np

#: The data set whose shapes each model is benchmarked with.
DEFAULT_DATASETS = {"binarynet": "cifar10"}
IMAGENET = "imagenet2012"


class _OneBatch:
    """A data object for ``Trainer`` that serves one random batch over and over."""

    def __init__(self, input_shape, num_classes: int, batch_size: int, steps: int, seed: int):
        import tensorflow as tf

        rng = np.random.default_rng(seed)
        self.input_shape, self.num_classes = tuple(input_shape), int(num_classes)
        self.train_examples = self.validation_examples = batch_size * steps
        images = rng.uniform(-1, 1, size=(batch_size, *self.input_shape)).astype(np.float32)
        labels = rng.integers(0, self.num_classes, size=batch_size).astype(np.int32)
        self._batch = tf.data.Dataset.from_tensors((images, labels)).cache()
        self._steps = steps

    def train(self, batch_size, epoch, seed):
        return self._batch.repeat(self._steps)

    def validation(self, batch_size):
        return self._batch


def training_throughput(model: str, hparams: Dict[str, Any], input_shape, num_classes: int, *,
                        batch_size: int, steps: int, warmup: int = 3, strategy: str = "auto",
                        mixed_precision: bool = False, jit_compile: bool = False,
                        binary_conv: str = "auto", echo=print) -> Dict[str, Any]:
    """Images per second of ``model``'s training step (forward, backward, optimizer)."""
    from bnno import training

    hparams = {**hparams, "batch_size": batch_size}
    with tempfile.TemporaryDirectory(prefix="bnno-benchmark-") as scratch:
        run = training.Run(
            model=model, dataset="synthetic", hparams_set="benchmark", hparams=hparams,
            output_dir=pathlib.Path(scratch), strategy=strategy,
            mixed_precision=mixed_precision, jit_compile=jit_compile,
            binary_conv=binary_conv, verbose=0,
        )
        data = _OneBatch(input_shape, num_classes, batch_size, warmup + steps, seed=0)
        with training.restoring_precision_policy():
            trainer = training.Trainer(run, echo=echo, data=data)
            step_seconds = _time_steps(trainer, warmup)
    total = sum(step_seconds)
    return {
        "binary_conv": trainer.binary_conv,
        "images_per_second": batch_size * len(step_seconds) / total,
        "step_seconds_median": statistics.median(step_seconds),
    }


def _time_steps(trainer, warmup: int):
    """Wall seconds of each step after ``warmup``, each ending when its loss is
    fetched (as in ``bnno train``, which reads every step's loss)."""
    dataset = trainer.distribute(trainer.data.train(trainer.batch_size, 0, 0))
    seconds = []
    for i, (images, labels) in enumerate(dataset):
        start = time.perf_counter()
        loss, _ = trainer.train_step(images, labels)
        float(loss)
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    return seconds


def _synthetic_images(shape, count: int, seed: int, jpeg: bool):
    """``count`` random uint8 images of ``shape`` (JPEG bytes if ``jpeg``)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)
    if not jpeg:
        return images
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return np.array(encoded, dtype=object)


def pipeline_throughput(dataset: str, preprocess: str, *, batch_size: int, batches: int,
                        warmup: int = 2, examples: int = 1024) -> float:
    """Images per second of the training pipeline of ``dataset`` with ``preprocess``,
    fed from memory with synthetic images of the data set's stored shape."""
    import tensorflow as tf

    from bnno.data import preprocess as preprocess_lib
    from bnno.data.dataset import Data
    from bnno.data.preprocess import ImageSpec

    stored_shape = (375, 500, 3) if dataset == IMAGENET else _stored_shape(dataset)
    functions = preprocess_lib.get(dataset, preprocess, dataset)(ImageSpec(shape=stored_shape))
    images = _synthetic_images(stored_shape, min(examples, 256) if functions.decodes_jpeg else examples,
                               seed=0, jpeg=functions.decodes_jpeg)
    labels = np.arange(len(images), dtype=np.int32) % 10

    def read(split, shuffle_seed, autocache):
        return tf.data.Dataset.from_tensor_slices((images, labels)).repeat()

    data = Data(dataset, read=read, preprocess=functions, num_classes=10,
                split_sizes={"train": 10 * batch_size, "test": batch_size}, validation_split="test")
    iterator = iter(data.train(batch_size, epoch=0, seed=0))
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batch_size * batches / (time.perf_counter() - start)


def _stored_shape(dataset: str):
    from bnno.data import tfds_source

    builder = tfds_source.builder(dataset)
    return tuple(tfds_source.features(builder, dataset).image.shape)


def benchmark(model: str, hparams_set: str, hparams: Dict[str, Any], *, dataset: Optional[str],
              batch_size: Optional[int], steps: int, warmup: int, pipeline: bool,
              preprocess: str = "default", strategy: str = "auto", mixed_precision: bool = False,
              jit_compile: bool = False, binary_conv: str = "auto", echo=print) -> Dict[str, Any]:
    """Training (and with ``pipeline``, input) images per second for ``model``."""
    from bnno import data

    dataset = dataset or DEFAULT_DATASETS.get(model, IMAGENET)
    input_shape, num_classes = data.describe(dataset, preprocess=preprocess)
    batch_size = batch_size or hparams["batch_size"]
    result: Dict[str, Any] = {
        "model": model, "hparams_set": hparams_set, "dataset": dataset,
        "batch_size": batch_size, "steps": steps,
        "mixed_precision": mixed_precision, "jit_compile": jit_compile,
    }
    result.update(training_throughput(
        model, hparams, input_shape, num_classes, batch_size=batch_size, steps=steps,
        warmup=warmup, strategy=strategy, mixed_precision=mixed_precision,
        jit_compile=jit_compile, binary_conv=binary_conv, echo=echo,
    ))
    if pipeline:
        result["preprocess"] = preprocess
        result["pipeline_images_per_second"] = pipeline_throughput(
            dataset, preprocess, batch_size=batch_size, batches=max(steps, 10)
        )
    return result
