"""Milliseconds per image of a run's Keras model at batch 1, with a given thread count.

``python -m bnno.keras_latency RUN_DIR THREADS WARMUP REPEATS [PLUGIN...]`` prints one
JSON line, ``{"seconds": [...]}``. It runs as its own process because TensorFlow fixes
its thread pools when it starts (``tf.config.threading`` must be set first);
``bnno benchmark --inference`` starts one per thread count (``bnno.inference``).
The model is called as a ``tf.function`` with ``training=False``, its kernels
quantized on the fly as in training, on one fixed random image.
"""

import json
import os
import pathlib
import sys
import time


def main(argv) -> None:
    output_dir, threads, warmup, repeats, *plugin_names = argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    from bnno import plugins
    from bnno.export import load_run_model

    plugins.load(plugin_names)
    model, _ = load_run_model(pathlib.Path(output_dir))
    image = np.random.default_rng(0).standard_normal((1,) + tuple(model.input_shape[1:])).astype(np.float32)
    call = tf.function(lambda x: model(x, training=False))
    image = tf.constant(image)
    for _ in range(int(warmup)):
        call(image).numpy()
    seconds = []
    for _ in range(int(repeats)):
        start = time.perf_counter()
        call(image).numpy()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    from bnno.errors import RunError, UsageError

    try:
        main(sys.argv[1:])
    except (RunError, UsageError) as error:  # one sentence, as the last line bnno reads
        print(str(error), file=sys.stderr)
        sys.exit(1)
