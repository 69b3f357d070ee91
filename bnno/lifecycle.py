"""A run's lifecycle: start it or resume it, start it from another run's weights
(``--init-from``), train its epochs with :mod:`bnno.training`'s loop, export its model,
and evaluate it later.

Running again into the same directory resumes from the newest readable checkpoint (of
an epoch, or inside one: ``bnno.preemption``); nothing already written is removed. What
a run directory holds, and when a run may be resumed, is :mod:`bnno.run_dir`'s business.
"""

import os
import pathlib
import shutil
from typing import Any, Dict, List, Optional

from bnno import run_dir
from bnno.errors import RunError
from bnno.run_dir import Run
from bnno.training import Trainer, restoring_precision_policy, run_epochs

__all__ = ["absolute_if_folder", "evaluate", "export", "train"]


def absolute_if_folder(dataset: str) -> str:
    """An image folder's absolute path (so the run can be resumed and evaluated from
    any working directory); a tfds name as given."""
    from bnno import data

    return os.path.abspath(os.path.expanduser(dataset)) if data.is_folder(dataset) else dataset


def _write_hparams_summary(run: Run) -> None:
    """The run's hyperparameters for TensorBoard's HParams plugin (its table and
    parallel coordinates compare the runs of a sweep by them); the plugin reads the
    final metrics from the run's own scalars (``validation/epoch_accuracy``, ...)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams_api

    values = {"model": run.model, "dataset": run.dataset, "hparams_set": run.hparams_set, "seed": run.seed}
    for key, value in run.hparams.items():
        if value is not None:
            values[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    with tf.summary.create_file_writer(str(run.output_dir)).as_default():
        hparams_api.hparams(values, trial_id=run.output_dir.name)


def train(run: Run, echo=print) -> Dict[str, Any]:
    """Train ``run`` to its last epoch, resuming from ``run.output_dir`` if it holds
    the same run; returns ``{"epochs": finished epochs, "history": [rows]}``."""
    run.dataset = absolute_if_folder(run.dataset)
    resuming = (run.output_dir / run_dir.HPARAMS_FILE).exists()
    recorded_epochs = run_dir.check_resumable(run) if resuming else None
    start_from = _source_to_start_from(run)
    with restoring_precision_policy():
        trainer = Trainer(run, echo=echo)
        return _train(trainer, resuming, recorded_epochs, start_from)


def _has_checkpoints(run: Run) -> bool:
    return run_dir.has_checkpoints(run.output_dir)


def _source_to_start_from(run: Run):
    """Where the weights of ``--init-from`` are (``bnno.init_from.Location``), checked
    before anything is built; ``None`` without it, and for a run that has checkpoints of
    its own (it resumes from them, and never reads the source again)."""
    if not run.init_from or _has_checkpoints(run):
        return None
    from bnno import init_from

    return init_from.locate(run.init_from)


def _start_from(trainer: Trainer, location) -> None:
    """Load the weights at ``location`` into the new run's model (``UsageError`` before
    anything is written when they do not fit), or warn when the set expects them and
    has none. Read only now: reading a checkpoint is TensorFlow work, which must come
    after the strategy is set up."""
    run = trainer.run
    if location is None:
        if run.init_from:
            trainer.echo(f"--init-from {run.init_from} is not read: the run resumes from its own checkpoints.")
        elif run.hparams.get("expects_init_from") and not _has_checkpoints(run):
            trainer.echo(
                f"Warning: {run.model} set {run.hparams_set} is meant to start from a trained earlier "
                "stage (--init-from RUN_DIR); without it, it trains from scratch."
            )
        return
    from bnno import init_from

    source = init_from.read(location)
    loaded = init_from.load(trainer.model, source, init_from.binary_optimizer_trains(trainer.optimizer))
    run.init_from = str(source.file)
    trainer.flip_ratios.reset_reference()  # the loaded kernels are where flips count from
    for line in init_from.table(source, loaded):
        trainer.echo(line)


def _train(trainer: Trainer, resuming: bool, recorded_epochs: Optional[int], start_from=None) -> Dict[str, Any]:
    run, echo = trainer.run, trainer.echo
    _start_from(trainer, start_from)
    if trainer.is_chief:
        run.output_dir.mkdir(parents=True, exist_ok=True)
        # A run stopped before its first checkpoint starts anew, here from the source.
        if not resuming or start_from is not None:
            run_dir.write_record(run)
            if run.tensorboard:
                _write_hparams_summary(run)
    restored = trainer.restore_newest_checkpoint()
    start, epochs = int(trainer.epoch.numpy()), run.hparams["epochs"]
    if recorded_epochs is not None and trainer.is_chief:
        run_dir.record_extension(run, recorded_epochs, at_epoch=start)
        echo(f"Epochs of this run: {recorded_epochs} -> {epochs} (recorded in {run_dir.HPARAMS_FILE}).")
    history = run_dir.History(trainer.write_dir / run_dir.HISTORY_FILE, keep_epochs=start)
    echo(f"Training {run.model} on {run.dataset} ({run.hparams_set}) into {run.output_dir}")
    try:
        if start >= epochs:
            echo(f"This run already finished all {epochs} epochs; nothing to train.")
        else:
            if trainer.resumed is not None:
                echo(f"Resuming in epoch {start + 1} of {epochs}, after step {trainer.resumed.step} of "
                     f"{trainer.steps_per_epoch} ({run_dir.CHECKPOINT_DIR}/{run_dir.IN_EPOCH_DIR}/{restored.name}).")
            elif start:
                echo(f"Resuming after epoch {start} of {epochs}.")
            elif trainer.is_chief:
                _write_summary(trainer, echo)
            run_epochs(trainer, start, epochs, history)
        export(trainer)
    finally:  # finished, failed or stopped by a signal
        if not trainer.is_chief:
            shutil.rmtree(trainer.write_dir, ignore_errors=True)
    return {"epochs": int(trainer.epoch.numpy()), "history": history.rows}


def _write_summary(trainer: Trainer, echo) -> None:
    from bnno.nn import summary

    lines: List[str] = []
    summary.summary(trainer.model, print_fn=lines.append)
    run_dir.atomic_write(trainer.write_dir / run_dir.SUMMARY_FILE, "\n".join(lines) + "\n")
    if trainer.run.verbose:
        for line in lines:
            echo(line)


def export(trainer: Trainer) -> None:
    """Write the trained model into the run's directory, atomically: ``model.keras``
    (with the optimizer's state) and ``binary.weights.h5`` (the weights as read inside
    ``quantized_scope``: latent weights as their binary values)."""
    from bnno.nn.context import quantized_scope

    out = trainer.write_dir
    temporary = out / f".{run_dir.MODEL_FILE}.tmp.keras"
    trainer.model.save(temporary)
    os.replace(temporary, out / run_dir.MODEL_FILE)
    temporary = out / f".{run_dir.BINARY_WEIGHTS_FILE}.tmp.weights.h5"
    with quantized_scope():
        trainer.model.save_weights(temporary)
    os.replace(temporary, out / run_dir.BINARY_WEIGHTS_FILE)


def evaluate(output_dir, data_dir: Optional[str] = None, echo=print) -> Dict[str, float]:
    """Top-1 and top-5 on the validation split of the run in ``output_dir``, from its
    newest readable checkpoint (a finished or a running run). The data set is read
    from ``data_dir`` if given, else from where the run recorded it."""
    from bnno import plugins

    output_dir = pathlib.Path(output_dir)
    record = run_dir.read_record(output_dir)
    plugins.check_record(record, str(output_dir))  # its plugin given again, unchanged
    run = Run(
        model=record["model"], dataset=record["dataset"], hparams_set=record["hparams_set"],
        hparams=record["hparams"], output_dir=output_dir, preprocess=record["preprocess"],
        data_dir=data_dir or record.get("data_dir"), image_size=record.get("image_size"),
        seed=record.get("seed", 0), mixed_precision=record.get("mixed_precision", False),
        tf32=record.get("tf32", False), verbose=0,
    )
    with restoring_precision_policy():
        trainer = Trainer(run, echo=echo)
        # An epoch's checkpoint: what is evaluated is the model after a whole epoch.
        if trainer.restore_newest_checkpoint(set_aside_unreadable=False, in_epoch=False) is None:
            raise RunError(f"{output_dir} has no checkpoint yet: it has not finished an epoch.")
        results = trainer.evaluate()
    return {"epoch": int(trainer.epoch.numpy()), **results}
