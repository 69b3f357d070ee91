"""``ste_sign``'s forward and backward passes, each compiled by XLA into one pass over
the activations, with the same results as the ``keras.ops`` they replace (TensorFlow
backend only).

A BNN's step binarizes every activation that enters a binary layer: ``ste_sign``
reads each one three times forward (``sign(sign(x) + 0.1)``) and four times backward
(``|x| <= 1``, a mask, a select). As separate TensorFlow operations each reads and
writes a whole tensor, with kernels that TensorFlow's pip packages compile for AVX
only. XLA fuses each pass into one loop compiled for the CPU it runs on: on
BinaryNet's activations (batch 100) forward and backward together take 72 ms instead
of 104 (benchmarks/README.md, ``benchmarks/fused_parts.py``).

Only signs, comparisons, selects and the addition of 0.1 to a sign are fused, whose
results cannot depend on how they are compiled (no multiply-add that XLA could
contract into one rounding), so a run computes bit for bit what it computed before
(tests/nn/test_fused.py compares both on zeros of both signs, subnormals, infinities
and NaN). Bop's flip rule and the flip-ratio count were tried the same way and left
out: one XLA pass was no faster there (18 against 20 ms, and 28 against 23 ms).

Used where bnno's own training and evaluation steps are traced (``Trainer`` traces
them inside ``use()``), on the TensorFlow backend. Everywhere else (eager calls, other
backends, and models that users call or export themselves, e.g. to a SavedModel for
converters that take no XLA clusters) the ``keras.ops`` versions run.
``BNNO_FUSED=none`` in the environment turns the fusion off, to measure it.
"""

import contextlib
import functools
import os

from bnno.nn.context import ScopedSetting

__all__ = ["active", "compiled", "use"]

_enabled = ScopedSetting("fused.enabled", False)


@contextlib.contextmanager
def use(enabled: bool = True):
    """Within the block, ``ste_sign`` traced into a graph runs fused (unless
    ``BNNO_FUSED=none``); the previous setting is restored after."""
    with _enabled.scope(enabled):
        yield


def active() -> bool:
    """Whether ``ste_sign`` runs fused here: inside ``use()``, on the TensorFlow
    backend, inside a traced graph, and not turned off by ``BNNO_FUSED=none``."""
    import keras

    if not _enabled.get() or keras.backend.backend() != "tensorflow":
        return False
    if os.environ.get("BNNO_FUSED", "").strip().lower() == "none":
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


@functools.lru_cache(maxsize=None)
def compiled(function):
    """``function`` (written with ``keras.ops``) compiled by XLA, once per input
    signature (shapes and dtypes); arguments, variables included, are read into
    tensors first. ``quantizers.ste_sign`` passes its own forward and gradient
    functions, so the fused and the plain paths compute the same operations."""
    import tensorflow as tf

    xla = tf.function(function, jit_compile=True, autograph=False)

    def call(*arguments):
        return xla(*(tf.convert_to_tensor(a) for a in arguments))

    return call
