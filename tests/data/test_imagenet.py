"""The paper's ImageNet preprocessing, on JPEG bytes encoded here."""

import numpy as np
import pytest
import tensorflow as tf

from bnno.data import imagenet
from bnno.data.preprocess import ImageSpec

MEAN = np.array(imagenet.MEAN_RGB, dtype=np.float32)
STD = np.array(imagenet.STDDEV_RGB, dtype=np.float32)
# JPEG (quality 100) and bicubic ringing move uniform regions by a grey level or two.
TOLERANCE = 3.0 / STD.min()

LEFT, RIGHT, OUTSIDE = (200, 120, 40), (30, 90, 220), (255, 255, 255)


def jpeg(image: np.ndarray) -> tf.Tensor:
    # Full-resolution chroma: subsampled chroma bleeds one pixel across region edges.
    return tf.io.encode_jpeg(tf.constant(image, dtype=tf.uint8), quality=100, chroma_downsampling=False)


def normalized(color) -> np.ndarray:
    return (np.array(color, dtype=np.float32) - MEAN) / STD


def two_color_center(height=256, width=320) -> np.ndarray:
    """OUTSIDE everywhere but the evaluation crop of a 256x320 image (224x224 at rows
    16..240, columns 48..272), whose left half is LEFT and right half RIGHT. Region
    edges fall on JPEG block edges, so the colors decode cleanly."""
    image = np.full((height, width, 3), OUTSIDE, dtype=np.uint8)
    image[16:240, 48:160] = LEFT
    image[16:240, 160:272] = RIGHT
    return image


def test_evaluation_is_the_center_crop():
    out = imagenet.preprocess_image(jpeg(two_color_center()), training=False).numpy()
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    # Crop side int(224/256 * 256) = 224 at offsets ((256-224)+1)//2 = 16 and
    # ((320-224)+1)//2 = 48: exactly the two-color square, nothing of OUTSIDE.
    np.testing.assert_allclose(out[:, :108], np.broadcast_to(normalized(LEFT), (224, 108, 3)), atol=TOLERANCE)
    np.testing.assert_allclose(out[:, 116:], np.broadcast_to(normalized(RIGHT), (224, 108, 3)), atol=TOLERANCE)


def test_evaluation_crop_scales_with_the_shorter_side():
    """A 512x640 image: crop side int(224/256 * 512) = 448 at offsets 32 and 96,
    shrunk to 224; the same picture at twice the size gives the same output."""
    small = two_color_center()
    large = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    out_small = imagenet.preprocess_image(jpeg(small), training=False).numpy()
    out_large = imagenet.preprocess_image(jpeg(large), training=False).numpy()
    np.testing.assert_allclose(out_large[:, :100], out_small[:, :100], atol=TOLERANCE)
    np.testing.assert_allclose(out_large[:, 124:], out_small[:, 124:], atol=TOLERANCE)


def test_training_crop_is_seeded():
    rng = np.random.default_rng(0)
    image_bytes = jpeg(rng.integers(0, 256, size=(200, 300, 3)))
    seed = tf.constant([3, 4], tf.int64)
    out = imagenet.preprocess_image(image_bytes, training=True, seed=seed).numpy()
    assert out.shape == (224, 224, 3) and out.dtype == np.float32 and np.isfinite(out).all()
    again = imagenet.preprocess_image(image_bytes, training=True, seed=seed).numpy()
    np.testing.assert_array_equal(out, again)
    other = imagenet.preprocess_image(image_bytes, training=True, seed=tf.constant([3, 5], tf.int64)).numpy()
    assert not np.array_equal(out, other)


def test_training_falls_back_to_the_center_crop():
    """No crop of a 16x400 image has an aspect ratio in 3/4..4/3 and 8% of its area,
    so every sample is the whole image (the paper's "bad" case): the training image is
    the evaluation center crop, possibly flipped."""
    rng = np.random.default_rng(1)
    image_bytes = jpeg(rng.integers(0, 256, size=(16, 400, 3)))
    center = imagenet.preprocess_image(image_bytes, training=False).numpy()
    for seed in range(4):
        out = imagenet.preprocess_image(image_bytes, training=True, seed=tf.constant([seed, 0], tf.int64)).numpy()
        assert np.array_equal(out, center) or np.array_equal(out, center[:, ::-1])


@pytest.mark.parametrize("size", [None, 96])
def test_registered_default(size):
    functions = imagenet.default(ImageSpec((None, None, 3), tf.uint8, size))
    side = size or 224
    assert functions.input_shape == (side, side, 3) and functions.decodes_jpeg
    image_bytes = jpeg(two_color_center())
    assert functions.evaluate(image_bytes).shape == (side, side, 3)
    assert functions.train(image_bytes, tf.constant([0, 0], tf.int64)).shape == (side, side, 3)


def test_normalization_constants():
    """ImageNet's RGB mean and std, in [0, 255], as in the paper."""
    np.testing.assert_allclose(MEAN, [123.675, 116.28, 103.53], rtol=1e-6)
    np.testing.assert_allclose(STD, [58.395, 57.12, 57.375], rtol=1e-6)
