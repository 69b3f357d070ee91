"""The training loop: one compiled step, run under a tf.distribute strategy.

bnno owns its loop because Keras 3's ``model.fit`` cannot run under
``MultiWorkerMirroredStrategy`` (keras-team/keras#20585); this loop runs unchanged on
one device, several GPUs and several hosts. Keras does everything else: the model,
the optimizer (``CaseOptimizer`` of Bop and Adam for the paper's Bop recipes), and the
callbacks the loop drives (TensorBoard, a progress bar, the history file and the
checkpoints below).

A run's directory holds ``hparams.yaml`` (what was run), ``history.csv`` (one row per
epoch), TensorBoard events (``train/``, ``validation/``), ``checkpoints/`` (after every
epoch), and at the end ``model.keras`` and ``binary.weights.h5`` (the weights inside
``quantized_scope``, i.e. binary). Running again into the same directory resumes
after the last finished epoch; nothing already written is removed.
"""

import contextlib
import csv
import dataclasses
import datetime
import math
import os
import pathlib
import platform
import shutil
import tempfile
from typing import Any, Dict, List, Optional

import yaml

from bnno import __version__
from bnno.errors import RunError, UsageError
from bnno.registry import unknown_choice_message

HPARAMS_FILE = "hparams.yaml"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
MODEL_FILE = "model.keras"
BINARY_WEIGHTS_FILE = "binary.weights.h5"
SUMMARY_FILE = "summary.txt"
HISTORY_COLUMNS = [
    "epoch", "loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy", "val_top5_accuracy",
]


@dataclasses.dataclass
class Run:
    """Everything that defines a training run; the fields in ``IDENTITY`` must match
    for a run to be resumed."""

    model: str
    dataset: str
    hparams_set: str
    hparams: Dict[str, Any]
    output_dir: pathlib.Path
    preprocess: str = "default"
    overrides: Dict[str, str] = dataclasses.field(default_factory=dict)
    data_dir: Optional[str] = None
    data_cache: Optional[str] = None
    image_size: Optional[int] = None
    seed: int = 0
    max_steps: Optional[int] = None  # a quick run: at most this many steps per epoch
    tensorboard: bool = True
    strategy: str = "auto"
    mixed_precision: bool = False
    jit_compile: bool = False
    binary_conv: str = "auto"  # bnno.nn.binary_conv mode; the results are the same
    verbose: int = 1
    command_line: str = ""

    # Resuming needs these to match (mixed precision changes the checkpoint's contents).
    IDENTITY = (
        "model", "dataset", "hparams_set", "hparams", "preprocess", "image_size", "seed",
        "max_steps", "mixed_precision",
    )

    def identity(self) -> Dict[str, Any]:
        return {key: getattr(self, key) for key in self.IDENTITY}


def default_output_dir(prefix: str, dataset: str, model: str, hparams_set: str) -> pathlib.Path:
    """``<prefix>/<dataset>/<model>/<set>_<timestamp>``; a folder data set by its name."""
    dataset_name = pathlib.Path(dataset.rstrip("/\\")).name if os.sep in dataset else dataset
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return pathlib.Path(prefix).expanduser() / dataset_name.replace(":", "_") / model / f"{hparams_set}_{stamp}"


# --- files -------------------------------------------------------------------------


def _atomic_write(path: pathlib.Path, text: str) -> None:
    """Write ``text`` so that a reader never sees a half-written file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _versions() -> Dict[str, str]:
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


def _write_hparams_file(run: Run) -> None:
    record = {
        **run.identity(),
        "overrides": run.overrides,
        "command_line": run.command_line,
        "versions": _versions(),
    }
    _atomic_write(run.output_dir / HPARAMS_FILE, yaml.safe_dump(record, sort_keys=False))


def read_run_record(output_dir: pathlib.Path) -> Dict[str, Any]:
    """The ``hparams.yaml`` of a run directory; ``RunError`` if it has none."""
    path = pathlib.Path(output_dir) / HPARAMS_FILE
    if not path.exists():
        raise RunError(f"{output_dir} is not a bnno run directory: it has no {HPARAMS_FILE}.")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _check_resumable(run: Run) -> None:
    """Refuse to continue a run in ``output_dir`` with a different definition."""
    recorded = read_run_record(run.output_dir)
    current = run.identity()
    differences = []
    for key in Run.IDENTITY:
        if key == "hparams":
            old, new = recorded.get("hparams", {}), current["hparams"]
            differences += [
                f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
                for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
            ]
        elif recorded.get(key) != current[key]:
            differences.append(f"{key}: {recorded.get(key)!r} -> {current[key]!r}")
    if differences:
        raise UsageError(
            f"{run.output_dir} holds a run with other settings ({'; '.join(differences)}); "
            "resume it with its own settings, or pass a new --output-dir."
        )


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

    def append(self, epoch: int, logs: Dict[str, float]) -> None:
        row = {"epoch": str(epoch), **{k: f"{logs[k]:.6g}" for k in HISTORY_COLUMNS[1:] if k in logs}}
        self.rows.append(row)
        lines = [",".join(HISTORY_COLUMNS)]
        lines += [",".join(r.get(k, "") for k in HISTORY_COLUMNS) for r in self.rows]
        _atomic_write(self.path, "\n".join(lines) + "\n")


# --- the loop ------------------------------------------------------------------------


def _op_determinism_enabled() -> bool:
    """Whether TF_DETERMINISTIC_OPS asks TensorFlow for deterministic kernels."""
    return os.environ.get("TF_DETERMINISTIC_OPS", "").strip().lower() in ("1", "true")


@contextlib.contextmanager
def restoring_precision_policy():
    """Keras' global precision policy as it was before the block: ``Trainer`` sets it
    for mixed precision, and a process may build other models after a run."""
    import keras

    policy = keras.mixed_precision.global_policy()
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _accuracies(tally) -> Dict[str, float]:
    """Top-1 and top-k accuracy from a summed ``[top-1 correct, top-k correct, examples]``."""
    examples = max(tally[2], 1.0)
    return {"accuracy": tally[0] / examples, "top5_accuracy": tally[1] / examples}


def _binary_conv_mode(run: Run) -> str:
    """"bfloat16" or "float32": how the run computes binary convolutions
    (``bnno.nn.binary_conv``; either way the results are the same)."""
    from bnno.nn import binary_conv

    if run.binary_conv not in binary_conv.MODES:
        raise UsageError(unknown_choice_message("--binary-conv mode", run.binary_conv, list(binary_conv.MODES)))
    if run.binary_conv != "auto":
        return run.binary_conv
    if run.jit_compile or run.mixed_precision:
        # XLA compiles convolutions its own way, and mixed precision computes them in
        # 16 bits anyway; the exact bfloat16 path was measured for neither.
        return "float32"
    return "bfloat16" if binary_conv.enabled("auto") else "float32"


def _mixed_precision_policy() -> str:
    """float16 where GPUs have fast float16 math; bfloat16 elsewhere (CPUs, TPUs)."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


class Trainer:
    """Builds a run's data, model and optimizer under a strategy, and trains it.

    In a multi-worker run every process trains; only the chief writes into the run's
    directory, the others write their (required) checkpoint copies to a temporary one.
    """

    def __init__(self, run: Run, echo=print, data=None):
        """``data`` replaces ``bnno.data.load(run.dataset, ...)``, e.g. with synthetic
        batches for a benchmark."""
        import tensorflow as tf

        from bnno import data as data_lib
        from bnno import distribute, models, recipe
        from bnno.nn import metrics as bnn_metrics

        self.run, self.tf = run, tf
        if run.jit_compile and _op_determinism_enabled():
            raise UsageError(
                "--jit-compile cannot be used with TF_DETERMINISTIC_OPS=1: XLA has no "
                "deterministic kernels for some gradients (max pooling); drop one of them."
            )
        # The strategy comes first: multi-worker collectives must be set up before
        # any other TensorFlow work.
        self.strategy = distribute.strategy(run.strategy, echo=echo)
        self.is_chief = distribute.is_chief(self.strategy)
        self.echo = echo if self.is_chief else (lambda *args, **kwargs: None)
        self.binary_conv = _binary_conv_mode(run)
        if self.binary_conv == "bfloat16":
            self.echo("Binary convolutions: exact bfloat16 (--binary-conv float32 turns this off).")
        replicas = self.strategy.num_replicas_in_sync
        self.batch_size = run.hparams["batch_size"]
        if self.batch_size % replicas:
            raise UsageError(
                f"batch_size {self.batch_size} cannot be shared evenly by {replicas} replicas; "
                f"use a multiple of {replicas}."
            )
        self.data = data or data_lib.load(
            run.dataset, preprocess=run.preprocess, data_dir=run.data_dir,
            cache=run.data_cache, image_size=run.image_size,
        )
        self.steps_per_epoch = self.data.train_examples // self.batch_size
        if self.steps_per_epoch == 0:
            raise UsageError(
                f"batch_size {self.batch_size} is larger than the {self.data.train_examples} "
                f"training examples of {run.dataset}; lower it with --hparams batch_size=N."
            )
        if run.max_steps:
            self.steps_per_epoch = min(self.steps_per_epoch, run.max_steps)

        self.write_dir = run.output_dir if self.is_chief else pathlib.Path(tempfile.mkdtemp(prefix="bnno-worker-"))

        import keras

        keras.utils.set_random_seed(run.seed)
        if run.mixed_precision:
            # Variables (Bop's kernels and moving averages included) stay float32; layers
            # compute in 16 bits, where +-1 is still exact.
            keras.mixed_precision.set_global_policy(_mixed_precision_policy())
        with self.strategy.scope():
            self.model = models.build(run.model, run.hparams, self.data.input_shape, self.data.num_classes)
            self.optimizer = recipe.optimizer(run.hparams, self.steps_per_epoch)
            if keras.mixed_precision.global_policy().name == "mixed_float16":
                # float16 gradients underflow without loss scaling.
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(self.model.trainable_variables)
            # compile() only attaches the optimizer: callbacks and model.save use it.
            self.model.compile(optimizer=self.optimizer, loss="sparse_categorical_crossentropy")
            self.flip_ratios = bnn_metrics.FlipRatios(self.model)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self.epoch)
        # Every worker saves (saving may need collectives); only the chief's copy is kept.
        self.checkpoints = tf.train.CheckpointManager(
            self.checkpoint, str(self.write_dir / CHECKPOINT_DIR), max_to_keep=3
        )
        self.checkpoint_dir = run.output_dir / CHECKPOINT_DIR
        self.top_k = min(5, self.data.num_classes)
        self._train_step = self._make_train_step()
        self._eval_step = self._make_eval_step()

    # -- compiled steps -------------------------------------------------------------

    def _tally(self, labels, probabilities):
        """Per replica: [top-1 correct, top-k correct, examples]."""
        tf = self.tf
        labels = tf.cast(labels, tf.int32)
        probabilities = tf.cast(probabilities, tf.float32)
        top1 = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, -1, output_type=tf.int32), labels), tf.float32))
        topk = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, probabilities, self.top_k), tf.float32))
        return tf.stack([top1, topk, tf.cast(tf.shape(labels)[0], tf.float32)])

    def _sum_over_replicas(self, value):
        return self.strategy.reduce(self.tf.distribute.ReduceOp.SUM, value, axis=None)

    def _make_train_step(self):
        import keras

        tf, model, optimizer = self.tf, self.model, self.optimizer
        global_batch = self.batch_size

        def replica_step(images, labels):
            with tf.GradientTape() as tape:
                probabilities = model(images, training=True)
                per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if model.losses:  # e.g. XNOR-Net's L2 on its full-precision layers
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                scaled_loss = optimizer.scale_loss(loss)  # loss scaling under mixed_float16
            gradients = tape.gradient(scaled_loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss, self._tally(labels, probabilities)

        if self.run.jit_compile:
            replica_step = tf.function(replica_step, jit_compile=True)

        @tf.function
        def train_step(images, labels):
            loss, tally = self.strategy.run(replica_step, args=(images, labels))
            self.flip_ratios.update_state()
            return self._sum_over_replicas(loss), self._sum_over_replicas(tally)

        return self._in_binary_conv_mode(train_step)

    def _make_eval_step(self):
        import keras

        tf, model = self.tf, self.model

        def replica_step(images, labels):
            probabilities = model(images, training=False)
            loss_sum = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
            return loss_sum, self._tally(labels, probabilities)

        @tf.function
        def eval_step(images, labels):
            loss, tally = self.strategy.run(replica_step, args=(images, labels))
            return self._sum_over_replicas(loss), self._sum_over_replicas(tally)

        return self._in_binary_conv_mode(eval_step)

    def _in_binary_conv_mode(self, step):
        """``step``, traced (on its first call) in the run's binary convolution mode."""
        from bnno.nn import binary_conv

        def call(*args):
            with binary_conv.use(self.binary_conv):
                return step(*args)

        return call

    # -- epochs ---------------------------------------------------------------------

    def _distributed(self, dataset):
        return self.strategy.experimental_distribute_dataset(dataset)

    def train_epoch(self, epoch: int, callbacks) -> Dict[str, float]:
        """One pass over the training data; ``epoch`` counts from 0."""
        dataset = self.data.train(self.batch_size, epoch=epoch, seed=self.run.seed)
        loss_sum, tally = 0.0, [0.0, 0.0, 0.0]
        self.flip_ratios.reset_state()
        steps = 0
        for images, labels in self._distributed(dataset.take(self.steps_per_epoch)):
            callbacks.on_train_batch_begin(steps)
            loss, step_tally = self._train_step(images, labels)
            loss = float(loss)
            if not math.isfinite(loss):
                raise RunError(
                    f"The loss became {loss} at epoch {epoch + 1}, step {steps + 1}, so training "
                    f"stopped; the last good checkpoint (epoch {int(self.epoch.numpy())}) is kept "
                    f"in {self.run.output_dir}. Lower learning_rate or gamma with --hparams and "
                    "train into a new --output-dir."
                )
            loss_sum += loss
            tally = [a + float(b) for a, b in zip(tally, step_tally)]
            steps += 1
            callbacks.on_train_batch_end(steps - 1, {"loss": loss_sum / steps, "accuracy": tally[0] / tally[2]})
        return {"loss": loss_sum / max(steps, 1), **_accuracies(tally)}

    def evaluate(self, max_steps: Optional[int] = None) -> Dict[str, float]:
        """Loss, top-1 and top-k accuracy on the validation split."""
        dataset = self.data.validation(self.batch_size)
        if max_steps:
            dataset = dataset.take(max_steps)
        loss_sum, tally = 0.0, [0.0, 0.0, 0.0]
        for images, labels in self._distributed(dataset):
            loss, step_tally = self._eval_step(images, labels)
            loss_sum += float(loss)
            tally = [a + float(b) for a, b in zip(tally, step_tally)]
        return {"loss": loss_sum / max(tally[2], 1.0), **_accuracies(tally)}

    def _rates(self) -> Dict[str, float]:
        """The learning rate and, for Bop, gamma that the next step will use."""
        import keras

        from bnno.nn.optimizers import Bop

        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        rates = {"learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate))}
        for sub in getattr(optimizer, "optimizers", []):
            if isinstance(sub, Bop):
                rates["gamma"] = float(keras.ops.convert_to_numpy(sub.gamma))
        return rates


def _callbacks(trainer: Trainer, epochs: int, history: History):
    import keras

    run = trainer.run

    class EpochRecords(keras.callbacks.Callback):
        """Writes the history row, then the checkpoint, after every epoch."""

        def on_epoch_end(self, epoch, logs=None):
            history.append(epoch + 1, logs)
            trainer.epoch.assign(epoch + 1)
            trainer.checkpoints.save(checkpoint_number=epoch + 1)

    callbacks = [EpochRecords()]
    if run.tensorboard and trainer.is_chief:
        callbacks.append(
            keras.callbacks.TensorBoard(
                log_dir=str(run.output_dir), write_graph=False, profile_batch=0, update_freq="epoch"
            )
        )
    return keras.callbacks.CallbackList(
        callbacks, add_progbar=run.verbose > 0 and trainer.is_chief, model=trainer.model,
        epochs=epochs, steps=trainer.steps_per_epoch, verbose=run.verbose,
    )


def train(run: Run, echo=print) -> Dict[str, Any]:
    """Train ``run`` to its last epoch, resuming from ``run.output_dir`` if it holds
    the same run; returns ``{"epochs": finished epochs, "history": [rows]}``."""
    run.output_dir = pathlib.Path(run.output_dir)
    resuming = (run.output_dir / HPARAMS_FILE).exists()
    if resuming:
        _check_resumable(run)
    with restoring_precision_policy():
        trainer = Trainer(run, echo=echo)
        return _train(trainer, resuming)


def _train(trainer: "Trainer", resuming: bool) -> Dict[str, Any]:
    run, echo = trainer.run, trainer.echo
    if trainer.is_chief:
        run.output_dir.mkdir(parents=True, exist_ok=True)
        if not resuming:
            _write_hparams_file(run)
    latest = trainer.tf.train.latest_checkpoint(str(trainer.checkpoint_dir))
    if latest:
        trainer.checkpoint.restore(latest).assert_existing_objects_matched()
        # Flips are counted against the restored kernels, not the fresh ones.
        trainer.flip_ratios.reset_reference()
    start, epochs = int(trainer.epoch.numpy()), run.hparams["epochs"]
    history = History(trainer.write_dir / HISTORY_FILE, keep_epochs=start)
    echo(f"Training {run.model} on {run.dataset} ({run.hparams_set}) into {run.output_dir}")
    if start >= epochs:
        echo(f"This run already finished all {epochs} epochs; nothing to train.")
    else:
        if start:
            echo(f"Resuming after epoch {start} of {epochs}.")
        elif trainer.is_chief:
            _write_summary(trainer, echo)
        callbacks = _callbacks(trainer, epochs, history)
        callbacks.on_train_begin()
        for epoch in range(start, epochs):
            callbacks.on_epoch_begin(epoch)
            logs = trainer.train_epoch(epoch, callbacks)
            logs.update({f"val_{k}": v for k, v in trainer.evaluate(run.max_steps).items()})
            logs.update(trainer.flip_ratios.results())
            logs.update(trainer._rates())
            callbacks.on_epoch_end(epoch, logs)
        callbacks.on_train_end()
    _export(trainer)
    if not trainer.is_chief:
        shutil.rmtree(trainer.write_dir, ignore_errors=True)
    return {"epochs": int(trainer.epoch.numpy()), "history": history.rows}


def _write_summary(trainer: Trainer, echo) -> None:
    from bnno.nn import summary

    lines: List[str] = []
    summary.summary(trainer.model, print_fn=lines.append)
    _atomic_write(trainer.write_dir / SUMMARY_FILE, "\n".join(lines) + "\n")
    if trainer.run.verbose:
        for line in lines:
            echo(line)


def _export(trainer: Trainer) -> None:
    """The final model (with optimizer state) and its binary weights, atomically."""
    from bnno.nn.context import quantized_scope

    out = trainer.write_dir
    temporary = out / f".{MODEL_FILE}.tmp.keras"
    trainer.model.save(temporary)
    os.replace(temporary, out / MODEL_FILE)
    temporary = out / f".{BINARY_WEIGHTS_FILE}.tmp.weights.h5"
    with quantized_scope():
        trainer.model.save_weights(temporary)
    os.replace(temporary, out / BINARY_WEIGHTS_FILE)


def evaluate(output_dir, echo=print) -> Dict[str, float]:
    """Top-1 and top-5 on the validation split of the run in ``output_dir``, from its
    latest checkpoint (a finished or a running run)."""
    output_dir = pathlib.Path(output_dir)
    record = read_run_record(output_dir)
    run = Run(
        model=record["model"], dataset=record["dataset"], hparams_set=record["hparams_set"],
        hparams=record["hparams"], output_dir=output_dir, preprocess=record["preprocess"],
        image_size=record.get("image_size"), seed=record.get("seed", 0), verbose=0,
    )
    trainer = Trainer(run, echo=echo)
    latest = trainer.tf.train.latest_checkpoint(str(trainer.checkpoint_dir))
    if latest is None:
        raise RunError(f"{output_dir} has no checkpoint yet: it has not finished an epoch.")
    trainer.checkpoint.restore(latest).expect_partial()
    results = trainer.evaluate()
    return {"epoch": int(trainer.epoch.numpy()), **results}

