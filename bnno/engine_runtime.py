"""Running a flatbuffer with the Larq Compute Engine's own interpreter.

larq-compute-engine 0.16.0 (its latest release) ships its interpreter as an extension
compiled against NumPy 1.x. Next to TensorFlow 2.21 (whose ml-dtypes, like JAX, needs
NumPy 2) it reads every input array as 0 bytes ("Expected 3072 bytes but got 0 for
tensor serving_default_input_layer:0"), so it cannot run in bnno's own process. bnno
runs it in a separate Python process whose NumPy is 1.x, which needs nothing else: the
extension is loaded from the installed package by its path, without the package's
``__init__`` (which imports TensorFlow). That Python is

- ``BNNO_ENGINE_PYTHON``, if set (any Python 3.10-3.12 with ``numpy<2``);
- else an environment bnno makes once, ``~/.cache/bnno/engine-python`` (``python -m
  venv`` and ``pip install numpy==1.26.4``; ``BNNO_CACHE`` moves it), and reuses.
"""

import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
from typing import Callable, Optional

import numpy as np

from bnno.errors import RunError

__all__ = ["ENV_VAR", "predict", "runtime_python"]

ENV_VAR = "BNNO_ENGINE_PYTHON"
NUMPY_1 = "numpy==1.26.4"

# Runs in the NumPy-1 Python: argv = extension, flatbuffer, images.npy, threads, out.npy.
_RUNNER = textwrap.dedent(
    """
    import importlib.machinery, importlib.util, sys
    import numpy as np
    extension, flatbuffer, images, threads, out = sys.argv[1:]
    loader = importlib.machinery.ExtensionFileLoader("interpreter_wrapper_lite", extension)
    spec = importlib.util.spec_from_file_location("interpreter_wrapper_lite", extension, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    with open(flatbuffer, "rb") as f:
        interpreter = module.LiteInterpreter(f.read(), int(threads), False, False, False)
    outputs = [interpreter.predict([np.ascontiguousarray(image[None])])[0] for image in np.load(images)]
    np.save(out, np.concatenate(outputs))
    """
)


def _extension() -> pathlib.Path:
    """The installed interpreter extension (found without importing the package)."""
    import importlib.util

    spec = importlib.util.find_spec("larq_compute_engine")
    if spec is None or not spec.submodule_search_locations:
        raise RunError("larq-compute-engine is not installed: pip install \"bnno[deploy]\".")
    folder = pathlib.Path(list(spec.submodule_search_locations)[0]) / "tflite" / "python"
    found = sorted(folder.glob("interpreter_wrapper_lite*.so"))
    if not found:
        raise RunError(f"larq-compute-engine's interpreter is missing from {folder}; reinstall it.")
    return found[0]


def _cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("BNNO_CACHE", "~/.cache/bnno")).expanduser()


def runtime_python(echo: Callable[[str], None] = print) -> str:
    """A Python whose NumPy is 1.x (``BNNO_ENGINE_PYTHON``, or bnno's own, made once)."""
    given = os.environ.get(ENV_VAR)
    if given:
        return given
    folder = _cache_dir() / "engine-python"
    python = folder / "bin" / "python"
    if python.exists():
        return str(python)
    echo(f"Making a Python with NumPy 1.x for larq-compute-engine's interpreter in {folder} (once).")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", NUMPY_1], check=True, capture_output=True)
    except subprocess.CalledProcessError as error:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        reason = (error.stderr or b"").decode(errors="replace").strip().splitlines()
        raise RunError(
            f"Could not make a Python with {NUMPY_1} for larq-compute-engine's interpreter "
            f"({reason[-1] if reason else 'no reason given'}); set {ENV_VAR} to one."
        ) from None
    return str(python)


def predict(flatbuffer: bytes, images: np.ndarray, threads: int = 1, echo: Callable[[str], None] = print,
            python: Optional[str] = None) -> np.ndarray:
    """The engine's outputs for ``images`` (one at a time: the flatbuffer's batch is 1)."""
    extension = _extension()
    with tempfile.TemporaryDirectory(prefix="bnno-engine-") as scratch:
        folder = pathlib.Path(scratch)
        (folder / "model.tflite").write_bytes(flatbuffer)
        np.save(folder / "images.npy", np.ascontiguousarray(images, dtype=np.float32))
        command = [python or runtime_python(echo), "-c", _RUNNER, str(extension), str(folder / "model.tflite"),
                   str(folder / "images.npy"), str(threads), str(folder / "out.npy")]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            raise RunError(f"larq-compute-engine's interpreter failed: {lines[-1] if lines else result.returncode}.")
        return np.load(folder / "out.npy")
