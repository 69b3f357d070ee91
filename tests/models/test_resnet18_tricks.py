"""resnet18_tricks (CAS-CLab's BNN training tricks on ResNet-18): parameters counted
layer by layer, the tricks' block and shortcut order, its stems, and its sets' recipes."""

import keras
import numpy as np
import pytest

from bnno import hparams, models
from bnno.errors import UsageError
from bnno.models.resnet18_tricks import stem_for
from bnno.nn.layers import QuantConv2D
from bnno.nn.optimizers import is_binary_variable


def conv(k, c_in, c_out):
    return k * k * c_in * c_out  # no bias


def bn(c):
    return 4 * c  # gamma, beta, moving mean, moving variance


def prelu(c):
    return c  # one slope per channel


def expected_params(stem_kernel, num_classes, f=64, channel_scale=False):
    """ResNet-18 with double skip connections, written out layer by layer; with
    ``channel_scale``, one real factor per output channel of each binary conv."""
    total = conv(stem_kernel, 3, f) + bn(f) + prelu(f)  # stem
    channels = f
    for stage in range(4):
        out = f * 2 ** stage
        for block in range(4):  # two ResNet-18 basic blocks, each two modified blocks
            total += bn(channels) + conv(3, channels, out) + prelu(out)  # BN, binary conv, PReLU
            total += out if channel_scale else 0
            if channels != out:
                total += conv(1, channels, out) + bn(out)  # full-precision downsampling shortcut
            channels = out
    return total + channels * num_classes + num_classes  # Dense with bias


def binary_kernel_params(f=64):
    stage_in = [f, f, 2 * f, 4 * f]
    return sum(conv(3, stage_in[s], f * 2 ** s) + 3 * conv(3, f * 2 ** s, f * 2 ** s) for s in range(4))


def build(set_name, input_shape, num_classes, overrides=None):
    resolved = hparams.resolve("resnet18_tricks", set_name, overrides)
    return models.build("resnet18_tricks", resolved, input_shape, num_classes)


@pytest.mark.parametrize("set_name, input_shape, num_classes, stem_kernel, total", [
    ("stage2", (224, 224, 3), 1000, 7, 11_701_224),  # ImageNet: 7x7 stride-2 stem and max pooling
    ("stage2", (32, 32, 3), 10, 3, 11_185_674),  # CIFAR-10: 3x3 stem, no max pooling
    # stage2_bop: + one scale per output channel of the 16 binary convolutions,
    # 4 * (64 + 128 + 256 + 512) = 3,840
    ("stage2_bop", (224, 224, 3), 1000, 7, 11_705_064),
    ("stage2_bop", (32, 32, 3), 10, 3, 11_189_514),
])
def test_parameter_count_layer_by_layer(set_name, input_shape, num_classes, stem_kernel, total):
    channel_scale = set_name == "stage2_bop"
    assert expected_params(stem_kernel, num_classes, channel_scale=channel_scale) == total
    assert binary_kernel_params() == 10_985_472  # the 16 binary 3x3 convolutions
    model = build(set_name, input_shape, num_classes)
    assert model.count_params() == total
    assert sum(int(np.prod(v.shape)) for v in model.weights if is_binary_variable(v)) == 10_985_472
    assert sum(isinstance(layer, keras.layers.MaxPool2D) for layer in model.layers) == (stem_kernel == 7)
    assert model.output_shape == (None, num_classes)


def test_stage1_kernels_are_real_and_stage2_kernels_binary():
    for set_name, binary in (("stage1", 0), ("stage2", 16), ("stage2_bop", 16)):
        model = build(set_name, (32, 32, 3), 10, "filters=4")
        kernels = [layer.kernel for layer in model.layers if isinstance(layer, QuantConv2D)]
        assert len(kernels) == 16
        assert sum(is_binary_variable(k) for k in kernels) == binary, set_name


def test_blocks_and_shortcuts_follow_the_training_tricks():
    model = build("stage1", (32, 32, 3), 10, "filters=4")

    def producer(layer):
        return layer.input._keras_history.operation

    # Downsampling shortcut: 1x1 convolution (stride 1), batch norm, then 2x2 average pooling.
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.AveragePooling2D)]
    assert len(pools) == 3
    for pool in pools:
        norm = producer(pool)
        shortcut_conv = producer(norm)
        assert isinstance(norm, keras.layers.BatchNormalization)
        assert type(shortcut_conv) is keras.layers.Conv2D
        assert (shortcut_conv.kernel_size, shortcut_conv.strides) == ((1, 1), (1, 1))
        assert (pool.pool_size, pool.strides) == ((2, 2), (2, 2))
    # Block: BN, then the binary activation (the QuantConv2D's input quantizer), the
    # convolution, plus the shortcut, then PReLU.
    for layer in model.layers:
        if isinstance(layer, QuantConv2D):
            assert isinstance(producer(layer), keras.layers.BatchNormalization)
            assert layer.input_quantizer is not None and layer.input_quantizer.precision == 1
    for add in (layer for layer in model.layers if isinstance(layer, keras.layers.Add)):
        summands = [tensor._keras_history.operation for tensor in add.input]
        assert any(isinstance(summand, QuantConv2D) for summand in summands)
    prelus = [layer for layer in model.layers if isinstance(layer, keras.layers.PReLU)]
    assert len(prelus) == 17  # the stem's, then one after each block's sum
    assert all(isinstance(producer(layer), keras.layers.Add) for layer in prelus[1:])


def test_stem_follows_the_input_size_unless_named():
    assert stem_for((32, 32, 3)) == "cifar" and stem_for((127, 200, 3)) == "cifar"
    assert stem_for((128, 128, 3)) == "imagenet" and stem_for((224, 224, 3)) == "imagenet"
    assert stem_for((32, 32, 3), "imagenet") == "imagenet"
    with pytest.raises(UsageError) as error:
        stem_for((32, 32, 3), "cifr")
    assert str(error.value) == (
        "Unknown stem 'cifr' for resnet18_tricks; valid choices are: auto, cifar, imagenet. Did you mean 'cifar'?"
    )


def test_sets_carry_the_training_tricks_recipes():
    stage1 = hparams.resolve("resnet18_tricks")  # the default set
    assert hparams.default_set("resnet18_tricks") == "stage1"
    assert (stage1["epochs"], stage1["optimizer"], stage1["learning_rate"], stage1["weight_decay"]) == (
        75, "adam", 1e-3, 1e-5)
    assert (stage1["learning_rate_decay"], stage1["learning_rate_boundaries"]) == ("piecewise", [40, 60, 70])
    assert stage1["learning_rate_factors"] == [1.0, 0.1, 0.01, 0.001]
    assert (stage1["input_quantizer"], stage1["kernel_quantizer"]) == ("ste_sign", "none")
    stage2 = hparams.resolve("resnet18_tricks", "stage2")
    assert (stage2["epochs"], stage2["learning_rate"], stage2["weight_decay"]) == (350, 2e-4, 0.0)
    assert stage2["learning_rate_boundaries"] == [150, 250, 320]
    assert stage2["learning_rate_factors"] == [1.0, 0.2, 0.04, 0.008]
    assert (stage2["kernel_quantizer"], stage2["kernel_constraint"], stage2["expects_init_from"]) == (
        "magnitude_aware_sign", "weight_clip", True)
    bop = hparams.resolve("resnet18_tricks", "stage2_bop")
    assert (bop["optimizer"], bop["kernel_quantizer"], bop["channel_scale"]) == ("bop", "noop", True)
    assert bop["threshold"] == 1e-7
    assert (bop["gamma"], bop["gamma_decay"], bop["gamma_end"]) == (1e-4, "linear", 1e-6)
    assert bop["learning_rate_boundaries"] == stage2["learning_rate_boundaries"]
