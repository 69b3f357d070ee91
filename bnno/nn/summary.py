"""Per-layer profile of a BNN: parameters by bit width, memory and multiply-accumulates.

The bnno counterpart of larq's ``lq.models.summary`` (larq ``models.py``), on Keras 3.
For every layer of a built model it computes:

- ``binary_params``: weights whose variable has ``precision == 1`` (bnno's quantized
  layers set ``kernel.precision`` from their kernel quantizer);
- ``fp_params``: every other weight (biases, batch-norm statistics, full-precision and
  ternary kernels), counted as 32-bit numbers;
- ``memory_bytes``: the weights' storage, each at its own bit width (32 bits when it
  has no ``precision``), rounded up to whole bytes;
- ``binary_macs`` / ``fp_macs``: multiply-accumulates of one example through a
  ``Conv2D``, ``DepthwiseConv2D`` or ``Dense`` layer (and bnno's ``Quant`` versions).
  A MAC is binary only when both of its operands are: the layer's input quantizer and
  its kernel both have ``precision == 1``; XNOR-popcount hardware needs both.

Unlike larq, batch normalization counts all of its variables (as ``model.count_params``
does), so ``total_params`` always equals ``model.count_params()``.
"""

import math
from typing import Any, Callable, Iterator, List, Optional, Tuple

import keras

__all__ = ["profile", "summary"]

FLOAT_BITS = 32

# The Quant layers subclass these, so one isinstance check covers both.
_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
_MAC_LAYERS = _CONVOLUTIONS + (keras.layers.Dense,)

_COUNT_KEYS = ("binary_params", "fp_params", "memory_bytes", "binary_macs", "fp_macs")


def profile(model: keras.Model) -> dict:
    """The per-layer and total parameters, memory and MACs of a built ``model``.

    Returns ``{"layers": [row, ...], "totals": {...}}``. Each row has ``name``,
    ``type`` (class name), ``output_shape`` (a tuple, ``None`` for the batch; ``None``
    when unknown), ``binary_params``, ``fp_params``, ``memory_bytes``, ``binary_macs``
    and ``fp_macs``. ``totals`` has ``total_params`` (``binary_params + fp_params``,
    equal to ``model.count_params()``), ``binary_params``, ``fp_params``,
    ``memory_bytes``, ``binary_macs`` and ``fp_macs``. All counts are Python ints.

    Definitions:

    - A weight is binary when ``getattr(variable, "precision", None) == 1``; every
      other weight counts in ``fp_params``. Ternary (``precision == 2``) weights
      therefore count as full-precision parameters, but ``memory_bytes`` stores them
      at their real 2 bits.
    - ``memory_bytes`` is ceil(sum of bit width x element count / 8), per layer and,
      separately, for the whole model, so the layers' bytes may add up to slightly
      more than the total.
    - MACs are counted for one example: kernel elements x output positions (the
      spatial output size of a convolution; the product of the output's dimensions
      between batch and features for ``Dense``, which is 1 for 2-D inputs). Biases
      add no MACs. A layer whose output size is not fixed (e.g. an input of shape
      ``(None, None, 3)``) is counted as 0 MACs.
    - Layers of nested models are listed in place of the nested model, named
      ``"<model>/<layer>"``; a layer or variable reached twice is counted once, and a
      layer called several times counts the MACs of its first call (as larq does).

    Raises ``ValueError`` when the model is not built.
    """
    rows, _ = _profile_rows(model)
    return {"layers": rows, "totals": _totals(model, rows)}


def summary(model: keras.Model, print_fn: Callable[[str], Any] = print) -> dict:
    """Print ``profile(model)`` as a table, then the model's size, and return the profile.

    One row per layer (name and type, output shape, 1-bit and 32-bit parameters,
    memory in bytes, 1-bit and 32-bit MACs), a totals row, and the lines "Total
    params", "Binary (1-bit) params", "Full-precision params", "Model size", "Float-32
    equivalent" and the ratio of the two sizes. ``print_fn`` receives the text one
    line at a time (``print`` by default; pass ``list.append`` to capture it).
    """
    rows, unknown_macs = _profile_rows(model)
    result = {"layers": rows, "totals": _totals(model, rows)}
    for line in _table_lines(result):
        print_fn(line)
    for line in _size_lines(result["totals"]):
        print_fn(line)
    if unknown_macs:
        print_fn(
            "MACs not counted (output size not fixed; build with a fixed input "
            f"size to count them): {', '.join(unknown_macs)}"
        )
    return result


# --- profiling -------------------------------------------------------------------


def _profile_rows(model: keras.Model) -> Tuple[List[dict], List[str]]:
    """The rows of ``profile``, and the names of MAC layers whose MACs are unknown."""
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built, so its weights do not exist yet. Build "
            "it first: give it an Input, call model.build(input_shape), or call it on data."
        )
    rows, unknown_macs = [], []
    seen_variables = set()
    for name, type_name, layer, weights in _leaf_layers(model, prefix=""):
        output_shape = _output_shape(layer) if layer is not None else None
        row = _layer_row(layer, weights, output_shape, seen_variables)
        rows.append({"name": name, "type": type_name, "output_shape": output_shape, **row})
        if _macs_unknown(layer, output_shape):
            unknown_macs.append(name)
    return rows, unknown_macs


def _leaf_layers(model: keras.Model, prefix: str, seen_layers: Optional[set] = None) -> Iterator:
    """(name, type name, layer, weights) for each layer, descending into nested models.

    A model that owns variables outside its layers (a subclassed model calling
    ``add_weight``) gets a row of its own, with ``layer`` None, so that the totals
    still equal ``model.count_params()``.
    """
    seen_layers = set() if seen_layers is None else seen_layers
    layer_variables = set()
    for layer in model.layers:
        layer_variables.update(id(w) for w in layer.weights)
        if id(layer) in seen_layers:
            continue
        seen_layers.add(id(layer))
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer, f"{prefix}{layer.name}/", seen_layers)
        else:
            yield f"{prefix}{layer.name}", type(layer).__name__, layer, layer.weights
    own_weights = [w for w in model.weights if id(w) not in layer_variables]
    if own_weights:
        yield f"{prefix}{model.name}", f"{type(model).__name__}, own weights", None, own_weights


def _layer_row(layer, weights, output_shape, seen_variables: set) -> dict:
    """The counts of one row; variables already in ``seen_variables`` are skipped."""
    binary_params = fp_params = bits = 0
    for variable in weights:
        if id(variable) in seen_variables:
            continue  # a variable shared between layers is stored once
        seen_variables.add(id(variable))
        count = _element_count(variable.shape)
        if _precision(variable) == 1:
            binary_params += count
        else:
            fp_params += count
        bits += _bit_width(variable) * count
    binary_macs, fp_macs = _macs(layer, output_shape)
    return {
        "binary_params": binary_params,
        "fp_params": fp_params,
        "memory_bytes": _ceil_bytes(bits),
        "binary_macs": binary_macs,
        "fp_macs": fp_macs,
    }


def _totals(model: keras.Model, rows: List[dict]) -> dict:
    """The model's totals; memory is rounded once over all bits, not per layer."""
    sums = {key: sum(row[key] for row in rows) for key in _COUNT_KEYS}
    sums["memory_bytes"] = _ceil_bytes(_model_bits(model))
    return {"total_params": sums["binary_params"] + sums["fp_params"], **sums}


def _model_bits(model: keras.Model) -> int:
    # model.weights holds every variable once, however often layers share it.
    return sum(_bit_width(w) * _element_count(w.shape) for w in model.weights)


def _precision(variable) -> Optional[int]:
    return getattr(variable, "precision", None)


def _bit_width(variable) -> int:
    """Storage bits of one element: the variable's precision, else a float32."""
    return _precision(variable) or FLOAT_BITS


def _element_count(shape) -> int:
    return int(math.prod(int(dim) for dim in shape))


def _ceil_bytes(bits: int) -> int:
    return -(-bits // 8)


# --- output shapes and MACs ------------------------------------------------------


def _output_shape(layer) -> Optional[tuple]:
    """The layer's output shape, ``None`` for the batch; ``None`` when unknown.

    Keras 3 layers have no ``output_shape`` in every case: a layer of a functional
    model knows its symbolic ``output``; a layer of a Sequential model built without
    an ``Input`` only knows the input shape it was built with.
    """
    # Any failure below only means "not known this way"; a summary must not crash.
    try:
        return _normalize_shape(keras.tree.map_structure(lambda t: t.shape, layer.output))
    except Exception:  # noqa: BLE001
        pass
    try:
        build_config = layer.get_build_config() or {}
        return _normalize_shape(layer.compute_output_shape(**build_config))
    except Exception:  # noqa: BLE001
        return None


def _normalize_shape(shape) -> tuple:
    """Plain ints with None for the batch; a tuple of such tuples for several outputs."""
    if isinstance(shape, dict):
        shape = list(shape.values())
    nested = isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple))
    if nested:
        return tuple(_normalize_shape(s) for s in shape)
    # A build shape carries the batch size of the first call; the profile is per example.
    return (None,) + tuple(None if dim is None else int(dim) for dim in shape[1:])


def _output_positions(layer, output_shape) -> Optional[int]:
    """Positions each kernel element is used at, for one example; None when unknown."""
    if not output_shape or not all(isinstance(d, int) or d is None for d in output_shape):
        return None
    if isinstance(layer, _CONVOLUTIONS):
        if layer.data_format == "channels_first":
            positions = output_shape[2:]
        else:
            positions = output_shape[1:-1]
    else:
        # Dense applies its kernel at every position of a >2-D input.
        positions = output_shape[1:-1]
    if any(dim is None for dim in positions):
        return None
    return int(math.prod(positions))


def _macs(layer, output_shape) -> Tuple[int, int]:
    """(binary MACs, full-precision MACs) of one example through ``layer``."""
    if not isinstance(layer, _MAC_LAYERS):
        return 0, 0
    positions = _output_positions(layer, output_shape)
    if positions is None:
        return 0, 0
    kernel = layer.kernel
    macs = _element_count(kernel.shape) * positions
    input_quantizer = getattr(layer, "input_quantizer", None)
    inputs_binary = getattr(input_quantizer, "precision", None) == 1
    if inputs_binary and _precision(kernel) == 1:
        return macs, 0
    return 0, macs


def _macs_unknown(layer, output_shape) -> bool:
    return isinstance(layer, _MAC_LAYERS) and _output_positions(layer, output_shape) is None


# --- text ------------------------------------------------------------------------

_HEADER = (
    "Layer (type)",
    "Output shape",
    "# 1-bit params",
    "# 32-bit params",
    "Memory (bytes)",
    "1-bit MACs",
    "32-bit MACs",
)


def _table_lines(result: dict) -> List[str]:
    """The aligned table: header, one line per layer, totals; names left, numbers right."""
    body = [_row_cells(row) for row in result["layers"]]
    totals = result["totals"]
    footer = ["Total", ""] + [f"{totals[key]:,}" for key in _COUNT_KEYS]
    every_row = [_HEADER, *body, footer]
    widths = [max(len(cells[i]) for cells in every_row) for i in range(len(_HEADER))]
    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    lines = [rule, _join(_HEADER, widths), rule]
    lines += [_join(cells, widths) for cells in body]
    lines += [rule, _join(footer, widths), rule]
    return lines


def _row_cells(row: dict) -> List[str]:
    shape = "?" if row["output_shape"] is None else str(row["output_shape"])
    return [f"{row['name']} ({row['type']})", shape] + [f"{row[key]:,}" for key in _COUNT_KEYS]


def _join(cells, widths) -> str:
    text_columns = 2  # name and shape read best left-aligned, numbers right-aligned
    parts = [
        cell.ljust(width) if i < text_columns else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths))
    ]
    return "  ".join(parts).rstrip()


def _size_lines(totals: dict) -> List[str]:
    float32_bytes = totals["total_params"] * FLOAT_BITS // 8
    ratio = totals["memory_bytes"] / float32_bytes if float32_bytes else 0.0
    return [
        f"Total params: {totals['total_params']:,}",
        f"Binary (1-bit) params: {totals['binary_params']:,}",
        f"Full-precision params: {totals['fp_params']:,}",
        f"Model size: {_readable_bytes(totals['memory_bytes'])}",
        f"Float-32 equivalent: {_readable_bytes(float32_bytes)}",
        f"Size relative to float-32: {ratio:.4f} ({ratio:.2%})",
    ]


def _readable_bytes(num_bytes: int) -> str:
    """Bytes in binary units (1 KiB = 1024 B), as larq prints model sizes."""
    if num_bytes < 1024:
        return f"{num_bytes} B"
    size = num_bytes / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if size < 1024:
            break
        size /= 1024
    else:
        unit = "TiB"
    return f"{size:,.2f} {unit}"
