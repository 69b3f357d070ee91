"""The element-wise parts of a BNN's training step, each compiled by XLA into one pass,
with the same results as the ``keras.ops`` they replace (TensorFlow backend only).

A BNN's step does a lot of cheap element-wise work over large tensors: ``ste_sign``
reads every activation three times forward (``sign(sign(x) + 0.1)``) and four times
backward (``|x| <= 1``, a mask, a select); Bop's flip rule is six operations over every
binary weight; the flip-ratio metric compares every kernel's signs with the last
step's. As separate TensorFlow operations each one reads and writes a whole tensor,
and TensorFlow's pip packages compile those kernels for AVX only. XLA fuses each group
into one loop over the data, compiled for the CPU it runs on.

Only operations whose results cannot change are fused: signs, comparisons, selects,
and adding 0.1 to a sign. Arithmetic that XLA could contract into a fused
multiply-add with a different rounding (Bop's moving average ``m + gamma * (g - m)``,
its ``w * m - threshold``) stays with TensorFlow's own kernels. So a run computes
bit for bit what it computed before (tests/nn/test_fused.py compares both on special
values: zeros of both signs, subnormals, infinities, NaN).

Used while tracing a graph (``tf.function``, as in ``bnno train``) on the TensorFlow
backend; eagerly, and on other backends, the ``keras.ops`` versions run. The
environment variable ``BNNO_FUSED`` turns parts off for measurement
(benchmarks/README.md): ``none``, or a comma-separated list of ``sign``
(``ste_sign`` forward and backward), ``bop`` (Bop's flip rule) and ``flips`` (the
flip-ratio metric); unset means all.
"""

import functools
import os

__all__ = ["PARTS", "active", "binary_sign", "bop_flip", "clipped_identity_gradient", "sign_changes"]

#: The parts that can be fused, as ``BNNO_FUSED`` names them.
PARTS = ("sign", "bop", "flips")


def _requested_parts():
    value = os.environ.get("BNNO_FUSED", "").strip().lower()
    if not value or value == "all":
        return set(PARTS)
    if value == "none":
        return set()
    return {part.strip() for part in value.split(",")}


def active(part: str) -> bool:
    """Whether ``part`` runs fused here: TensorFlow backend, inside a traced graph, and
    not turned off by ``BNNO_FUSED``."""
    import keras

    if keras.backend.backend() != "tensorflow" or part not in _requested_parts():
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


def _xla(function):
    """``function`` compiled by XLA, once per input signature (shapes and dtypes);
    variables among the arguments are read into tensors first."""
    import tensorflow as tf

    compiled = tf.function(function, jit_compile=True, autograph=False)

    def call(*tensors):
        return compiled(*(tf.convert_to_tensor(t) for t in tensors))

    return call


@functools.lru_cache(maxsize=None)
def _binary_sign():
    import tensorflow as tf

    def binary_sign(x):
        return tf.sign(tf.sign(x) + tf.cast(0.1, x.dtype))

    return _xla(binary_sign)


def binary_sign(x):
    """``quantizers.binary_sign`` (sign with sign(0) = +1) in one pass."""
    return _binary_sign()(x)


@functools.lru_cache(maxsize=None)
def _clipped_identity_gradient(clip_value: float):
    import tensorflow as tf

    def gradient(x, upstream):
        inside = tf.less_equal(tf.abs(x), tf.cast(clip_value, x.dtype))
        return tf.where(inside, upstream, tf.zeros_like(upstream))

    return _xla(gradient)


def clipped_identity_gradient(x, upstream, clip_value: float):
    """The straight-through estimator's gradient, ``upstream`` where |x| <= clip_value
    and 0 elsewhere, in one pass."""
    return _clipped_identity_gradient(float(clip_value))(x, upstream)


@functools.lru_cache(maxsize=None)
def _bop_flip():
    import tensorflow as tf

    def flip(variable, strength):
        flip_or_keep = -tf.sign(strength)
        product = flip_or_keep * variable
        return tf.sign(tf.sign(product) + tf.cast(0.1, product.dtype))

    return _xla(flip)


def bop_flip(variable, strength):
    """Bop's new weights, ``binary_sign(-sign(strength) * variable)``, in one pass;
    ``strength`` is ``variable * m - threshold``, computed by the caller."""
    return _bop_flip()(variable, strength)


@functools.lru_cache(maxsize=None)
def _sign_changes():
    import tensorflow as tf

    def sign_changes(kernel, previous_sign):
        sign = tf.sign(tf.sign(kernel) + tf.cast(0.1, kernel.dtype))
        # Counted in integers: exact in any order (a float32 sum of ones is exact only
        # up to 2**24, and its rounding beyond would depend on the order of the sum).
        changed = tf.reduce_sum(tf.cast(tf.not_equal(sign, previous_sign), tf.int32))
        return tf.cast(changed, tf.float32), sign

    return _xla(sign_changes)


def sign_changes(kernel, previous_sign):
    """``(number of weights whose binary sign differs from previous_sign, the kernel's
    binary signs)`` in one pass; the count as a float32, as the metric keeps it."""
    return _sign_changes()(kernel, previous_sign)
