"""The paper's models, registered by name.

Each module defines one builder ``build(hparams, input_shape, num_classes) ->
keras.Model`` and registers it with ``@register("<name>", key=default, ...)``, declaring
the architecture keys it reads and their defaults in one place (as timm's model
configs do). ``hparams`` is the resolved hyperparameter set (a mapping); the builder
receives it over those defaults, so it reads ``hparams["filters"]`` with no default of
its own.
Importing this package imports Keras; the CLI does so only in commands. On Keras's
JAX backend the models build without TensorFlow.
"""

import functools
import importlib
import re
from typing import Any, Dict

from bnno.errors import UsageError
from bnno.registry import Registry

MODELS = Registry("model")

_MODULES = ("binarynet", "binary_alexnet", "xnornet", "birealnet", "resnet18_tricks")

# Other names users type: the paper's README trains "alexnet".
ALIASES = {"alexnet": "binary_alexnet"}


def register(name: str, **keys: Any):
    """Register the decorated builder as model ``name``; ``keys`` are the architecture
    keys it reads, with their defaults. The builder receives the set's values over these
    defaults, the YAML word "none" as None (:func:`with_defaults`); ``builder.keys``
    lists them."""

    def decorator(builder):
        @functools.wraps(builder)
        def build(hparams, input_shape, num_classes):
            return builder(with_defaults(hparams, keys), input_shape, num_classes)

        build.keys = dict(keys)
        return MODELS.register(name)(build)

    return decorator


def register_model(name: str, **keys: Any):
    """Register a model from outside bnno (a plugin: ``bnno.plugins``); the same as
    :func:`register`, but a name that bnno's models (or their aliases) or another
    plugin already use is refused with a ``UsageError``."""
    from bnno import plugins

    _import_all()
    if name in MODELS or name in ALIASES:
        owner = plugins.plugin_of(ALIASES.get(name, name))
        taken_by = f"plugin {owner.given}" if owner else "one of bnno's own models"
        raise UsageError(f"Model name '{name}' is taken by {taken_by}; register yours under another name.")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"A model's name must be a non-empty string, not {name!r}.")
    decorator = register(name, **keys)

    def registering(builder):
        if not callable(builder):
            raise UsageError(f"register_model('{name}') decorates a function, not {type(builder).__name__}.")
        registered = decorator(builder)
        plugins.note_model(name)
        return registered

    return registering


def with_defaults(hparams, keys: Dict[str, Any]) -> Dict[str, Any]:
    """``hparams`` (a fresh dict) with each of ``keys`` the set lacks at its default, and
    the YAML word "none" as None: how builders read optional quantizers, constraints and
    regularizers."""
    values = dict(hparams)
    for key, default in keys.items():
        value = values.get(key, default)
        values[key] = None if value is None or str(value).lower() == "none" else value
    return values


def batch_normalization(**kwargs):
    """Batch normalization (``bnno.nn.layers.BatchNormalization``: Keras' layer on
    TensorFlow's fused kernel), with its statistics taken over the global batch when
    training runs on several replicas.

    Per-replica statistics would make a run's result depend on how many GPUs share the
    batch; synchronized ones make a distributed run equal to a single-device run with
    the same global batch. On one device the plain layer is kept: Keras' synchronized
    path computes the moments by another formula.
    """
    import keras

    from bnno.nn.layers import BatchNormalization

    replicas = 1
    if keras.backend.backend() == "tensorflow":  # other backends: no tf.distribute
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return BatchNormalization(synchronized=replicas > 1, **kwargs)


def normalization(hparams: dict, **batch_norm_args):
    """The normalization layer that ``hparams["normalization"]`` names.

    ``"batch"`` (the default): :func:`batch_normalization` with ``batch_norm_args``.
    ``"layer"``: Keras' ``LayerNormalization`` with its defaults (over the channels at
    each position, with a learned scale and offset; no statistics to synchronize),
    which "A Bop and Beyond"'s code (Suarez-Ramirez et al., 2021, arXiv:2104.05124) puts
    in place of every batch normalization of its ``binarynet``, ``xnornet`` and
    ``birealnet``; ``batch_norm_args`` do not apply to it.
    """
    if hparams.get("normalization", "batch") == "layer":
        import keras

        return keras.layers.LayerNormalization()
    return batch_normalization(**batch_norm_args)


def batch_normalized(hparams: dict, name: str) -> dict:
    """``hparams`` for ``name``, one of the ``<model>_batch`` names "A Bop and Beyond"'s
    code gives its models with batch normalization; a set that asks for another
    normalization is a ``UsageError``."""
    if hparams.get("normalization", "batch") != "batch":
        model = name[: -len("_batch")]
        raise UsageError(
            f"{name} always uses batch normalization; for normalization="
            f"{hparams['normalization']} train {model} instead."
        )
    return hparams


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
    from bnno import plugins

    plugin = plugins.plugin_of(canonical(name))
    try:
        model = builder(hparams, tuple(input_shape), int(num_classes))
    except ValueError as error:
        if isinstance(error, UsageError):
            raise
        reason = _keras_reason(str(error))
        raise UsageError(
            f"Model {name} cannot be built for images of shape {tuple(input_shape)} "
            f"({reason}); use larger images, e.g. with --image-size, or another model."
        ) from None
    except Exception as error:  # noqa: BLE001 - a plugin's builder: its error in one sentence
        if plugin is None or isinstance(error, UsageError):
            raise
        raise UsageError(
            f"Model {name} of plugin {plugin.given} failed to build for images of shape "
            f"{tuple(input_shape)} and {num_classes} classes: {plugins.where_it_failed(error, plugin.file)}."
        ) from None
    import keras

    if not isinstance(model, keras.Model):
        source = f"of plugin {plugin.given} " if plugin else ""
        raise UsageError(
            f"Model {name} {source}was built as a {type(model).__name__}, not a keras.Model; its "
            "builder must return one (e.g. keras.Model(inputs, outputs))."
        )
    return model


def _keras_reason(message: str) -> str:
    """The informative line of a Keras layer error (it wraps the cause in context)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in message.splitlines()]
    for line in lines:
        if line and not line.startswith(("Exception encountered", "Arguments received", "\u2022")):
            return line.rstrip(".")
    return lines[0] if lines else "unknown reason"
