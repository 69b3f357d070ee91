"""Quantized layers: what they compute, how they serialize, what quantized_scope reads.

Backend-neutral but for the tests marked ``requires_tensorflow`` (the fused
batch-normalization kernel, which is TensorFlow's) and the one of synchronized batch
statistics (Keras has them on TensorFlow only): tests/nn/test_jax_backend.py runs this
file on JAX too. Convolutions are checked against NumPy's.
"""

import keras
import numpy as np
import pytest
from keras import ops
from numpy.lib.stride_tricks import sliding_window_view

from bnno.nn import constraints, context, layers, quantizers

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

requires_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="TensorFlow's fused batch-normalization kernel; other backends compute Keras's own",
)


def binary(a):
    return np.where(a >= 0, 1.0, -1.0).astype(np.float32)


def windows(x, kernel_size, strides, padding):
    """(N, H', W', C, kh, kw) views of NHWC ``x``, padded by ``padding`` (per spatial
    axis, before and after) with zeros and strided like a convolution."""
    x = np.pad(np.asarray(x, np.float64), [(0, 0), *padding, (0, 0)])
    return sliding_window_view(x, kernel_size, axis=(1, 2))[:, ::strides, ::strides]


def conv2d(x, kernel, strides=1, padding=((0, 0), (0, 0))):
    """NumPy's convolution (cross-correlation, as TensorFlow's) of NHWC ``x`` with an
    HWIO ``kernel``, in float64."""
    patches = windows(x, kernel.shape[:2], strides, padding)
    return np.einsum("nhwcij,ijco->nhwo", patches, np.asarray(kernel, np.float64))


def depthwise_conv2d(x, kernel, strides=1, padding=((0, 0), (0, 0))):
    """NumPy's depthwise convolution with an (H, W, C, multiplier) ``kernel``; output
    channel ``c * multiplier + m``, as Keras and TensorFlow order them."""
    patches = windows(x, kernel.shape[:2], strides, padding)
    y = np.einsum("nhwcij,ijcm->nhwcm", patches, np.asarray(kernel, np.float64))
    return y.reshape(*y.shape[:3], -1)


def numpy_of(tensor):
    return ops.convert_to_numpy(tensor)


def test_quant_dense_multiplies_binarized_inputs_by_binarized_kernel():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    layer = layers.QuantDense(
        3, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False
    )
    y = numpy_of(layer(x))
    np.testing.assert_array_equal(y, binary(x) @ binary(layer.kernel.numpy()))
    # Binary inputs and weights make every output an integer.
    np.testing.assert_array_equal(y, np.round(y))


def test_quant_conv2d_equals_a_plain_convolution_of_quantized_values():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 5, 3)).astype(np.float32)
    layer = layers.QuantConv2D(
        4, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="ste_sign"
    )
    y = numpy_of(layer(x))
    # "same" with a 3x3 kernel at stride 1: one row and column of zeros on every side.
    expected = conv2d(binary(x), binary(layer.kernel.numpy()), 1, ((1, 1), (1, 1)))
    expected += layer.bias.numpy()
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_pad_values_pads_same_convolutions_with_that_value():
    x = -np.ones((1, 4, 4, 1), np.float32)
    layer = layers.QuantConv2D(
        1, 3, strides=2, padding="same", pad_values=1.0, use_bias=False,
        kernel_initializer="ones",
    )
    y = numpy_of(layer(x))
    padded = np.pad(x, [(0, 0), (0, 1), (0, 1), (0, 0)], constant_values=1.0)  # TF "same"
    expected = conv2d(padded, np.ones((3, 3, 1, 1), np.float32), 2)
    np.testing.assert_array_equal(y, expected)
    assert y.shape == (1, 2, 2, 1)
    # Each window sums its -1 inputs and +1 pads: 9 inputs; 6 and 3 pads; 4 and 5 pads.
    np.testing.assert_array_equal(y[0, :, :, 0], [[-9.0, -3.0], [-3.0, 1.0]])


def test_quant_depthwise_conv2d_quantizes_its_depthwise_kernel():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 4, 4, 2)).astype(np.float32)
    layer = layers.QuantDepthwiseConv2D(
        3, padding="valid", input_quantizer="ste_sign", depthwise_quantizer="ste_sign",
        use_bias=False,
    )
    y = numpy_of(layer(x))
    expected = depthwise_conv2d(binary(x), binary(layer.kernel.numpy()))
    np.testing.assert_allclose(y, expected, atol=1e-5)
    assert layer.kernel.precision == 1


def test_depthwise_refuses_two_names_for_one_quantizer():
    with pytest.raises(ValueError, match="either depthwise_quantizer or kernel_quantizer"):
        layers.QuantDepthwiseConv2D(3, depthwise_quantizer="ste_sign", kernel_quantizer="ste_sign")


def test_kernels_carry_their_quantizer_precision():
    dense = layers.QuantDense(2, kernel_quantizer=quantizers.NoOp(precision=1))
    tern = layers.QuantDense(2, kernel_quantizer="ste_tern")
    plain = layers.QuantDense(2)
    for layer in (dense, tern, plain):
        layer.build((None, 3))
    assert dense.kernel.precision == 1
    assert tern.kernel.precision == 2
    assert getattr(plain.kernel, "precision", None) is None
    assert getattr(dense.bias, "precision", None) is None


def test_weight_clip_is_accepted_by_name():
    layer = layers.QuantConv2D(2, 3, kernel_constraint="weight_clip")
    assert isinstance(layer.kernel_constraint, constraints.WeightClip)
    clipped = layer.kernel_constraint(ops.convert_to_tensor([-3.0, -1.0, 0.25, 1.0, 7.0]))
    np.testing.assert_array_equal(numpy_of(clipped), [-1.0, -1.0, 0.25, 1.0, 1.0])
    assert numpy_of(constraints.weight_clip(0.5)(ops.convert_to_tensor([2.0])))[0] == 0.5


@pytest.mark.parametrize(
    "layer",
    [
        layers.QuantDense(
            3, input_quantizer="ste_sign", kernel_quantizer=quantizers.SteSign(0.5),
            kernel_constraint="weight_clip",
        ),
        layers.QuantConv2D(3, 2, input_quantizer="approx_sign", kernel_quantizer="noop",
                           pad_values=1.0, padding="same"),
        layers.QuantDepthwiseConv2D(3, depthwise_quantizer="ste_tern"),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_layer_config_round_trips(layer):
    config = layer.get_config()
    restored = type(layer).from_config(config)
    assert restored.get_config() == config
    assert restored.input_quantizer == layer.input_quantizer
    assert restored.kernel_quantizer == layer.kernel_quantizer


def small_model():
    inputs = keras.Input((6, 6, 2))
    x = layers.QuantConv2D(
        4, 3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip", use_bias=False
    )(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    x = layers.QuantDense(
        3, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip",
    )(x)
    return keras.Model(inputs, x)


def test_model_survives_keras_save_and_load(tmp_path):
    model = small_model()
    x = np.random.default_rng(3).normal(size=(5, 6, 6, 2)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [type(l).__name__ for l in restored.layers] == [type(l).__name__ for l in model.layers]
    assert restored.layers[1].kernel.precision == 1
    assert isinstance(restored.layers[1].kernel, layers.QuantizedVariable)


def test_quantized_scope_reads_latent_kernels_as_binary():
    model = small_model()
    latent = model.get_weights()
    assert not set(np.unique(latent[0])) <= {-1.0, 1.0}  # latent weights are real
    with context.quantized_scope():
        quantized = model.get_weights()
        assert context.should_quantize()
    assert not context.should_quantize()
    for before, after, variable in zip(latent, quantized, model.weights):
        if isinstance(variable, layers.QuantizedVariable):
            np.testing.assert_array_equal(after, binary(before))
        else:
            np.testing.assert_array_equal(after, before)
    # Outside the scope, and with quantize=False, the latent weights come back.
    with context.quantized_scope(False):
        np.testing.assert_array_equal(model.get_weights()[0], latent[0])


def test_save_weights_inside_quantized_scope_writes_binary_weights(tmp_path):
    model = small_model()
    with context.quantized_scope():
        model.save_weights(tmp_path / "binary.weights.h5")
    other = small_model()
    other.load_weights(tmp_path / "binary.weights.h5")
    np.testing.assert_array_equal(other.layers[1].kernel.numpy(), binary(model.layers[1].kernel.numpy()))
    np.testing.assert_array_equal(other.layers[-1].kernel.numpy(), binary(model.layers[-1].kernel.numpy()))


def test_quantized_scope_does_not_change_what_the_model_computes():
    model = small_model()
    x = np.random.default_rng(4).normal(size=(2, 6, 6, 2)).astype(np.float32)
    outside = numpy_of(model(x))
    with context.quantized_scope():
        np.testing.assert_array_equal(numpy_of(model(x)), outside)


@pytest.mark.parametrize(
    "shape, arguments",
    [
        ((8, 5, 5, 6), {}),
        ((8, 6), {"scale": False}),
        ((4, 3, 3, 2), {"center": False, "momentum": 0.8, "epsilon": 1e-4}),
    ],
)
@requires_tensorflow
def test_fused_batch_normalization_computes_what_keras_computes(shape, arguments):
    x = tf.constant(np.random.default_rng(0).normal(2, 3, size=shape).astype(np.float32))
    reference, fused = keras.layers.BatchNormalization(**arguments), layers.BatchNormalization(**arguments)
    reference.build(shape)
    fused.build(shape)
    fused.set_weights(reference.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y_reference, y_fused = reference(x, training=True), fused(x, training=True)
        loss_reference = tf.reduce_sum(y_reference * tf.cos(y_reference))
        loss_fused = tf.reduce_sum(y_fused * tf.cos(y_fused))
    np.testing.assert_allclose(y_fused, y_reference, atol=1e-5)
    for ours, theirs in zip(
        tape.gradient(loss_fused, [x, *fused.trainable_weights]),
        tape.gradient(loss_reference, [x, *reference.trainable_weights]),
    ):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    # Keras 3's moving statistics: the biased batch variance, averaged with momentum.
    for ours, theirs in zip(fused.non_trainable_weights, reference.non_trainable_weights):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fused(x, training=False), reference(x, training=False), atol=1e-5)


def test_fused_batch_normalization_falls_back_to_keras_where_it_cannot_fuse():
    x = ops.convert_to_tensor(np.random.default_rng(1).normal(size=(2, 3, 4)).astype(np.float32))
    reference, fused = keras.layers.BatchNormalization(), layers.BatchNormalization()
    np.testing.assert_allclose(fused(x, training=True), reference(x, training=True), atol=1e-6)
    assert not fused._fusable(x, None)  # rank 3
    # The fused kernel is TensorFlow's: on another backend nothing fuses, rank 4 included.
    rank_4_fusable = layers.BatchNormalization()._fusable(ops.zeros((2, 3, 3, 4)), None)
    assert rank_4_fusable == (keras.backend.backend() == "tensorflow")


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="Keras synchronizes batch statistics across replicas on TensorFlow only",
)
def test_fused_batch_normalization_leaves_synchronized_statistics_to_keras():
    assert not layers.BatchNormalization(synchronized=True)._fusable(ops.zeros((2, 4)), None)


def test_fused_batch_normalization_round_trips_through_save(tmp_path):
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, layers.BatchNormalization(momentum=0.9, scale=False)(inputs))
    model.save(tmp_path / "bn.keras")
    restored = keras.saving.load_model(tmp_path / "bn.keras")
    assert type(restored.layers[1]) is layers.BatchNormalization
    assert restored.layers[1].get_config() == model.layers[1].get_config()


@requires_tensorflow
def test_fused_batch_normalization_takes_bfloat16_inputs_with_float32_statistics():
    x32 = np.random.default_rng(2).normal(1, 2, size=(16, 4, 4, 3)).astype(np.float32)
    x16 = tf.cast(x32, tf.bfloat16)
    reference = keras.layers.BatchNormalization(momentum=0.5)
    fused = layers.BatchNormalization(momentum=0.5, dtype="mixed_bfloat16")
    expected = reference(tf.cast(x16, tf.float32), training=True)
    y = fused(x16, training=True)
    assert y.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y, tf.float32), expected, atol=0.05)  # bfloat16 precision
    assert fused.moving_mean.dtype == "float32"
    np.testing.assert_allclose(fused.moving_mean.numpy(), reference.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), reference.moving_variance.numpy(), rtol=1e-5)
