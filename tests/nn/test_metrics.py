"""Flip ratio: the share of binary weights whose sign changed per step."""

import keras
import numpy as np
import pytest

from bnno.nn import layers, metrics


def model_with_two_binary_kernels():
    inputs = keras.Input((4,))
    x = layers.QuantDense(5, kernel_quantizer="noop", use_bias=False, name="a")(inputs)
    x = layers.QuantDense(3, kernel_quantizer="noop", use_bias=False, name="b")(x)
    x = keras.layers.Dense(2, name="real")(x)
    model = keras.Model(inputs, x)
    for name in ("a", "b"):
        kernel = model.get_layer(name).kernel
        kernel.assign(np.ones(kernel.shape, np.float32))
    return model


def flip(kernel, count):
    values = kernel.numpy().reshape(-1)
    values[:count] *= -1
    kernel.assign(values.reshape(kernel.shape))


def test_binary_kernels_are_found_by_precision():
    model = model_with_two_binary_kernels()
    assert list(metrics.binary_kernels(model)) == ["a", "b"]


def test_flip_ratio_counts_sign_changes_per_layer_and_overall():
    model = model_with_two_binary_kernels()
    a, b = model.get_layer("a").kernel, model.get_layer("b").kernel  # 20 and 15 weights
    ratios = metrics.FlipRatios(model)
    flip(a, 5)
    flip(b, 3)
    ratios.update_state()
    assert ratios.results() == pytest.approx(
        {"flip_ratio": 8 / 35, "flip_ratio/a": 5 / 20, "flip_ratio/b": 3 / 15}
    )
    # A second step flipping nothing halves the averages.
    ratios.update_state()
    assert ratios.results() == pytest.approx(
        {"flip_ratio": 8 / 70, "flip_ratio/a": 5 / 40, "flip_ratio/b": 3 / 30}
    )
    # Flipping the same weights back counts as flips again.
    flip(a, 5)
    ratios.reset_state()
    ratios.update_state()
    assert ratios.results() == pytest.approx(
        {"flip_ratio": 5 / 35, "flip_ratio/a": 5 / 20, "flip_ratio/b": 0.0}
    )


def test_a_single_flip_ratio_returns_the_step_ratio():
    kernel = keras.Variable(np.array([1.0, -1.0, 1.0, -1.0], np.float32))
    metric = metrics.FlipRatio(kernel)
    kernel.assign([-1.0, -1.0, 1.0, 1.0])
    assert float(metric.update_state()) == 0.5
    assert float(metric.result()) == 0.5


def test_a_model_without_binary_kernels_has_no_flip_ratios():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    ratios = metrics.FlipRatios(model)
    ratios.update_state()
    assert ratios.results() == {}


def test_kernels_restored_from_a_checkpoint_are_not_counted_as_flips():
    model = model_with_two_binary_kernels()
    ratios = metrics.FlipRatios(model)
    flip(model.get_layer("a").kernel, 10)  # as a checkpoint restore would change them
    ratios.reset_reference()
    flip(model.get_layer("b").kernel, 3)  # then a training step
    ratios.update_state()
    assert ratios.results() == pytest.approx(
        {"flip_ratio": 3 / 35, "flip_ratio/a": 0.0, "flip_ratio/b": 3 / 15}
    )
