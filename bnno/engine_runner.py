"""The Larq Compute Engine's interpreter, served over a pipe to ``bnno.engine_runtime``.

Runs as a script (``python engine_runner.py EXTENSION``) in a Python whose NumPy is 1.x,
because larq-compute-engine 0.16.0's interpreter extension reads NumPy 2 arrays as empty
(see ``bnno.engine_runtime``). It imports nothing but NumPy and the extension, which it
loads by its path.

Each request on stdin is one JSON line; ``predict`` and ``time`` are followed by the
raw float32 bytes of the images (C order, of the shape given). Each answer on stdout
is one JSON line (``{"error": ...}`` when the request failed), followed for ``predict``
by the raw float32 bytes of the outputs::

    {"load": PATH, "threads": N, "xnnpack": false}  -> {"input_shape": [...], "output_shape": [...]}
    {"predict": [n, h, w, c]} + images               -> {"shape": [n, k]} + outputs
    {"time": [1, h, w, c], "warmup": W, "repeats": R} + image -> {"seconds": [R timings]}

The flatbuffer's batch is 1: images are run one at a time.
"""

import importlib.machinery
import importlib.util
import json
import os
import sys
import time

import numpy as np


def load_extension(path):
    """The interpreter extension at ``path``, without importing its package (whose
    ``__init__`` imports TensorFlow)."""
    name = "interpreter_wrapper_lite"
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path, loader=loader))
    loader.exec_module(module)
    return module


def read_array(stream, shape):
    size = int(np.prod(shape)) * 4
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"expected {size} bytes of images, got {len(data)}")
    return np.frombuffer(data, dtype=np.float32).reshape(shape)


def answer(stream, header, array=None):
    stream.write((json.dumps(header) + "\n").encode())
    if array is not None:
        stream.write(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    stream.flush()


def main():
    module = load_extension(sys.argv[1])
    requests = sys.stdin.buffer
    # Answers go to a private copy of stdout; whatever the interpreter prints goes to stderr.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    interpreter = None
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        # The images are read before anything can fail, so the stream stays in step.
        images = read_array(requests, request["predict"]) if "predict" in request else None
        image = read_array(requests, request["time"]) if "time" in request else None
        try:
            if "load" in request:
                with open(request["load"], "rb") as f:
                    interpreter = module.LiteInterpreter(
                        f.read(), int(request["threads"]), False, False, bool(request.get("xnnpack", False)))
                answer(answers, {"input_shape": list(interpreter.input_shapes[0]),
                                 "output_shape": list(interpreter.output_shapes[0])})
            elif images is not None:
                outputs = [interpreter.predict([np.ascontiguousarray(one[None])])[0] for one in images]
                outputs = np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)
                answer(answers, {"shape": list(outputs.shape)}, outputs)
            elif image is not None:
                for _ in range(int(request["warmup"])):
                    interpreter.predict([image])
                seconds = []
                for _ in range(int(request["repeats"])):
                    start = time.perf_counter()
                    interpreter.predict([image])
                    seconds.append(time.perf_counter() - start)
                answer(answers, {"seconds": seconds})
            else:
                answer(answers, {"error": f"unknown request {sorted(request)}"})
        except Exception as error:  # noqa: BLE001 - reported to bnno, which says it in one sentence
            answer(answers, {"error": f"{type(error).__name__}: {error}".splitlines()[0]})


if __name__ == "__main__":
    main()
