"""larq's side of the BinaryNet throughput comparison (benchmarks/README.md).

The paper's BinaryNet and its section 5.1 recipe (``bop`` set: batch 100, Bop threshold
1e-6 and gamma 1e-3 on the binary kernels, Adam 0.01 on the rest) built with larq 0.14
on tf-keras 2.21, trained with ``model.fit`` on one random batch held in memory, the
way larq users train. Prints training images per second over the timed steps.

Runs in larq's own environment (Keras 2), which benchmarks/run_larq.sh builds:
    TF_USE_LEGACY_KERAS=1 python benchmarks/larq_binarynet.py --batch-size 100 --steps 20
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import larq as lq  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402


def binarynet(input_shape=(32, 32, 3), num_classes=10, filters=128, dense_units=1024):
    """The paper's code, bnn_optimization/models/binarynet.py, with kernels marked binary
    by NoOp(precision=1) so that larq's CaseOptimizer gives them to Bop."""
    binary = lq.quantizers.NoOp(precision=1)
    kw = dict(input_quantizer="ste_sign", kernel_quantizer=binary, kernel_constraint=None, use_bias=False)
    layers = tf.keras.layers
    return tf.keras.models.Sequential([
        lq.layers.QuantConv2D(filters, 3, kernel_quantizer=binary, use_bias=False, input_shape=input_shape),
        layers.BatchNormalization(scale=False),
        lq.layers.QuantConv2D(filters, 3, padding="same", **kw),
        layers.MaxPool2D(2, 2), layers.BatchNormalization(scale=False),
        lq.layers.QuantConv2D(2 * filters, 3, padding="same", **kw),
        layers.BatchNormalization(scale=False),
        lq.layers.QuantConv2D(2 * filters, 3, padding="same", **kw),
        layers.MaxPool2D(2, 2), layers.BatchNormalization(scale=False),
        lq.layers.QuantConv2D(4 * filters, 3, padding="same", **kw),
        layers.BatchNormalization(scale=False),
        lq.layers.QuantConv2D(4 * filters, 3, padding="same", **kw),
        layers.MaxPool2D(2, 2), layers.BatchNormalization(scale=False),
        layers.Flatten(),
        lq.layers.QuantDense(dense_units, **kw), layers.BatchNormalization(scale=False),
        lq.layers.QuantDense(dense_units, **kw), layers.BatchNormalization(scale=False),
        lq.layers.QuantDense(num_classes, **kw), layers.BatchNormalization(scale=False),
        layers.Activation("softmax", dtype="float32"),
    ])


class StepTimer(tf.keras.callbacks.Callback):
    def __init__(self, warmup):
        super().__init__()
        self.warmup, self.seconds = warmup, []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])  # wait for the step, as bnno's loop does
        if batch >= self.warmup:
            self.seconds.append(time.perf_counter() - self.start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mixed-precision", action="store_true",
                        help="mixed_bfloat16 (mixed_float16 on GPUs), like bnno's flag")
    args = parser.parse_args()

    if args.mixed_precision:
        gpu = bool(tf.config.list_physical_devices("GPU"))
        tf.keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
    tf.keras.utils.set_random_seed(0)
    model = binarynet()
    model.compile(
        optimizer=lq.optimizers.CaseOptimizer(
            (lq.optimizers.Bop.is_binary_variable, lq.optimizers.Bop(threshold=1e-6, gamma=1e-3)),
            default_optimizer=tf.keras.optimizers.legacy.Adam(0.01),
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(args.batch_size, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, size=args.batch_size).astype(np.int32)
    steps = args.warmup + args.steps
    dataset = tf.data.Dataset.from_tensors((images, labels)).cache().repeat(steps)
    timer = StepTimer(args.warmup)
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    result = {
        "library": f"larq {lq.__version__}, tf-keras {tf_keras.__version__}, tensorflow {tf.__version__}",
        "batch_size": args.batch_size, "steps": len(timer.seconds),
        "precision": tf.keras.mixed_precision.global_policy().name,
        "images_per_second": args.batch_size * len(timer.seconds) / sum(timer.seconds),
        "step_seconds_median": float(np.median(timer.seconds)),
    }
    print(f"larq binarynet (bop), batch {args.batch_size}: {result['images_per_second']:.1f} images/s training")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
