"""Element-wise parts of BinaryNet's step timed alone (batch 100): TensorFlow's
separate operations against one XLA pass each, milliseconds per step.

- sign: ``ste_sign`` forward and backward on the inputs of BinaryNet's eight binarized
  layers (24.5 M activations): what ``bnno.nn.fused`` fuses;
- bop: Bop's flip rule on its nine binary kernels (10.4 M weights), given
  ``w * m - threshold``;
- flips: the flip-ratio metric's sign comparison on the same kernels.

bop and flips were tried and left unfused (no faster as one XLA pass); their XLA
versions are here, so that the measurement can be repeated.

    python benchmarks/fused_parts.py [--repeats 20]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bnno.nn import fused, quantizers  # noqa: E402

BATCH = 100
ACTIVATIONS = [(30, 30, 128), (15, 15, 128), (15, 15, 256), (7, 7, 256), (7, 7, 512), (4608,), (1024,), (1024,)]
KERNELS = [(3, 3, 3, 128), (3, 3, 128, 128), (3, 3, 128, 256), (3, 3, 256, 256), (3, 3, 256, 512),
           (3, 3, 512, 512), (4608, 1024), (1024, 1024), (1024, 10)]


def plus_minus_one(rng, shape):
    return tf.constant(np.where(rng.standard_normal(shape) >= 0, 1.0, -1.0).astype(np.float32))


@tf.function(jit_compile=True)
def _xla_flips(kernel, previous_sign):
    sign = quantizers.binary_sign(kernel)
    return tf.reduce_sum(tf.cast(tf.not_equal(sign, previous_sign), tf.int32)), sign


def parts(rng):
    """{part: (inputs, separate-ops function, fused function)}."""
    xs = [tf.constant(rng.standard_normal((BATCH, *s)).astype(np.float32)) for s in ACTIVATIONS]
    ups = [tf.constant(rng.standard_normal((BATCH, *s)).astype(np.float32)) for s in ACTIVATIONS]
    ws = [plus_minus_one(rng, s) for s in KERNELS]
    strengths = [tf.constant((rng.standard_normal(s) * 1e-6).astype(np.float32)) for s in KERNELS]
    previous = [plus_minus_one(rng, s) for s in KERNELS]

    def sign_separate(xs, ups):
        out = []
        for x, up in zip(xs, ups):
            inside = tf.less_equal(tf.abs(x), 1.0)
            out += [quantizers.binary_sign(x), tf.where(inside, up, tf.zeros_like(up))]
        return out

    def sign_fused(xs, ups):
        out = []
        for x, up in zip(xs, ups):
            out += [fused.compiled(quantizers.binary_sign)(x),
                    fused.compiled(quantizers.pass_inside_clip)(x, up, 1.0)]
        return out

    def bop_separate(ws, strengths):
        return [quantizers.binary_sign(-tf.sign(s) * w) for w, s in zip(ws, strengths)]

    @tf.function(jit_compile=True)
    def bop_fused(ws, strengths):
        return bop_separate(ws, strengths)

    def flips_separate(ws, previous):
        out = []
        for w, p in zip(ws, previous):
            sign = quantizers.binary_sign(w)
            out += [tf.reduce_sum(tf.cast(tf.not_equal(sign, p), tf.float32)), sign]
        return out

    def flips_fused(ws, previous):
        out = []
        for w, p in zip(ws, previous):
            out += list(_xla_flips(w, p))
        return out

    return {
        "sign": ((xs, ups), sign_separate, sign_fused),
        "bop": ((ws, strengths), bop_separate, bop_fused),
        "flips": ((ws, previous), flips_separate, flips_fused),
    }


def milliseconds(function, inputs, repeats):
    compiled = tf.function(function)
    for _ in range(3):
        [t.numpy() for t in compiled(*inputs)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        [t.numpy() for t in compiled(*inputs)]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'part':<6} {'separate ops':>13} {'one XLA pass':>13}  (ms, median of {args.repeats})")
    for name, (inputs, separate, fused_function) in parts(rng).items():
        print(f"{name:<6} {milliseconds(separate, inputs, args.repeats):13.1f} "
              f"{milliseconds(fused_function, inputs, args.repeats):13.1f}", flush=True)


if __name__ == "__main__":
    main()
