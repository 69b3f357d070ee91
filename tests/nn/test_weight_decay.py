"""Coupled weight decay (PyTorch's Adam ``weight_decay``, as CAS-CLab's BNN training
tricks use it): one step by hand, never on Bop's kernels, and how a set turns into it.

Backend-neutral: tests/nn/test_jax_backend.py runs this file on JAX too.
"""

import keras
import numpy as np
import pytest
from keras import ops

from bnno import hparams
from bnno.config import Config
from bnno.errors import UsageError
from bnno.nn.optimizers import Bop, CaseOptimizer
from bnno.nn.weight_decay import AdamL2

W0 = np.array([1.0, -2.0, 0.5])
G = np.array([0.1, 0.3, -0.2])
LR, L2 = 0.1, 0.5
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # Keras Adam's defaults


def adam_l2_step_by_hand(w, g, lr, l2):
    """One step of PyTorch's Adam(weight_decay=l2), in Keras's epsilon placement."""
    g = g + l2 * w  # coupled: the decay joins the gradient, before the moments
    m = (1 - BETA_1) * g
    v = (1 - BETA_2) * g ** 2
    alpha = lr * np.sqrt(1 - BETA_2) / (1 - BETA_1)
    return w - alpha * m / (np.sqrt(v) + EPSILON)


def float32_tensor(values):
    return ops.convert_to_tensor(np.asarray(values, np.float32))


def one_step(optimizer, w0=W0, g=G):
    variable = keras.Variable(np.asarray(w0, np.float32))
    optimizer.apply_gradients([(float32_tensor(g), variable)])
    return variable.numpy()


def test_one_adam_l2_step_equals_the_hand_computed_value():
    # g + l2*w = [0.1 + 0.5, 0.3 - 1.0, -0.2 + 0.25] = [0.6, -0.7, 0.05]: Adam's first
    # step moves each weight by about lr against that sign, so the decay reverses the
    # direction of the second and third weights: [0.9, -1.9, 0.4] instead of [0.9, -2.1, 0.6].
    expected = adam_l2_step_by_hand(W0, G, LR, L2)
    np.testing.assert_allclose(expected, [0.9, -1.9, 0.4], atol=1e-5)
    np.testing.assert_allclose(one_step(AdamL2(LR, l2=L2)), expected, atol=1e-6)  # float32 arithmetic
    np.testing.assert_allclose(one_step(keras.optimizers.Adam(LR)), [0.9, -2.1, 0.6], atol=1e-5)


def test_keras_decoupled_weight_decay_is_a_different_update():
    # AdamW: w - lr*wd*w, then the Adam step of g alone: [0.85, -2.0, 0.575].
    decoupled = one_step(keras.optimizers.Adam(LR, weight_decay=L2))
    np.testing.assert_allclose(decoupled, [0.85, -2.0, 0.575], atol=1e-5)
    assert not np.allclose(decoupled, adam_l2_step_by_hand(W0, G, LR, L2), atol=1e-3)


def test_bops_binary_kernels_get_no_decay_inside_case_optimizer():
    binary = keras.Variable(np.array([1.0, -1.0, 1.0], np.float32), name="kernel")
    binary.precision = 1  # what a kernel quantizer of precision 1 marks
    real = keras.Variable(W0.astype(np.float32), name="gamma")
    bop = Bop(threshold=0.0, gamma=0.5)
    case = CaseOptimizer((Bop.is_binary_variable, bop), default_optimizer=AdamL2(LR, l2=L2))
    binary_gradient = np.array([0.2, 0.2, -0.2])
    case.apply_gradients([(float32_tensor(binary_gradient), binary), (float32_tensor(G), real)])
    # Bop's moving average is gamma * g exactly: no l2 * w (which would be +-0.25) joined it.
    m = bop._moving_averages[bop._get_variable_index(binary)].numpy()
    np.testing.assert_array_equal(m, np.float32(0.5) * binary_gradient.astype(np.float32))
    # w*m = [0.1, -0.1, -0.1] > 0 at the first weight only: it flips.
    np.testing.assert_array_equal(binary.numpy(), [-1.0, -1.0, 1.0])
    np.testing.assert_allclose(real.numpy(), adam_l2_step_by_hand(W0, G, LR, L2), atol=1e-6)


def test_adam_l2_round_trips_through_its_config_and_model_save(tmp_path):
    restored = AdamL2.from_config(AdamL2(0.01, l2=1e-5).get_config())
    assert (restored.l2, float(restored.learning_rate)) == (1e-5, pytest.approx(0.01))
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=AdamL2(0.01, l2=1e-5), loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(reloaded.optimizer, AdamL2) and reloaded.optimizer.l2 == 1e-5


def test_a_sets_weight_decay_builds_adam_l2_and_zero_keeps_keras_adam():
    stage1 = hparams.resolve("resnet18_tricks", "stage1")
    assert stage1["weight_decay"] == 1e-5
    adam = Config.from_values(stage1).build_optimizer(10)
    assert isinstance(adam, AdamL2) and adam.l2 == 1e-5
    assert type(hparams.resolve("resnet18_tricks", "stage2").build_optimizer(10)) is keras.optimizers.Adam
    # In a Bop set, the decay belongs to Adam, the default optimizer; Bop has none.
    case = hparams.resolve("resnet18_tricks", "stage2_bop", "weight_decay=1e-4").build_optimizer(10)
    assert isinstance(case.default_optimizer, AdamL2) and case.default_optimizer.l2 == 1e-4
    assert isinstance(case.optimizers[0], Bop)
    assert type(hparams.resolve("binarynet", "bop").build_optimizer(10).default_optimizer) is keras.optimizers.Adam


def test_weight_decay_is_checked_like_every_number():
    assert hparams.resolve("binarynet", "bop", "weight_decay=1e-4")["weight_decay"] == 1e-4
    with pytest.raises(UsageError) as error:
        hparams.resolve("binarynet", "bop", "weight_decay=-1")
    assert str(error.value) == (
        "Hyperparameter weight_decay of binarynet set 'bop' must be a number at least 0; got -1.0."
    )
