"""Throughput: training images per second, and input-pipeline images per second.

Training is measured with bnno's own compiled training step (``bnno.training.Trainer``,
the one ``bnno train`` runs) on one synthetic batch held in memory, so the figure is
the model and optimizer alone, with no input cost. The pipeline is measured
separately, on synthetic images shaped like the data set's stored ones (uint8 pixels,
or JPEG files for ImageNet) through the set's preprocess function, the same
``bnno.data.Data`` pipeline as in training.

Both count only steps after a warm-up (the first steps trace and compile).

On Keras's other backends (``KERAS_BACKEND=jax``) there is no ``Trainer`` (it runs on
``tf.distribute``) and no TensorFlow: the same model and optimizer (``bnno.config``)
train through Keras's own jitted step (``model.train_on_batch`` after
``compile(jit_compile=True)``) on one batch held on the device, with the input shapes
of the data sets' default preprocessing (``BACKEND_NEUTRAL_SHAPES``).
"""

import io
import pathlib
import random
import statistics
import tempfile
import time
from typing import Any, Dict, Optional

import numpy as np

from bnno.errors import UsageError

#: The data set whose shapes each model is benchmarked with.
DEFAULT_DATASETS = {"binarynet": "cifar10"}
IMAGENET = "imagenet2012"
#: (input shape, classes) of each data set's default preprocessing, for backends that
#: cannot ask tensorflow-datasets (``bnno.data.describe`` imports TensorFlow).
BACKEND_NEUTRAL_SHAPES = {"cifar10": ((32, 32, 3), 10), IMAGENET: ((224, 224, 3), 1000)}


def on_tensorflow() -> bool:
    """Whether Keras runs on TensorFlow (else ``benchmark`` takes the Keras-only path)."""
    import keras

    return keras.backend.backend() == "tensorflow"


class OneBatch:
    """A data object for ``bnno.training.Trainer`` (its ``data=``) that serves one
    random batch over and over: ``steps`` training steps per epoch and one validation
    batch, with no input pipeline to wait for. ``input_shape`` and ``num_classes`` are
    the shapes a model is built for; ``seed`` draws the batch."""

    def __init__(self, input_shape, num_classes: int, batch_size: int, steps: int, seed: int):
        import tensorflow as tf

        rng = np.random.default_rng(seed)
        self.input_shape, self.num_classes = tuple(input_shape), int(num_classes)
        self.train_examples = self.validation_examples = batch_size * steps
        images = rng.uniform(-1, 1, size=(batch_size, *self.input_shape)).astype(np.float32)
        labels = rng.integers(0, self.num_classes, size=batch_size).astype(np.int32)
        self._batch = tf.data.Dataset.from_tensors((images, labels)).cache()
        self._steps = steps

    def train(self, batch_size, epoch, seed, skip_batches=0):
        return self._batch.repeat(self._steps - skip_batches)

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
        data = OneBatch(input_shape, num_classes, batch_size, warmup + steps, seed=0)
        with training.restoring_precision_policy():
            trainer = training.Trainer(run, echo=echo, data=data)
            step_seconds = _time_steps(trainer, warmup)
    total = sum(step_seconds)
    return {
        "binary_conv": trainer.binary_conv,
        "images_per_second": batch_size * len(step_seconds) / total,
        "step_seconds_median": statistics.median(step_seconds),
    }


def keras_training_throughput(model: str, hparams: Dict[str, Any], input_shape, num_classes: int, *,
                              batch_size: int, steps: int, warmup: int = 3,
                              mixed_precision: bool = False, seed: int = 0) -> Dict[str, Any]:
    """Images per second of ``model``'s training step on a backend other than
    TensorFlow: Keras's jitted ``train_on_batch`` with ``bnno.config``'s optimizer,
    each step ending when its loss is fetched, as in ``_time_steps``."""
    import keras

    from bnno import models
    from bnno.config import Config

    random.seed(seed)  # Keras's unseeded initializers draw their seeds from Python's random
    np.random.seed(seed)
    policy = keras.config.dtype_policy()
    devices = _devices()
    try:
        if mixed_precision:
            on_gpu = devices[0].platform == "gpu"
            keras.config.set_dtype_policy("mixed_float16" if on_gpu else "mixed_bfloat16")
        network = models.build(model, {**hparams, "batch_size": batch_size}, input_shape, num_classes)
        optimizer = Config.from_values(hparams).build_optimizer(warmup + steps)
        if keras.config.dtype_policy().name == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)  # as Trainer does
        network.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=True)
        compute_dtype = keras.config.dtype_policy().compute_dtype
    finally:
        keras.config.set_dtype_policy(policy)
    rng = np.random.default_rng(seed)  # the same batch as OneBatch's
    images = rng.uniform(-1, 1, size=(batch_size, *tuple(input_shape))).astype(np.float32)
    labels = rng.integers(0, int(num_classes), size=batch_size).astype(np.int32)
    images, labels = keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)
    seconds = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        float(network.train_on_batch(images, labels))
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    return {
        "binary_conv": compute_dtype,  # Keras's own convolutions, in the policy's dtype
        "images_per_second": batch_size * len(seconds) / sum(seconds),
        "step_seconds_median": statistics.median(seconds),
        "device": str(devices[0]),
        "device_kind": devices[0].device_kind,
    }


def _devices():
    import jax

    return jax.devices()


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
    dataset = dataset or DEFAULT_DATASETS.get(model, IMAGENET)
    batch_size = batch_size or hparams["batch_size"]
    if not on_tensorflow():
        return _benchmark_without_tensorflow(
            model, hparams_set, hparams, dataset=dataset, batch_size=batch_size, steps=steps,
            warmup=warmup, pipeline=pipeline, preprocess=preprocess, strategy=strategy,
            mixed_precision=mixed_precision, binary_conv=binary_conv,
        )
    from bnno import data

    input_shape, num_classes = data.describe(dataset, preprocess=preprocess)
    result: Dict[str, Any] = {
        "model": model, "hparams_set": hparams_set, "dataset": dataset, "backend": "tensorflow",
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


def _benchmark_without_tensorflow(model, hparams_set, hparams, *, dataset, batch_size, steps, warmup,
                                  pipeline, preprocess, strategy, mixed_precision, binary_conv):
    """``benchmark`` on a backend other than TensorFlow; what needs TensorFlow (the input
    pipeline, tf.distribute, exact bfloat16 convolutions, other data sets' shapes) is a
    ``UsageError`` saying so."""
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        raise UsageError(f"bnno benchmark runs on Keras's tensorflow and jax backends, not {backend}.")
    needs_tensorflow = [
        option for option, asked in (
            ("--pipeline", pipeline),
            (f"--preprocess-fn {preprocess}", preprocess not in (None, "default")),
            (f"--strategy {strategy}", strategy != "auto"),
            (f"--binary-conv {binary_conv}", binary_conv not in ("auto", "float32")),
            (f"--dataset {dataset}", dataset not in BACKEND_NEUTRAL_SHAPES),
        ) if asked
    ]
    if needs_tensorflow:
        raise UsageError(
            f"On Keras's {backend} backend bnno benchmark times the training step alone, on "
            f"{' or '.join(BACKEND_NEUTRAL_SHAPES)} with their default preprocessing; "
            f"{', '.join(needs_tensorflow)} needs TensorFlow (unset KERAS_BACKEND)."
        )
    input_shape, num_classes = BACKEND_NEUTRAL_SHAPES[dataset]
    result: Dict[str, Any] = {
        "model": model, "hparams_set": hparams_set, "dataset": dataset, "backend": backend,
        "batch_size": batch_size, "steps": steps,
        "mixed_precision": mixed_precision, "jit_compile": True,  # Keras jits the whole step
    }
    result.update(keras_training_throughput(
        model, hparams, input_shape, num_classes, batch_size=batch_size, steps=steps,
        warmup=warmup, mixed_precision=mixed_precision,
    ))
    return result
