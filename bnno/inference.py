"""Exported models at work: accuracy and latency with the Larq Compute Engine (issue 21).

- :func:`evaluate_flatbuffer`: top-1 and top-5 of a ``.tflite`` on a validation split,
  predicted by the engine's interpreter (``bnno evaluate model.tflite``).
- :func:`latency`: milliseconds per image at batch 1 of the engine's binary model, the
  same model as a float TFLite file and the Keras model, at each thread count
  (``bnno benchmark --inference RUN_OR_TFLITE``). The two TFLite models run in the
  engine's interpreter, timed in its own process around each call; the Keras model runs
  in a fresh Python per thread count (``bnno.keras_latency``), because TensorFlow fixes
  its thread pools when it starts.
"""

import dataclasses
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from bnno import run_dir, tflite_file
from bnno.errors import RunError, UsageError

__all__ = ["cpu_name", "evaluate_flatbuffer", "latency", "latency_lines"]

#: Seconds between progress lines of a long evaluation.
PROGRESS_SECONDS = 30


def is_flatbuffer_path(path) -> bool:
    """Whether ``path`` names a TFLite file rather than a run directory."""
    path = pathlib.Path(path)
    return path.suffix == ".tflite" or path.is_file()


def _source(flatbuffer: bytes, path, dataset: Optional[str]) -> Dict[str, Any]:
    """The data set, preprocess function and image size to evaluate ``flatbuffer`` on:
    those ``bnno export`` stored in it, with ``dataset`` given instead where asked."""
    stored = tflite_file.read_metadata(flatbuffer) or {}
    if dataset:
        return {"dataset": dataset, "preprocess": None, "data_dir": None, "image_size": None}
    if not stored.get("dataset"):
        raise UsageError(f"{path} was not written by bnno export, so it does not say which data set it "
                         "takes; pass --dataset.")
    return stored


def evaluate_flatbuffer(path, data_dir: Optional[str] = None, dataset: Optional[str] = None,
                        preprocess: Optional[str] = None, image_size: Optional[int] = None,
                        echo: Callable[[str], None] = print) -> Dict[str, Any]:
    """Top-1 and top-5 accuracy of the TFLite model at ``path`` on the validation split
    of the data set it was exported from (or ``dataset``), run by the engine with as
    many threads as there are CPUs."""
    import numpy as np

    from bnno import data, engine_runtime
    from bnno.export import require_engine

    flatbuffer = tflite_file.read(path)
    require_engine("Evaluating a .tflite")
    source = _source(flatbuffer, path, dataset)
    name = source["dataset"]
    preprocess = preprocess or source.get("preprocess") or data.default_preprocess(name)
    loaded = data.load(name, preprocess=preprocess, data_dir=data_dir or source.get("data_dir"),
                       image_size=image_size or source.get("image_size"))
    correct = np.zeros(2)
    seen, last_report = 0, time.monotonic()
    with engine_runtime.Engine(echo=echo) as engine:
        engine.load(flatbuffer, threads=os.cpu_count() or 1)
        if list(engine.input_shape[1:]) != list(loaded.input_shape):
            raise UsageError(
                f"{path} takes images of shape {tuple(engine.input_shape[1:])}, but {name} with "
                f"{preprocess} gives {tuple(loaded.input_shape)}; pass the --dataset, --preprocess-fn "
                "or --image-size it was trained with."
            )
        for images, labels in loaded.validation(100):
            outputs = engine.predict(images.numpy())
            labels = labels.numpy().reshape(-1)
            top5 = np.argsort(-outputs, axis=-1)[:, :5]
            correct += [np.sum(top5[:, 0] == labels), np.sum(np.any(top5 == labels[:, None], axis=-1))]
            seen += len(labels)
            if time.monotonic() - last_report > PROGRESS_SECONDS:
                echo(f"evaluated {seen} images: top-1 {correct[0] / seen:.4f} so far")
                last_report = time.monotonic()
    if seen == 0:
        raise RunError(f"The validation split of {name} has no images.")
    return {"images": seen, "accuracy": correct[0] / seen, "top5_accuracy": correct[1] / seen,
            "dataset": name, "preprocess": preprocess}


@dataclasses.dataclass
class Timed:
    """One model's milliseconds per image at each thread count."""

    name: str
    milliseconds: Dict[int, float]
    note: str = ""


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _keras_milliseconds(output_dir: pathlib.Path, threads: int, warmup: int, repeats: int,
                        plugins: Sequence[str]) -> float:
    command = [sys.executable, "-m", "bnno.keras_latency", str(output_dir), str(threads), str(warmup),
               str(repeats), *plugins]
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        errors = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise RunError(f"Timing the Keras model of {output_dir} failed: "
                       f"{errors[-1].rstrip('.') if errors else result.returncode}.")
    return 1000 * statistics.median(json.loads(lines[-1])["seconds"])


def latency(target, threads: Sequence[int] = (1, 2), warmup: int = 3, repeats: int = 20,
            plugins: Sequence[str] = (), echo: Callable[[str], None] = print) -> Dict[str, Any]:
    """Median milliseconds per image (batch 1) at each of ``threads`` of: the engine's
    binary model (``target`` if it is a ``.tflite``, else the run's model converted as
    ``bnno export`` does), the same model as a float TFLite file and the Keras model
    (both from the run: ``target``, or the run the ``.tflite`` names). One fixed
    random image; ``warmup`` untimed runs, then ``repeats`` timed ones."""
    import numpy as np

    from bnno import engine_runtime
    from bnno import export as exporting

    target = pathlib.Path(target)
    output_dir: Optional[pathlib.Path] = None
    flatbuffer = float_flatbuffer = None
    if is_flatbuffer_path(target):
        flatbuffer = tflite_file.read(target)
        stored = (tflite_file.read_metadata(flatbuffer) or {}).get("run")
        if stored and (pathlib.Path(stored) / run_dir.HPARAMS_FILE).exists():
            output_dir = pathlib.Path(stored)
    elif (target / run_dir.HPARAMS_FILE).exists():
        output_dir = target
    else:
        raise UsageError(f"{target} is neither a run directory (no {run_dir.HPARAMS_FILE}) nor a .tflite file.")
    if output_dir is not None:
        model, record = exporting.load_run_model(output_dir)
        exporting.quantize_kernels(model)
        if flatbuffer is None:
            conversion = exporting.convert(model, record["model"])
            flatbuffer, float_flatbuffer = conversion.flatbuffer, conversion.float_flatbuffer
        else:
            float_flatbuffer = exporting.float_flatbuffer(model, record["model"])
    counts = tflite_file.op_counts(flatbuffer)
    # (row, flatbuffer, XNNPACK): the engine as its interpreter runs by default (XNNPACK off;
    # it does not take LceBconv2d), the float model as TFLite runs it by default (XNNPACK on)
    # and with TFLite's builtin kernels, the engine's float parts' like.
    timed = [(Timed("engine, 1-bit", {}, "LceBconv2d x%d" % counts.get("LceBconv2d", 0)), flatbuffer, False)]
    if float_flatbuffer is not None:
        timed += [(Timed("float TFLite, XNNPACK", {}), float_flatbuffer, True),
                  (Timed("float TFLite, builtin", {}), float_flatbuffer, False)]
    image = None
    with engine_runtime.Engine(echo=echo) as engine:
        for count in threads:
            for row, model_bytes, xnnpack in timed:
                engine.load(model_bytes, threads=count, xnnpack=xnnpack)
                if image is None:
                    image = np.random.default_rng(0).standard_normal(engine.input_shape[1:]).astype(np.float32)
                row.milliseconds[count] = 1000 * statistics.median(engine.latencies(image, warmup, repeats))
    rows = [row for row, _, _ in timed]
    if output_dir is not None:
        keras_row = Timed("Keras (TensorFlow)", {}, "tf.function, training=False")
        for count in threads:
            keras_row.milliseconds[count] = _keras_milliseconds(output_dir, count, warmup, repeats, plugins)
        rows.append(keras_row)
    return {
        "target": str(target), "run": str(output_dir) if output_dir else None, "cpu": cpu_name(),
        "cpus": os.cpu_count(), "machine": platform.machine(), "warmup": warmup, "repeats": repeats,
        "threads": list(threads), "engine_ops": counts,
        "kernels": _kernels(),
        "models": [{"model": row.name, "milliseconds": {str(k): v for k, v in row.milliseconds.items()},
                    "note": row.note} for row in rows],
    }


def _kernels() -> str:
    """Which kernels ran, in words (larq compute-engine: core/bgemm/ruy_trmul_params.h;
    hand-written bgemm kernels exist for ARM only, kernels_aarch64.h and kernels_arm32.h)."""
    machine = platform.machine()
    arm = machine.lower() in ("aarch64", "arm64") or machine.lower().startswith("arm")
    where = ("its hand-written ARM kernels" if arm else
             f"ruy's portable C++ path on {machine} (the engine has hand-written kernels for ARM only)")
    return (f"Kernels: LceBconv2d is the engine's optimized bgemm (not its reference bconv), here {where}; the "
            "engine's other ops and the float model's are TFLite's builtin kernels, or XNNPACK's where marked.")


def latency_lines(result: Dict[str, Any]) -> List[str]:
    """What ``bnno benchmark --inference`` prints: an aligned table and its conditions."""
    threads = result["threads"]
    header = ["model"] + [f"{count} thread{'s' if count > 1 else ''}" for count in threads] + [""]
    rows = [header]
    for row in result["models"]:
        rows.append([row["model"]] + [f"{row['milliseconds'][str(count)]:.2f} ms" for count in threads]
                    + [row["note"]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"Latency per image, batch 1, median of {result['repeats']} after {result['warmup']} warm-up "
             f"runs, on {result['cpu']} ({result['cpus']} CPUs):"]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:-1])]
        lines.append(("  ".join(cells) + "  " + row[-1]).rstrip())
    if result["run"] is None:
        lines.append("The float TFLite and Keras models need the run: the .tflite names none that is still there.")
    lines.append(result["kernels"])
    return lines
