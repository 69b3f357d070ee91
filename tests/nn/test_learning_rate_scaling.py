"""Xavier learning-rate scaling (BinaryConnect's, as larq's ``XavierLearningRateScaling``
defined it): the multipliers of BinaryNet's kernels worked by hand, larq's own one-step
test, one Adam step against NumPy, what is left unscaled, saving, checkpoints, and the
paper's section 5.2 set that uses it.

Backend-neutral but for the tests that need TensorFlow (checkpoints, tf.distribute, and
Keras's LossScaleOptimizer applied eagerly): tests/nn/test_jax_backend.py runs this
file on JAX too.
"""

import copy

import keras
import numpy as np
import pytest
from keras import ops

from bnno import hparams, models
from bnno.config import Config
from bnno.errors import UsageError
from bnno.nn.layers import QuantConv2D, QuantDense
from bnno.nn.learning_rate_scaling import (
    XavierLearningRateScaling, XavierScaledAdam, is_quantized_latent_weight, xavier_learning_rate_multiplier,
)

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

requires_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow checkpoints and tf.distribute"
)

# BinaryNet's quantized kernels (filters 128, dense_units 1024, 32x32x3 images, 10
# classes) with 1 / sqrt(1.5 / (fan_in + fan_out)) = sqrt(fans / 1.5), worked by hand:
BINARYNET_KERNELS = [
    ((3, 3, 3, 128), 28.035691537752374),  # 9 * (3 + 128) = 1179; sqrt(1179 / 1.5) = sqrt(786)
    ((3, 3, 128, 128), 39.191835884530846),  # 9 * 256 = 2304; sqrt(1536)
    ((3, 3, 128, 256), 48.0),  # 9 * 384 = 3456; sqrt(2304) = 48
    ((3, 3, 256, 256), 55.42562584220407),  # 9 * 512 = 4608; sqrt(3072)
    ((3, 3, 256, 512), 67.88225099390856),  # 9 * 768 = 6912; sqrt(4608)
    ((3, 3, 512, 512), 78.38367176906169),  # 9 * 1024 = 9216; sqrt(6144)
    ((4608, 1024), 61.27533489640564),  # 3 * 3 * 512 = 4608 flattened; 5632 / 1.5 = 3754.67
    ((1024, 1024), 36.95041722813605),  # 2048 / 1.5 = 1365.33
    ((1024, 10), 26.25515822335362),  # 1034 / 1.5 = 689.33
]

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # Keras Adam's defaults


@keras.saving.register_keras_serializable(package="bnno_tests")
class XavierScaledSGD(XavierLearningRateScaling, keras.optimizers.SGD):
    """SGD with the scaling, as larq's test wraps ``SGD(1)``."""


@pytest.mark.parametrize("shape, expected", BINARYNET_KERNELS, ids=[str(s) for s, _ in BINARYNET_KERNELS])
def test_multiplier_of_each_binarynet_kernel_shape(shape, expected):
    assert xavier_learning_rate_multiplier(shape) == pytest.approx(expected, rel=1e-12)


def test_multiplier_is_one_over_half_the_glorot_uniform_limit():
    # larq's dense case (1, 1): 1 / sqrt(1.5 / 2); Glorot's limit is sqrt(6 / 2).
    assert xavier_learning_rate_multiplier((1, 1)) == pytest.approx(1.1547005383792517, rel=1e-12)
    assert xavier_learning_rate_multiplier((1, 1)) == pytest.approx(2 / np.sqrt(6 / 2), rel=1e-12)


def test_other_kernel_ranks_are_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"got a kernel of shape \(3, 4, 5\)"):
        xavier_learning_rate_multiplier((3, 4, 5))


@pytest.fixture(scope="module")
def binarynet_and_optimizer():
    values = hparams.resolve("binarynet", "adam_sec52")
    model = models.build("binarynet", values, (32, 32, 3), 10)
    optimizer = Config.from_values(values).build_optimizer(1000)  # 50,000 images / 50
    optimizer.build(model.trainable_variables)
    return model, optimizer


def test_adam_sec52_scales_every_binarynet_kernel_and_nothing_else(binarynet_and_optimizer):
    model, optimizer = binarynet_and_optimizer
    assert isinstance(optimizer, XavierScaledAdam)
    multipliers = optimizer.learning_rate_multipliers
    kernels = [v for v in model.trainable_variables if v.path in multipliers]
    assert [tuple(v.shape) for v in kernels] == [shape for shape, _ in BINARYNET_KERNELS]
    for kernel, (_, expected) in zip(kernels, BINARYNET_KERNELS):
        assert multipliers[kernel.path] == pytest.approx(expected, rel=1e-12)
    # Batch norm's betas (scale=False: no gammas) keep Adam's learning rate.
    others = [v for v in model.trainable_variables if v.path not in multipliers]
    assert len(others) == 9 and all(v.path.endswith("/beta") for v in others)
    assert not any(is_quantized_latent_weight(v) for v in others)


def test_adam_sec52_is_section_52s_baseline(binarynet_and_optimizer):
    values = hparams.resolve("binarynet", "adam_sec52")
    assert (values["epochs"], values["batch_size"], values["optimizer"]) == (500, 50, "adam")
    assert (values["kernel_quantizer"], values["kernel_constraint"]) == ("ste_sign", "weight_clip")
    assert values["xavier_learning_rate_scaling"] is True
    _, optimizer = binarynet_and_optimizer
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon, optimizer.l2) == (0.9, 0.999, 1e-7, 0.0)
    schedule = optimizer._learning_rate  # 1e-3, times 0.1 every 100 epochs of 1000 steps
    rates = [float(ops.convert_to_numpy(schedule(step))) for step in (0, 99_999, 100_000, 250_000)]
    assert rates == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5], rel=1e-6)


def test_larqs_one_step_test():
    # larq/optimizers_test.py, TestXavierLearingRateScaling.test_xavier_scaling: MAE of
    # sign(0) * 1 + 0 = 1 against 2 has gradient -1 for the kernel (through the
    # straight-through estimator) and the bias; SGD(1) moves the kernel by the
    # multiplier of its (1, 1) shape and the bias by 1.
    dense = QuantDense(1, kernel_quantizer="ste_sign", kernel_initializer="zeros")
    model = keras.Sequential([keras.Input((1,)), dense])
    model.compile(loss="mae", optimizer=XavierScaledSGD(1.0))
    model.fit(np.array([[1.0]]), np.array([[2.0]]), epochs=1, batch_size=1, verbose=0)
    kernel, bias = dense.get_weights()
    np.testing.assert_allclose(kernel, [[1 / np.sqrt(1.5 / 2)]], rtol=1e-6)
    np.testing.assert_allclose(bias, [1.0], rtol=1e-6)


W0 = np.array([[0.5, -0.25, 0.1], [-0.75, 0.3, 0.9]])  # a (2, 3) latent kernel
G = np.array([[0.2, -0.4, 0.05], [0.1, 0.3, -0.6]])
LR = 1e-3
KERNEL_MULTIPLIER = 1.8257418583505538  # sqrt((2 + 3) / 1.5)


def adam_step_by_hand(w, g, lr):
    """Keras Adam's first step (epsilon outside the bias correction, Keras's placement)."""
    m = (1 - BETA_1) * g
    v = (1 - BETA_2) * g ** 2
    alpha = lr * np.sqrt(1 - BETA_2) / (1 - BETA_1)
    return w - alpha * m / (np.sqrt(v) + EPSILON)


def layer_and_batch_norm():
    """A quantized dense layer (kernel and bias) and a batch norm, with known values."""
    dense = QuantDense(3, kernel_quantizer="ste_sign", name="dense")
    dense.build((None, 2))
    norm = keras.layers.BatchNormalization(name="norm")
    norm.build((None, 3))
    dense.kernel.assign(W0.astype(np.float32))
    dense.bias.assign(np.array([0.1, 0.2, 0.3], np.float32))
    variables = [dense.kernel, dense.bias, norm.gamma, norm.beta]
    gradients = [G, np.array([0.3, -0.1, 0.2]), np.array([-0.2, 0.4, 0.1]), np.array([0.05, -0.5, 0.3])]
    return variables, [ops.convert_to_tensor(g.astype(np.float32)) for g in gradients]


def test_one_adam_step_scales_the_kernels_step_and_nothing_else():
    scaled_variables, gradients = layer_and_batch_norm()
    plain_variables, _ = layer_and_batch_norm()
    before = [v.numpy().copy() for v in scaled_variables]
    XavierScaledAdam(LR).apply_gradients(zip(gradients, scaled_variables))
    keras.optimizers.Adam(LR).apply_gradients(zip(gradients, plain_variables))

    kernel, plain_kernel = scaled_variables[0].numpy(), plain_variables[0].numpy()
    np.testing.assert_allclose(kernel, adam_step_by_hand(W0, G, LR * KERNEL_MULTIPLIER), rtol=1e-6)
    # The step is Adam's times the multiplier: about 1.826e-3 against sign(g).
    np.testing.assert_allclose(kernel - before[0], (plain_kernel - before[0]) * KERNEL_MULTIPLIER, rtol=1e-4)
    np.testing.assert_allclose(kernel - W0, -1.8257e-3 * np.sign(G), rtol=1e-3)
    # The bias and batch norm's gamma and beta take exactly Adam's step.
    for scaled, plain in zip(scaled_variables[1:], plain_variables[1:]):
        np.testing.assert_array_equal(scaled.numpy(), plain.numpy())


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="Keras's LossScaleOptimizer applies eagerly on TensorFlow only (JAX: even Adam's leaks a tracer); "
    "bnno's mixed precision is the TensorFlow Trainer's",
)
def test_inside_a_loss_scale_optimizer_as_under_mixed_precision():
    (kernel, *_), (gradient, *_) = layer_and_batch_norm()
    optimizer = keras.optimizers.LossScaleOptimizer(XavierScaledAdam(LR), initial_scale=1024.0)
    optimizer.apply_gradients([(gradient * 1024.0, kernel)])  # the gradient of the scaled loss
    np.testing.assert_allclose(kernel.numpy(), adam_step_by_hand(W0, G, LR * KERNEL_MULTIPLIER), rtol=1e-6)


def test_weight_decay_joins_the_gradient_before_the_step_is_scaled():
    (kernel, *_), (gradient, *_) = layer_and_batch_norm()
    XavierScaledAdam(LR, l2=0.5).apply_gradients([(gradient, kernel)])
    expected = adam_step_by_hand(W0, G + 0.5 * W0, LR * KERNEL_MULTIPLIER)
    np.testing.assert_allclose(kernel.numpy(), expected, rtol=1e-6)


def test_kernels_without_a_quantizer_keep_the_learning_rate():
    quantized = QuantConv2D(4, 3, kernel_quantizer="ste_sign", name="quantized")
    plain = QuantConv2D(4, 3, kernel_quantizer=None, name="plain")
    dense = keras.layers.Dense(4, name="keras_dense")
    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, dense(plain(quantized(inputs))))
    optimizer = XavierScaledAdam()
    optimizer.build(model.trainable_variables)
    assert optimizer.learning_rate_multipliers == {
        quantized.kernel.path: pytest.approx(np.sqrt(9 * (2 + 4) / 1.5), rel=1e-12),
    }


def test_config_round_trips_and_the_multipliers_come_back_with_a_saved_model(tmp_path):
    learning_rate = keras.optimizers.schedules.ExponentialDecay(1e-3, 100, 0.1, staircase=True)
    config = XavierScaledAdam(learning_rate, l2=1e-5).get_config()
    restored = XavierScaledAdam.from_config(copy.deepcopy(config))  # Keras rewrites it in place
    assert restored.get_config() == config
    assert (restored.l2, restored.name) == (1e-5, "xavier_scaled_adam")

    inputs = keras.Input((2,))
    outputs = QuantDense(1, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=XavierScaledAdam(1e-3), loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(reloaded.optimizer) is XavierScaledAdam
    expected = {model.layers[1].kernel.path: pytest.approx(np.sqrt(3 / 1.5), rel=1e-12)}
    assert model.optimizer.learning_rate_multipliers == expected
    assert reloaded.optimizer.learning_rate_multipliers == expected
    for ours, theirs in zip(model.optimizer.variables, reloaded.optimizer.variables):
        np.testing.assert_array_equal(theirs.numpy(), ours.numpy())


@requires_tensorflow
def test_checkpoints_have_adams_layout(tmp_path):
    # Adam's checkpoint restores into XavierScaledAdam, every value consumed: the same
    # variables, so the Trainer's tf.train.Checkpoint saves and resumes it like Adam.
    variables, gradients = layer_and_batch_norm()
    adam = keras.optimizers.Adam(LR)
    adam.apply_gradients(zip(gradients, variables))
    path = tf.train.Checkpoint(optimizer=adam).save(str(tmp_path / "ckpt"))
    fresh_variables, _ = layer_and_batch_norm()
    scaled = XavierScaledAdam(LR)
    scaled.build(fresh_variables)
    tf.train.Checkpoint(optimizer=scaled).restore(path).assert_consumed()
    assert len(scaled.variables) == len(adam.variables)
    for ours, theirs in zip(adam.variables, scaled.variables):
        np.testing.assert_array_equal(theirs.numpy(), ours.numpy())


@requires_tensorflow
def test_under_a_mirrored_strategy_each_replicas_kernel_is_scaled():
    # update_step receives each replica's variable, not the model's: the multiplier is
    # found by the optimizer's variable index.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        variables, gradients = layer_and_batch_norm()
        optimizer = XavierScaledAdam(LR)
        optimizer.build(variables)

    def apply():
        optimizer.apply_gradients(zip(gradients, variables))

    @tf.function
    def step():
        strategy.run(apply)

    step()
    np.testing.assert_allclose(variables[0].numpy(), adam_step_by_hand(W0, G, LR * KERNEL_MULTIPLIER), rtol=1e-6)
    bias_gradient = ops.convert_to_numpy(gradients[1])
    np.testing.assert_allclose(variables[1].numpy(), adam_step_by_hand([0.1, 0.2, 0.3], bias_gradient, LR), rtol=1e-6)


def test_a_set_turns_it_on_with_its_weight_decay():
    values = hparams.resolve("binarynet", "default", "xavier_learning_rate_scaling=true,weight_decay=1e-4")
    optimizer = Config.from_values(values).build_optimizer(10)
    assert type(optimizer) is XavierScaledAdam and optimizer.l2 == 1e-4
    assert type(hparams.resolve("binarynet", "default").build_optimizer(10)) is keras.optimizers.Adam


@pytest.mark.parametrize("set_name, optimizer", [("bop", "bop"), ("bop2ndOrder", "bop2nd")])
def test_bop_sets_refuse_it_in_one_sentence(set_name, optimizer):
    with pytest.raises(UsageError) as error:
        hparams.resolve("binarynet", set_name, "xavier_learning_rate_scaling=true")
    assert str(error.value) == (
        f"xavier_learning_rate_scaling of binarynet set '{set_name}' scales the learning rates of latent "
        f"weights, which optimizer={optimizer} does not have (Bop trains the binary kernels themselves); "
        "use it with optimizer=adam or set it to false."
    )
    # Off, it is no error: the key is in every set's vocabulary.
    assert hparams.resolve("binarynet", set_name, "xavier_learning_rate_scaling=false")


def test_it_must_be_true_or_false():
    with pytest.raises(UsageError) as error:
        hparams.resolve("binarynet", "default", "xavier_learning_rate_scaling=maybe")
    assert str(error.value) == "Hyperparameter xavier_learning_rate_scaling=maybe must be true or false."
