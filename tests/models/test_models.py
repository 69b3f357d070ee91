"""The paper's four models: exact parameter counts, which kernels are binary, the
layers that carry the architecture, and a forward pass that yields probabilities.

The expected counts are those of the paper's original (larq) models, written out as
literals rather than computed by the code under test.
"""


import keras
import numpy as np
import pytest

from bnno import hparams, models
from bnno.errors import UsageError
from bnno.nn import constraints, quantizers
from bnno.nn.layers import QuantConv2D, QuantDense

IMAGENET = ((224, 224, 3), 1000)


def hparams_sets(model: str) -> dict:
    """The sets of ``model`` (``hparams/<model>.yaml``), each merged over the set it ``extends``."""
    return {name: hparams.load(model, name) for name in hparams.set_names(model)}


def build(model: str, set_name: str, input_shape, num_classes):
    return models.get(model)(hparams_sets(model)[set_name], input_shape, num_classes)


def binary_params(model: keras.Model) -> int:
    return sum(
        int(np.prod(v.shape)) for v in model.weights if getattr(v, "precision", None) == 1
    )


def quantized_layers(model: keras.Model):
    return [layer for layer in model.layers if isinstance(layer, (QuantConv2D, QuantDense))]


EXPECTED_COUNTS = {
    # model: (input_shape, num_classes, total parameters, binary kernel elements)
    "binarynet": ((32, 32, 3), 10, 10_363_550, 10_352_000),
    "binary_alexnet": (*IMAGENET, 61_869_664, 61_827_776),
    "xnornet": (*IMAGENET, 62_406_432, 58_236_928),
    "birealnet": (*IMAGENET, 11_699_112, 10_985_472),
}


# Module scope and parametrized: pytest runs every test of one (model, set) before it
# builds the next, so each ~60M-parameter model is built once and only one is alive.
@pytest.fixture(
    scope="module",
    params=[
        ("binarynet", "bop"),
        ("binarynet", "default"),
        ("binary_alexnet", "bop"),
        ("binary_alexnet", "adam"),
        ("xnornet", "bop"),
        ("xnornet", "adam"),
        ("birealnet", "bop"),
        ("birealnet", "adam"),
    ],
    ids="-".join,
)
def paper_model(request):
    """(model name, set name, the model built at the paper's input size)."""
    model, set_name = request.param
    keras.utils.set_random_seed(1234)
    built = build(model, set_name, *EXPECTED_COUNTS[model][:2])
    yield model, set_name, built
    del built
    keras.backend.clear_session()


def test_all_four_models_are_registered():
    assert {"binary_alexnet", "binarynet", "birealnet", "xnornet"} <= set(models.names())


def test_parameter_counts_match_the_paper(paper_model):
    model, _, built = paper_model
    _, _, total, binary = EXPECTED_COUNTS[model]
    assert built.count_params() == total
    # Bop's "noop" and the baselines' sign quantizers both mark the kernels binary.
    assert binary_params(built) == binary


def test_quantized_layers_take_the_sets_kernel_quantizer_and_constraint(paper_model):
    model, set_name, built = paper_model
    hparams = hparams_sets(model)[set_name]
    expected_quantizer = quantizers.get(hparams["kernel_quantizer"])
    for layer in quantized_layers(built):
        assert layer.kernel_quantizer == expected_quantizer
        assert layer.kernel.precision == 1
        assert not layer.use_bias
        if hparams["kernel_constraint"] == "weight_clip":
            assert isinstance(layer.kernel_constraint, constraints.WeightClip)
        else:
            assert layer.kernel_constraint is None


@pytest.mark.parametrize(
    "model, input_shape, num_quantized",
    [("binarynet", (32, 32, 3), 9), ("binary_alexnet", (64, 64, 3), 8)],
)
def test_only_the_first_quantized_layer_sees_unquantized_inputs(
    model, input_shape, num_quantized
):
    built = build(model, "bop", input_shape, 10)
    first, *rest = quantized_layers(built)
    assert first.input_quantizer is None
    assert len(rest) == num_quantized - 1
    assert all(layer.input_quantizer == quantizers.SteSign() for layer in rest)


def test_binarynet_first_convolution_is_valid_the_rest_same():
    built = build("binarynet", "bop", (32, 32, 3), 10)
    convolutions = [layer for layer in built.layers if isinstance(layer, QuantConv2D)]
    assert [layer.padding for layer in convolutions] == ["valid"] + ["same"] * 5
    assert [layer.filters for layer in convolutions] == [128, 128, 256, 256, 512, 512]
    norms = [
        layer for layer in built.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(norms) == 9
    assert all(not norm.scale and norm.momentum == 0.99 for norm in norms)


def test_xnornet_regularizes_its_two_full_precision_kernels():
    built = build("xnornet", "bop", *IMAGENET)
    assert len(built.losses) == 2
    full_precision = [
        layer
        for layer in built.layers
        if type(layer) in (keras.layers.Conv2D, keras.layers.Dense)
    ]
    assert len(full_precision) == 2
    expected = sum(5e-7 * np.sum(np.square(layer.kernel.numpy())) for layer in full_precision)
    np.testing.assert_allclose(sum(float(loss) for loss in built.losses), expected, rtol=1e-5)


@pytest.mark.parametrize("amount", [0.0, None])
def test_xnornet_without_regularization_has_no_losses(amount):
    hparams = {**hparams_sets("xnornet")["bop"], "kernel_regularization": amount}
    if amount is None:
        del hparams["kernel_regularization"]
    # 224x224: the 6x6 "valid" convolution needs the full ImageNet resolution.
    built = models.get("xnornet")(hparams, (224, 224, 3), 10)
    assert built.losses == []


def test_birealnet_has_16_residual_blocks_and_3_projection_shortcuts():
    built = build("birealnet", "bop", *IMAGENET)
    layers = built.layers
    assert sum(isinstance(layer, keras.layers.Add) for layer in layers) == 16
    assert sum(isinstance(layer, QuantConv2D) for layer in layers) == 16
    projections = [
        layer
        for layer in layers
        if type(layer) is keras.layers.Conv2D and layer.kernel_size == (1, 1)
    ]
    assert [layer.filters for layer in projections] == [128, 256, 512]
    assert sum(isinstance(layer, keras.layers.AveragePooling2D) for layer in layers) == 3
    assert all(
        layer.input_quantizer == quantizers.ApproxSign() for layer in quantized_layers(built)
    )
    assert built.output_shape == (None, 1000)


@pytest.mark.parametrize(
    "model, input_shape, num_classes",
    [
        ("binarynet", (32, 32, 3), 10),
        ("binary_alexnet", (64, 64, 3), 10),
        ("birealnet", (64, 64, 3), 10),
    ],
)
@pytest.mark.parametrize("training", [False, True])
def test_forward_pass_yields_probabilities(model, input_shape, num_classes, training):
    built = models.get(model)(hparams_sets(model)["bop"], input_shape, num_classes)
    images = np.random.default_rng(0).normal(size=(2, *input_shape)).astype(np.float32)
    probabilities = built(images, training=training).numpy()
    assert probabilities.shape == (2, num_classes)
    assert probabilities.dtype == np.float32
    assert np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_xnornet_forward_pass_on_imagenet_sized_input():
    # 224x224: the 6x6 "valid" convolution needs the full ImageNet resolution.
    built = build("xnornet", "bop", (224, 224, 3), 10)
    image = np.random.default_rng(0).normal(size=(1, 224, 224, 3)).astype(np.float32)
    probabilities = built(image, training=False).numpy()
    assert probabilities.shape == (1, 10)
    np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-5)


def test_absent_optional_keys_fall_back_to_the_papers_bop_model():
    built = models.get("birealnet")({}, (64, 64, 3), 10)
    for layer in quantized_layers(built):
        assert layer.input_quantizer == quantizers.ApproxSign()
        assert layer.kernel_quantizer == quantizers.NoOp(precision=1)
        assert layer.kernel_constraint is None


def test_a_model_round_trips_through_keras_saving(tmp_path):
    built = build("birealnet", "adam", (64, 64, 3), 10)
    path = tmp_path / "birealnet.keras"
    built.save(path)
    loaded = keras.saving.load_model(path)
    images = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(
        loaded(images, training=False).numpy(), built(images, training=False).numpy(), rtol=1e-6
    )


# --- normalization, and "A Bop and Beyond"'s model names ----------------------------------


def normalization_layers(built: keras.Model):
    kinds = (keras.layers.BatchNormalization, keras.layers.LayerNormalization)
    return [type(layer).__name__ for layer in built.layers if isinstance(layer, kinds)]


@pytest.mark.parametrize(
    "model, input_shape, count",
    [("binarynet", (32, 32, 3), 9), ("xnornet", IMAGENET[0], 8), ("birealnet", (64, 64, 3), 20)],
)
def test_layer_normalization_replaces_every_batch_norm(model, input_shape, count):
    # "A Bop and Beyond"'s code (its binarynet, xnornet and birealnet): Keras'
    # LayerNormalization() with its defaults wherever the Bop paper has batch norm.
    small = {"filters": 8, "dense_units": 16} if model == "binarynet" else {}
    bop = {**hparams_sets(model)["bop"], **small}
    assert normalization_layers(models.get(model)(bop, input_shape, 10)) == ["BatchNormalization"] * count
    layer_norm = models.get(model)({**bop, "normalization": "layer"}, input_shape, 10)
    assert normalization_layers(layer_norm) == ["LayerNormalization"] * count
    for layer in layer_norm.layers:
        if isinstance(layer, keras.layers.LayerNormalization):
            assert (layer.axis, layer.epsilon, layer.center, layer.scale) == ([-1], 1e-3, True, True)


def test_binarynets_bop2ndorder_sets_use_layer_norm_and_binarynet_batch_batch_norm():
    small = {"filters": 8, "dense_units": 16}
    for model, expected in (("binarynet", "LayerNormalization"), ("binarynet_batch", "BatchNormalization")):
        hparams = {**hparams_sets(model)["bop2ndOrder"], **small}
        assert normalization_layers(models.get(model)(hparams, (32, 32, 3), 10)) == [expected] * 9


def test_the_batch_names_are_the_batch_norm_models_and_refuse_another_normalization():
    assert {"binarynet_batch", "xnornet_batch", "birealnet_batch"} <= set(models.names())
    built = build("birealnet_batch", "bop2ndOrder_ImageNet", (64, 64, 3), 10)
    assert built.count_params() == build("birealnet", "bop", (64, 64, 3), 10).count_params()
    with pytest.raises(UsageError) as error:
        models.get("binarynet_batch")({"normalization": "layer"}, (32, 32, 3), 10)
    assert str(error.value) == (
        "binarynet_batch always uses batch normalization; for normalization=layer train binarynet instead."
    )


def test_every_model_has_sets_and_every_file_of_sets_a_model():
    # `bnno list` lists each model with its sets: the two registries must agree.
    assert models.names() == hparams.model_names()


def test_builders_declare_their_keys_and_defaults_in_one_place():
    """``@register(name, key=default, ...)``: a builder reads its keys with no default of
    its own; a set that lacks one gets the declared default, and "none" reads as None."""
    assert models.get("binarynet").keys == {
        "filters": 128, "dense_units": 1024, "kernel_size": 3, "input_quantizer": "ste_sign",
        "kernel_quantizer": "noop", "kernel_constraint": None,
    }
    assert models.get("resnet18_tricks").keys["channel_scale"] is False
    assert models.with_defaults({"filters": 8, "kernel_constraint": "none"}, models.get("binarynet").keys) == {
        "filters": 8, "dense_units": 1024, "kernel_size": 3, "input_quantizer": "ste_sign",
        "kernel_quantizer": "noop", "kernel_constraint": None,
    }
    model = models.build("binarynet", {"normalization": "batch"}, (16, 16, 3), 4)  # every key by default
    assert [layer.filters for layer in model.layers if hasattr(layer, "filters")] == [128, 128, 256, 256, 512, 512]
