"""Reading and annotating TFLite flatbuffers (the files ``bnno export`` writes).

``bnno export --format lce`` stores where the model came from (the run, its model, data
set, preprocess function and image size) in the flatbuffer's own metadata, under the name
:data:`METADATA_NAME`, so that ``bnno evaluate model.tflite`` and ``bnno benchmark
--inference model.tflite`` need nothing but the file. TFLite interpreters ignore
metadata they do not know (TFLite schema, ``Model.metadata``).
"""

import json
import pathlib
from typing import Any, Dict, Optional

from bnno.errors import UsageError

__all__ = ["METADATA_NAME", "op_counts", "read", "read_metadata", "with_metadata"]

METADATA_NAME = "bnno"

#: The file identifier of a TFLite flatbuffer (bytes 4-8; TFLite schema, ``file_identifier``).
IDENTIFIER = b"TFL3"


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def read(path) -> bytes:
    """The bytes of the TFLite file at ``path``; ``UsageError`` in one sentence when it
    is not one."""
    path = pathlib.Path(path)
    try:
        flatbuffer = path.read_bytes()
    except OSError as error:
        raise UsageError(f"Cannot read {path} ({error.strerror}).") from None
    if flatbuffer[4:8] != IDENTIFIER:
        raise UsageError(f"{path} is not a TFLite flatbuffer (written by bnno export --format lce).")
    return flatbuffer


def op_counts(flatbuffer: bytes) -> Dict[str, int]:
    """Operators of a TFLite flatbuffer by name (custom ops by their code)."""
    schema = _schema()
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    counts: Dict[str, int] = {}
    for index in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(index)
        for op in range(subgraph.OperatorsLength()):
            code = model.OperatorCodes(subgraph.Operators(op).OpcodeIndex())
            custom = code.CustomCode()
            name = custom.decode() if custom else names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            counts[name] = counts.get(name, 0) + 1
    return counts


def with_metadata(flatbuffer: bytes, values: Dict[str, Any]) -> bytes:
    """``flatbuffer`` with ``values`` (as JSON) in its metadata under :data:`METADATA_NAME`."""
    import flatbuffers
    import numpy as np

    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(values, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [entry]
    builder = flatbuffers.Builder(len(flatbuffer) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def read_metadata(flatbuffer: bytes) -> Optional[Dict[str, Any]]:
    """What :func:`with_metadata` stored (None for a flatbuffer bnno did not write)."""
    model = _schema().Model.GetRootAsModel(flatbuffer, 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if entry.Name() == METADATA_NAME.encode():
            try:
                return json.loads(bytes(model.Buffers(entry.Buffer()).DataAsNumpy()))
            except (ValueError, TypeError):
                return None
    return None
