"""Grids of runs: the paper's section 5.1 experiments as one command.

A sweep is the cross product of a few hyperparameters' values (``--grid
threshold=1e-8,1e-7 --grid gamma=1e-3,1e-4``), times seeds, on top of one model, data
set and hyperparameter set. Each point is an ordinary ``bnno train`` run in its own
directory under the sweep's, named by its values (``threshold=1e-08_gamma=0.001_seed=0``),
and ``sweep.yaml`` lists every run, its values and its state.

Executors:

- ``local`` trains the points one after another in this process (one TensorFlow
  start-up for the whole sweep), skipping finished runs and resuming an interrupted
  one, as ``bnno train`` does;
- ``print`` prints one ``bnno train`` command per line, for GNU parallel or any
  scheduler;
- ``slurm`` writes a job-array batch script, one array task per run.

The manifest's definition (model, data set, set, grid, seeds, overrides) must match
on a second invocation: a changed grid is refused with what differs, never mixed
into the runs already there. This module imports TensorFlow only to train.
"""

import dataclasses
import itertools
import pathlib
import shlex
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from bnno import plugins, run_dir
from bnno.config import options as run_options
from bnno.errors import Interrupted, RunError, UsageError
from bnno.manifest import MANIFEST_FILE, read_manifest, write_manifest

SLURM_FILE = "sweep.sbatch"
COMMANDS_FILE = "commands.txt"
EXECUTORS = ("local", "print", "slurm")

#: Fields of the manifest that define the sweep: a second invocation must match them.
DEFINITION = ("model", "dataset", "hparams_set", "hparams_file", "grid", "seeds", "overrides", "init_from")


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of a sweep: the grid's values (typed, in the grid's key order) and a seed."""

    values: Tuple[Tuple[str, Any], ...]
    seed: int

    @property
    def name(self) -> str:
        """The run's directory name, e.g. ``threshold=1e-06_gamma=0.001_seed=0``."""
        parts = [f"{key}={format_value(value)}" for key, value in self.values]
        return "_".join(parts + [f"seed={self.seed}"]).replace("/", "-").replace(" ", "")

    @property
    def label(self) -> str:
        """The values as a person reads them: ``threshold=1e-06 gamma=0.001``."""
        return " ".join(f"{key}={format_value(value)}" for key, value in self.values)

    def overrides(self) -> Dict[str, str]:
        return {key: format_value(value) for key, value in self.values}


def format_value(value: Any) -> str:
    """A value as it appears in run names and commands: ``1e-06``, ``0.001``, ``[30, 60]``."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


@dataclasses.dataclass
class Sweep:
    """What a sweep runs: the definition, and the train options shared by every run."""

    model: str
    dataset: str
    hparams_set: str
    grid: Dict[str, List[Any]]  # key -> typed values, in the order given
    output_dir: pathlib.Path
    seeds: int = 1
    overrides: Dict[str, str] = dataclasses.field(default_factory=dict)
    hparams_file: Optional[str] = None
    #: ``--init-from`` of every run (absolute): a stage-2 grid started from one stage-1 run.
    init_from: Optional[str] = None
    #: ``bnno train`` options for every run, as ``Run`` fields (preprocess, data_dir, ...).
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)
    #: ``--plugin`` of every run (absolute files, or modules): the model may be a plugin's.
    plugins: List[str] = dataclasses.field(default_factory=list)
    _base: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def base(self):
        """The configuration every point starts from (``base_config``), read once."""
        if self._base is None:
            self._base = base_config(self.model, self.hparams_set, self.overrides, self.hparams_file)
        return self._base

    def points(self) -> List[Point]:
        """The cross product of the grid's values, times the seeds 0..seeds-1."""
        keys = list(self.grid)
        return [
            Point(tuple(zip(keys, values)), seed)
            for values in itertools.product(*(self.grid[key] for key in keys))
            for seed in range(self.seeds)
        ]

    def definition(self) -> Dict[str, Any]:
        return {
            "model": self.model, "dataset": self.dataset, "hparams_set": self.hparams_set,
            "hparams_file": self.hparams_file, "grid": self.grid, "seeds": self.seeds,
            "overrides": self.overrides, "init_from": self.init_from,
        }


# --- the grid ------------------------------------------------------------------------


def parse_grid(items: Sequence[str]) -> Dict[str, List[str]]:
    """``["threshold=1e-8,1e-7", "gamma=[1, 2],[3, 4]"]`` -> ``{"threshold": ["1e-8",
    "1e-7"], "gamma": ["[1, 2]", "[3, 4]"]}`` (raw strings; commas inside brackets
    belong to a list value). ``UsageError`` for a malformed item or a repeated key."""
    from bnno.config import split_top_level

    grid: Dict[str, List[str]] = {}
    for item in items:
        key, _, values = item.partition("=")
        key = key.strip()
        if not _ or not key:
            raise UsageError(f"--grid '{item}' is not of the form KEY=V1,V2,... (e.g. --grid threshold=1e-8,1e-7).")
        if key in grid:
            raise UsageError(f"--grid names {key} twice; give all its values in one --grid {key}=V1,V2,...")
        raw = split_top_level(values, f"--grid {key} values '{values}'")
        if not raw:
            raise UsageError(f"--grid {key}= has no values; give them as {key}=V1,V2,...")
        grid[key] = raw
    return grid


def base_config(model: str, hparams_set: str, overrides: Dict[str, str], hparams_file: Optional[str] = None):
    """The configuration every point of a sweep starts from: the set with the sweep's
    own overrides (``--hparams``, a grid set's fixed values), read once."""
    from bnno import config

    text = ",".join(f"{key}={value}" for key, value in overrides.items())
    return config.resolve(model, hparams_set, text, file=hparams_file)


def typed_grid(model: str, hparams_set: str, overrides: Dict[str, str], raw_grid: Dict[str, List[Any]],
               hparams_file: Optional[str] = None) -> Dict[str, List[Any]]:
    """The grid's values parsed to their keys' types (text, as ``--grid`` gives it, or
    values a grid set's YAML already typed), each point checked as a whole
    configuration (so a bad value is a ``UsageError`` now, not a failed run hours later)."""
    from bnno import config

    if not raw_grid:
        raise UsageError("A sweep needs at least one --grid KEY=V1,V2,... or a --grid-set.")
    base = base_config(model, hparams_set, overrides, hparams_file)
    typed: Dict[str, List[Any]] = {}
    for key, values in raw_grid.items():
        typed[key] = []
        for value in values:
            expected = config.type_of(base, key, base.where)
            if isinstance(value, str):
                value = config.parse_value(key, value, expected)
            else:  # a grid set's value, which YAML read
                value = config.typed_value(key, value, expected)
            value = base.replace({key: value})[key]
            if value in typed[key]:
                raise UsageError(f"--grid {key} lists {format_value(value)} twice.")
            typed[key].append(value)
    # Values valid alone may clash together (e.g. a decay kind and its settings).
    for point in Sweep(model, "", hparams_set, typed, pathlib.Path(".")).points():
        base.replace(dict(point.values))
    return typed


# --- the manifest ----------------------------------------------------------------------


def manifest_path(sweep: Sweep) -> pathlib.Path:
    return sweep.output_dir / MANIFEST_FILE


def open_manifest(sweep: Sweep) -> Dict[str, Any]:
    """The sweep's manifest: the existing one if the definition matches (``UsageError``
    naming what differs otherwise), else a new one with every run pending."""
    path = manifest_path(sweep)
    definition = sweep.definition()
    if path.exists():
        manifest = read_manifest(path)
        differences = [
            f"{key}: {manifest.get(key)!r} -> {definition[key]!r}"
            for key in DEFINITION if manifest.get(key) != definition[key]
        ]
        if differences:
            raise UsageError(
                f"{sweep.output_dir} holds a sweep with another definition ({'; '.join(differences)}); "
                "run it with its own, or pass a new --output-dir."
            )
        return manifest
    runs = [
        {"name": p.name, "values": dict(p.values), "seed": p.seed, "state": "pending"}
        for p in sweep.points()
    ]
    return {**definition, "options": sweep.options, "plugins": sweep.plugins, "runs": runs}


# --- executors -------------------------------------------------------------------------


def make_run(sweep: Sweep, point: Point, command_line: str = "") -> run_dir.Run:
    """The ``bnno train`` run of one point."""
    overrides = {**sweep.overrides, **point.overrides()}
    return run_dir.Run(
        model=sweep.model, dataset=sweep.dataset, hparams_set=sweep.hparams_set,
        hparams=sweep.base().replace(dict(point.values)),
        output_dir=sweep.output_dir / point.name, overrides=overrides, hparams_file=sweep.hparams_file,
        init_from=sweep.init_from, plugin=plugins.record_of(sweep.model),
        seed=point.seed, command_line=command_line or shlex.join(train_command(sweep, point)),
        **sweep.options,
    )


def train_command(sweep: Sweep, point: Point) -> List[str]:
    """The ``bnno train`` command line of one point, as a list of arguments."""
    overrides = {**sweep.overrides, **point.overrides()}
    command = ["bnno", "train", sweep.model, "--dataset", sweep.dataset, "--hparams-set", sweep.hparams_set]
    if sweep.hparams_file:
        command += ["--hparams-file", sweep.hparams_file]
    command += ["--hparams", ",".join(f"{key}={value}" for key, value in overrides.items())]
    command += ["--seed", str(point.seed), "--output-dir", str(sweep.output_dir / point.name)]
    if sweep.init_from:
        command += ["--init-from", sweep.init_from]
    for plugin in sweep.plugins:
        command += ["--plugin", plugin]
    # Every run option, as bnno.config.options defines it (its flag, and when to write it).
    return command + run_options.command_line(sweep.options)


def run_local(sweep: Sweep, echo=print, train: Optional[Callable[[run_dir.Run], Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Train every point not finished yet, one after another in this process; returns
    the manifest. A failed run (e.g. a NaN loss) is marked and the sweep goes on."""
    if train is None:
        train = _train_quietly
    manifest = open_manifest(sweep)
    points = sweep.points()
    write_manifest(manifest_path(sweep), manifest)
    for number, (point, entry) in enumerate(zip(points, manifest["runs"]), start=1):
        prefix = f"run {number}/{len(points)} {point.label}:"
        if entry["state"] == "done":
            echo(f"{prefix} finished earlier, skipped")
            continue
        entry["state"] = "running"
        write_manifest(manifest_path(sweep), manifest)
        echo(f"{prefix} {'resuming' if (sweep.output_dir / point.name / run_dir.HPARAMS_FILE).exists() else 'training'}")
        began = time.monotonic()
        try:
            result = train(make_run(sweep, point))
        except Interrupted:
            # A signal stopped the sweep after the run saved its step: running the
            # sweep again resumes this run from there, and then the others.
            entry["state"] = "interrupted"
            write_manifest(manifest_path(sweep), manifest)
            echo(f"{prefix} interrupted; run the same command again to resume it")
            raise
        except RunError as error:
            entry.update(state="failed", error=str(error))
            echo(f"{prefix} failed: {error}")
        else:
            last = result["history"][-1] if result["history"] else {}
            accuracy = float(last["val_accuracy"]) if last.get("val_accuracy") else None
            entry.update(state="done", val_accuracy=accuracy)
            echo(f"{prefix} done, val_accuracy {accuracy if accuracy is None else f'{accuracy:.3f}'}, "
                 f"{_duration(time.monotonic() - began)}")
        write_manifest(manifest_path(sweep), manifest)
    return manifest


def _train_quietly(run: run_dir.Run) -> Dict[str, Any]:
    """``bnno.lifecycle.train`` without its per-run output, in a fresh Keras session
    (each run builds its model from scratch; nothing carries over between runs)."""
    import keras

    from bnno import lifecycle

    keras.backend.clear_session()
    run.verbose = 0
    return lifecycle.train(run, echo=lambda *args, **kwargs: None)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def print_commands(sweep: Sweep, echo=print) -> Dict[str, Any]:
    """One ``bnno train`` command per line (and the manifest, so that ``bnno report``
    and a later ``local`` invocation see the same sweep)."""
    manifest = open_manifest(sweep)
    write_manifest(manifest_path(sweep), manifest)
    for point in sweep.points():
        echo(shlex.join(train_command(sweep, point)))
    return manifest


def write_slurm(sweep: Sweep, echo=print) -> pathlib.Path:
    """A job-array batch script (one array task per run) and its command list; prints
    how to submit it. Resubmitting resumes unfinished runs, as ``bnno train`` does."""
    manifest = open_manifest(sweep)
    write_manifest(manifest_path(sweep), manifest)
    points = sweep.points()
    commands = [shlex.join(train_command(sweep, point)) for point in points]
    run_dir.atomic_write(sweep.output_dir / COMMANDS_FILE, "\n".join(commands) + "\n")
    script = sweep.output_dir / SLURM_FILE
    run_dir.atomic_write(script, _SLURM_TEMPLATE.format(
        last=len(points) - 1, count=len(points), model=sweep.model, dataset=sweep.dataset,
        commands=shlex.quote(str((sweep.output_dir / COMMANDS_FILE).resolve())),
    ))
    echo(f"Wrote {script} ({len(points)} array tasks) and {sweep.output_dir / COMMANDS_FILE}.")
    echo(f"Submit it with: sbatch {shlex.quote(str(script))}")
    echo("Options: BNNO_ENV=<environment with bnno> sbatch ...; add --array=0-"
         f"{len(points) - 1}%4 to sbatch to run at most 4 at once.")
    return script


_SLURM_TEMPLATE = """#!/bin/bash
# A bnno sweep of {model} on {dataset} as a Slurm job array: array task i trains line
# i+1 of the commands file below (one `bnno train` command per run, written by `bnno
# sweep --executor slurm`). Submitting it again resumes every unfinished run and skips
# finished ones, as `bnno train` does with the same --output-dir. A task stopped near
# its time limit or preempted saves a checkpoint and requeues itself (see below).
#
#   sbatch sweep.sbatch
#   BNNO_ENV=/shared/envs/bnno sbatch --array=0-{last}%4 sweep.sbatch   # at most 4 at once
#
# Options of sbatch (read only before the first command, so they come first):
#SBATCH --job-name=bnno-sweep
# One array task per run of the sweep ({count} runs).
#SBATCH --array=0-{last}
# One task with one GPU per run: the paper's CIFAR-10 runs fit on one GPU.
#SBATCH --ntasks=1
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
# 120 s before the time limit Slurm sends SIGUSR1 to the job step's tasks: without
# "B:" (which would signal only this batch shell) that is the bnno process srun
# starts, directly, so this shell needs no trap to pass it on. bnno finishes its step,
# saves a checkpoint and exits 75; below, the task then requeues itself. (Slurm may
# send the signal up to a minute earlier than asked.)
#SBATCH --signal=USR1@120
# The task may be requeued: by `scontrol requeue` below, or by Slurm on preemption.
#SBATCH --requeue
# A requeued task appends to its log instead of truncating it.
#SBATCH --open-mode=append
# <job name>-<array job id>_<array task id>.out, one log per run.
#SBATCH --output=%x-%A_%a.out

set -euo pipefail

# bnno installed with pip in an environment every node sees (a virtual environment or
# conda prefix), or already on PATH (e.g. after `module load`).
BNNO_ENV="${{BNNO_ENV:-}}"
if [[ -n "$BNNO_ENV" ]]; then
    export PATH="$BNNO_ENV/bin:$PATH"
fi
if ! command -v bnno > /dev/null; then
    echo "bnno is not on PATH: set BNNO_ENV to an environment where bnno is pip-installed." >&2
    exit 1
fi

task="${{SLURM_ARRAY_TASK_ID:?submit this script with sbatch (it is a job array)}}"
# An absolute path: sbatch runs a copy of this script, not this file.
commands={commands}
command="$(sed -n "$((task + 1))p" "$commands")"
if [[ -z "$command" ]]; then
    echo "No run for array task $task in $commands." >&2
    exit 2
fi
echo "bnno sweep task $task: $command"
# Each line was written with shell quoting (Python's shlex.join), so eval splits it
# back into exactly the arguments bnno wrote. `|| status=$?`: set -e must not end the
# script on bnno's exit status, which is acted on below.
status=0
eval "srun --ntasks=1 $command" || status=$?
# 75 (EX_TEMPFAIL): a signal (the time-limit warning above, or preemption) stopped the
# run after it saved a checkpoint. Requeue this array task: it runs the same command
# again, which resumes the run from that checkpoint, mid-epoch. Exit 0, so that the
# task is not counted as failed; any other status is the task's.
if [[ "$status" -eq 75 ]]; then
    job="${{SLURM_JOB_ID:-}}"
    if [[ -n "${{SLURM_ARRAY_JOB_ID:-}}" ]]; then
        job="${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
    fi
    echo "bnno sweep task $task: stopped after saving a checkpoint; requeueing job $job to resume it."
    if ! scontrol requeue "$job"; then
        echo "Could not requeue job $job: submit this script again to resume the run." >&2
        exit 75
    fi
    exit 0
fi
exit "$status"
"""
