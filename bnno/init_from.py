"""Starting a run from another run's weights: ``bnno train ... --init-from PATH``.

Two-stage training (CAS-CLab's "Training Tricks for Binarized Neural Networks", "2-stage
training strategy": stage 1 trains real-valued weights under binary activations, stage
2 trains 1-bit weights "using the first stage model as initialization"; larq's guide
"Training BNNs": networks train much quicker when initialized from a trained
real-valued model of the same architecture). The source is

- a run directory: its ``model.keras`` when the run finished, else its newest readable
  checkpoint (its model rebuilt from its ``hparams.yaml``);
- a ``.keras`` file, or a ``.weights.h5`` file (``model.save_weights``).

**Which layers match.** Keras names layers from process-wide counters
(``quant_conv2d_3``), so the same builder gives other names in another process, or
after another model was built. bnno therefore matches layers as Keras's own weights
files address them (``keras.saving``'s ``_save_container_state``): by class, and by
position among the model's layers of that class, ``quant_conv2d``,
``quant_conv2d_1``, ... in ``model.layers`` order. Two models built by one builder
from sets that differ only in quantizers, constraints or optimizer (stage 1 and stage
2) match layer for layer, and a ``.keras`` or ``.weights.h5`` file is read by these
keys without rebuilding its model. (Stable layer names given by the builders would
not reach the files already saved, nor models built elsewhere; Keras's keys do.) Every
layer present in both must have the source's shapes: a difference means another
architecture, width or number of classes, and is refused naming the layers. Layers of
the model that the source lacks keep their initialization and are listed.

**What is copied.** Every weight of a matching layer (kernels, batch norm's moving
statistics, PReLU slopes). A kernel the run's binary optimizer trains (Bop: a variable
``Bop.is_binary_variable`` marks and a ``CaseOptimizer`` hands to Bop) takes the sign of
the source's values, with sign(0) = +1 (``bnno.nn.quantizers.binary_sign``, as larq);
latent weights (``adam`` sets) take the source's values, then their constraint
(``weight_clip``), as after every optimizer step. A binary convolution with a channel
scale (``QuantConv2D(channel_scale=True)``, ``stage2_bop``) that the source lacks takes
alpha = mean |W| of the source's kernel per output channel, so that alpha * sign(W)
computes what the source computed as closely as a binary kernel can (XNOR-Net,
section 3.1). Optimizer state starts fresh.

References:
    - CAS-CLab, "Training Tricks for Binarized Neural Networks" (a collection of BNN
      training tricks, in PyTorch),
      https://github.com/CAS-CLab/Training-Tricks-for-Binarized-Neural-Networks
    - Larq, "Training BNNs" (guide, "Tips & Tricks"),
      https://docs.larq.dev/larq/guides/bnn-optimization/
    - Helwegen et al., "Latent Weights Do Not Exist", NeurIPS 2019,
      https://arxiv.org/abs/1906.02107 (Bop's binary weights).
    - Rastegari et al., "XNOR-Net", ECCV 2016, https://arxiv.org/abs/1603.05279
      (the scaling factor alpha).
"""

import dataclasses
import io
import pathlib
import re
import zipfile
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from bnno import run_dir
from bnno.errors import RunError, UsageError

__all__ = [
    "LayerLoad", "Location", "Source", "binary_optimizer_trains", "layer_keys", "load", "locate", "read", "table",
]

#: The weights inside a ``.keras`` file (a zip archive).
KERAS_WEIGHTS_MEMBER = "model.weights.h5"
_WHAT_TO_GIVE = "give a run directory, a .keras file or a .weights.h5 file"


@dataclasses.dataclass
class Source:
    """Weights to start from: ``layers`` maps each layer's key (see the module's
    docstring) to its weights, in the layer's ``weights`` order."""

    file: pathlib.Path  # what was read: model.keras, a checkpoint prefix, a weights file
    layers: Dict[str, List[np.ndarray]]


@dataclasses.dataclass
class LayerLoad:
    """What happened to one layer of the model: ``copied``, ``signs`` (its binary kernel
    took the source's signs) or ``skipped`` (not in the source: kept as initialized)."""

    key: str
    kind: str  # the layer's class
    action: str
    scaled: bool = False  # its channel scale was set to mean |W| of the source's kernel


# --- layer keys -------------------------------------------------------------------------


def _snake_case(name: str) -> str:
    """Keras's ``to_snake_case`` (``QuantConv2D`` -> ``quant_conv2d``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def layer_keys(model) -> List[Tuple[str, object]]:
    """``(key, layer)`` for every layer of ``model``: the layer's class in snake case,
    numbered from the second layer of that class on, in ``model.layers`` order; the
    names under which Keras writes the layers' weights into ``.keras`` and
    ``.weights.h5`` files."""
    used: Dict[str, int] = {}
    keyed = []
    for layer in model.layers:
        base = _snake_case(type(layer).__name__)
        used[base] = used.get(base, -1) + 1
        keyed.append((base if used[base] == 0 else f"{base}_{used[base]}", layer))
    return keyed


# --- reading a source ---------------------------------------------------------------------


@dataclasses.dataclass
class Location:
    """Where the weights of ``--init-from`` are, found without reading them (so without
    TensorFlow: :mod:`bnno.training` checks it before building anything)."""

    given: str  # the path as the user wrote it, for messages
    kind: str  # "keras", "weights" or "checkpoints" (an unfinished run)
    file: pathlib.Path  # the .keras or .weights.h5 file, or the unfinished run's directory
    record: Optional[dict] = None  # the unfinished run's hparams.yaml


def locate(path: str) -> Location:
    """What ``path`` (a run directory, a ``.keras`` or a ``.weights.h5`` file) holds:
    a finished run its ``model.keras``, an unfinished one its checkpoints.
    ``UsageError`` when it is missing, or is neither, or has no finished epoch."""
    given = pathlib.Path(path).expanduser()
    if not given.exists():
        raise UsageError(f"--init-from {path} does not exist; {_WHAT_TO_GIVE}.")
    resolved = given.resolve()
    if resolved.is_dir():
        return _locate_in_run_directory(resolved, str(path))
    if resolved.name.endswith(".keras"):
        return Location(str(path), "keras", resolved)
    if resolved.name.endswith(".weights.h5"):
        return Location(str(path), "weights", resolved)
    raise UsageError(
        f"--init-from {path} is neither a run directory nor a .keras or .weights.h5 file; {_WHAT_TO_GIVE}."
    )


def _locate_in_run_directory(directory: pathlib.Path, given: str) -> Location:
    try:
        record = run_dir.read_record(directory)
    except RunError as error:
        raise UsageError(f"--init-from {given}: {str(error).rstrip('.')}; {_WHAT_TO_GIVE}.") from None
    from bnno import plugins

    plugins.check_record(record, f"--init-from {given}")  # its model's plugin given, unchanged
    checkpoints = run_dir.checkpoints_newest_first(directory / run_dir.CHECKPOINT_DIR)
    model_file = directory / run_dir.MODEL_FILE
    epochs = record.get("hparams", {}).get("epochs") or 0
    if model_file.exists() and (not checkpoints or run_dir.checkpoint_number(checkpoints[0]) >= epochs):
        return Location(str(model_file), "keras", model_file)  # finished
    if not checkpoints:
        raise UsageError(f"--init-from {given} has not finished an epoch yet, so it holds no weights to start from.")
    return Location(given, "checkpoints", directory, record)


def read(where: Union[str, Location]) -> Source:
    """The weights at ``where`` (a path, or its :func:`locate`); ``UsageError`` when it
    is missing or holds no model."""
    location = where if isinstance(where, Location) else locate(where)
    if location.kind == "keras":
        return Source(location.file, _read_keras_file(location.file, location.given))
    if location.kind == "weights":
        return Source(location.file, _read_weights_file(location.file, location.given))
    return _read_checkpoints(location)


def _not_a_model(path: str, reason: str) -> UsageError:
    return UsageError(f"--init-from {path} is not a Keras model ({reason}); {_WHAT_TO_GIVE}.")


def _read_keras_file(file: pathlib.Path, given: str) -> Dict[str, List[np.ndarray]]:
    try:
        with zipfile.ZipFile(file) as archive:
            weights = archive.read(KERAS_WEIGHTS_MEMBER)
    except zipfile.BadZipFile:
        raise _not_a_model(given, "not a zip archive, as .keras files are") from None
    except KeyError:
        raise _not_a_model(given, f"the archive has no {KERAS_WEIGHTS_MEMBER}") from None
    except OSError as error:
        raise _not_a_model(given, error.strerror or type(error).__name__) from None
    return _read_weights_file(io.BytesIO(weights), given)


def _read_weights_file(file, given: str) -> Dict[str, List[np.ndarray]]:
    """The layers' weights in a Keras 3 weights file: ``layers/<key>/vars/<i>``."""
    import h5py

    try:
        with h5py.File(file, "r") as weights:
            group = weights.get("layers")
            if not isinstance(group, h5py.Group):
                raise _not_a_model(given, "it holds no layers' weights")
            layers = {}
            for key, layer in group.items():
                variables = layer.get("vars") if isinstance(layer, h5py.Group) else None
                if isinstance(variables, h5py.Group) and len(variables):
                    layers[key] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
            return layers
    except (OSError, KeyError) as error:
        raise _not_a_model(given, f"not a Keras weights file: {run_dir.first_line(error).rstrip('.')}") from None


def _read_checkpoints(location: Location) -> Source:
    """The weights of an unfinished run's newest readable checkpoint, read into the
    run's own model (rebuilt from its record for its data set's shape and classes)."""
    import tensorflow as tf

    record, given = location.record, location.given
    try:
        model = run_dir.build_model(record)
    except (UsageError, RunError) as error:
        raise UsageError(
            f"--init-from {given} is an unfinished run whose model cannot be rebuilt here to read "
            f"its checkpoints ({str(error).rstrip('.')})."
        ) from None
    checkpoint = tf.train.Checkpoint(model=model)
    checkpoints = run_dir.checkpoints_newest_first(location.file / run_dir.CHECKPOINT_DIR)
    for prefix in checkpoints:
        try:
            checkpoint.restore(str(prefix)).expect_partial().assert_existing_objects_matched()
        except Exception:  # noqa: BLE001 - an unreadable checkpoint: try the next one
            continue
        layers = {
            key: [np.asarray(v.numpy()) for v in layer.weights] for key, layer in layer_keys(model) if layer.weights
        }
        return Source(prefix, layers)
    raise UsageError(f"--init-from {given}: none of its {len(checkpoints)} checkpoints can be read.")


# --- loading into a model -----------------------------------------------------------------


def binary_optimizer_trains(optimizer) -> Callable[[object], bool]:
    """A predicate: whether ``optimizer`` keeps a variable binary itself (Bop).

    True for the binary variables (``Bop.is_binary_variable``) that a ``CaseOptimizer``
    (inside a ``LossScaleOptimizer`` or not) hands to one of its (predicate, optimizer)
    pairs rather than to its default optimizer: in bnno's recipes, the kernels Bop
    trains. Latent weights (trained by Adam) are not.
    """
    from bnno.nn.optimizers import CaseOptimizer, is_binary_variable

    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    if not isinstance(optimizer, CaseOptimizer) or optimizer.assignment is None:
        return lambda variable: False
    default = len(optimizer.optimizers) - 1 if optimizer.default_optimizer is not None else None
    paths = {path for path, index in optimizer.assignment.items() if index != default}
    return lambda variable: is_binary_variable(variable) and variable.path in paths


def _shapes(values) -> str:
    return ", ".join(str(tuple(value.shape)) for value in values)


def load(model, source: Source, keeps_binary: Callable[[object], bool]) -> List[LayerLoad]:
    """Copy ``source``'s weights into ``model`` (see the module's docstring); a kernel
    for which ``keeps_binary`` holds takes the source's signs. Checks everything
    before changing anything: ``UsageError`` naming the layers when no layer matches
    or a matching layer's shapes differ."""
    keyed = [(key, layer) for key, layer in layer_keys(model) if layer.weights]
    matched = [(key, layer) for key, layer in keyed if key in source.layers]
    if not matched:
        raise UsageError(
            f"--init-from {source.file} matches no layer of {model.name} (it holds "
            f"{_few(sorted(source.layers))}; the model has {_few([key for key, _ in keyed])}): "
            "start from a run of the same model."
        )
    aligned = {key: _align(layer, source.layers[key], keeps_binary) for key, layer in matched}
    differing = [
        f"{key} {_shapes(source.layers[key])} where the model has {_shapes(layer.weights)}"
        for key, layer in matched if aligned[key] is None
    ]
    if differing:
        raise UsageError(
            f"--init-from {source.file} holds another architecture than {model.name}: "
            f"{len(differing)} layers differ in shape ({_few(differing, 3, '; ')}); start from a run "
            "of the same model, width, input size and classes."
        )
    return [_load_layer(key, layer, aligned.get(key), keeps_binary) for key, layer in keyed]


def _same_shapes(values, variables) -> bool:
    return [tuple(np.shape(v)) for v in values] == [tuple(v.shape) for v in variables]


def _align(layer, values: List[np.ndarray], keeps_binary) -> Optional[Tuple[List[np.ndarray], bool]]:
    """The source's ``values`` as ``layer``'s weights, and whether a channel scale was
    derived; ``None`` when they do not fit.

    A binary convolution with ``channel_scale`` (its last weight, alpha per output
    channel) started from a layer without one (stage 1) takes alpha = mean |W| of the
    source's kernel per output channel, the least-squares binary approximation
    alpha * sign(W) of W (XNOR-Net, section 3.1), when its kernel computes with +-1
    (Bop's kernels, or latent weights under ``ste_sign``); otherwise alpha = 1 (a
    magnitude-aware quantizer scales the kernel itself). (The reverse, a source with a
    scale into a layer without one, is refused: a file's weights do not say whether a
    last weight of a convolution's width is a scale or a bias.)
    """
    variables = layer.weights
    if _same_shapes(values, variables):
        return list(values), False
    scaled = getattr(layer, "channel_scale", False) is True
    if scaled and len(values) == len(variables) - 1 and _same_shapes(values, variables[:-1]):
        kernel = np.asarray(values[0], dtype=np.float32)
        quantizer = getattr(layer, "kernel_quantizer", None)
        if keeps_binary(layer.kernel) or getattr(quantizer, "plus_minus_one", False):
            alpha = np.mean(np.abs(kernel), axis=tuple(range(kernel.ndim - 1)))
        else:
            alpha = np.ones(kernel.shape[-1], dtype=np.float32)
        return list(values) + [alpha], True
    return None


def _load_layer(key, layer, aligned, keeps_binary) -> LayerLoad:
    from keras import ops

    from bnno.nn.quantizers import binary_sign

    kind = type(layer).__name__
    if aligned is None:
        return LayerLoad(key, kind, "skipped")
    values, derived_scale = aligned
    action = "copied"
    for variable, value in zip(layer.weights, values):
        if keeps_binary(variable):
            value = ops.convert_to_numpy(binary_sign(ops.convert_to_tensor(value, dtype=variable.dtype)))
            action = "signs"
        variable.assign(np.asarray(value, dtype=variable.dtype))
        if getattr(variable, "constraint", None) is not None:
            variable.assign(variable.constraint(variable.value))
    return LayerLoad(key, kind, action, scaled=derived_scale)


def _few(items: List[str], limit: int = 4, separator: str = ", ") -> str:
    shown = separator.join(items[:limit])
    return shown + (f"{separator}and {len(items) - limit} more" if len(items) > limit else "")


def table(source: Source, loaded: List[LayerLoad]) -> List[str]:
    """Lines saying what was loaded, per layer class, and which layers were skipped."""
    kinds: Dict[str, List[int]] = {}
    for row in loaded:
        counts = kinds.setdefault(row.kind, [0, 0, 0])
        counts[0] += row.action != "skipped"
        counts[1] += row.action == "signs"
        counts[2] += row.action == "skipped"
    width = max(len("layers"), *(len(kind) for kind in kinds))
    lines = [f"Initialized from {source.file} (optimizer state starts fresh):"]
    lines.append(f"  {'layers':<{width}}  loaded  as signs  skipped")
    for kind, (copied, signs, skipped) in kinds.items():
        lines.append(f"  {kind:<{width}}  {copied:>6}  {signs:>8}  {skipped:>7}")
    scaled = [row for row in loaded if row.scaled]
    if scaled:
        lines.append(f"  Channel scales set to mean |W| of the source's kernels: {len(scaled)} layers.")
    skipped = [row.key for row in loaded if row.action == "skipped"]
    if skipped:
        lines.append(f"  Not in the source, kept as initialized: {_few(skipped, 8)}.")
    unused = sorted(set(source.layers) - {row.key for row in loaded})
    if unused:
        lines.append(f"  In the source but not in the model: {_few(unused, 8)}.")
    return lines
