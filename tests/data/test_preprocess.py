"""The generic and CIFAR-10 preprocess functions, on images built here."""

import numpy as np
import pytest
import tensorflow as tf

from bnno.data import preprocess
from bnno.data.preprocess import ImageSpec

CIFAR = ImageSpec((32, 32, 3), tf.uint8)


def arange_image(shape=(32, 32, 3)) -> tf.Tensor:
    return tf.constant((np.arange(np.prod(shape)) % 251 + 1).reshape(shape), tf.uint8)


def test_scaling_is_the_papers():
    pixels = tf.constant([0, 1, 127, 128, 255], tf.uint8)
    expected = np.array([0, 1, 127, 128, 255], np.float32) / np.float32(255.0 / 2.0) - np.float32(1.0)
    np.testing.assert_array_equal(preprocess.scale_to_unit_range(pixels, tf.uint8), expected)
    assert preprocess.scale_to_unit_range(pixels, tf.uint8).numpy()[[0, -1]].tolist() == [-1.0, 1.0]


def test_default_evaluates_and_trains_alike():
    functions = preprocess.default(CIFAR)
    image = arange_image()
    expected = preprocess.scale_to_unit_range(image, tf.uint8).numpy()
    np.testing.assert_array_equal(functions.evaluate(image), expected)
    np.testing.assert_array_equal(functions.train(image, tf.constant([1, 2], tf.int64)), expected)
    assert functions.input_shape == (32, 32, 3) and not functions.decodes_jpeg


def window(padded, y, x, flipped):
    crop = padded[y : y + 32, x : x + 32]
    return crop[:, ::-1] if flipped else crop


def test_resize_and_flip_is_a_window_of_the_40x40_padding():
    """Training output = a 32x32 window of the image zero-padded to 40x40, flipped or
    not; over seeds every flip and many offsets occur; the same seed repeats."""
    functions = preprocess.resize_and_flip(CIFAR)
    image = arange_image()
    padded = np.pad(image.numpy(), ((4, 4), (4, 4), (0, 0)))
    seen = set()
    for seed in range(40):
        out = functions.train(image, tf.constant([seed, 0], tf.int64)).numpy()
        pixels = np.round((out + 1) * 127.5).astype(np.uint8)
        matches = [
            (y, x, flipped)
            for y in range(9)
            for x in range(9)
            for flipped in (False, True)
            if np.array_equal(pixels, window(padded, y, x, flipped))
        ]
        assert len(matches) == 1
        seen.add(matches[0])
        np.testing.assert_array_equal(out, functions.train(image, tf.constant([seed, 0], tf.int64)))
    assert {flipped for _, _, flipped in seen} == {False, True}
    assert len({(y, x) for y, x, _ in seen}) > 15
    np.testing.assert_array_equal(functions.evaluate(image), preprocess.scale_to_unit_range(image, tf.uint8))


def test_cifar10_registry_holds_the_paper_functions():
    assert preprocess.registry_for("cifar10").names() == ["default", "resize_and_flip"]
    assert preprocess.get("cifar10", "resize_and_flip", "cifar10") is preprocess.resize_and_flip
    assert preprocess.registry_for("mnist") is preprocess.GENERIC
    assert preprocess.registry_for(None) is preprocess.GENERIC


@pytest.mark.parametrize(
    "dataset, expected",
    [
        # The paper's code registered only resize_and_flip for CIFAR-10: its recipe.
        ("cifar10", "resize_and_flip"),
        ("cifar10:3.0.2", "resize_and_flip"),
        ("CIFAR10", "resize_and_flip"),
        ("imagenet2012", "default"),
        ("imagenet2012_subset/10pct", "default"),
        ("mnist", "default"),
        ("./my_images", "default"),
    ],
)
def test_each_data_set_names_its_default_preprocess_function(dataset, expected):
    from bnno import data

    assert data.default_preprocess(dataset) == expected
    assert expected in data.preprocess_names(dataset if dataset != "CIFAR10" else "cifar10")


def test_a_registry_has_one_default():
    import bnno.data  # noqa: F401  (registers imagenet2012's functions too)

    assert set(preprocess.SPECIFIC) | {None} == set(preprocess.DEFAULTS)
    assert all(name in preprocess.names(key) for key, name in preprocess.DEFAULTS.items())
    with pytest.raises(ValueError, match="two default preprocess functions"):
        preprocess.register("another", "cifar10", default=True)(preprocess.default)
    assert preprocess.DEFAULTS["cifar10"] == "resize_and_flip"
    assert "another" not in preprocess.names("cifar10")


@pytest.mark.parametrize("factory", [preprocess.default, preprocess.resize_and_flip])
def test_generic_functions_keep_grayscale_and_resize(factory):
    gray = factory(ImageSpec((28, 28, 1), tf.uint8))
    assert gray.input_shape == (28, 28, 1)
    assert gray.train(arange_image((28, 28, 1)), tf.constant([0, 0], tf.int64)).shape == (28, 28, 1)

    resized = factory(ImageSpec((None, None, 3), tf.uint8, size=16))
    assert resized.input_shape == (16, 16, 3)
    prepared = resized.prepare(tf.fill([40, 30, 3], tf.constant(77, tf.uint8)))
    assert prepared.dtype == tf.uint8 and prepared.shape == (16, 16, 3)
    assert set(np.unique(prepared.numpy())) == {77}
