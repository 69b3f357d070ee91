"""ImageNet (``imagenet2012``) preprocessing of the paper, EfficientNet style.

Reproduces ``bnn_optimization/data/imagenet.py`` of plumerai/rethinking-bnn-optimization
(itself adapted from tensorflow/tpu ``models/official/efficientnet/preprocessing.py``).
The functions take undecoded JPEG bytes (tfds ``SkipDecoding``) so that training decodes
only the sampled crop:

- training: a random crop covering 8%..100% of the image with aspect ratio 3/4..4/3
  (``sample_distorted_bounding_box``, 10 attempts), decoded with
  ``decode_and_crop_jpeg`` and resized bicubically to 224x224; when the sample is the
  whole image (all attempts failed: the paper's "bad" case) the evaluation crop is used
  instead; then a random left-right flip;
- evaluation: the central square of side 224/256 of the shorter side, resized
  bicubically to 224x224;
- both: per channel ``(x - mean) / std`` with ImageNet's mean and std of RGB in [0, 255].

Differences from the paper's code, on purpose:

- random ops are stateless (``stateless_sample_distorted_bounding_box``,
  ``stateless_random_flip_left_right``) so a run can be resumed on exactly its data;
- resizing uses ``tf.image.resize(method="bicubic")`` instead of the paper's
  ``tf.compat.v1.image.resize_bicubic`` (deprecated, to be removed). The v1 op maps
  pixel corners, not centers (``half_pixel_centers=False``), so its output is shifted
  by up to half an output pixel, and its cubic kernel is a = -0.75 instead of -0.5.
  Measured on photographs: 1-2 grey levels per pixel on average when a crop is
  enlarged to 224x224, about 7 when a whole 600x512 photo is shrunk. Neither clips nor
  antialiases.
"""

import tensorflow as tf

from bnno.data.preprocess import ImageSpec, Preprocess, register

IMAGE_SIZE = 224
CROP_PADDING = 32

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def resize_bicubic(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """float32 ``image_size`` x ``image_size`` bicubic resize (values may overshoot
    [0, 255] slightly, as in the paper, which did not clip either)."""
    return tf.image.resize(image, [image_size, image_size], method="bicubic")


def decode_and_center_crop(image_bytes: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """Central square of side ``image_size / (image_size + 32)`` of the shorter side,
    decoded straight from the JPEG and resized to ``image_size``."""
    shape = tf.image.extract_jpeg_shape(image_bytes)
    height, width = shape[0], shape[1]
    crop_size = tf.cast(
        (image_size / (image_size + CROP_PADDING)) * tf.cast(tf.minimum(height, width), tf.float32),
        tf.int32,
    )
    offset_height = ((height - crop_size) + 1) // 2
    offset_width = ((width - crop_size) + 1) // 2
    crop_window = tf.stack([offset_height, offset_width, crop_size, crop_size])
    image = tf.image.decode_and_crop_jpeg(image_bytes, crop_window, channels=3)
    return resize_bicubic(image, image_size)


def distorted_bounding_box_crop(image_bytes: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Decode a random crop of the JPEG: at least 10% of the image (the single
    bounding box is the whole image), aspect ratio 3/4..4/3, area 8%..100%, 10
    attempts, else the whole image."""
    shape = tf.image.extract_jpeg_shape(image_bytes)
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], dtype=tf.float32, shape=[1, 1, 4])
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=whole_image,
        seed=seed,
        min_object_covered=0.1,
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    offset_y, offset_x, _ = tf.unstack(begin)
    target_height, target_width, _ = tf.unstack(size)
    crop_window = tf.stack([offset_y, offset_x, target_height, target_width])
    return tf.image.decode_and_crop_jpeg(image_bytes, crop_window, channels=3)


def decode_and_random_crop(image_bytes: tf.Tensor, seed: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """The training crop, resized to ``image_size``; the center crop if the sampled
    crop is the whole image."""
    image = distorted_bounding_box_crop(image_bytes, seed)
    original_shape = tf.image.extract_jpeg_shape(image_bytes)
    # As in the paper, all 3 entries of [height, width, channels] must agree. For a
    # grayscale JPEG (channels 1 in the file, 3 decoded) this never holds, so a failed
    # sample of such an image is the whole image, resized, not the center crop.
    bad = tf.reduce_sum(tf.cast(tf.equal(original_shape, tf.shape(image)), tf.int32)) >= 3
    return tf.cond(
        bad,
        lambda: decode_and_center_crop(image_bytes, image_size),
        lambda: resize_bicubic(image, image_size),
    )


def normalize(image: tf.Tensor) -> tf.Tensor:
    """Per channel ``(x - mean) / std`` with ImageNet's statistics."""
    return (image - tf.constant(MEAN_RGB)) / tf.constant(STDDEV_RGB)


def preprocess_image(image_bytes: tf.Tensor, training: bool, seed=None, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """The paper's ``preprocess_image``: JPEG bytes to a normalized float32 image of
    shape (image_size, image_size, 3). ``seed`` (int tensor of shape [2]) drives the
    random crop and flip of training."""
    if training:
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
        image = decode_and_random_crop(image_bytes, crop_seed, image_size)
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    else:
        image = decode_and_center_crop(image_bytes, image_size)
    image = tf.reshape(image, [image_size, image_size, 3])
    return normalize(tf.cast(image, tf.float32))


@register("default", "imagenet2012", default=True)
def default(spec: ImageSpec) -> Preprocess:
    """The paper's ImageNet preprocessing (see the module docstring) at 224x224, or at
    ``image_size`` x ``image_size`` when one is asked for."""
    image_size = spec.size or IMAGE_SIZE
    return Preprocess(
        input_shape=(image_size, image_size, 3),
        prepare=tf.identity,
        train=lambda image_bytes, seed: preprocess_image(image_bytes, True, seed, image_size),
        evaluate=lambda image_bytes: preprocess_image(image_bytes, False, image_size=image_size),
        decodes_jpeg=True,
    )
