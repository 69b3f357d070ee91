"""Quantizers: forward values and pseudo-gradients at chosen points, exactly.

Backend-neutral: tests/nn/test_jax_backend.py runs this file on JAX too.
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

from bnno.nn import quantizers

POINTS = [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]


def forward_and_gradient(quantizer, values, dtype="float32"):
    """``quantizer(x)`` at ``values`` and the gradient of the sum of its outputs with
    respect to x (each output's pseudo-gradient), on Keras's backend."""
    if keras.backend.backend() == "jax":
        import jax

        y, pullback = jax.vjp(quantizer, ops.convert_to_tensor(np.asarray(values, dtype)))
        (gradient,) = pullback(jax.numpy.ones_like(y))
        return np.asarray(y), np.asarray(gradient)
    import tensorflow as tf

    x = tf.constant(values, dtype=dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = quantizer(x)
    return y.numpy(), tape.gradient(y, x).numpy()


def test_ste_sign_forward_is_sign_with_sign_of_zero_plus_one():
    y, _ = forward_and_gradient(quantizers.ste_sign, POINTS)
    np.testing.assert_array_equal(y, [-1, -1, -1, 1, 1, 1, 1])


def test_ste_sign_gradient_passes_inside_the_clip_value_only():
    _, grad = forward_and_gradient(quantizers.ste_sign, POINTS)
    np.testing.assert_array_equal(grad, [0, 1, 1, 1, 1, 1, 0])
    _, grad = forward_and_gradient(lambda x: quantizers.ste_sign(x, clip_value=0.5), POINTS)
    np.testing.assert_array_equal(grad, [0, 0, 1, 1, 1, 0, 0])
    _, grad = forward_and_gradient(lambda x: quantizers.ste_sign(x, clip_value=None), POINTS)
    np.testing.assert_array_equal(grad, [1, 1, 1, 1, 1, 1, 1])


def test_approx_sign_gradient_is_two_minus_two_abs_x():
    y, grad = forward_and_gradient(quantizers.approx_sign, POINTS)
    np.testing.assert_array_equal(y, [-1, -1, -1, 1, 1, 1, 1])
    np.testing.assert_array_equal(grad, [0, 0, 1, 2, 1, 0, 0])


def test_swish_sign_gradient_follows_its_formula():
    y, grad = forward_and_gradient(quantizers.swish_sign, POINTS)
    np.testing.assert_array_equal(y, [-1, -1, -1, 1, 1, 1, 1])
    beta = 5.0
    expected = [
        beta * (2 - beta * x * math.tanh(beta * x / 2)) / (1 + math.cosh(beta * x))
        for x in POINTS
    ]
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    assert grad[3] == pytest.approx(5.0)  # the peak, beta, at x = 0


def test_ste_heaviside_is_zero_at_and_below_zero():
    y, grad = forward_and_gradient(quantizers.ste_heaviside, POINTS)
    np.testing.assert_array_equal(y, [0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(grad, [0, 1, 1, 1, 1, 1, 0])


def test_ste_tern_has_three_levels_around_the_threshold():
    values = [-0.1, -0.05, -0.01, 0.0, 0.01, 0.05, 0.1]
    y, grad = forward_and_gradient(quantizers.ste_tern, values)
    np.testing.assert_array_equal(y, [-1, -1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(grad, [1, 1, 1, 1, 1, 1, 1])


def test_ste_tern_with_ternary_weight_networks_threshold():
    # mean |x| = 1.0, so the threshold is 0.7
    values = [-1.6, -0.69, 0.0, 0.71, 2.0, -1.0]
    y, _ = forward_and_gradient(
        lambda x: quantizers.ste_tern(x, ternary_weight_networks=True), values
    )
    np.testing.assert_array_equal(y, [-1, 0, 0, 1, 1, -1])


def test_magnitude_aware_sign_scales_each_output_channel_by_its_mean_magnitude():
    kernel = np.array([[[[1.0, -4.0]], [[-3.0, 2.0]]], [[[0.5, 0.0]], [[-0.5, 6.0]]]])
    # channel 0 holds 1, -3, 0.5, -0.5 (mean |x| 1.25); channel 1 -4, 2, 0, 6 (mean 3)
    y, grad = forward_and_gradient(quantizers.magnitude_aware_sign, kernel)
    expected = np.array([[[[1.25, -3.0]], [[-1.25, 3.0]]], [[[1.25, 3.0]], [[-1.25, 3.0]]]])
    np.testing.assert_array_equal(y, expected)
    # The pseudo-gradient is the STE's, times the (constant) scale.
    expected_grad = np.array([[[[1.25, 0.0]], [[0.0, 0.0]]], [[[1.25, 3.0]], [[1.25, 0.0]]]])
    np.testing.assert_array_equal(grad, expected_grad)


def test_noop_is_the_identity_and_carries_its_precision():
    quantizer = quantizers.NoOp(precision=1)
    y, grad = forward_and_gradient(quantizer, POINTS)
    np.testing.assert_array_equal(y, POINTS)
    np.testing.assert_array_equal(grad, np.ones(7))
    assert quantizer.precision == 1
    assert quantizers.NoOp(precision=8).precision == 8


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("name", ["ste_sign", "approx_sign", "swish_sign"])
def test_binary_outputs_are_exactly_plus_minus_one_in_every_float_dtype(name, dtype):
    if dtype == "float64" and keras.backend.backend() == "jax":
        pytest.skip("JAX computes in float32 unless jax_enable_x64 is set")
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.normal(size=1000), rng.normal(size=1000) * 1e-6, [0.0, -0.0, 1e-30, -1e-30, 65000]
    ])
    y = quantizers.get(name)(ops.convert_to_tensor(values.astype(dtype)))
    assert keras.backend.standardize_dtype(y.dtype) == dtype
    y = ops.convert_to_numpy(y).astype(np.float64)
    assert set(np.unique(y)) == {-1.0, 1.0}
    np.testing.assert_array_equal(y, np.where(values.astype(dtype).astype(np.float64) < 0, -1, 1))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_ternary_outputs_are_exactly_minus_one_zero_one(dtype):
    values = np.linspace(-1, 1, 101)
    y = ops.convert_to_numpy(quantizers.ste_tern(ops.convert_to_tensor(values.astype(dtype))))
    assert set(np.unique(y)) == {-1.0, 0.0, 1.0}


def test_get_resolves_every_larq_name_to_a_quantizer_with_a_precision():
    expected = {
        "approx_sign": 1, "magnitude_aware_sign": 1, "noop": 1, "ste_heaviside": 1,
        "ste_sign": 1, "ste_tern": 2, "swish_sign": 1,
    }
    assert quantizers.names() == sorted(expected)
    for name, precision in expected.items():
        assert quantizers.get(name).precision == precision


def test_get_turns_the_module_functions_into_their_classes():
    assert quantizers.get(quantizers.ste_sign) == quantizers.SteSign()
    assert quantizers.get(None) is None
    custom = lambda x: x  # noqa: E731
    assert quantizers.get(custom) is custom


def test_unknown_quantizer_name_lists_the_choices_and_the_closest():
    with pytest.raises(ValueError) as error:
        quantizers.get("ste_sgn")
    message = str(error.value)
    assert "Unknown quantizer 'ste_sgn'" in message
    assert "approx_sign, magnitude_aware_sign, noop" in message
    assert "Did you mean 'ste_sign'?" in message


def test_a_non_quantizer_is_a_value_error():
    with pytest.raises(ValueError, match="Cannot interpret 3 as a quantizer"):
        quantizers.get(3)


@pytest.mark.parametrize(
    "quantizer",
    [
        quantizers.SteSign(clip_value=0.5),
        quantizers.SteTern(threshold_value=0.2, ternary_weight_networks=True),
        quantizers.SwishSign(beta=2.0),
        quantizers.NoOp(precision=1),
        quantizers.MagnitudeAwareSign(),
    ],
    ids=repr,
)
def test_quantizers_survive_keras_serialization(quantizer):
    config = quantizers.serialize(quantizer)
    restored = quantizers.get(config)
    assert restored == quantizer and restored is not quantizer
    assert keras.saving.deserialize_keras_object(config) == quantizer
