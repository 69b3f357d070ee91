"""A run's model for deployment: a real 1-bit model with the Larq Compute Engine.

``bnno export RUN_DIR --format lce --output model.tflite`` writes the run's final
weights (or an epoch's checkpoint) as a TFLite flatbuffer in which binary convolutions
are the engine's ``LceBconv2d`` (bit-packed ±1 weights, XNOR-popcount), converted by
``larq_compute_engine.convert_saved_model`` from a SavedModel of the inference graph
(the optional extra ``pip install "bnno[deploy]"``; larq-compute-engine 0.16.0 has
wheels for CPython 3.10-3.12 on x86-64 Linux and macOS).

The converter recognizes a convolution as binary when its input is binarized
(``ste_sign``, an ``input_quantizer``) and its kernel is a constant of ±1 per output
channel. So every quantized kernel is first replaced by its quantized value (what
``quantized_scope`` reads: the signs of latent ``ste_sign`` kernels, Bop's ±1 kernels as
they are), and a convolution whose kernel is still not binary is reported, not
silently written as float. The engine has no binary fully-connected op (larq
compute-engine issue 53), so each binary dense layer is computed as a 1x1 binary
convolution on a 1x1 map (the same values), which it has.

Each export is checked before it is written: the engine's interpreter and the Keras
model predict the same validation images, and an export whose top-1 agrees on fewer
than :data:`AGREEMENT_REQUIRED` of them is refused. The account gives each quantized
layer's fate, the file's size and the size of the same model as a float TFLite file.
The flatbuffer's metadata names the run, its data set and preprocessing
(:mod:`bnno.tflite_file`), for ``bnno evaluate`` and ``bnno benchmark --inference``.
"""

import dataclasses
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional

from bnno import run_dir, tflite_file
from bnno.errors import RunError, UsageError

__all__ = ["AGREEMENT_REQUIRED", "FORMATS", "LayerAccount", "export", "require_engine"]

FORMATS = ("lce", "saved_model", "keras")

#: The share of validation images on which the exported model's top-1 must agree
#: with the Keras model's (issue 21: "refuse to call an export good that disagrees").
AGREEMENT_REQUIRED = 0.99

#: larq-compute-engine 0.16.0 ships wheels for these Python versions only.
ENGINE_PYTHONS = ((3, 10), (3, 11), (3, 12))


def require_engine(needed_by: str = "--format lce"):
    """``larq_compute_engine``, or a ``UsageError`` saying that ``needed_by`` (what the
    user asked for) needs it and what to install (or that this Python has no wheels of it)."""
    try:
        import larq_compute_engine
    except ImportError:
        if sys.version_info[:2] not in ENGINE_PYTHONS:
            instead = ("export from a Python 3.10-3.12 environment, or use --format saved_model"
                       if needed_by == "--format lce" else "use a Python 3.10-3.12 environment")
            raise UsageError(
                f"{needed_by} needs larq-compute-engine, which has wheels for Python 3.10-3.12 only, "
                f"not {sys.version_info[0]}.{sys.version_info[1]}; {instead}."
            ) from None
        raise UsageError(
            f"{needed_by} needs larq-compute-engine: pip install \"bnno[deploy]\" (or "
            "larq-compute-engine==0.16.0)."
        ) from None
    return larq_compute_engine


@dataclasses.dataclass
class LayerAccount:
    """What became of one quantized layer in the flatbuffer."""

    name: str
    kind: str
    binary: bool
    why: str


def _quantized_layers(model) -> List[Any]:
    from bnno.nn.layers import QuantConv2D, QuantDense, QuantDepthwiseConv2D

    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, (QuantConv2D, QuantDense, QuantDepthwiseConv2D))]


def _binary_values(kernel) -> bool:
    """Whether every output channel of ``kernel`` holds one magnitude with either sign."""
    import numpy as np

    values = np.asarray(kernel).reshape(-1, np.asarray(kernel).shape[-1])
    magnitudes = np.abs(values)
    return bool(np.all(magnitudes > 0) and np.all(magnitudes == magnitudes[:1]))


def account(model, dense_as_convolutions=()) -> List[LayerAccount]:
    """Each convolution and dense layer's expected fate, in the model's order: binary
    (``LceBconv2d``) or float, and why.
    Call on the model whose kernels already hold their quantized values;
    ``dense_as_convolutions``: the dense layers rewritten as 1x1 convolutions."""
    from bnno.nn.layers import QuantDense, QuantDepthwiseConv2D

    import keras

    quantized = set(id(layer) for layer in _quantized_layers(model))
    rows = []
    for layer in model._flatten_layers(include_self=False):
        kind = type(layer).__name__
        if id(layer) not in quantized:
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense, keras.layers.DepthwiseConv2D)):
                rows.append(LayerAccount(layer.name, kind, False, "full precision in the model"))
            continue
        if layer.name in dense_as_convolutions:
            rows.append(LayerAccount(layer.name, kind, True, "LceBconv2d, as a 1x1 convolution on a 1x1 map"))
        elif isinstance(layer, QuantDepthwiseConv2D):
            rows.append(LayerAccount(layer.name, kind, False, "the engine has no binary depthwise convolution"))
        elif why := _why_not_binary(layer):
            rows.append(LayerAccount(layer.name, kind, False, why))
        elif isinstance(layer, QuantDense):
            rows.append(LayerAccount(layer.name, kind, False,
                                     "the engine has no binary fully-connected op (larq compute-engine issue 53)"))
        else:
            rows.append(LayerAccount(layer.name, kind, True, "LceBconv2d"))
    return rows


def _why_not_binary(layer) -> Optional[str]:
    """Why the engine cannot compute quantized ``layer`` with binary arithmetic: its input
    is not binarized, or its kernel is not ±c per output channel; None when it can."""
    if not getattr(layer.input_quantizer, "plus_minus_one", False):
        return "its input is not binarized (no ±1 input quantizer)"
    if not _binary_values(layer.kernel.numpy()):
        return "its kernel is not binary (values other than ±c)"
    return None


def load_run_model(output_dir: pathlib.Path, checkpoint: Optional[str] = None):
    """The model of the run in ``output_dir`` with its final weights (``model.keras``),
    or those of its newest epoch checkpoint (or ``checkpoint``); ``(model, record)``."""
    import tensorflow as tf

    from bnno import plugins

    record = run_dir.read_record(output_dir)
    plugins.check_record(record, str(output_dir))
    model = run_dir.build_model(record)
    final = output_dir / run_dir.MODEL_FILE
    if checkpoint is None and final.exists():
        model.load_weights(str(final))
        return model, record
    prefixes = [pathlib.Path(checkpoint)] if checkpoint else run_dir.checkpoints_newest_first(
        output_dir / run_dir.CHECKPOINT_DIR)
    if not prefixes:
        raise RunError(f"{output_dir} has no weights to export yet: it has not finished an epoch.")
    try:
        tf.train.Checkpoint(model=model).restore(str(prefixes[0])).expect_partial().assert_existing_objects_matched()
    except Exception as error:  # noqa: BLE001 - an unreadable or foreign checkpoint
        raise RunError(f"Checkpoint {prefixes[0]} cannot be read ({run_dir.first_line(error)}).") from None
    return model, record


def quantize_kernels(model) -> None:
    """Replace every quantized kernel by its quantized value (as ``quantized_scope``
    reads it), so that the converter sees constants of ±1 (per output channel ±c)."""
    from bnno.nn.context import quantized_scope

    with quantized_scope():
        values = [layer.kernel.numpy() for layer in _quantized_layers(model)]
    for layer, value in zip(_quantized_layers(model), values):
        layer.kernel.assign(value)


def _validation_images(record, count: int):
    import numpy as np

    from bnno import data

    dataset = data.load(record["dataset"], **run_dir.data_options(record))
    images = []
    for batch, _ in dataset.validation(100):
        images.append(batch.numpy())
        if sum(len(b) for b in images) >= count:
            break
    return np.concatenate(images)[:count]


def export(output_dir, fmt: str, output, checkpoint: Optional[str] = None, check_images: int = 300,
           echo=print) -> Dict[str, Any]:
    """Write the run in ``output_dir`` as ``fmt`` (``lce``, ``saved_model`` or ``keras``)
    to ``output``; for ``lce``, checked against the Keras model first. Returns the
    account: layers, sizes, agreement."""
    if fmt not in FORMATS:
        from bnno.registry import unknown_choice_message

        raise UsageError(unknown_choice_message("--format", fmt, list(FORMATS)))
    engine = require_engine() if fmt == "lce" else None
    output_dir, output = pathlib.Path(output_dir), pathlib.Path(output)
    if output.exists():
        raise UsageError(f"{output} exists; pass a new --output (nothing is overwritten).")
    model, record = load_run_model(output_dir, checkpoint)
    quantize_kernels(model)
    if fmt == "keras":
        temporary = output.with_name(f".{output.name}.tmp.keras")
        model.save(temporary)
        os.replace(temporary, output)
        return {"format": fmt, "bytes": output.stat().st_size}
    if fmt == "saved_model":
        with tempfile.TemporaryDirectory(prefix="bnno-export-") as scratch:
            saved_model = pathlib.Path(scratch) / "saved_model"
            model.export(str(saved_model), verbose=False)
            shutil.move(str(saved_model), str(output))
        return {"format": fmt}
    import numpy as np

    from bnno import engine_runtime

    conversion = convert(model, record["model"], engine)
    images = _validation_images(record, check_images)
    keras_top1 = np.argmax(model.predict(images, batch_size=50, verbose=0), axis=-1)
    engine_outputs = engine_runtime.predict(conversion.flatbuffer, images, threads=os.cpu_count() or 1, echo=echo)
    agreement = float(np.mean(keras_top1 == np.argmax(engine_outputs, axis=-1)))
    result = {
        "format": fmt, "float_tflite_bytes": len(conversion.float_flatbuffer), "agreement": agreement,
        "images": len(images), "ops": conversion.ops, "layers": [dataclasses.asdict(row) for row in conversion.layers],
    }
    if agreement < AGREEMENT_REQUIRED:
        raise RunError(
            f"The exported model's top-1 agrees with the Keras model's on {agreement:.1%} of {len(images)} "
            f"validation images, below {AGREEMENT_REQUIRED:.0%}; nothing was written."
        )
    flatbuffer = tflite_file.with_metadata(conversion.flatbuffer, _provenance(output_dir, record, checkpoint))
    result["bytes"] = len(flatbuffer)
    temporary = output.with_name(f".{output.name}.tmp")
    temporary.write_bytes(flatbuffer)
    os.replace(temporary, output)
    return result


@dataclasses.dataclass
class Conversion:
    """A model converted for the engine, and the same model as a float TFLite file."""

    flatbuffer: bytes
    float_flatbuffer: bytes
    layers: List[LayerAccount]
    ops: Dict[str, int]


def convert(model, name: str, engine=None) -> Conversion:
    """``model`` (its kernels already quantized, :func:`quantize_kernels`) converted by
    the engine, binary dense layers as 1x1 convolutions, and by TFLite's own converter
    as a float model; ``RunError`` when a layer expected to be binary is not
    ``LceBconv2d``."""
    engine = engine or require_engine()
    float_model = float_flatbuffer(model, name)
    with tempfile.TemporaryDirectory(prefix="bnno-export-") as scratch:
        engine_model, dense_as_convolutions = binary_dense_as_convolutions(model)
        engine_saved_model = pathlib.Path(scratch) / "engine_saved_model"
        engine_model.export(str(engine_saved_model), verbose=False)
        try:
            flatbuffer = engine.convert_saved_model(str(engine_saved_model))
        except Exception as error:  # noqa: BLE001 - the converter's own errors (ops it cannot take)
            raise RunError(f"larq-compute-engine's converter cannot take {name} "
                           f"({run_dir.first_line(error)}); nothing was written.") from None
    layers = account(model, dense_as_convolutions)
    counts = tflite_file.op_counts(flatbuffer)
    expected = sum(row.binary for row in layers)
    if counts.get("LceBconv2d", 0) != expected:
        raise RunError(
            f"The engine made {counts.get('LceBconv2d', 0)} of the {expected} binary convolutions of "
            f"{name} binary (LceBconv2d); nothing was written."
        )
    return Conversion(flatbuffer, float_model, layers, counts)


def float_flatbuffer(model, name: str) -> bytes:
    """``model`` (named ``name``) as TFLite's own converter writes it: a float TFLite
    model, the baseline of an export's size and latency."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="bnno-export-") as scratch:
        saved_model = pathlib.Path(scratch) / "saved_model"
        model.export(str(saved_model), verbose=False)
        try:
            return tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()
        except Exception as error:  # noqa: BLE001 - the converter's own errors (ops it cannot take)
            raise RunError(f"TFLite's converter cannot take {name} ({run_dir.first_line(error)}); nothing "
                           "was written.") from None


def _provenance(output_dir: pathlib.Path, record, checkpoint: Optional[str]) -> Dict[str, Any]:
    """Where an exported model came from, kept in its metadata (:mod:`bnno.tflite_file`):
    what ``bnno evaluate`` and ``bnno benchmark --inference`` need of the run."""
    from bnno import __version__

    return {
        "bnno": __version__, "run": str(output_dir.resolve()), "weights": checkpoint or run_dir.MODEL_FILE,
        **{key: record.get(key) for key in ("model", "hparams_set", "dataset", "preprocess", "data_dir",
                                             "image_size")},
    }


def _dense_as_convolution(layer):
    """A ``QuantDense`` as the engine can make it binary: its input reshaped to a 1x1 map
    of its features, binarized, convolved with its kernel as a 1x1 kernel, and reshaped
    back (larq compute-engine issue 53). The same values as the dense layer."""
    import keras
    from keras import ops

    class BinaryDenseAsConvolution(keras.layers.Layer):
        def __init__(self, dense, **kwargs):
            super().__init__(name=dense.name, **kwargs)
            self.dense = dense

        def build(self, input_shape):
            units = self.dense.units
            self.kernel = self.add_weight(shape=(1, 1, input_shape[-1], units), initializer="zeros", name="kernel")
            self.bias = (self.add_weight(shape=(units,), initializer="zeros", name="bias")
                         if self.dense.use_bias else None)

        def call(self, inputs):
            x = ops.reshape(inputs, (-1, 1, 1, inputs.shape[-1]))
            x = self.dense.input_quantizer(x)
            y = ops.conv(x, self.kernel, padding="valid")
            y = ops.reshape(y, (-1, self.dense.units))
            if self.bias is not None:
                y = y + self.bias
            return self.dense.activation(y)

    return BinaryDenseAsConvolution(layer)


def binary_dense_as_convolutions(model):
    """``model`` with each binary ``QuantDense`` (binarized input, ±1 kernel) computed
    as a 1x1 binary convolution (:func:`_dense_as_convolution`), weights copied."""
    import keras

    from bnno.nn.layers import QuantDense

    def eligible(layer):
        return isinstance(layer, QuantDense) and _why_not_binary(layer) is None

    replaced = {}

    def clone(layer):
        if eligible(layer):
            replaced[layer.name] = layer
            return _dense_as_convolution(layer)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for original, new in zip(model.layers, copy.layers):
        if original.name in replaced:
            kernel = original.kernel.numpy().reshape(new.kernel.shape)
            new.kernel.assign(kernel)
            if new.bias is not None:
                new.bias.assign(original.bias.numpy())
        else:
            new.set_weights(original.get_weights())
    return copy, sorted(replaced)


def report_lines(result: Dict[str, Any], output) -> List[str]:
    """What ``bnno export`` prints: the per-layer account (lce), the sizes and the check."""
    size = result.get("bytes")
    if result["format"] != "lce":
        return [f"Wrote {output}" + (f" ({_kib(size)})." if size else ".")]
    rows = [("layer", "kind", "became", "why")]
    rows += [(row["name"], row["kind"], "binary" if row["binary"] else "float", row["why"])
             for row in result["layers"]]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    float_size = result["float_tflite_bytes"]
    agreeing = round(result["agreement"] * result["images"])
    lines += [
        f"Wrote {output}: {_kib(size)}, {size / float_size:.2f} of the same model as a float TFLite file "
        f"({_kib(float_size)}).",
        f"Top-1 agreement with the Keras model: {agreeing} of {result['images']} validation images "
        f"({result['agreement']:.1%}).",
    ]
    return lines


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB" if size < 2**20 else f"{size / 2**20:.2f} MiB"
