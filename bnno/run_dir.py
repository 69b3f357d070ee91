"""A run's directory: what was run, what it produced so far, and whether it may go on.

A run directory holds

- ``hparams.yaml``, the run record: the definition of the run (model, data set, the
  resolved hyperparameters, ...), the overrides and command line that produced it, the
  weights it started from (``--init-from``), the versions, and every extension of its
  epochs;
- ``history.csv``, one row per finished epoch;
- ``checkpoints/``, a checkpoint after every epoch (the newest ``CHECKPOINTS_KEPT``),
  and in ``checkpoints/in_epoch/`` the newest checkpoints inside an epoch;
- TensorBoard events (``train/``, ``validation/``), ``summary.txt``, and at the end
  ``model.keras`` and ``binary.weights.h5``.

Every file is written atomically, so a process killed at any moment leaves a readable
directory. :mod:`bnno.training` runs the loop; this module imports TensorFlow (Keras,
tensorflow-datasets) only to record their versions in a new run's record
(:func:`write_record`, called by training, which has imported them already), so reading
runs (``bnno report``, :func:`read_record`, :func:`check_resumable`) never does.
"""

import csv
import dataclasses
import datetime
import os
import pathlib
import platform
from typing import Any, Dict, List, Optional

import yaml

from bnno import __version__
from bnno.config import options
from bnno.errors import RunError, UsageError

HPARAMS_FILE = "hparams.yaml"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
#: Checkpoints inside an epoch (``--checkpoint-every``, or a stop signal), under
#: ``checkpoints/``: ``step-<global step>``, the newest ``IN_EPOCH_KEPT``.
IN_EPOCH_DIR = "in_epoch"
MODEL_FILE = "model.keras"
BINARY_WEIGHTS_FILE = "binary.weights.h5"
SUMMARY_FILE = "summary.txt"
HISTORY_COLUMNS = [
    "epoch", "loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy", "val_top5_accuracy",
    "wall_seconds",
]
#: Checkpoints kept (the newest): if the newest is unreadable (a full disk, a crash
#: during a copy), the run resumes from the newest readable one.
CHECKPOINTS_KEPT = 3
#: Checkpoints inside an epoch kept: two, so that one survives a crash while the next
#: is written; an epoch's own checkpoint supersedes them.
IN_EPOCH_KEPT = 2


@dataclasses.dataclass
class Run(options.RunOptions):
    """Everything that defines a training run; the fields in ``IDENTITY`` must match
    for a run to be resumed. The options that ``bnno train`` and ``bnno sweep`` share
    (preprocess, data_dir, max_steps, mixed_precision, ...) are the fields of
    ``bnno.config.options.RunOptions``, keyword-only."""

    model: str
    dataset: str
    hparams_set: str
    hparams: Dict[str, Any]
    output_dir: pathlib.Path
    overrides: Dict[str, str] = dataclasses.field(default_factory=dict)
    hparams_file: Optional[str] = None  # a user's own sets (--hparams-file), if any
    seed: int = 0
    verbose: int = 1
    command_line: str = ""
    # --init-from: the weights a new run starts from (bnno.init_from); once read, the
    # file read (model.keras, a checkpoint, a weights file). Not part of IDENTITY: a
    # resumed run continues from its own checkpoints and never reads it again.
    init_from: Optional[str] = None
    # The plugin that provides the model (``bnno.plugins.Plugin.record()``: as given, its
    # file and the file's SHA-256); None for bnno's own models. Resuming needs the same
    # file again, unchanged (``check_resumable``).
    plugin: Optional[Dict[str, Any]] = None

    # Resuming needs these to match: they define the computation (with the run options
    # marked identity=True: preprocess, image_size, max_steps, mixed_precision, tf32).
    IDENTITY = ("model", "dataset", "hparams_set", "hparams", "seed", *options.IDENTITY)

    def identity(self) -> Dict[str, Any]:
        identity = {key: getattr(self, key) for key in self.IDENTITY}
        identity["hparams"] = dict(self.hparams)  # a Config is a mapping; records hold plain YAML
        return identity

    @property
    def config(self):
        """The run's hyperparameters as a typed ``bnno.config.Config`` (``hparams`` itself
        when it is one, as ``bnno.config.resolve`` returns; else read and checked)."""
        from bnno.config import Config

        return Config.from_values(self.hparams, f"{self.model} set '{self.hparams_set}'")

    def __post_init__(self):
        self.output_dir = pathlib.Path(self.output_dir)


def default_output_dir(prefix: str, dataset: str, model: str, hparams_set: str) -> pathlib.Path:
    """``<prefix>/<dataset>/<model>/<set>_<timestamp>``; a folder data set by its name."""
    dataset_name = pathlib.Path(dataset.rstrip("/\\")).name if os.sep in dataset else dataset
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path(prefix).expanduser() / dataset_name.replace(":", "_") / model / f"{hparams_set}_{stamp}"


def atomic_write(path: pathlib.Path, text: str) -> None:
    """Write ``text`` so that a reader never sees a half-written file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


# --- the run record ------------------------------------------------------------------


def _versions() -> Dict[str, str]:
    # The only TensorFlow import of this module: a record is written by a training run.
    import keras
    import tensorflow as tf

    try:
        import tensorflow_datasets as tfds

        tfds_version = tfds.__version__
    except ImportError:  # pragma: no cover - a dependency
        tfds_version = "missing"
    return {
        "bnno": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
        "tensorflow_datasets": tfds_version, "python": platform.python_version(),
    }


def write_record(run: Run) -> None:
    """Write a new run's ``hparams.yaml``."""
    record = {
        **run.identity(),
        "overrides": run.overrides,
        "hparams_file": run.hparams_file,
        "data_dir": run.data_dir,
        "init_from": run.init_from,
        "plugin": run.plugin,
        "command_line": run.command_line,
        # The other run options as this run started (a resumed run may change them).
        "run_options": {
            option.name: getattr(run, option.name) for option in options.OPTIONS
            if not option.identity and option.name != "data_dir"
        },
        "versions": _versions(),
    }
    atomic_write(run.output_dir / HPARAMS_FILE, yaml.safe_dump(record, sort_keys=False))


def read_record(output_dir: pathlib.Path) -> Dict[str, Any]:
    """The ``hparams.yaml`` of a run directory; ``RunError`` if it has none or it
    cannot be read."""
    path = pathlib.Path(output_dir) / HPARAMS_FILE
    if not path.exists():
        raise RunError(f"{output_dir} is not a bnno run directory: it has no {HPARAMS_FILE}.")
    try:
        with open(path, encoding="utf-8") as f:
            record = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise RunError(f"The run record {path} cannot be read ({first_line(error)}).") from None
    if not isinstance(record, dict) or "model" not in record:
        raise RunError(f"The run record {path} is damaged: it names no model.")
    return record


def data_options(record: Dict[str, Any]) -> Dict[str, Any]:
    """How the run of ``record`` reads its data set: the keyword arguments of
    ``bnno.data.load`` and ``bnno.data.describe`` besides the data set's name."""
    return {"preprocess": record.get("preprocess", "default"), "data_dir": record.get("data_dir"),
            "image_size": record.get("image_size")}


def build_model(record: Dict[str, Any]):
    """The model of the run of ``record``, untrained: its builder's, for its data set's
    image shape and number of classes (its plugin, if any, already loaded)."""
    from bnno import data, models

    input_shape, num_classes = data.describe(record["dataset"], **data_options(record))
    return models.build(record["model"], record["hparams"], input_shape, num_classes)


def first_line(error: Exception) -> str:
    """The first line of an exception's message (its type's name if it has none), for
    one-sentence messages."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _differences(recorded: Dict[str, Any], run: Run) -> List[str]:
    """``key: old -> new`` for every identity field (and hyperparameter) that differs.
    A field missing from an older record counts as its default."""
    from bnno.config import ADDED_KEYS

    defaults = {field.name: field.default for field in dataclasses.fields(Run)}
    current = run.identity()
    differences = []
    for key in Run.IDENTITY:
        if key == "hparams":
            old, new = recorded.get("hparams", {}), current["hparams"]
            old = {**{k: v for k, v in ADDED_KEYS.items() if k in new}, **old}
            differences += [
                f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
                for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
            ]
        elif key == "dataset" and _same_folder(recorded.get(key), current[key]):
            continue  # an image folder recorded relative to the working directory
        elif recorded.get(key, defaults.get(key)) != current[key]:
            differences.append(f"{key}: {recorded.get(key, defaults.get(key))!r} -> {current[key]!r}")
    return differences


def _same_folder(recorded: Optional[str], current: str) -> bool:
    return bool(recorded) and os.path.isabs(current) and os.path.abspath(recorded) == current


def check_resumable(run: Run) -> Optional[int]:
    """Refuse to continue the run in ``run.output_dir`` with a different definition.

    Raising ``epochs`` (or lowering it) is allowed where no schedule depends on the
    total number of epochs; the recorded number of epochs is returned then (``None``
    when it is unchanged), for :func:`record_extension`.
    """
    from bnno import plugins

    recorded = read_record(run.output_dir)
    plugins.check_record(recorded, str(run.output_dir))
    recorded_epochs = recorded.get("hparams", {}).get("epochs")
    differences = _differences(recorded, run)
    only_epochs = differences == [f"epochs: {recorded_epochs!r} -> {run.hparams.get('epochs')!r}"]
    if only_epochs:
        dependent = run.config.schedules_depending_on_epochs()
        if dependent:
            raise UsageError(
                f"{run.output_dir} cannot be extended from {recorded_epochs} to "
                f"{run.hparams['epochs']} epochs: its {' and '.join(dependent)} schedule is linear "
                "over the whole run, so the steps already taken would have had other values; "
                "train into a new --output-dir instead."
            )
        return recorded_epochs
    if differences:
        raise UsageError(
            f"{run.output_dir} holds a run with other settings ({'; '.join(differences)}); "
            "resume it with its own settings, or pass a new --output-dir."
        )
    return None


def record_extension(run: Run, previous_epochs: int, at_epoch: int) -> None:
    """Note in ``hparams.yaml`` that the run's epochs went from ``previous_epochs`` to
    ``run.hparams["epochs"]`` after epoch ``at_epoch``; everything else is kept."""
    record = read_record(run.output_dir)
    record["hparams"]["epochs"] = run.hparams["epochs"]
    record.setdefault("extensions", []).append({
        "epochs": [previous_epochs, run.hparams["epochs"]],
        "after_epoch": at_epoch,
        "command_line": run.command_line,
    })
    atomic_write(run.output_dir / HPARAMS_FILE, yaml.safe_dump(record, sort_keys=False))


# --- history ---------------------------------------------------------------------------


class History:
    """``history.csv``: one row per finished epoch, rewritten atomically.

    Rows after the last checkpoint (an epoch that was being written when the process
    died) are dropped on resume, so every epoch appears exactly once.
    """

    def __init__(self, path: pathlib.Path, keep_epochs: int):
        self.path = path
        self.rows: List[Dict[str, str]] = []
        if path.exists():
            with open(path, newline="", encoding="utf-8") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= keep_epochs]

    @property
    def wall_seconds(self) -> float:
        """Training wall time up to the last kept epoch (0 for runs recorded before
        the column existed)."""
        if not self.rows or not self.rows[-1].get("wall_seconds"):
            return 0.0
        return float(self.rows[-1]["wall_seconds"])

    def append(self, epoch: int, logs: Dict[str, float]) -> None:
        row = {"epoch": str(epoch), **{k: f"{logs[k]:.6g}" for k in HISTORY_COLUMNS[1:] if k in logs}}
        if "wall_seconds" in logs:
            row["wall_seconds"] = f"{logs['wall_seconds']:.1f}"
        self.rows.append(row)
        lines = [",".join(HISTORY_COLUMNS)]
        lines += [",".join(r.get(k, "") for k in HISTORY_COLUMNS) for r in self.rows]
        atomic_write(self.path, "\n".join(lines) + "\n")


# --- checkpoints --------------------------------------------------------------------------


def checkpoints_newest_first(checkpoint_dir: pathlib.Path, name: str = "ckpt") -> List[pathlib.Path]:
    """The checkpoint prefixes (``.../ckpt-N``; ``name``-N) in ``checkpoint_dir``,
    newest (highest N) first.

    Found from the files themselves, not TensorFlow's ``checkpoint`` state file, so a
    damaged state file does not hide them.
    """
    prefixes = []
    for index in pathlib.Path(checkpoint_dir).glob(f"{name}-*.index"):
        number = index.name[len(name) + 1:-len(".index")]
        if number.isdigit():
            prefixes.append((int(number), index.with_suffix("")))
    return [prefix for _, prefix in sorted(prefixes, reverse=True)]


def checkpoint_number(prefix: pathlib.Path) -> int:
    """N of ``.../ckpt-N`` (the epoch) or ``.../step-N`` (the global step)."""
    return int(prefix.name.rsplit("-", 1)[1])


def in_epoch_checkpoints_newest_first(checkpoint_dir: pathlib.Path) -> List[pathlib.Path]:
    """The prefixes ``.../in_epoch/step-N`` of the checkpoints inside epochs, newest first."""
    return checkpoints_newest_first(pathlib.Path(checkpoint_dir) / IN_EPOCH_DIR, name="step")


def has_checkpoints(output_dir: pathlib.Path) -> bool:
    """Whether the run in ``output_dir`` has written a checkpoint (of an epoch, or
    inside one) that it would resume from."""
    checkpoint_dir = pathlib.Path(output_dir) / CHECKPOINT_DIR
    return bool(checkpoints_newest_first(checkpoint_dir) or in_epoch_checkpoints_newest_first(checkpoint_dir))


def set_aside(prefix: pathlib.Path) -> pathlib.Path:
    """Move an unreadable checkpoint's files into ``checkpoints/unreadable/`` (kept,
    never deleted, never tried again); returns that folder."""
    folder = prefix.parent / "unreadable"
    folder.mkdir(exist_ok=True)
    for path in prefix.parent.glob(prefix.name + ".*"):
        target = folder / path.name
        suffix = 1
        while target.exists():  # an earlier unreadable checkpoint of the same epoch
            target = folder / f"{path.name}.{suffix}"
            suffix += 1
        os.replace(path, target)
    return folder
