"""Bop and CaseOptimizer: hand-computed updates, assignment rules, state, training.

Backend-neutral but for the tests marked ``requires_tensorflow`` (checkpoints and
tf.distribute): tests/nn/test_jax_backend.py runs this file on JAX too.
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
from bnno.nn.optimizers import Bop, CaseOptimizer

# The repository, where `python -m tests.nn.replicas` runs from.
ROOT = pathlib.Path(__file__).resolve().parents[2]

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

requires_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow checkpoints and tf.distribute"
)


def run_bop(bop, initial, gradients):
    """Apply ``gradients`` one step each; return (weights, moving average) per step."""
    variable = keras.Variable(np.array(initial, np.float32))
    history = []
    for gradient in gradients:
        bop.apply_gradients([(ops.convert_to_tensor(np.asarray(gradient, np.float32)), variable)])
        m = bop._moving_averages[bop._get_variable_index(variable)]
        history.append((variable.numpy().copy(), m.numpy().copy()))
    return history


def test_bop_flips_exactly_where_the_moving_average_exceeds_the_threshold():
    # gamma = 0.5, threshold = 0.1
    # step 1: m = 0.5 * g1 = [.25, .25, -.25, -.05, .15]
    #         w*m = [.25, -.25, -.25, .05, .15] -> above 0.1 at 0 and 4 -> flip those
    # step 2: m = m + 0.5 * (g2 - m) = [.375, .375, -.375, -.275, .075]
    #         w = [-1, -1, 1, -1, -1]; w*m = [-.375, -.375, -.375, .275, -.075] -> flip 3
    history = run_bop(
        Bop(threshold=0.1, gamma=0.5),
        initial=[1, -1, 1, -1, 1],
        gradients=[[0.5, 0.5, -0.5, -0.1, 0.3], [0.5, 0.5, -0.5, -0.5, 0.0]],
    )
    (w1, m1), (w2, m2) = history
    np.testing.assert_array_equal(w1, [-1, -1, 1, -1, -1])
    np.testing.assert_allclose(m1, [0.25, 0.25, -0.25, -0.05, 0.15], rtol=1e-6)
    np.testing.assert_array_equal(w2, [-1, -1, 1, 1, -1])
    np.testing.assert_allclose(m2, [0.375, 0.375, -0.375, -0.275, 0.075], rtol=1e-6)


def test_bop_at_exactly_the_threshold_sets_the_weight_to_plus_one():
    # w*m - threshold = 0 -> -sign(0) * w = 0 -> sign(0) = +1, as in larq.
    history = run_bop(Bop(threshold=0.25, gamma=0.5), [1, -1], [[0.5, -0.5]])
    np.testing.assert_array_equal(history[0][0], [1, 1])


def test_bop_follows_a_decaying_gamma_schedule_step_by_step():
    # gamma = 0.5, 0.25, 0.125 at iterations 0, 1, 2 (staircase halving)
    gamma = keras.optimizers.schedules.ExponentialDecay(0.5, 1, 0.5, staircase=True)
    bop = Bop(threshold=0.3, gamma=gamma)
    # m1 = 0.5 * 0.4 = 0.2; m2 = 0.2 + 0.25 * (1.0 - 0.2) = 0.4; m3 = 0.4 + 0.125 * (0 - 0.4) = 0.35
    history = run_bop(bop, [1.0], [[0.4], [1.0], [0.0]])
    np.testing.assert_allclose([m[0] for _, m in history], [0.2, 0.4, 0.35], rtol=1e-6)
    # w*m: 0.2 < 0.3 keep; 0.4 > 0.3 flip to -1; then -0.35 < 0.3 keep
    assert [w[0] for w, _ in history] == [1.0, -1.0, -1.0]
    assert float(bop.iterations) == 3
    assert float(bop.gamma) == pytest.approx(0.0625)


def test_bop_threshold_may_be_a_schedule_too():
    threshold = keras.optimizers.schedules.PiecewiseConstantDecay([0], [1.0, 0.01])
    # threshold 1.0 at iteration 0, 0.01 after; m = 0.1 then 0.1
    history = run_bop(Bop(threshold=threshold, gamma=1.0), [1.0], [[0.1], [0.1]])
    assert [w[0] for w, _ in history] == [1.0, -1.0]


def test_bop_config_round_trips_with_schedules():
    gamma = keras.optimizers.schedules.PolynomialDecay(1e-4, 1000, 1e-6, power=1.0)
    bop = Bop(threshold=1e-8, gamma=gamma)
    restored = Bop.from_config(bop.get_config())
    assert restored.threshold == 1e-8
    assert isinstance(restored._learning_rate, keras.optimizers.schedules.PolynomialDecay)
    assert restored._learning_rate.get_config() == gamma.get_config()
    assert Bop.from_config(Bop(1e-6, 1e-3).get_config()).get_config()["gamma"] == pytest.approx(1e-3)


def two_layer_model():
    inputs = keras.Input((4,))
    x = layers.QuantDense(3, kernel_quantizer="noop", use_bias=False, name="binary")(inputs)
    x = keras.layers.Dense(2, name="real")(x)
    return keras.Model(inputs, x)


def train_steps(model, optimizer, steps, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = rng.normal(size=(8, 4)).astype(np.float32)
        grads = mean_square_error_gradients(model, x)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))


def mean_square_error_gradients(model, x):
    """Gradients of mean((model(x) - 1)^2) with respect to the trainable variables, on
    Keras's backend (JAX differentiates a stateless call of the model)."""
    if keras.backend.backend() == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss(trainable):
            outputs, _ = model.stateless_call(trainable, non_trainable, x)
            return jax.numpy.mean(jax.numpy.square(outputs - 1.0))

        return jax.grad(loss)([v.value for v in model.trainable_variables])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x) - 1.0))
    return tape.gradient(loss, model.trainable_variables)


def test_case_optimizer_sends_each_variable_to_the_optimizer_that_claims_it():
    model = two_layer_model()
    bop, adam = Bop(threshold=0.0, gamma=1.0), keras.optimizers.Adam(0.1)
    case = CaseOptimizer((Bop.is_binary_variable, bop), default_optimizer=adam)
    case.build(model.trainable_variables)
    assert case.assignment == {"binary/kernel": 0, "real/kernel": 1, "real/bias": 1}
    train_steps(model, case, 3)
    assert set(np.unique(model.get_layer("binary").kernel.numpy())) <= {-1.0, 1.0}
    assert [int(case.iterations), int(bop.iterations), int(adam.iterations)] == [3, 3, 3]
    assert len(case.variables) == len(case._variables) + len(bop.variables) + len(adam.variables)
    assert float(case.learning_rate) == pytest.approx(0.1)
    case.learning_rate = 0.05  # e.g. a learning-rate callback
    assert float(adam.learning_rate) == pytest.approx(0.05)


def test_unclaimed_variables_without_a_default_are_not_trained():
    model = two_layer_model()
    real_before = [w.numpy().copy() for w in model.get_layer("real").weights]
    case = CaseOptimizer((Bop.is_binary_variable, Bop(0.0, 1.0)))
    with pytest.warns(UserWarning) as warned:
        train_steps(model, case, 2)
    assert [str(w.message).split("'")[1] for w in warned] == ["real/kernel", "real/bias"]
    for before, after in zip(real_before, model.get_layer("real").weights):
        np.testing.assert_array_equal(after.numpy(), before)


def test_a_variable_claimed_twice_is_an_error_naming_it():
    model = two_layer_model()
    case = CaseOptimizer(
        (Bop.is_binary_variable, Bop()),
        (lambda v: "kernel" in v.path, keras.optimizers.SGD()),
    )
    with pytest.raises(ValueError, match="Variable 'binary/kernel' is claimed by several"):
        case.build(model.trainable_variables)


def test_an_optimizer_that_claims_nothing_is_an_error():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    case = CaseOptimizer((Bop.is_binary_variable, Bop()), default_optimizer=keras.optimizers.Adam())
    with pytest.raises(ValueError, match="Optimizer 'Bop' claims no variable"):
        case.build(model.trainable_variables)


@pytest.mark.parametrize(
    "pairs, message",
    [
        (((Bop.is_binary_variable, "adam"),), "optimizer of pair 0 must be a keras"),
        ((("binary", Bop()),), "predicate of pair 0 must be callable"),
        ((Bop(),), "argument 0 must be a \\(predicate, optimizer\\) pair"),
    ],
)
def test_malformed_pairs_are_type_errors_saying_which(pairs, message):
    with pytest.raises(TypeError, match=message):
        CaseOptimizer(*pairs)
    with pytest.raises(TypeError, match="default_optimizer must be"):
        CaseOptimizer(default_optimizer="adam")


def make_case():
    return CaseOptimizer(
        (Bop.is_binary_variable, Bop(threshold=1e-3, gamma=0.1)),
        default_optimizer=keras.optimizers.Adam(0.01),
    )


@requires_tensorflow
def test_sub_optimizer_state_survives_a_checkpoint(tmp_path):
    model, case = two_layer_model(), make_case()
    train_steps(model, case, 3)
    saved_state = [v.numpy().copy() for v in case.variables]
    path = tf.train.Checkpoint(model=model, optimizer=case).save(str(tmp_path / "ckpt"))
    train_steps(model, case, 2, seed=1)  # move on, then restore into fresh objects

    fresh_model, fresh_case = two_layer_model(), make_case()
    fresh_case.build(fresh_model.trainable_variables)
    tf.train.Checkpoint(model=fresh_model, optimizer=fresh_case).restore(path).assert_consumed()
    restored = [v.numpy() for v in fresh_case.variables]
    assert len(restored) == len(saved_state)
    for saved, loaded in zip(saved_state, restored):
        np.testing.assert_array_equal(loaded, saved)
    assert int(fresh_case.optimizers[0].iterations) == 3


@pytest.mark.parametrize(
    "setting, expected_a, expected_b",
    [
        # gradients a = [3, 0], b = [4], SGD(1.0) from zero: each update is -gradient
        ({}, [-3.0, 0.0], [-4.0]),
        ({"clipnorm": 1.0}, [-1.0, 0.0], [-1.0]),  # each gradient to norm 1
        ({"global_clipnorm": 1.0}, [-0.6, 0.0], [-0.8]),  # joint norm 5 -> 1
        ({"clipvalue": 0.5}, [-0.5, 0.0], [-0.5]),
    ],
)
def test_case_optimizer_clips_gradients_across_its_optimizers(setting, expected_a, expected_b):
    a = keras.Variable(np.zeros(2, np.float32), name="a")
    b = keras.Variable(np.zeros(1, np.float32), name="b")
    case = CaseOptimizer(
        (lambda variable: variable.path == "a", keras.optimizers.SGD(1.0)),
        default_optimizer=keras.optimizers.SGD(1.0),
        **setting,
    )
    case.apply_gradients([(ops.convert_to_tensor([3.0, 0.0]), a), (ops.convert_to_tensor([4.0]), b)])
    np.testing.assert_allclose(a.numpy(), expected_a, rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), expected_b, rtol=1e-6)


@pytest.mark.parametrize(
    "setting", [{"weight_decay": 0.1}, {"use_ema": True}, {"gradient_accumulation_steps": 2}]
)
def test_case_optimizer_refuses_settings_that_belong_to_its_optimizers(setting):
    (name,) = setting
    with pytest.raises(ValueError, match=f"CaseOptimizer does not apply {name}; give it to"):
        CaseOptimizer((Bop.is_binary_variable, Bop()), **setting)


def test_case_optimizer_config_keeps_base_and_sub_optimizer_settings(tmp_path):
    threshold = keras.optimizers.schedules.PiecewiseConstantDecay([10], [1e-5, 1e-7])
    gamma = keras.optimizers.schedules.PolynomialDecay(1e-3, 100, 1e-5, power=1.0)
    learning_rate = keras.optimizers.schedules.ExponentialDecay(0.01, 50, 0.5)
    model = two_layer_model()
    model.compile(
        optimizer=CaseOptimizer(
            (Bop.is_binary_variable, Bop(threshold=threshold, gamma=gamma)),
            default_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.8, clipvalue=0.3),
            global_clipnorm=2.5,
            loss_scale_factor=4.0,
            name="case",
        ),
        loss="mse",
    )
    model.fit(np.ones((8, 4), np.float32), np.ones((8, 2), np.float32), epochs=1, verbose=0)
    config = model.optimizer.get_config()
    model.save(tmp_path / "case.keras")
    restored = [
        CaseOptimizer.from_config(config),
        keras.saving.load_model(tmp_path / "case.keras").optimizer,
    ]
    for case in restored:
        assert case.get_config() == config
        assert (case.name, case.global_clipnorm, case.clipnorm, case.clipvalue) == ("case", 2.5, None, None)
        assert case.loss_scale_factor == 4.0
        assert case.assignment == {"binary/kernel": 0, "real/kernel": 1, "real/bias": 1}
        bop, adam = case.optimizers
        assert bop.threshold.get_config() == threshold.get_config()
        assert bop._learning_rate.get_config() == gamma.get_config()
        assert adam._learning_rate.get_config() == learning_rate.get_config()
        assert (adam.beta_1, adam.clipvalue) == (0.8, 0.3)


def test_case_optimizer_configs_saved_before_base_settings_still_load():
    old = {  # what bnno saved before CaseOptimizer's config held the base settings
        "name": "optimizer_case",
        "optimizers": [
            keras.optimizers.serialize(Bop(1e-6, 1e-3)),
            keras.optimizers.serialize(keras.optimizers.Adam(0.01)),
        ],
        "has_default_optimizer": True,
        "assignment": {"binary/kernel": 0, "real/kernel": 1},
    }
    case = CaseOptimizer.from_config(old)
    assert (case.clipnorm, case.global_clipnorm, case.clipvalue) == (None, None, None)
    assert case.assignment == old["assignment"]
    assert case.optimizers[0].threshold == 1e-6


def test_fit_learns_a_separable_problem_with_bop_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    # Two classes: noise plus or minus a +-1 template (a margin of 0.6 * 8 standard
    # deviations along the template), so a good model is right nearly always.
    template = np.where(rng.normal(size=(8, 8, 1)) >= 0, 1.0, -1.0)
    y = rng.integers(0, 2, size=1280).astype(np.int32)
    x = rng.normal(size=(1280, 8, 8, 1)) + 0.6 * (2 * y - 1)[:, None, None, None] * template
    x = x.astype(np.float32)
    inputs = keras.Input((8, 8, 1))
    h = layers.QuantConv2D(8, 3, kernel_quantizer="noop", use_bias=False, padding="same")(inputs)
    h = keras.layers.BatchNormalization(momentum=0.9)(h)
    h = keras.layers.Flatten()(h)
    h = layers.QuantDense(16, input_quantizer="ste_sign", kernel_quantizer="noop", use_bias=False)(h)
    h = keras.layers.BatchNormalization(momentum=0.9)(h)
    outputs = keras.layers.Dense(2, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=CaseOptimizer(
            (Bop.is_binary_variable, Bop(threshold=1e-6, gamma=1e-2)),
            default_optimizer=keras.optimizers.Adam(0.01),
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(x[:1024], y[:1024], batch_size=32, epochs=6, verbose=0)
    _, accuracy = model.evaluate(x[1024:], y[1024:], verbose=0)
    assert accuracy >= 0.9, history.history
    for kernel in (model.layers[1].kernel, model.layers[4].kernel):
        assert set(np.unique(kernel.numpy())) == {-1.0, 1.0}

    model.save(tmp_path / "bop.keras")
    restored = keras.saving.load_model(tmp_path / "bop.keras")
    assert isinstance(restored.optimizer, CaseOptimizer)
    assert restored.optimizer.assignment == model.optimizer.assignment
    for ours, theirs in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(theirs.numpy(), ours.numpy())
    np.testing.assert_array_equal(restored.predict(x[:8], verbose=0), model.predict(x[:8], verbose=0))
    # Training goes on from the restored state exactly as from the original.
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0, shuffle=False)
    restored.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0, shuffle=False)
    for ours, theirs in zip(model.weights, restored.weights):
        np.testing.assert_allclose(theirs.numpy(), ours.numpy(), atol=1e-6)


@requires_tensorflow
@pytest.mark.slow
def test_case_optimizer_under_mirrored_strategy_matches_one_device():
    # Logical devices must be configured before TensorFlow starts: a fresh process.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.nn.replicas", "bop", "5"], capture_output=True, text=True,
        env=env, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MIRRORED OK" in result.stdout
