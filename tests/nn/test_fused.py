"""bnno.nn.fused: ste_sign's XLA-fused forward and backward passes give the results of
the keras.ops they replace, bit for bit, and a BNN trained with them flips the same
weights.

TensorFlow only (the fused parts exist on its backend alone). NaN compares equal to
NaN whatever its sign bit: XLA may give -NaN where TensorFlow gives NaN, a difference
no computation downstream can see.
"""

import keras
import numpy as np
import pytest

if keras.backend.backend() != "tensorflow":
    pytest.skip("bnno.nn.fused exists on the TensorFlow backend only", allow_module_level=True)

import tensorflow as tf  # noqa: E402

from bnno.nn import fused, quantizers  # noqa: E402
from bnno.nn.metrics import FlipRatios  # noqa: E402
from bnno.nn.optimizers import Bop, Bop2ndOrder, CaseOptimizer  # noqa: E402

SPECIAL = np.array(
    [0.0, -0.0, 1e-45, -1e-45, 1e-39, -1e-39, 1.17e-38, -1.17e-38, 1.0, -1.0, 1.0000001,
     -1.0000001, 0.99999994, -0.99999994, 0.5, -0.5, 3.4e38, -3.4e38, np.inf, -np.inf,
     np.nan, -np.nan],
    np.float32,
)


def values(count=20_000, seed=0):
    """The special values, then normal ones around the clip value, then subnormals."""
    rng = np.random.default_rng(seed)
    normal = (rng.standard_normal(count) * 1.5).astype(np.float32)
    subnormal = (rng.standard_normal(500) * 1e-40).astype(np.float32)
    return np.concatenate([SPECIAL, normal, subnormal])


def assert_bitwise_equal(actual, expected):
    actual = np.array(tf.cast(actual, tf.float32), np.float32)
    expected = np.array(tf.cast(expected, tf.float32), np.float32)
    assert actual.shape == expected.shape
    for array in (actual, expected):
        array[np.isnan(array)] = np.nan  # one NaN, whatever its sign bit
    mismatched = np.flatnonzero(actual.view(np.uint32) != expected.view(np.uint32))
    assert mismatched.size == 0, f"{mismatched.size} differ, first at {mismatched[:5]}"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_binary_sign_and_the_straight_through_gradient_are_unchanged(dtype):
    x = tf.cast(values(), dtype)
    upstream = tf.cast(values(seed=1)[::-1].copy(), dtype)

    @tf.function
    def both(x, upstream):
        inside = tf.less_equal(tf.abs(x), tf.cast(1.0, x.dtype))
        return (quantizers.binary_sign(x), fused.compiled(quantizers.binary_sign)(x),
                tf.where(inside, upstream, tf.zeros_like(upstream)),
                fused.compiled(quantizers.pass_inside_clip)(x, upstream, 1.0))

    sign, fused_sign, gradient, fused_gradient = both(x, upstream)
    assert_bitwise_equal(fused_sign, sign)
    assert_bitwise_equal(fused_gradient, gradient)
    finite = np.isfinite(np.asarray(tf.cast(x, tf.float32)))
    assert set(np.unique(np.asarray(tf.cast(fused_sign, tf.float32))[finite])) == {-1.0, 1.0}


def test_the_fusion_runs_in_traced_graphs_only_and_can_be_turned_off(monkeypatch):
    def xla_calls(function):
        graph = tf.function(function).get_concrete_function(tf.TensorSpec([4], tf.float32)).graph
        return sum(1 for op in graph.get_operations() if "_XlaMustCompile" in op.node_def.attr)

    def quantize(x):
        return quantizers.ste_sign(x)

    monkeypatch.delenv("BNNO_FUSED", raising=False)
    assert xla_calls(quantize) == 0  # outside bnno's own steps: keras.ops
    with fused.use():
        assert xla_calls(quantize) == 1
        assert not fused.active()  # eagerly, keras.ops
        monkeypatch.setenv("BNNO_FUSED", "none")
        assert xla_calls(quantize) == 0


def _train(optimizer_factory, steps, fused_setting, monkeypatch):
    """A small BNN's variables, optimizer variables and flip counts after ``steps``
    traced training steps, with ``BNNO_FUSED=fused_setting``."""
    from bnno import models

    monkeypatch.setenv("BNNO_FUSED", fused_setting)
    keras.utils.set_random_seed(7)
    model = models.build("binarynet", {"filters": 8, "dense_units": 16, "kernel_size": 3},
                         (12, 12, 3), 5)
    optimizer = CaseOptimizer((Bop.is_binary_variable, optimizer_factory()),
                              default_optimizer=keras.optimizers.Adam(0.01))
    flips = FlipRatios(model)
    rng = np.random.default_rng(11)
    batches = [(rng.uniform(-1, 1, (16, 12, 12, 3)).astype(np.float32),
                rng.integers(0, 5, 16).astype(np.int32)) for _ in range(steps)]

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, model(images, training=True)))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        flips.update_state()
        return loss

    counts = []
    with fused.use():  # as bnno's Trainer traces its steps
        for images, labels in batches:
            step(images, labels)
            counts.append(flips.counts()[0])
    return [v.numpy() for v in model.variables], [v.numpy() for v in optimizer.variables], counts


@pytest.mark.parametrize("optimizer_factory", [
    lambda: Bop(threshold=1e-6, gamma=1e-2),
    lambda: Bop2ndOrder(threshold=1e-6, gamma=1e-2, sigma=1e-2),
], ids=["bop", "bop2nd"])
def test_training_flips_the_same_weights_fused_or_not(optimizer_factory, monkeypatch):
    weights, states, counts = _train(optimizer_factory, 6, "all", monkeypatch)
    plain_weights, plain_states, plain_counts = _train(optimizer_factory, 6, "none", monkeypatch)
    assert counts == plain_counts and counts[-1] > 0
    for fused_value, plain_value in zip(weights + states, plain_weights + plain_states):
        assert_bitwise_equal(fused_value, plain_value)
