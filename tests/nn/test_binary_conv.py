"""bnno.nn.binary_conv: bfloat16 convolutions of +-1 values equal float32 ones bit for bit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnno.nn import binary_conv, layers, optimizers, quantizers


def float32_conv(x, w, strides=(1, 1), padding="SAME", dilations=(1, 1)):
    return tf.nn.conv2d(x, w, [1, *strides, 1], padding, dilations=[1, *dilations, 1]).numpy()


def exact_conv(x, w, strides=(1, 1), padding="SAME", dilations=(1, 1), check_kernel=True):
    return binary_conv.conv2d(
        tf.constant(x), tf.constant(w), strides, padding, dilations, check_kernel=check_kernel
    ).numpy()


def random_signs(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


@pytest.mark.parametrize("in_channels, taps, expected", [
    (128, 9, 32),    # 9 * 32 = 288 <= 512; 64 channels would reach 576
    (256, 9, 32),
    (512, 9, 32),    # 16 groups
    (2048, 9, 32),   # 64 groups, the most allowed
    (4096, 9, None),  # 128 groups of 32 are too many; groups of 64 could reach 576
    (32, 9, 32),     # one group: a plain bfloat16 convolution
    (56, 9, 56),     # 504, even: the largest even group for 3x3
    (3, 9, 3),       # odd: 27 <= 256
    (27, 9, 27),     # odd: 243 <= 256
    (29, 9, None),   # odd and prime: 261 > 256, and groups of 1 are too narrow
    (60, 25, 20),    # 5x5: 20 channels, even: 500 <= 512
    (96, 49, 8),     # 7x7: 8 channels, 392 <= 512, the narrowest group allowed
    (40, 121, None),  # 11x11: at most 4 channels, narrower than allowed
    (64, 25, 16),    # 5x5: 400 <= 512
])
def test_channel_group_size(in_channels, taps, expected):
    size = binary_conv.channel_group_size(in_channels, taps)
    assert size == expected
    if size is not None:
        assert in_channels % size == 0 and in_channels // size <= binary_conv.MAX_GROUPS
        assert size >= min(in_channels, binary_conv.MIN_GROUP_SIZE)
        assert taps * size <= (512 if size % 2 == 0 else 256)


@pytest.mark.parametrize("in_channels, out_channels, kernel, strides, padding, dilations", [
    (128, 16, 3, (1, 1), "SAME", (1, 1)),  # 4 groups
    (512, 8, 3, (1, 1), "SAME", (1, 1)),   # 16 groups
    (64, 8, 3, (2, 2), "SAME", (1, 1)),    # strided
    (64, 8, 3, (1, 1), "VALID", (2, 2)),   # dilated, no padding
    (64, 8, 5, (1, 1), "SAME", (1, 1)),    # 5x5: groups of 16
    (3, 8, 3, (1, 1), "SAME", (1, 1)),     # one odd group
])
def test_random_plus_minus_one_convolutions_equal_float32(in_channels, out_channels, kernel,
                                                          strides, padding, dilations):
    rng = np.random.default_rng(0)
    x = random_signs(rng, (2, 9, 9, in_channels))
    w = random_signs(rng, (kernel, kernel, in_channels, out_channels))
    expected = float32_conv(x, w, strides, padding, dilations)
    np.testing.assert_array_equal(exact_conv(x, w, strides, padding, dilations), expected)


def near_bound_inputs(in_channels):
    """All +1 but for the first m channels at each position (m = 0..10 varying), so
    that with an all-ones kernel the sums lie just below their maximum 9 * channels."""
    flips = np.arange(2 * 8 * 8).reshape(2, 8, 8, 1) % 11
    flips[0, 2:5, 2:5] = 0  # so that the sum at (0, 3, 3) is 9 * in_channels
    flipped = np.arange(in_channels).reshape(1, 1, 1, -1) < flips
    return np.where(flipped, -1.0, 1.0).astype(np.float32)


@pytest.mark.parametrize("in_channels", [56, 128, 512])
def test_sums_at_and_near_their_largest_are_exact(in_channels):
    x = near_bound_inputs(in_channels)
    w = np.ones((3, 3, in_channels, 4), np.float32)
    w[..., 1] = -1.0  # the most negative sums too
    expected = float32_conv(x, w)
    assert expected.max() == 9 * in_channels  # the all-+1 position reaches the maximum
    assert len(np.unique(expected)) > 20
    np.testing.assert_array_equal(exact_conv(x, w), expected)


@pytest.mark.parametrize("size, in_channels, out_channels", [
    (32, 128, 128), (16, 128, 256), (16, 256, 256), (8, 256, 512), (8, 512, 512),
])
def test_binarynets_layers_at_full_size(size, in_channels, out_channels):
    """oneDNN picks its kernels by shape: BinaryNet's own shapes, with correlated
    inputs (large sums) as after training."""
    rng = np.random.default_rng(size + in_channels)
    w = random_signs(rng, (3, 3, in_channels, out_channels))
    w[:, :, :, 0] = w[1, 1, :, 0]  # filter 0 is the same at every tap ...
    x = random_signs(rng, (4, size, size, in_channels))
    x[:2] = w[1, 1, :, 0]  # ... and matches every inner 3x3 patch of images 0 and 1
    expected = float32_conv(x, w)
    assert expected.max() == 9 * in_channels
    np.testing.assert_array_equal(exact_conv(x, w), expected)


def test_a_plain_bfloat16_convolution_would_round_these_sums():
    """The control for the test above: without groups, bfloat16 loses the sums' last bits."""
    x = near_bound_inputs(128)
    w = np.ones((3, 3, 128, 4), np.float32)
    plain = tf.nn.conv2d(tf.constant(x, tf.bfloat16), tf.constant(w, tf.bfloat16), 1, "SAME")
    assert not np.array_equal(tf.cast(plain, tf.float32).numpy(), float32_conv(x, w))


def test_a_kernel_that_is_not_plus_minus_one_takes_the_float32_path():
    rng = np.random.default_rng(1)
    x = random_signs(rng, (2, 8, 8, 64))
    w = rng.normal(size=(3, 3, 64, 8)).astype(np.float32)  # e.g. Bop's kernel before step 1
    np.testing.assert_array_equal(exact_conv(x, w), float32_conv(x, w))
    # Without the check the bfloat16 path would round this kernel: the check matters.
    assert not np.array_equal(exact_conv(x, w, check_kernel=False), float32_conv(x, w))


def test_gradients_are_those_of_the_float32_convolution_bit_for_bit():
    rng = np.random.default_rng(2)
    x = tf.constant(random_signs(rng, (2, 8, 8, 128)))
    w = tf.constant(random_signs(rng, (3, 3, 128, 16)))
    upstream = tf.constant(rng.normal(size=(2, 8, 8, 16)).astype(np.float32))

    def gradients(convolve):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = convolve(x, w)
        return tape.gradient(y, [x, w], output_gradients=upstream)

    exact = gradients(lambda x, w: binary_conv.conv2d(x, w, (1, 1), "same", (1, 1)))
    reference = gradients(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"))
    for got, expected in zip(exact, reference):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_modes():
    assert binary_conv.mode() == "auto"
    with binary_conv.use("float32"):
        assert not binary_conv.enabled()
        with binary_conv.use("bfloat16"):
            assert binary_conv.enabled()
        assert binary_conv.mode() == "float32"
    assert binary_conv.mode() == "auto"
    with pytest.raises(ValueError, match="Unknown binary convolution mode"):
        with binary_conv.use("bf16"):
            pass


@pytest.mark.parametrize("cap, allowed", [
    ("AVX2", False), ("avx512_core", False), ("AVX512_CORE_AMX", True), ("ALL", True), ("", True),
])
def test_auto_respects_a_onednn_instruction_cap(monkeypatch, cap, allowed):
    # As on a CPU with AMX, so that only the cap decides.
    monkeypatch.setattr(binary_conv, "cpu_has_amx_bf16", lambda: True)
    monkeypatch.setattr(binary_conv, "gpus_visible", lambda: False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert binary_conv.enabled("auto") is allowed
    assert binary_conv.enabled("bfloat16")  # an explicit mode is obeyed


def conv_dtypes(layer, inputs):
    """The dtypes of the Conv2D operations that ``layer`` runs on ``inputs``."""
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec(inputs.shape)).graph
    found = []
    for op in graph.get_operations():
        if op.type == "Conv2D":
            found.append(op.get_attr("T"))
        for name in ("then_branch", "else_branch"):
            if name in op.node_def.attr:  # inside tf.cond
                branch = graph._get_function(op.get_attr(name).name).graph
                found += [o.get_attr("T") for o in branch.get_operations() if o.type == "Conv2D"]
    return found


@pytest.mark.parametrize("pad_values", [0.0, 1.0])
def test_quant_conv2d_takes_the_bfloat16_path_only_for_plus_minus_one_inputs(pad_values):
    inputs = np.random.default_rng(3).normal(size=(2, 8, 8, 64)).astype(np.float32)
    binary = layers.QuantConv2D(8, 3, padding="same", pad_values=pad_values,
                                input_quantizer="ste_sign", kernel_quantizer="ste_sign")
    real_inputs = layers.QuantConv2D(8, 3, padding="same", kernel_quantizer="ste_sign")
    ternary = layers.QuantConv2D(8, 3, padding="same", input_quantizer="ste_tern",
                                 kernel_quantizer="ste_sign")
    with binary_conv.use("bfloat16"):
        assert tf.bfloat16 in conv_dtypes(binary, inputs)
        assert tf.bfloat16 not in conv_dtypes(real_inputs, inputs)
        assert tf.bfloat16 not in conv_dtypes(ternary, inputs)
        fast = binary(inputs).numpy()
    with binary_conv.use("float32"):
        assert tf.bfloat16 not in conv_dtypes(binary, inputs)
        np.testing.assert_array_equal(binary(inputs).numpy(), fast)


def small_binarynet():
    keras.utils.set_random_seed(7)
    binary = dict(input_quantizer="ste_sign", kernel_quantizer="noop", use_bias=False)
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        layers.QuantConv2D(64, 3, kernel_quantizer="noop", use_bias=False),
        layers.BatchNormalization(scale=False),
        layers.QuantConv2D(64, 3, padding="same", **binary),
        keras.layers.MaxPool2D(),
        layers.BatchNormalization(scale=False),
        layers.QuantConv2D(128, 3, padding="same", **binary),
        layers.BatchNormalization(scale=False),
        keras.layers.Flatten(),
        layers.QuantDense(10, **binary),
        layers.BatchNormalization(scale=False),
        keras.layers.Activation("softmax"),
    ])


def train_small_binarynet(mode, steps=6):
    model = small_binarynet()
    optimizer = optimizers.CaseOptimizer(
        (optimizers.Bop.is_binary_variable, optimizers.Bop(threshold=1e-8, gamma=1e-2)),
        default_optimizer=keras.optimizers.Adam(0.01),
    )
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(4)
    images = rng.normal(size=(steps, 16, 12, 12, 3)).astype(np.float32)
    labels = rng.integers(0, 10, size=(steps, 16))

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    with binary_conv.use(mode):
        losses = [float(step(images[i], labels[i])) for i in range(1)]
        binarized = model.layers[2].kernel.numpy()  # Bop's first step binarizes the kernels
        losses += [float(step(images[i], labels[i])) for i in range(1, steps)]
    return model, binarized, losses


def test_training_with_bop_is_identical_in_both_modes():
    fast, binarized, fast_losses = train_small_binarynet("bfloat16")
    reference, _, losses = train_small_binarynet("float32")
    assert fast_losses == losses
    for got, expected in zip(fast.variables, reference.variables):
        np.testing.assert_array_equal(got.numpy(), expected.numpy(), err_msg=got.path)
    kernel = fast.layers[2].kernel.numpy()
    assert set(np.unique(kernel)) == {-1.0, 1.0}
    assert np.sum(kernel != binarized) > 0  # Bop flipped weights after its first step


def test_plus_minus_one_quantizers():
    assert quantizers.get("ste_sign").plus_minus_one
    assert quantizers.get("approx_sign").plus_minus_one
    assert quantizers.get("swish_sign").plus_minus_one
    for name in ("ste_tern", "ste_heaviside", "magnitude_aware_sign", "noop"):
        assert not quantizers.get(name).plus_minus_one
