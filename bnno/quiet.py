"""TensorFlow's start-up chatter, kept from users (``--verbose`` keeps it).

Importing TensorFlow prints lines such as "oneDNN custom operations are on" and
"Could not find cuda drivers on your machine" from C++ before absl's logging is
initialized, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence them; the first GPU query
then prints "failed call to cuInit" on machines without a GPU driver. They are written
straight to file descriptor 2, so ``start_tensorflow`` captures that descriptor into
a temporary file while it imports TensorFlow and queries the GPUs, then writes back
every line that is not on the list of known noise: real errors still reach the user.
tensorflow-datasets' "Variant folder ... has no dataset_info.json" (an unprepared
or half-prepared data set, which bnno explains itself) goes through absl's Python
logger and is dropped there by a filter.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile
from typing import Iterator

__all__ = ["ABSL_FILTER", "start_tensorflow", "filtered_stderr", "drop_noise", "is_noise"]

# C++ log lines look like "I0000 00:00:1796084749.779910    6337 cudart_stub.cc:31] ...".
NOISE = tuple(
    re.compile(pattern)
    for pattern in (
        r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
        r"\] oneDNN custom operations are on\.",
        r"\] Could not find cuda drivers on your machine, GPU will not be used\.$",
        r"\] This TensorFlow binary is optimized to use available CPU instructions",
        r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$",
    )
)
NO_DRIVER = re.compile(r"\] Could not find cuda drivers on your machine")
# Expected when there is no driver; a real error on a machine that has one.
CUINIT_FAILED = re.compile(r"\] failed call to cuInit: ")
ABSL_NOISE = re.compile(r"^Variant folder .* has no (dataset_info|features)\.json$")


def is_noise(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's known start-up lines."""
    return any(pattern.search(line) for pattern in NOISE)


def drop_noise(text: str) -> str:
    """``text`` without its known-noise lines; "failed call to cuInit" counts as noise
    only when ``text`` also says that there is no CUDA driver."""
    no_driver = bool(NO_DRIVER.search(text))
    return "".join(
        line
        for line in text.splitlines(keepends=True)
        if not is_noise(line.rstrip("\n")) and not (no_driver and CUINIT_FAILED.search(line))
    )


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Captures file descriptor 2 (C++ and Python writes alike) while the body runs,
    then writes what it captured, less the known noise, to ``sys.stderr``."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = drop_noise(captured.read().decode("utf-8", errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _AbslNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not ABSL_NOISE.search(record.getMessage())


#: The filter that ``start_tensorflow`` adds to the ``absl`` logger (tensorflow-datasets'
#: noise); ``logging.getLogger("absl").removeFilter(ABSL_FILTER)`` takes it away again.
ABSL_FILTER = _AbslNoise()


def jax_requested() -> bool:
    """Whether ``KERAS_BACKEND`` asks for Keras's JAX backend."""
    return os.environ.get("KERAS_BACKEND", "").strip().lower() == "jax"


def check_jax_installed() -> None:
    """A ``UsageError`` (one sentence) when ``KERAS_BACKEND=jax`` but jax is missing."""
    import importlib.util

    if jax_requested() and importlib.util.find_spec("jax") is None:
        from bnno.errors import UsageError

        raise UsageError(
            "KERAS_BACKEND=jax asks for Keras's JAX backend, but jax is not installed: "
            "install the extra (pip install -e '.[jax]') or unset KERAS_BACKEND."
        )


def start_tensorflow() -> None:
    """Imports TensorFlow and lists its GPUs with the known start-up noise filtered
    out; hides TensorFlow's later C++ INFO and WARNING lines (``TF_CPP_MIN_LOG_LEVEL=2``
    unless set) and tensorflow-datasets' warnings about unprepared version folders.

    With ``KERAS_BACKEND=jax`` it imports nothing (the JAX backend runs without
    TensorFlow), and is a ``UsageError`` when jax is not installed."""
    if jax_requested():
        check_jax_installed()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").addFilter(ABSL_FILTER)  # tfds logs through absl
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
