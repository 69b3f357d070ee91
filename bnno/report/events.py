"""Scalars from TensorBoard event files, read without TensorFlow.

TensorBoard's own ``EventAccumulator`` imports TensorFlow whenever it is installed
(``tensorboard.compat.tf``), which takes seconds; a report needs only the scalars.
An event file is a sequence of TFRecords (length, its CRC, an ``Event`` protocol
buffer, its CRC); this module reads them with TensorBoard's generated protocol buffer
classes, which need only protobuf. A record cut short (a run still writing) ends the
file; checksums are not verified.
"""

import pathlib
import struct
from typing import Dict, Iterator, List, Tuple

_HEADER = 12  # uint64 length + uint32 CRC of the length
_FOOTER = 4  # uint32 CRC of the data


def _records(path: pathlib.Path) -> Iterator[bytes]:
    data = path.read_bytes()
    position = 0
    while position + _HEADER <= len(data):
        (length,) = struct.unpack("<Q", data[position:position + 8])
        start = position + _HEADER
        if start + length + _FOOTER > len(data):
            return
        yield data[start:start + length]
        position = start + length + _FOOTER


def _value(summary_value) -> float:
    from tensorboard.util import tensor_util

    if summary_value.HasField("tensor"):
        return float(tensor_util.make_ndarray(summary_value.tensor).reshape(-1)[0])
    return float(summary_value.simple_value)


def event_files(directory: pathlib.Path) -> List[pathlib.Path]:
    """The event files of one TensorBoard run directory, oldest first (their names
    begin with the time they were opened)."""
    return sorted(pathlib.Path(directory).glob("events.out.tfevents.*"), key=lambda p: p.name)


def read_file(path: pathlib.Path) -> Tuple[Dict[str, Dict[int, float]], List[float]]:
    """``({tag: {step: value}}, [wall time of every event])`` of one event file; a
    step logged twice keeps its last value."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import event_pb2

    scalars: Dict[str, Dict[int, float]] = {}
    wall_times: List[float] = []
    for record in _records(path):
        try:
            event = event_pb2.Event.FromString(record)
        except DecodeError:
            break
        wall_times.append(event.wall_time)
        for value in event.summary.value:
            try:
                scalars.setdefault(value.tag, {})[int(event.step)] = _value(value)
            except (ValueError, IndexError, TypeError):
                continue  # not a scalar (an image, a histogram)
    return scalars, wall_times


def read(directory: pathlib.Path) -> Tuple[Dict[str, Dict[int, float]], float]:
    """``({tag: {step: value}}, wall seconds)`` over all event files of ``directory``.

    A resumed run writes a new file; a step logged again (an epoch repeated after a
    crash) keeps its newest value. The wall seconds run from each file's opening to its
    last event, summed over the files (0 without events).
    """
    merged: Dict[str, Dict[int, float]] = {}
    seconds = 0.0
    for path in event_files(directory):
        scalars, wall_times = read_file(path)
        for tag, values in scalars.items():
            merged.setdefault(tag, {}).update(values)
        if wall_times:
            seconds += max(wall_times) - min(wall_times)
    return merged, seconds
