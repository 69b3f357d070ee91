"""The paper's models, registered by name.

Each module defines one builder ``build(hparams, input_shape, num_classes) ->
keras.Model`` and registers it with ``@MODELS.register("<name>")``. ``hparams`` is the
resolved hyperparameter set (a dict); builders read their architecture keys from it.
Importing this package imports Keras (TensorFlow); the CLI does so only in commands.
"""

import importlib
import re

from bnno.errors import UsageError
from bnno.registry import Registry

MODELS = Registry("model")

_MODULES = ("binarynet", "binary_alexnet", "xnornet", "birealnet")

# Other names users type: the paper's README trains "alexnet".
ALIASES = {"alexnet": "binary_alexnet"}


def option(hparams: dict, key: str, default):
    """``hparams[key]`` (``default`` when absent), with the YAML string "none" as None:
    how builders read optional quantizers, constraints and regularizers."""
    value = hparams.get(key, default)
    return None if value is None or str(value).lower() == "none" else value


def batch_normalization(**kwargs):
    """Batch normalization (``bnno.nn.layers.BatchNormalization``: Keras' layer on
    TensorFlow's fused kernel), with its statistics taken over the global batch when
    training runs on several replicas.

    Per-replica statistics would make a run's result depend on how many GPUs share the
    batch; synchronized ones make a distributed run equal to a single-device run with
    the same global batch. On one device the plain layer is kept: Keras' synchronized
    path computes the moments by another formula.
    """
    import tensorflow as tf

    from bnno.nn.layers import BatchNormalization

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return BatchNormalization(synchronized=replicas > 1, **kwargs)


def _import_all():
    for module in _MODULES:
        importlib.import_module(f"bnno.models.{module}")


def canonical(name: str) -> str:
    """The registered name of ``name`` (resolving aliases); ``UsageError`` if unknown."""
    _import_all()
    name = ALIASES.get(name, name)
    MODELS.get(name)  # raises with the valid names and the closest one
    return name


def get(name: str):
    """The builder registered as ``name`` (or an alias); ``UsageError`` if none."""
    return MODELS.get(canonical(name))


def names():
    _import_all()
    return MODELS.names()


def build(name: str, hparams: dict, input_shape: tuple, num_classes: int):
    """Build model ``name`` for images of ``input_shape`` and ``num_classes`` classes.

    A model that cannot take such images (XNOR-Net's 6x6 "valid" convolution needs
    ImageNet-sized inputs) is a ``UsageError`` naming the shape, not a Keras traceback.
    """
    builder = get(name)
    try:
        return builder(hparams, tuple(input_shape), int(num_classes))
    except ValueError as error:
        if isinstance(error, UsageError):
            raise
        reason = _keras_reason(str(error))
        raise UsageError(
            f"Model {name} cannot be built for images of shape {tuple(input_shape)} "
            f"({reason}); use larger images, e.g. with --image-size, or another model."
        ) from None


def _keras_reason(message: str) -> str:
    """The informative line of a Keras layer error (it wraps the cause in context)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in message.splitlines()]
    for line in lines:
        if line and not line.startswith(("Exception encountered", "Arguments received", "\u2022")):
            return line.rstrip(".")
    return lines[0] if lines else "unknown reason"
