"""Preprocess functions: from a stored image to the network's input, registered per
data set.

A preprocess function is registered under a name (``default``, ``resize_and_flip``)
for one data set (``cifar10``, ``imagenet2012``) or, in the generic registry, for every
other tfds image-classification data set and for image folders; one function of each
registry is its default, used when none is named (:func:`default_name`: the paper's
``resize_and_flip`` for CIFAR-10, ``default`` elsewhere). What is registered
is a *factory*: given the :class:`ImageSpec` of the stored images it returns a
:class:`Preprocess`, the three functions the pipeline applies:

- ``prepare(image)``, deterministic, before the cache (e.g. a resize to ``image_size``);
- ``train(image, seed)``, the training augmentation; all randomness comes from
  stateless ops driven by ``seed`` (an int tensor of shape [2]), so the augmentation
  of an example is a function of the seed alone;
- ``evaluate(image)``, the evaluation preprocessing.

Both of the last two end in float32 images of ``input_shape``.

The paper's CIFAR-10 preprocessing (``bnn_optimization/data/cifar10.py`` in
plumerai/rethinking-bnn-optimization) is ``resize_and_flip`` here; ImageNet's is in
:mod:`bnno.data.imagenet`.
"""

from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import tensorflow as tf

from bnno.errors import UsageError
from bnno.registry import Registry, unknown_choice_message

#: Pixels of zero padding on each side before ``resize_and_flip``'s random crop:
#: the paper pads CIFAR-10's 32x32 images to 40x40.
PAD_PIXELS = 4


class ImageSpec(NamedTuple):
    """The images a data set stores, as handed to a preprocess factory."""

    #: (height, width, channels); ``None`` for a dimension that varies between images.
    shape: Tuple[Optional[int], ...]
    #: Their dtype, ``tf.uint8`` for every tfds image and decoded image file.
    dtype: tf.DType = tf.uint8
    #: The side length the user asked for (``load(image_size=...)``), or ``None``.
    size: Optional[int] = None


class Preprocess(NamedTuple):
    """What a preprocess factory returns; see the module docstring."""

    #: Shape of one preprocessed image (``None`` where it still varies: not batchable).
    input_shape: Tuple[Optional[int], ...]
    prepare: Callable[[tf.Tensor], tf.Tensor]
    train: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    evaluate: Callable[[tf.Tensor], tf.Tensor]
    #: True if the functions take undecoded JPEG bytes (tfds ``SkipDecoding``) so they
    #: can decode only the crop they need.
    decodes_jpeg: bool = False


PreprocessFactory = Callable[[ImageSpec], Preprocess]

#: Preprocess functions for any tfds image-classification data set without its own
#: registry, and for image folders.
GENERIC: Registry = Registry("preprocess function")

#: Per data set (tfds name without version): preprocess functions of that data set.
SPECIFIC: Dict[str, Registry] = {}

#: The function each registry uses when none is named (``--preprocess-fn``): data set
#: name -> function name; ``None`` for the generic registry.
DEFAULTS: Dict[Optional[str], str] = {}


def register(
    name: str, *datasets: str, default: bool = False
) -> Callable[[PreprocessFactory], PreprocessFactory]:
    """Register a factory as preprocess function ``name`` of each of ``datasets``, or
    of the generic registry when no data set is given; with ``default``, as the
    function those data sets use when none is named."""

    keys = datasets or (None,)  # None: the generic registry

    def decorator(factory: PreprocessFactory) -> PreprocessFactory:
        taken = [key for key in keys if key in DEFAULTS] if default else []
        if taken:
            raise ValueError(f"Data set {taken[0]} would have two default preprocess functions.")
        for dataset in datasets:
            registry = SPECIFIC.setdefault(dataset, Registry(f"{dataset} preprocess function"))
            registry.register(name)(factory)
        if not datasets:
            GENERIC.register(name)(factory)
        if default:
            DEFAULTS.update(dict.fromkeys(keys, name))
        return factory

    return decorator


def register_plugin(name: str, *datasets: str) -> Callable[[PreprocessFactory], PreprocessFactory]:
    """Register a preprocess factory from outside bnno (a plugin: ``bnno.plugins``) as
    ``name``, for ``datasets`` that have functions of their own (``cifar10``,
    ``imagenet2012``) or, without any, for every other data set and image folder. Never
    a default; a name already taken is refused with a ``UsageError``."""
    for dataset in datasets:
        if dataset not in SPECIFIC:
            raise UsageError(
                f"Data set {dataset} has no preprocess functions of its own (only "
                f"{', '.join(sorted(SPECIFIC))} do); register '{name}' without a data set, so that "
                "it applies to every other data set and to image folders."
            )
    for registry in [SPECIFIC[d] for d in datasets] or [GENERIC]:
        if name in registry:
            raise UsageError(f"Preprocess function name '{name}' is taken for {registry.kind}s; "
                             "register yours under another name.")
    return register(name, *datasets)


def registry_for(dataset_key: Optional[str]) -> Registry:
    """The registry of a tfds data set name (generic if it has none); ``None`` for an
    image folder, which uses the generic one."""
    return SPECIFIC.get(dataset_key, GENERIC) if dataset_key else GENERIC


def get(dataset_key: Optional[str], name: str, label: str) -> PreprocessFactory:
    """The factory registered as ``name`` for ``dataset_key``; ``UsageError`` naming
    ``label`` (how the user wrote the data set), the valid names and the closest."""
    registry = registry_for(dataset_key)
    if name not in registry:
        raise UsageError(unknown_choice_message(f"preprocess function for {label}", name, registry.names()))
    return registry.get(name)


def names(dataset_key: Optional[str]) -> List[str]:
    return registry_for(dataset_key).names()


def default_name(dataset_key: Optional[str]) -> str:
    """The preprocess function ``dataset_key`` (a tfds name without version; ``None``
    for an image folder) uses when none is named: its registry's default."""
    return DEFAULTS[dataset_key if dataset_key in SPECIFIC else None]


def scale_to_unit_range(image: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """float32 image in [-1, 1] from integer pixels in [0, dtype.max]; float images are
    only cast. For uint8 this is the paper's ``cast(image) / (255 / 2) - 1``."""
    if not dtype.is_integer:
        return tf.cast(image, tf.float32)
    return tf.cast(image, tf.float32) / (dtype.max / 2.0) - 1.0


def resize_to(size: int, dtype: tf.DType) -> Callable[[tf.Tensor], tf.Tensor]:
    """Bilinear resize to ``size`` x ``size``, rounded back to ``dtype``: cached images
    stay one byte per value and scale like every other image."""

    def resize(image: tf.Tensor) -> tf.Tensor:
        resized = tf.image.resize(image, [size, size], method="bilinear")
        return tf.saturate_cast(tf.round(resized), dtype) if dtype.is_integer else tf.cast(resized, dtype)

    return resize


def _prepared_shape_and_function(spec: ImageSpec):
    """(shape after ``prepare``, ``prepare``): a resize when an image size is asked for
    and differs from the stored one."""
    channels = spec.shape[-1]
    if spec.size is None or tuple(spec.shape[:2]) == (spec.size, spec.size):
        return tuple(spec.shape), tf.identity
    return (spec.size, spec.size, channels), resize_to(spec.size, spec.dtype)


def pad_crop_flip(image: tf.Tensor, seed: tf.Tensor, pad: int = PAD_PIXELS) -> tf.Tensor:
    """Zero-pad ``pad`` pixels on each side, crop back to the original size at a random
    place, flip left-right with probability 1/2 (stateless, driven by ``seed``)."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    shape = tf.shape(image)
    padded = tf.image.resize_with_crop_or_pad(image, shape[0] + 2 * pad, shape[1] + 2 * pad)
    cropped = tf.image.stateless_random_crop(padded, shape, seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(cropped, seed=flip_seed)


@register("default", "cifar10")
@register("default", default=True)
def default(spec: ImageSpec) -> Preprocess:
    """No augmentation: pixels scaled to [-1, 1] (grayscale stays one channel); resized
    first (bilinear) when an image size is asked for."""
    shape, prepare = _prepared_shape_and_function(spec)

    def evaluate(image):
        return scale_to_unit_range(image, spec.dtype)

    return Preprocess(shape, prepare, lambda image, seed: evaluate(image), evaluate)


# The paper's code registered only this function for CIFAR-10: its recipe, the default.
@register("resize_and_flip", "cifar10", default=True)
@register("resize_and_flip")
def resize_and_flip(spec: ImageSpec) -> Preprocess:
    """The paper's CIFAR-10 augmentation, for any image size: training pads 4 pixels on
    each side (32x32 -> 40x40 with ``tf.image.resize_with_crop_or_pad``), takes a random
    crop of the original size and a random left-right flip; training and evaluation then
    scale to [-1, 1]. For 32x32 images this is exactly ``resize_and_flip`` of
    ``bnn_optimization/data/cifar10.py``, with stateless random ops."""
    shape, prepare = _prepared_shape_and_function(spec)

    def train(image, seed):
        return scale_to_unit_range(pad_crop_flip(image, seed), spec.dtype)

    def evaluate(image):
        return scale_to_unit_range(image, spec.dtype)

    return Preprocess(shape, prepare, train, evaluate)
