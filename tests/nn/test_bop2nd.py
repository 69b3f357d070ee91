"""Bop2ndOrder against a NumPy implementation of its update, written here from the paper
(Suarez-Ramirez et al., 2021, arXiv:2104.05124) and its code: both variants, with and
without schedules, alone, inside CaseOptimizer with Adam, across a checkpoint, under
mixed precision and on two replicas.

Backend-neutral but for the tests marked ``requires_tensorflow`` (TensorFlow checkpoints
and tf.distribute): tests/nn/test_jax_backend.py runs this file on JAX too.
"""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from bnno.nn import layers
from bnno.nn.optimizers import Bop, Bop2ndOrder, CaseOptimizer

# The repository, where `python -m tests.nn.replicas` runs from.
ROOT = pathlib.Path(__file__).resolve().parents[2]

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

requires_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow checkpoints and tf.distribute"
)

f32 = np.float32
schedules = keras.optimizers.schedules


def numpy_step(w, m, v, g, gamma, sigma, threshold, bias_correction, epsilon=f32(1e-10)):
    """One Bop2ndOrder step in float32 NumPy: (w, m, v) after gradient ``g``."""
    gamma, sigma, threshold = f32(gamma), f32(sigma), f32(threshold)
    m = m + gamma * (g - m)
    v = v + sigma * (g * g - v)
    if bias_correction:
        normalized = (m / gamma) / (np.sqrt(v / sigma) + epsilon)
    else:
        normalized = m / (np.sqrt(v) + epsilon)
    flip_or_keep = -np.sign(w * normalized - threshold)
    w = np.where(flip_or_keep * w >= 0, f32(1), f32(-1))  # sign(0) = +1
    return w, m, v


def at(hyperparameter, step):
    """A float, or a schedule's value at ``step`` (as the optimizer evaluates it)."""
    if isinstance(hyperparameter, schedules.LearningRateSchedule):
        return f32(keras.ops.convert_to_numpy(hyperparameter(step)))
    return f32(hyperparameter)


def float32_tensor(values):
    return ops.convert_to_tensor(np.asarray(values, f32))


def gradients(steps, size, seed=0):
    """Noisy gradients around a mean of random sign that reverses every 16 steps, so
    weights flip, settle and flip back."""
    rng = np.random.default_rng(seed)
    mean = np.where(rng.random(size) < 0.5, -1.0, 1.0)
    return [
        (0.6 * mean * (-1) ** (step // 16) + rng.normal(size=size)).astype(f32)
        for step in range(steps)
    ]


CONSTANT = dict(threshold=0.3, gamma=0.2, sigma=0.1)
SCHEDULED = dict(
    threshold=schedules.PiecewiseConstantDecay([24], [0.2, 0.3]),
    gamma=schedules.ExponentialDecay(0.3, 16, 0.7, staircase=True),
    sigma=schedules.PolynomialDecay(0.05, 48, 0.2, power=1.0),  # rising, as in the paper's sets
)


@pytest.mark.parametrize("bias_correction", [False, True], ids=["biased", "bias_corrected"])
@pytest.mark.parametrize("settings", [CONSTANT, SCHEDULED], ids=["constant", "scheduled"])
def test_every_step_matches_the_numpy_update(settings, bias_correction):
    steps, size = 48, 64
    optimizer = Bop2ndOrder(**settings, bias_correction=bias_correction)
    initial = np.where(np.random.default_rng(1).random(size) < 0.5, f32(-1), f32(1))
    variable = keras.Variable(initial)
    w, m, v = initial, np.zeros(size, f32), np.zeros(size, f32)
    flips = []
    for step, g in enumerate(gradients(steps, size)):
        optimizer.apply_gradients([(float32_tensor(g), variable)])
        before = w
        w, m, v = numpy_step(
            w, m, v, g, *(at(settings[k], step) for k in ("gamma", "sigma", "threshold")),
            bias_correction,
        )
        np.testing.assert_array_equal(variable.numpy(), w, err_msg=f"step {step}")
        np.testing.assert_array_equal(optimizer._moving_averages[0].numpy(), m)
        np.testing.assert_array_equal(optimizer._second_moments[0].numpy(), v)
        flips.append(int(np.sum(w != before)))
    # Weights flip throughout, not only at the start.
    assert sum(flips) > 100 and sum(flips[24:]) > 20, flips
    assert int(optimizer.iterations) == steps


def test_at_exactly_the_threshold_the_weight_becomes_plus_one():
    # One step: m = 0.5 g, v = 0.5 g^2, so m / sqrt(v) = sqrt(0.5) * sign(g) exactly
    # (to float32), and w * that - threshold = 0 where the threshold equals it.
    ratio = float(f32(0.5) * f32(1.0) / np.sqrt(f32(0.5)))
    variable = keras.Variable(np.array([1.0, -1.0], f32))
    Bop2ndOrder(threshold=ratio, gamma=0.5, sigma=0.5).apply_gradients(
        [(float32_tensor([1.0, -1.0]), variable)]
    )
    np.testing.assert_array_equal(variable.numpy(), [1.0, 1.0])


def test_bias_correction_divides_the_moments_by_gamma_and_sigma():
    # One step from zero with g = +-0.4, gamma = 0.1, sigma = 0.04: m = 0.04 g / 0.4 and
    # v = 0.04 g^2, so the biased ratio m / sqrt(v) is 0.5 sign(g), while the corrected
    # one, (m / gamma) / sqrt(v / sigma) = g / |g|, is 1 sign(g). A threshold of 0.75
    # flips the weights (which agree with g) only with the correction.
    for bias_correction, expected in [(False, [1.0, -1.0]), (True, [-1.0, 1.0])]:
        variable = keras.Variable(np.array([1.0, -1.0], f32))
        optimizer = Bop2ndOrder(threshold=0.75, gamma=0.1, sigma=0.04, bias_correction=bias_correction)
        optimizer.apply_gradients([(float32_tensor([0.4, -0.4]), variable)])
        np.testing.assert_array_equal(variable.numpy(), expected)


def test_config_round_trips_with_schedules():
    optimizer = Bop2ndOrder(**SCHEDULED, bias_correction=True, epsilon=1e-8, name="second")
    config = optimizer.get_config()
    restored = Bop2ndOrder.from_config(config)
    assert restored.get_config() == config
    assert (restored.bias_correction, restored.epsilon, restored.name) == (True, 1e-8, "second")
    for key, schedule in SCHEDULED.items():
        value = restored._learning_rate if key == "gamma" else getattr(restored, key)
        assert type(value) is type(schedule) and value.get_config() == schedule.get_config()
    constant = Bop2ndOrder.from_config(Bop2ndOrder(1e-6, 1e-7, 1e-3).get_config())
    assert (constant.threshold, constant.sigma, constant.bias_correction) == (1e-6, 1e-3, False)
    assert float(constant.gamma) == pytest.approx(1e-7)
    assert isinstance(constant, Bop) and Bop2ndOrder.is_binary_variable is Bop.is_binary_variable


# --- inside CaseOptimizer, with Adam ------------------------------------------------------


def model_and_optimizer(bias_correction, seed=3):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = layers.QuantDense(16, kernel_quantizer="noop", use_bias=False, name="binary")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = layers.QuantDense(3, input_quantizer="ste_sign", kernel_quantizer="noop", use_bias=False, name="out")(x)
    model = keras.Model(inputs, x)
    settings = {**SCHEDULED, "threshold": 0.05} if bias_correction else SCHEDULED
    bop2nd = Bop2ndOrder(**settings, bias_correction=bias_correction)
    case = CaseOptimizer((Bop2ndOrder.is_binary_variable, bop2nd), default_optimizer=keras.optimizers.Adam(0.01))
    case.build(model.trainable_variables)
    return model, case


def batches(steps):
    rng = np.random.default_rng(5)
    return [(rng.normal(size=(16, 6)).astype(f32), rng.integers(0, 3, 16)) for _ in range(steps)]


def train(model, optimizer, data):
    """Train on ``data``; the gradients of every step, by variable path."""
    recorded = []
    for x, y in data:
        grads = training_gradients(model, x, y)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        variables = model.trainable_variables
        recorded.append({v.path: ops.convert_to_numpy(g) for v, g in zip(variables, grads)})
    return recorded


def training_gradients(model, x, y):
    """Gradients of the cross-entropy of ``model(x, training=True)`` with respect to the
    trainable variables, on Keras's backend; the batch statistics update the moving ones
    as in a training step (JAX differentiates a stateless call of the model)."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if keras.backend.backend() == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss(trainable):
            logits, updated = model.stateless_call(trainable, non_trainable, x, training=True)
            return loss_fn(y, logits), updated

        grads, updated = jax.grad(loss, has_aux=True)([v.value for v in model.trainable_variables])
        for variable, value in zip(model.non_trainable_variables, updated):
            variable.assign(value)
        return grads
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    return tape.gradient(loss, model.trainable_variables)


@pytest.mark.parametrize("bias_correction", [False, True], ids=["biased", "bias_corrected"])
def test_inside_case_optimizer_binary_kernels_follow_the_numpy_update(bias_correction):
    model, case = model_and_optimizer(bias_correction)
    bop2nd, adam = case.optimizers
    kernels = {path: model.get_layer(path.split("/")[0]).kernel for path in ("binary/kernel", "out/kernel")}
    state = {path: (k.numpy(), np.zeros(k.shape, f32), np.zeros(k.shape, f32)) for path, k in kernels.items()}
    bn_before = model.get_layer("bn").gamma.numpy().copy()
    flips = 0
    for step, (x, y) in enumerate(batches(40)):
        (grads,) = train(model, case, [(x, y)])
        hyper = [at(SCHEDULED[k], step) for k in ("gamma", "sigma")] + [at(bop2nd.threshold, step)]
        for path, kernel in kernels.items():
            w, m, v = numpy_step(*state[path], grads[path], *hyper, bias_correction)
            flips += int(np.sum(w != state[path][0]))
            state[path] = (w, m, v)
            np.testing.assert_array_equal(kernel.numpy(), w, err_msg=f"{path}, step {step}")
            index = bop2nd._get_variable_index(kernel)
            np.testing.assert_array_equal(bop2nd._moving_averages[index].numpy(), m)
            np.testing.assert_array_equal(bop2nd._second_moments[index].numpy(), v)
    assert flips > 50
    assert case.assignment == {"binary/kernel": 0, "bn/gamma": 1, "bn/beta": 1, "out/kernel": 0}
    assert not np.array_equal(model.get_layer("bn").gamma.numpy(), bn_before)  # Adam trains the rest
    assert [int(case.iterations), int(bop2nd.iterations), int(adam.iterations)] == [40, 40, 40]


@requires_tensorflow
def test_a_checkpoint_in_the_middle_gives_the_same_trajectory(tmp_path):
    data = batches(40)
    model, case = model_and_optimizer(bias_correction=True)
    train(model, case, data[:20])
    path = tf.train.Checkpoint(model=model, optimizer=case).save(str(tmp_path / "ckpt"))
    train(model, case, data[20:])

    resumed_model, resumed_case = model_and_optimizer(bias_correction=True, seed=99)
    tf.train.Checkpoint(model=resumed_model, optimizer=resumed_case).restore(path).assert_consumed()
    assert int(resumed_case.optimizers[0].iterations) == 20
    train(resumed_model, resumed_case, data[20:])
    for ours, theirs in zip(model.weights, resumed_model.weights):
        np.testing.assert_array_equal(theirs.numpy(), ours.numpy(), err_msg=ours.path)
    # Both moments of both kernels are in the checkpoint, and they agree too.
    assert len(resumed_case.optimizers[0].variables) == len(case.optimizers[0].variables) == 1 + 2 * 2
    for ours, theirs in zip(case.variables, resumed_case.variables):
        np.testing.assert_array_equal(theirs.numpy(), ours.numpy(), err_msg=ours.path)


def test_a_compiled_model_saves_and_loads_its_bop2ndorder(tmp_path):
    model, case = model_and_optimizer(bias_correction=True)
    model.compile(optimizer=case, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    train(model, case, batches(3))
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras").optimizer
    bop2nd = restored.optimizers[0]
    assert isinstance(bop2nd, Bop2ndOrder) and bop2nd.get_config() == case.optimizers[0].get_config()
    for ours, theirs in zip(case.variables, restored.variables):
        np.testing.assert_array_equal(theirs.numpy(), ours.numpy())


def test_under_mixed_precision_moments_stay_float32_and_weights_binary():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model, case = model_and_optimizer(bias_correction=False)
        assert model.get_layer("binary").compute_dtype == "bfloat16"
        train(model, case, batches(5))
    finally:
        keras.mixed_precision.set_global_policy(policy)
    bop2nd = case.optimizers[0]
    for moment in bop2nd._moving_averages + bop2nd._second_moments:
        assert moment.dtype == "float32"
    for name in ("binary", "out"):
        kernel = model.get_layer(name).kernel
        assert kernel.dtype == "float32" and set(np.unique(kernel.numpy())) == {-1.0, 1.0}


@requires_tensorflow
@pytest.mark.slow
def test_two_replicas_train_like_one_device():
    # Logical devices must be configured before TensorFlow starts: a fresh process.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.nn.replicas", "bop2nd", "6"], capture_output=True, text=True,
        env=env, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MIRRORED OK" in result.stdout
