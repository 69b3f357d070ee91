"""bnno.nn.summary: parameters by bit width, memory and MACs, with hand-computed values."""

import json

import keras
import pytest

from bnno.nn import summary as summary_module
from bnno.nn.layers import QuantConv2D, QuantDense, QuantDepthwiseConv2D
from bnno.nn.quantizers import NoOp

profile = summary_module.profile

BINARY = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False)
COUNT_KEYS = ("binary_params", "fp_params", "memory_bytes", "binary_macs", "fp_macs")


def ceil_div(a, b):
    return -(-a // b)


def binarynet_cifar10():
    """The BinaryNet CIFAR-10 model of the paper (larq zoo / Bop example)."""

    def batch_norm(x):
        return keras.layers.BatchNormalization(scale=False, momentum=0.9)(x)

    binary = dict(BINARY, kernel_constraint="weight_clip", padding="same")
    inputs = keras.Input((32, 32, 3))
    x = QuantConv2D(
        128,
        3,
        padding="valid",
        kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip",
        use_bias=False,
    )(inputs)
    x = batch_norm(x)
    for filters, pool in [(128, True), (256, False), (256, True), (512, False), (512, True)]:
        x = QuantConv2D(filters, 3, **binary)(x)
        if pool:
            x = keras.layers.MaxPool2D(2)(x)
        x = batch_norm(x)
    x = keras.layers.Flatten()(x)
    for units in (1024, 1024, 10):
        x = QuantDense(units, **BINARY, kernel_constraint="weight_clip")(x)
        x = batch_norm(x)
    outputs = keras.layers.Activation("softmax")(x)
    return keras.Model(inputs, outputs, name="binarynet")


def rows_by_name(result):
    return {row["name"]: row for row in result["layers"]}


def test_binarynet_cifar10_params_memory_and_macs():
    model = binarynet_cifar10()
    totals = profile(model)["totals"]

    # Spatial sizes: 32 -valid conv-> 30 -pool-> 15 -pool-> 7 -pool-> 3.
    convs = [  # (kh*kw*in*out, output pixels)
        (3 * 3 * 3 * 128, 30 * 30),
        (3 * 3 * 128 * 128, 30 * 30),
        (3 * 3 * 128 * 256, 15 * 15),
        (3 * 3 * 256 * 256, 15 * 15),
        (3 * 3 * 256 * 512, 7 * 7),
        (3 * 3 * 512 * 512, 7 * 7),
    ]
    denses = [3 * 3 * 512 * 1024, 1024 * 1024, 1024 * 10]
    kernels = [k for k, _ in convs] + denses
    bn_channels = 2 * 128 + 2 * 256 + 2 * 512 + 2 * 1024 + 10
    bn_params = 3 * bn_channels  # beta, moving mean, moving variance (scale=False)

    assert totals["total_params"] == 10_363_550 == model.count_params()
    assert totals["binary_params"] == 10_352_000 == sum(kernels)
    assert totals["fp_params"] == bn_params == 11_550
    assert totals["memory_bytes"] == ceil_div(sum(kernels) * 1 + bn_params * 32, 8)
    # The first layer sees real-valued images, so its MACs are full precision.
    assert totals["fp_macs"] == 3 * 3 * 3 * 128 * 30 * 30
    assert totals["binary_macs"] == sum(k * p for k, p in convs[1:]) + sum(denses)


def test_binarynet_rows_and_output_shapes():
    result = profile(binarynet_cifar10())
    rows = result["layers"]
    first_conv = next(row for row in rows if row["type"] == "QuantConv2D")
    assert first_conv["output_shape"] == (None, 30, 30, 128)
    assert first_conv["binary_params"] == 3 * 3 * 3 * 128
    assert first_conv["memory_bytes"] == 3 * 3 * 3 * 128 // 8
    assert (first_conv["binary_macs"], first_conv["fp_macs"]) == (0, 3 * 3 * 3 * 128 * 30 * 30)

    weightless = [row for row in rows if row["type"] in ("MaxPooling2D", "Flatten", "Activation")]
    assert len(weightless) == 5
    for row in weightless:
        assert all(row[key] == 0 for key in COUNT_KEYS)
    assert rows[-1]["output_shape"] == (None, 10)

    for row in rows:
        assert all(type(row[key]) is int for key in COUNT_KEYS)
    assert all(type(value) is int for value in result["totals"].values())
    json.dumps(result)  # what `bnno summary --json` prints


def test_noop_binary_kernel_with_real_inputs_has_fp_macs():
    inputs = keras.Input((3,))
    outputs = QuantDense(4, kernel_quantizer=NoOp(precision=1), name="noop_dense")(inputs)
    row = rows_by_name(profile(keras.Model(inputs, outputs)))["noop_dense"]
    assert row["binary_params"] == 3 * 4
    assert row["fp_params"] == 4  # bias
    assert row["memory_bytes"] == ceil_div(12 * 1 + 4 * 32, 8)
    assert (row["binary_macs"], row["fp_macs"]) == (0, 12)


def test_binary_inputs_with_real_kernel_have_fp_macs():
    inputs = keras.Input((3,))
    outputs = QuantDense(4, input_quantizer="ste_sign", use_bias=False, name="d")(inputs)
    row = rows_by_name(profile(keras.Model(inputs, outputs)))["d"]
    assert (row["binary_params"], row["fp_params"]) == (0, 12)
    assert (row["binary_macs"], row["fp_macs"]) == (0, 12)


def test_plain_keras_dense_is_full_precision():
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(3, name="plain")(inputs)
    model = keras.Model(inputs, outputs)
    result = profile(model)
    row = rows_by_name(result)["plain"]
    assert (row["binary_params"], row["fp_params"]) == (0, 5 * 3 + 3)
    assert row["memory_bytes"] == (5 * 3 + 3) * 4
    assert (row["binary_macs"], row["fp_macs"]) == (0, 15)
    assert result["totals"]["total_params"] == 18 == model.count_params()


def test_ternary_kernel_counts_as_fp_params_but_stores_two_bits():
    inputs = keras.Input((5, 5, 1))
    outputs = QuantConv2D(
        2, 3, input_quantizer="ste_sign", kernel_quantizer="ste_tern", use_bias=False, name="tern"
    )(inputs)
    row = rows_by_name(profile(keras.Model(inputs, outputs)))["tern"]
    kernel = 3 * 3 * 1 * 2
    assert (row["binary_params"], row["fp_params"]) == (0, kernel)
    assert row["memory_bytes"] == ceil_div(kernel * 2, 8) == 5
    assert (row["binary_macs"], row["fp_macs"]) == (0, kernel * 3 * 3)


def test_memory_bytes_exact_and_rounded_once_for_the_model():
    inputs = keras.Input((3,))
    x = QuantDense(3, **BINARY, name="a")(inputs)
    x = QuantDense(3, **BINARY, name="b")(x)
    outputs = keras.layers.BatchNormalization(name="bn")(x)
    result = profile(keras.Model(inputs, outputs))
    rows = rows_by_name(result)
    # 9 one-bit weights per dense layer: 2 bytes each when rounded alone.
    assert rows["a"]["memory_bytes"] == rows["b"]["memory_bytes"] == 2
    # gamma, beta, moving mean, moving variance: 4 x 3 floats.
    assert rows["bn"]["memory_bytes"] == 4 * 3 * 4 == 48
    # The model rounds its 18 + 384 bits once: 50.25 -> 51 bytes, not 2 + 2 + 48.
    assert result["totals"]["memory_bytes"] == ceil_div(9 + 9 + 12 * 32, 8) == 51


def test_depthwise_macs():
    inputs = keras.Input((6, 6, 4))
    outputs = QuantDepthwiseConv2D(
        3,
        depth_multiplier=2,
        input_quantizer="ste_sign",
        depthwise_quantizer="ste_sign",
        use_bias=False,
        name="dw",
    )(inputs)
    row = rows_by_name(profile(keras.Model(inputs, outputs)))["dw"]
    assert row["output_shape"] == (None, 4, 4, 8)
    assert row["binary_params"] == 3 * 3 * 4 * 2
    assert (row["binary_macs"], row["fp_macs"]) == (3 * 3 * 4 * 2 * 4 * 4, 0)


def small_block(inputs):
    x = QuantConv2D(8, 3, **BINARY, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.layers.MaxPool2D(2, name="pool")(x)


def small_head(x):
    x = keras.layers.Flatten(name="flat")(x)
    return QuantDense(10, **BINARY, name="dense")(x)


def test_nested_model_counts_equal_flat_model():
    inputs = keras.Input((10, 10, 3))
    flat = keras.Model(inputs, small_head(small_block(inputs)))

    block_inputs = keras.Input((10, 10, 3))
    block = keras.Model(block_inputs, small_block(block_inputs), name="block")
    outer_inputs = keras.Input((10, 10, 3))
    nested = keras.Model(outer_inputs, small_head(block(outer_inputs)))

    flat_result, nested_result = profile(flat), profile(nested)
    assert nested_result["totals"] == flat_result["totals"]
    assert nested_result["totals"]["total_params"] == nested.count_params()
    nested_rows = rows_by_name(nested_result)
    assert nested_rows["block/conv"] == {**rows_by_name(flat_result)["conv"], "name": "block/conv"}
    assert "block" not in nested_rows  # the nested model's own row would count it twice
    # By hand: conv 8x8 output, pool to 4x4.
    assert flat_result["totals"]["binary_macs"] == 3 * 3 * 3 * 8 * 8 * 8 + 4 * 4 * 8 * 10


def test_sequential_without_input_uses_build_shape():
    model = keras.Sequential([QuantDense(4, **BINARY, name="d"), keras.layers.Dense(2, name="e")])
    model.build((None, 6))
    rows = rows_by_name(profile(model))
    assert rows["d"]["output_shape"] == (None, 4)
    assert rows["d"]["binary_macs"] == 24
    assert rows["e"]["fp_macs"] == 8


def test_unfixed_spatial_size_counts_no_macs_and_says_so():
    inputs = keras.Input((None, None, 3))
    outputs = QuantConv2D(4, 3, **BINARY, name="fcn")(inputs)
    lines = []
    result = summary_module.summary(keras.Model(inputs, outputs), print_fn=lines.append)
    assert result["totals"]["binary_macs"] == result["totals"]["fp_macs"] == 0
    assert "MACs not counted" in lines[-1] and "fcn" in lines[-1]


def test_unbuilt_model_raises():
    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        profile(model)


def test_summary_prints_table_and_returns_profile():
    model = binarynet_cifar10()
    lines = []
    result = summary_module.summary(model, print_fn=lines.append)
    text = "\n".join(lines)

    assert result == profile(model)
    for layer in model.layers:
        assert layer.name in text
    total_row = next(line for line in lines if line.startswith("Total "))
    assert "10,352,000" in total_row and "11,550" in total_row
    assert "Total params: 10,363,550" in text
    assert "Binary (1-bit) params: 10,352,000" in text
    assert "Full-precision params: 11,550" in text
    # 1,340,200 bytes / 1024**2 = 1.278 MiB; float32: 41,454,200 B = 39.53 MiB.
    assert "Model size: 1.28 MiB" in text
    assert "39.53 MiB" in text
    assert "0.0323" in text
    # Aligned: the header and a row end their last (right-aligned) column together.
    table = [line for line in lines if line.startswith(("Layer", "quant_conv2d "))]
    assert len({len(line) for line in table}) == 1


class ScaledConv(keras.Model):
    """A subclassed model with a variable of its own, outside any layer."""

    def __init__(self):
        super().__init__(name="scaled")
        self.conv = QuantConv2D(4, 3, **BINARY, name="conv")
        self.scale = self.add_weight(shape=(4,), name="scale")

    def call(self, inputs):
        return self.conv(inputs) * self.scale


def test_subclassed_model_with_own_weights_and_a_shared_layer():
    model = ScaledConv()
    model(keras.ops.zeros((2, 8, 8, 2)))  # built by a call with batch 2
    result = profile(model)
    rows = rows_by_name(result)
    assert rows["conv"]["output_shape"] == (None, 6, 6, 4)  # per example, not batch 2
    assert rows["conv"]["binary_macs"] == 3 * 3 * 2 * 4 * 6 * 6
    assert rows["scaled"]["type"] == "ScaledConv, own weights"
    assert rows["scaled"]["fp_params"] == 4
    assert result["totals"]["total_params"] == 3 * 3 * 2 * 4 + 4 == model.count_params()

    shared = keras.layers.Dense(3, name="shared")
    first, second = keras.Input((5,)), keras.Input((5,))
    two_calls = keras.Model([first, second], [shared(first), shared(second)])
    totals = profile(two_calls)["totals"]
    assert totals["total_params"] == 5 * 3 + 3 == two_calls.count_params()
    assert totals["fp_macs"] == 15  # counted for one call, as larq does
