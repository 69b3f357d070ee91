"""Run directories found and read: the record, the history and the TensorBoard scalars.

Only files are read (``hparams.yaml``, ``history.csv``, ``train/`` events): no model,
no data set, no TensorFlow. A directory that cannot be reported (no finished epoch
yet, no ``hparams.yaml``, a damaged record) becomes one sentence, never a traceback.
"""

import csv
import dataclasses
import os
import pathlib
from typing import Any, Dict, Iterable, List, Optional, Tuple


from bnno import papers, run_dir
from bnno.errors import RunError
from bnno.report import events

TRAIN_EVENTS = "train"
EPOCH_TAG_PREFIX = "epoch_"  # Keras' TensorBoard callback names epoch-level scalars epoch_<name>
STEP_FLIP_PREFIX = "step_flip_ratio"  # --log-every: step_flip_ratio and step_flip_ratio/<layer>
STEPS_PER_EPOCH_TAG = "steps_per_epoch"  # logged with them, at step 0


class Unreportable(Exception):
    """A run directory that cannot be reported; the message is one sentence."""


@dataclasses.dataclass
class RunReport:
    """What one run directory says about its run."""

    run_dir: pathlib.Path
    name: str  # relative to the PATH it was found under
    record: Dict[str, Any]  # hparams.yaml
    history: List[Dict[str, float]]  # history.csv, one row per finished epoch
    scalars: Dict[str, Dict[int, float]]  # epoch-level TensorBoard scalars: {tag: {epoch: value}}
    wall_seconds: Optional[float]
    notes: List[str] = dataclasses.field(default_factory=list)
    varied: Dict[str, Any] = dataclasses.field(default_factory=dict)  # set by ``mark_varied``
    # --log-every's flip ratios: {tag: {global step, from 1: value}}, and the steps per epoch
    step_scalars: Dict[str, Dict[int, float]] = dataclasses.field(default_factory=dict)
    steps_per_epoch: Optional[int] = None

    @property
    def model(self) -> str:
        return self.record["model"]

    @property
    def dataset(self) -> str:
        return str(self.record.get("dataset", ""))

    @property
    def hparams_set(self) -> str:
        return str(self.record.get("hparams_set", ""))

    @property
    def hparams(self) -> Dict[str, Any]:
        return self.record.get("hparams") or {}

    @property
    def group(self) -> Tuple[str, str, str]:
        """Runs of one group share their model, data set and set: a sweep's runs."""
        return (self.model, papers.dataset_name(self.dataset), self.hparams_set)

    @property
    def epochs_done(self) -> int:
        return int(self.history[-1]["epoch"]) if self.history else 0

    @property
    def epochs_planned(self) -> Optional[int]:
        return self.hparams.get("epochs")

    @property
    def finished(self) -> bool:
        return (self.epochs_planned is not None and self.epochs_done >= self.epochs_planned
                and (self.run_dir / run_dir.MODEL_FILE).exists())

    def column(self, key: str) -> List[Tuple[int, float]]:
        """``[(epoch, value)]`` of a history.csv column, where the value is present."""
        return [(int(row["epoch"]), row[key]) for row in self.history if key in row]

    def scalar(self, tag: str) -> List[Tuple[int, float]]:
        """``[(epoch, value)]`` of an epoch-level TensorBoard scalar (``flip_ratio``,
        ``flip_ratio/<layer>``, ``gamma``, ``learning_rate``)."""
        return sorted(self.scalars.get(tag, {}).items())

    def layer_flip_tags(self) -> List[str]:
        """``flip_ratio/<layer>`` tags in the order they were logged: the model's."""
        return [tag for tag in self.scalars if tag.startswith("flip_ratio/")]

    def step_scalar(self, tag: str) -> List[Tuple[int, float]]:
        """``[(global step, value)]`` of a flip ratio logged every N steps (``bnno train
        --log-every N``): ``step_flip_ratio`` or ``step_flip_ratio/<layer>``."""
        return sorted(self.step_scalars.get(tag, {}).items())

    def layer_step_flip_tags(self) -> List[str]:
        """``step_flip_ratio/<layer>`` tags in the model's order; empty for runs
        trained without ``--log-every`` (or before bnno logged layers per step)."""
        return [tag for tag in self.step_scalars if tag.startswith(f"{STEP_FLIP_PREFIX}/")]

    def best(self, key: str) -> Optional[float]:
        values = [value for _, value in self.column(key)]
        return max(values) if values else None

    def final(self, key: str) -> Optional[float]:
        values = self.column(key)
        return values[-1][1] if values else None

    @property
    def final_flip_ratio(self) -> Optional[float]:
        """The overall flip ratio of the last logged epoch; ``None`` for runs without
        Bop (no binary kernels trained by flips) or without TensorBoard events."""
        if self.hparams.get("optimizer") not in ("bop", "bop2nd"):
            return None  # latent-weight runs log their latent signs' flips, not a flip optimizer's
        values = self.scalar("flip_ratio")
        return values[-1][1] if values else None

    @property
    def paper(self) -> Optional[papers.Figure]:
        return papers.figure_for(self.model, self.dataset, self.hparams_set)

    def label(self) -> str:
        """The run in a legend: the values its sweep set, else its name."""
        if self.varied:
            return ", ".join(f"{key}={format_value(value)}" for key, value in self.varied.items())
        return self.name


def format_value(value: Any) -> str:
    """A hyperparameter's value as a person writes it (``1e-06``, ``0.001``, ``step``)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --- finding ---------------------------------------------------------------------------


def _is_candidate(directory: pathlib.Path) -> bool:
    return (directory / run_dir.HPARAMS_FILE).is_file() or (directory / run_dir.HISTORY_FILE).is_file()


def find(path: pathlib.Path) -> List[Tuple[pathlib.Path, str]]:
    """``[(run directory, name)]``: ``path`` itself if it is a run directory, else every
    run directory below it (not looking inside runs), named relative to ``path``."""
    path = pathlib.Path(path)
    if _is_candidate(path):
        return [(path, path.resolve().name)]
    found = []
    for root, directories, _ in os.walk(path):
        root_path = pathlib.Path(root)
        if root_path != path and _is_candidate(root_path):
            found.append((root_path, root_path.relative_to(path).as_posix()))
            directories[:] = []
        else:
            directories[:] = sorted(d for d in directories if not d.startswith("."))
    return sorted(found, key=_sweep_order(path))


def _sweep_order(path: pathlib.Path):
    """Sort key of found runs: a sweep's runs in the order of its manifest (the grid's
    order, so 1e-08 comes before 1e-06), then everything else by name."""
    from bnno.manifest import MANIFEST_FILE, read_manifest

    listed: List[str] = []
    manifest = path / MANIFEST_FILE
    if manifest.is_file():
        try:
            listed = [str(run["name"]) for run in read_manifest(manifest)["runs"]]
        except (RunError, TypeError, KeyError):
            listed = []  # a damaged manifest: fall back to names
    position = {name: index for index, name in enumerate(listed)}
    return lambda item: (position.get(item[1], len(position)), item[1])


# --- reading ---------------------------------------------------------------------------


def _number(column: str, text: str) -> Optional[float]:
    """A history cell as a number; a column of a later bnno that holds no number is
    left out (``None``), but a column bnno writes as a number must be one."""
    try:
        return float(text)
    except ValueError:
        if column in run_dir.HISTORY_COLUMNS:
            raise
        return None


def _read_history(path: pathlib.Path) -> Tuple[List[Dict[str, float]], Optional[str]]:
    """The rows of ``history.csv`` as numbers, up to the first damaged row; and a
    sentence about that row, if any."""
    rows: List[Dict[str, float]] = []
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                if None in row or None in row.values():  # too many or too few fields
                    raise ValueError
                parsed = {key: _number(key, value) for key, value in row.items() if value != ""}
                parsed = {key: value for key, value in parsed.items() if value is not None}
                parsed["epoch"] = int(row["epoch"])
            except (KeyError, ValueError):
                return rows, (f"line {line} of {path} is cut short or damaged; "
                              f"the {len(rows)} rows before it are reported")
            rows.append(parsed)
    return rows, None


def _scalars(directory: pathlib.Path):
    """Epoch-level scalars by tag without its ``epoch_`` prefix, keyed by epoch (from
    1; Keras logs epoch N at step N - 1); the flip ratios logged every N steps, keyed
    by global step, and the steps per epoch logged with them (``None`` without); and
    the events' wall seconds."""
    scalars, seconds = events.read(directory)
    by_epoch = {
        tag[len(EPOCH_TAG_PREFIX):]: {step + 1: value for step, value in values.items()}
        for tag, values in scalars.items() if tag.startswith(EPOCH_TAG_PREFIX)
    }
    by_step = {tag: values for tag, values in scalars.items() if tag.startswith(STEP_FLIP_PREFIX)}
    logged = list(scalars.get(STEPS_PER_EPOCH_TAG, {}).values())
    steps_per_epoch = int(logged[-1]) if logged and logged[-1] >= 1 else None
    return by_epoch, by_step, steps_per_epoch, seconds


def load(directory: pathlib.Path, name: str) -> RunReport:
    """Read one run directory; ``Unreportable`` with one sentence if it cannot be."""
    directory = pathlib.Path(directory)
    if not (directory / run_dir.HPARAMS_FILE).is_file():
        raise Unreportable(f"{directory} has a {run_dir.HISTORY_FILE} but no {run_dir.HPARAMS_FILE}, "
                           "so what ran there is unknown; skipped.")
    try:
        record = run_dir.read_record(directory)
    except RunError as error:
        raise Unreportable(f"{str(error).rstrip('.')}; skipped.") from None
    history_path = directory / run_dir.HISTORY_FILE
    if not history_path.is_file():
        raise Unreportable(f"{directory} has not finished an epoch yet (no {run_dir.HISTORY_FILE}); skipped.")
    history, damage = _read_history(history_path)
    if not history:
        reason = damage or f"its {run_dir.HISTORY_FILE} has no rows"
        raise Unreportable(f"{directory} has no finished epoch to report ({reason}); skipped.")
    scalars, step_scalars, steps_per_epoch, event_seconds = _scalars(directory / TRAIN_EVENTS)
    recorded_seconds = history[-1].get("wall_seconds")
    if recorded_seconds is not None:
        wall_seconds: Optional[float] = recorded_seconds
    else:  # runs recorded before history.csv had the column
        wall_seconds = event_seconds or None
    notes = [damage] if damage else []
    if record.get("init_from"):  # a two-stage run (bnno train --init-from)
        notes.append(f"started from {record['init_from']}")
    return RunReport(directory, name, record, history, scalars, wall_seconds, notes=notes,
                     step_scalars=step_scalars, steps_per_epoch=steps_per_epoch)


def collect(paths: Iterable[pathlib.Path]) -> Tuple[List[RunReport], List[Dict[str, str]]]:
    """The runs found under ``paths`` (each a run or a directory of runs), and the
    directories skipped with why (``[{"path": ..., "reason": one sentence}]``). A path
    with no run directory at all is the caller's usage error (see ``empty_paths``)."""
    runs, skipped, seen = [], [], set()
    for path in paths:
        for directory, name in find(path):
            if directory.resolve() in seen:  # named twice (a run and its sweep)
                continue
            seen.add(directory.resolve())
            try:
                runs.append(load(directory, name))
            except Unreportable as reason:
                skipped.append({"path": str(directory), "reason": str(reason)})
    mark_varied(runs)
    return runs, skipped


def empty_paths(paths: Iterable[pathlib.Path]) -> List[pathlib.Path]:
    """The paths below which there is no run directory at all."""
    return [pathlib.Path(path) for path in paths if not find(path)]


# --- what varies -----------------------------------------------------------------------


_MISSING = object()


def varied_keys(runs: List[RunReport]) -> List[str]:
    """The hyperparameters whose values differ between ``runs`` (in the order of the
    first run's set), and ``seed`` if it differs."""
    keys: List[str] = []
    for run in runs:
        keys += [key for key in run.hparams if key not in keys]
    varied = [key for key in keys
              if len({repr(run.hparams.get(key, _MISSING)) for run in runs}) > 1]
    if len({run.record.get("seed") for run in runs}) > 1:
        varied.append("seed")
    return varied


def mark_varied(runs: List[RunReport]) -> None:
    """Set each run's ``varied``: the values that differ within its group (the runs of
    the same model, data set and set, as a sweep's are)."""
    groups: Dict[Tuple[str, str, str], List[RunReport]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    for members in groups.values():
        keys = varied_keys(members)
        for run in members:  # a key the run's set lacks (runs of another bnno) is left out
            run.varied = {key: run.record.get("seed") if key == "seed" else run.hparams[key]
                          for key in keys if key == "seed" or key in run.hparams}
