"""Running a flatbuffer with the Larq Compute Engine's own interpreter.

larq-compute-engine 0.16.0 (its latest release) ships its interpreter as an extension
compiled against NumPy 1.x. Next to TensorFlow 2.21 (whose ml-dtypes, like JAX, needs
NumPy 2) it reads every input array as 0 bytes ("Expected 3072 bytes but got 0 for
tensor serving_default_input_layer:0"), so it cannot run in bnno's own process. bnno
runs it in a separate Python process whose NumPy is 1.x, which needs nothing else: the
extension is loaded from the installed package by its path, without the package's
``__init__`` (which imports TensorFlow), by ``bnno/engine_runner.py``, which
:class:`Engine` talks to over a pipe; latencies are timed there, around the
interpreter's own call. That Python is

- ``BNNO_ENGINE_PYTHON``, if set (any Python 3.10-3.12 with ``numpy<2``);
- else an environment bnno makes once, ``~/.cache/bnno/engine-python`` (``python -m
  venv`` and ``pip install numpy==1.26.4``; ``BNNO_CACHE`` moves it), and reuses.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
from typing import Callable, List, Optional, Union

import numpy as np

from bnno.errors import RunError

__all__ = ["ENV_VAR", "Engine", "predict", "runtime_python"]

ENV_VAR = "BNNO_ENGINE_PYTHON"
NUMPY_1 = "numpy==1.26.4"


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


#: The script that serves the interpreter (it imports nothing of bnno).
RUNNER = pathlib.Path(__file__).with_name("engine_runner.py")


class Engine:
    """The engine's interpreter in its own NumPy-1 process (``bnno/engine_runner.py``):
    load a flatbuffer, predict images, time one image. A context manager; ``RunError``
    in one sentence when the interpreter fails."""

    def __init__(self, echo: Callable[[str], None] = print, python: Optional[str] = None):
        command = [python or runtime_python(echo), str(RUNNER), str(_extension())]  # may refuse: first
        self._scratch = tempfile.TemporaryDirectory(prefix="bnno-engine-")
        self._stderr = open(pathlib.Path(self._scratch.name) / "stderr.txt", "w+b")
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._stderr)
        self.input_shape: Optional[List[int]] = None
        self.output_shape: Optional[List[int]] = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._stderr.close()
        self._scratch.cleanup()

    def load(self, flatbuffer: Union[bytes, str, pathlib.Path], threads: int = 1, xnnpack: bool = False) -> None:
        """Make the interpreter for ``flatbuffer`` (bytes or a file) with ``threads``
        threads (XNNPACK, TFLite's float delegate, off unless ``xnnpack``)."""
        if isinstance(flatbuffer, bytes):
            path = pathlib.Path(self._scratch.name) / "model.tflite"
            path.write_bytes(flatbuffer)
            flatbuffer = path
        answer = self._ask({"load": str(flatbuffer), "threads": int(threads), "xnnpack": bool(xnnpack)})
        self.input_shape, self.output_shape = answer["input_shape"], answer["output_shape"]

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The model's outputs for a batch of ``images`` (run one at a time)."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        answer = self._ask({"predict": list(images.shape)}, images)
        shape = answer["shape"]
        return np.frombuffer(self._read(int(np.prod(shape)) * 4), dtype=np.float32).reshape(shape)

    def latencies(self, image: np.ndarray, warmup: int, repeats: int) -> List[float]:
        """Seconds of each of ``repeats`` runs of one image (batch 1), after ``warmup``
        untimed runs, timed in the engine's process around the interpreter's call."""
        image = np.ascontiguousarray(image, dtype=np.float32).reshape([1] + list(np.shape(image))[-3:])
        return self._ask({"time": list(image.shape), "warmup": int(warmup), "repeats": int(repeats)}, image)["seconds"]

    def _ask(self, request, array: Optional[np.ndarray] = None):
        try:
            self._process.stdin.write((json.dumps(request) + "\n").encode())
            if array is not None:
                self._process.stdin.write(array.tobytes())
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = b""
        if not line:
            raise RunError(f"larq-compute-engine's interpreter failed: {self._last_error()}.")
        answer = json.loads(line)
        if "error" in answer:
            # "RuntimeError: ERROR at ./larq_compute_engine/...h:156 : Expected ..." -> "Expected ..."
            reason = re.sub(r"^\w+: ERROR at \S+ : ", "", answer["error"]).rstrip(".")
            raise RunError(f"larq-compute-engine's interpreter failed: {reason}.")
        return answer

    def _read(self, size: int) -> bytes:
        data = self._process.stdout.read(size)
        if len(data) != size:
            raise RunError(f"larq-compute-engine's interpreter failed: {self._last_error()}.")
        return data

    def _last_error(self) -> str:
        self._process.wait(timeout=30)
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1].strip() if lines else f"it exited with status {self._process.returncode}"


def predict(flatbuffer: bytes, images: np.ndarray, threads: int = 1, echo: Callable[[str], None] = print,
            python: Optional[str] = None) -> np.ndarray:
    """The engine's outputs for ``images`` (one at a time: the flatbuffer's batch is 1)."""
    with Engine(echo=echo, python=python) as engine:
        engine.load(flatbuffer, threads=threads)
        return engine.predict(images)
