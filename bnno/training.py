"""The training loop: one compiled step, run under a tf.distribute strategy.

bnno owns its loop because Keras 3's ``model.fit`` cannot run under
``MultiWorkerMirroredStrategy`` (keras-team/keras#20585); this loop runs unchanged on
one device, several GPUs and several hosts. Keras does everything else: the model,
the optimizer (``CaseOptimizer`` of Bop and Adam for the paper's Bop recipes), and the
callbacks the loop drives (TensorBoard, progress, the history file and checkpoints).

What a run directory holds, and when a run may be resumed, is :mod:`bnno.run_dir`'s
business; a run's lifecycle (start or resume, ``--init-from``, the epochs, export,
evaluation) is :mod:`bnno.lifecycle`'s, which drives this loop.
"""

import contextlib
import math
import os
import pathlib
import tempfile
import time
from typing import Dict, List, Optional

from bnno import run_dir
from bnno.errors import RunError, UsageError
from bnno.registry import unknown_choice_message
from bnno.run_dir import Run

__all__ = ["Run", "Trainer", "binary_conv_mode", "restoring_precision_policy", "run_epochs", "step_summaries"]


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


def binary_conv_mode(run: Run) -> str:
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


def _checked_options(run: Run) -> None:
    """Refuse option combinations that cannot work, before anything is built."""
    if run.jit_compile and _op_determinism_enabled():
        raise UsageError(
            "--jit-compile cannot be used with TF_DETERMINISTIC_OPS=1: XLA has no "
            "deterministic kernels for some gradients (max pooling); drop one of them."
        )


def _set_global_state(run: Run) -> None:
    """The process-wide settings a run depends on: seeds, precision policy, TF32.

    TensorFlow computes float32 convolutions and matrix products in TensorFloat-32
    (10-bit mantissas) on Ampere and newer GPUs by default; the paper's TensorFlow 2.0
    did not, so bnno turns it off unless ``run.tf32``. Binary products are exact either
    way; real-valued gradients and full-precision layers are not.
    """
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(run.tf32)
    keras.utils.set_random_seed(run.seed)
    if run.mixed_precision:
        # Variables (Bop's kernels and moving averages included) stay float32; layers
        # compute in 16 bits, where +-1 is still exact.
        keras.mixed_precision.set_global_policy(_mixed_precision_policy())


class Trainer:
    """Builds a run's data, model and optimizer under a strategy, and trains it.

    In a multi-worker run every process trains; only the chief writes into the run's
    directory, the others write their (required) checkpoint copies to a temporary one.

    Public surface (used by ``bnno.benchmark`` and the loop below): ``model``,
    ``optimizer``, ``data``, ``batch_size``, ``steps_per_epoch``, ``binary_conv``,
    ``train_step(images, labels)``, ``distribute(dataset)``, ``train_epoch``,
    ``evaluate``, ``rates()``, ``restore_newest_checkpoint()``.
    """

    def __init__(self, run: Run, echo=print, data=None):
        """``data`` replaces ``bnno.data.load(run.dataset, ...)``, e.g. with synthetic
        batches for a benchmark."""
        import tensorflow as tf

        from bnno import distribute

        self.run, self.tf = run, tf
        _checked_options(run)
        # The strategy comes first: multi-worker collectives must be set up before
        # any other TensorFlow work.
        self.strategy = distribute.strategy(run.strategy, echo=echo)
        self.is_chief = distribute.is_chief(self.strategy)
        self.echo = echo if self.is_chief else (lambda *args, **kwargs: None)
        self.binary_conv = binary_conv_mode(run)
        if self.binary_conv == "bfloat16":
            self.echo("Binary convolutions: exact bfloat16 (--binary-conv float32 turns this off).")
        self.batch_size = self._checked_batch_size()
        self.data = data or self._load_data()
        self.steps_per_epoch = self._steps_per_epoch()
        self.write_dir = run.output_dir if self.is_chief else pathlib.Path(tempfile.mkdtemp(prefix="bnno-worker-"))
        _set_global_state(run)
        self._build_model_and_optimizer()
        self._make_checkpoints()
        self.top_k = min(5, self.data.num_classes)
        self.train_step = self._with_speed_paths(self._make_train_step())
        self._eval_step = self._with_speed_paths(self._make_eval_step())

    # -- construction, step by step -------------------------------------------------

    def _checked_batch_size(self) -> int:
        replicas = self.strategy.num_replicas_in_sync
        batch_size = self.run.hparams["batch_size"]
        if batch_size % replicas:
            raise UsageError(
                f"batch_size {batch_size} cannot be shared evenly by {replicas} replicas; "
                f"use a multiple of {replicas}."
            )
        return batch_size

    def _load_data(self):
        from bnno import data as data_lib

        run = self.run
        return data_lib.load(
            run.dataset, preprocess=run.preprocess, data_dir=run.data_dir,
            cache=run.data_cache, image_size=run.image_size,
        )

    def _steps_per_epoch(self) -> int:
        steps = self.data.train_examples // self.batch_size
        if steps == 0:
            raise UsageError(
                f"batch_size {self.batch_size} is larger than the {self.data.train_examples} "
                f"training examples of {self.run.dataset}; lower it with --hparams batch_size=N."
            )
        return min(steps, self.run.max_steps) if self.run.max_steps else steps

    def _build_model_and_optimizer(self) -> None:
        import keras

        from bnno import models
        from bnno.nn import metrics as bnn_metrics

        with self.strategy.scope():
            self.model = models.build(self.run.model, self.run.hparams, self.data.input_shape, self.data.num_classes)
            self.optimizer = self.run.config.build_optimizer(self.steps_per_epoch)
            if keras.mixed_precision.global_policy().name == "mixed_float16":
                # float16 gradients underflow without loss scaling.
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(self.model.trainable_variables)
            # compile() only attaches the optimizer: callbacks and model.save use it.
            self.model.compile(optimizer=self.optimizer, loss="sparse_categorical_crossentropy")
            self.flip_ratios = bnn_metrics.FlipRatios(self.model)
            self.epoch = self.tf.Variable(0, dtype=self.tf.int64, trainable=False, name="epoch")

    def _make_checkpoints(self) -> None:
        tf = self.tf
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self.epoch)
        # Every worker saves (saving may need collectives); only the chief's copy is kept.
        self.checkpoints = tf.train.CheckpointManager(
            self.checkpoint, str(self.write_dir / run_dir.CHECKPOINT_DIR), max_to_keep=run_dir.CHECKPOINTS_KEPT
        )
        self.checkpoint_dir = self.run.output_dir / run_dir.CHECKPOINT_DIR

    # -- checkpoints ------------------------------------------------------------------

    def restore_newest_checkpoint(self, set_aside_unreadable: bool = True) -> Optional[pathlib.Path]:
        """Restore the newest readable checkpoint of the run; returns it (``None`` when
        the run has none yet).

        An unreadable one (truncated by a full disk or a crash during a copy) is
        reported and, with ``set_aside_unreadable``, moved into
        ``checkpoints/unreadable/`` so that the epoch is trained and saved again;
        nothing is deleted. ``RunError`` when none can be read.
        """
        candidates = run_dir.checkpoints_newest_first(self.checkpoint_dir)
        unreadable: List[pathlib.Path] = []
        for prefix in candidates:
            try:
                self.checkpoint.restore(str(prefix)).assert_existing_objects_matched()
            except Exception as error:  # noqa: BLE001 - any failure to read means unreadable
                self.echo(f"Checkpoint {prefix.name} in {self.checkpoint_dir} is unreadable "
                          f"({run_dir.first_line(error)}).")
                unreadable.append(prefix)
                continue
            if unreadable and set_aside_unreadable and self.is_chief:
                for damaged in unreadable:
                    folder = run_dir.set_aside(damaged)
                self.echo(f"Resuming from {prefix.name}; the unreadable checkpoints are kept in {folder}.")
            # Flips are counted against the restored kernels, not the fresh ones.
            self.flip_ratios.reset_reference()
            return prefix
        if unreadable:
            raise RunError(
                f"None of the {len(unreadable)} checkpoints in {self.checkpoint_dir} can be read; "
                "nothing was changed there: copy intact checkpoint files back into it, or train "
                "into a new --output-dir."
            )
        return None

    # -- compiled steps ---------------------------------------------------------------

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

        return train_step

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

        return eval_step

    def _with_speed_paths(self, step):
        """``step``, traced (on its first call) in the run's binary convolution mode and
        with ``ste_sign`` fused (``bnno.nn.binary_conv``, ``bnno.nn.fused``; the same
        results either way)."""
        from bnno.nn import binary_conv, fused

        def call(*args):
            with binary_conv.use(self.binary_conv), fused.use():
                return step(*args)

        return call

    # -- epochs -----------------------------------------------------------------------

    def distribute(self, dataset):
        """``dataset``'s batches split over the strategy's replicas."""
        return self.strategy.experimental_distribute_dataset(dataset)

    def train_epoch(self, epoch: int, callbacks) -> Dict[str, float]:
        """One pass over the training data; ``epoch`` counts from 0."""
        dataset = self.data.train(self.batch_size, epoch=epoch, seed=self.run.seed)
        loss_sum, tally = 0.0, [0.0, 0.0, 0.0]
        self.flip_ratios.reset_state()
        steps = 0
        for images, labels in self.distribute(dataset.take(self.steps_per_epoch)):
            callbacks.on_train_batch_begin(steps)
            loss, step_tally = self.train_step(images, labels)
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
        for images, labels in self.distribute(dataset):
            loss, step_tally = self._eval_step(images, labels)
            loss_sum += float(loss)
            tally = [a + float(b) for a, b in zip(tally, step_tally)]
        return {"loss": loss_sum / max(tally[2], 1.0), **_accuracies(tally)}

    def rates(self) -> Dict[str, float]:
        """The learning rate and, for Bop, gamma (and Bop2ndOrder's sigma) that the next
        step will use."""
        import keras

        from bnno.nn.optimizers import Bop, Bop2ndOrder

        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        rates = {"learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate))}
        for sub in getattr(optimizer, "optimizers", []):
            if isinstance(sub, Bop):
                rates["gamma"] = float(keras.ops.convert_to_numpy(sub.gamma))
            if isinstance(sub, Bop2ndOrder):
                rates["sigma"] = float(keras.ops.convert_to_numpy(sub.current_sigma))
        return rates


def _callbacks(trainer: Trainer, epochs: int, history: run_dir.History):
    import keras

    from bnno.progress import progress_callback

    run = trainer.run

    class EpochRecords(keras.callbacks.Callback):
        """Writes the history row (with the training wall time so far, summed over
        resumes), then the checkpoint, after every epoch."""

        wall_seconds = history.wall_seconds

        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            self.wall_seconds += time.monotonic() - self.began
            history.append(epoch + 1, {**logs, "wall_seconds": self.wall_seconds})
            trainer.epoch.assign(epoch + 1)
            trainer.checkpoints.save(checkpoint_number=epoch + 1)

    callbacks = [EpochRecords()]
    if run.tensorboard and trainer.is_chief:
        callbacks.append(
            keras.callbacks.TensorBoard(
                log_dir=str(run.output_dir), write_graph=False, profile_batch=0, update_freq="epoch"
            )
        )
        if run.log_every:
            callbacks.append(step_summaries(trainer, run.log_every))
    if run.verbose > 0 and trainer.is_chief:
        # Last, so that an epoch's time includes writing its checkpoint. Keras's bar in
        # a terminal; plain lines in log files (Slurm, docker logs, > run.log).
        callbacks.append(progress_callback(trainer.steps_per_epoch, epochs, trainer.batch_size, echo=trainer.echo))
    return keras.callbacks.CallbackList(
        callbacks, add_progbar=False, model=trainer.model,
        epochs=epochs, steps=trainer.steps_per_epoch, verbose=run.verbose,
    )


def step_summaries(trainer: Trainer, every: int):
    """A callback writing loss, accuracy and flip ratios every ``every`` steps to
    TensorBoard (``train/``, x axis the global step, counted from 1): ``step_loss`` and
    ``step_accuracy``, the means over the epoch so far; ``step_flip_ratio``, the share
    of all binary weights flipped per step over the last ``every`` steps, and
    ``step_flip_ratio/<layer>``, the same for each binary layer (the per-epoch
    ``flip_ratio/<layer>``'s counterpart). With ``every`` = 1 these are the flip ratios
    "at each step" from which the paper's Figure 1 plots pi_t of the last layer
    (Helwegen et al., 2019, section 5.1, equation 7). ``steps_per_epoch``, logged once
    at step 0, turns the steps into epochs (``bnno report`` reads it). A point's
    scalars are written by one compiled call: eager ``tf.summary.scalar`` calls cost
    about half a millisecond each, per step with ``every`` = 1."""
    import keras

    tf = trainer.tf

    class StepSummaries(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.writer = tf.summary.create_file_writer(str(trainer.run.output_dir / "train"))
            with self.writer.as_default(step=0):
                tf.summary.scalar("steps_per_epoch", trainer.steps_per_epoch)

            @tf.function
            def write(step, tags, values):  # tags: a tuple of names, one trace per tuple
                with self.writer.as_default(step=step):
                    for index, tag in enumerate(tags):
                        tf.summary.scalar(tag, values[index])

            self.write = write

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.counted = epoch, {}  # the flip counts restart each epoch

        def on_train_batch_end(self, batch, logs=None):
            if (batch + 1) % every:
                return
            counted = trainer.flip_ratios.layer_counts()
            since = {}  # per layer: (flips, weights seen) since the last point
            for name, (flips, seen) in counted.items():
                flips_before, seen_before = self.counted.get(name, (0.0, 0.0))
                since[name] = (flips - flips_before, seen - seen_before)
            self.counted = counted
            all_flips, all_seen = sum(f for f, _ in since.values()), sum(s for _, s in since.values())
            scalars = {"step_loss": logs["loss"], "step_accuracy": logs["accuracy"]}
            if all_seen:
                scalars["step_flip_ratio"] = all_flips / all_seen
                scalars.update({f"step_{name}": flips / seen for name, (flips, seen) in since.items()})
            step = self.epoch * trainer.steps_per_epoch + batch + 1
            self.write(tf.constant(step, tf.int64), tuple(scalars), tf.constant(list(scalars.values()), tf.float32))

        def on_train_end(self, logs=None):
            self.writer.close()

    return StepSummaries()


def run_epochs(trainer: Trainer, start: int, epochs: int, history: run_dir.History) -> None:
    """Epochs ``start`` to ``epochs`` of training, each followed by validation; the
    callbacks write progress, TensorBoard, the history file and checkpoints."""
    run = trainer.run
    callbacks = _callbacks(trainer, epochs, history)
    callbacks.on_train_begin()
    for epoch in range(start, epochs):
        callbacks.on_epoch_begin(epoch)
        logs = trainer.train_epoch(epoch, callbacks)
        logs.update({f"val_{k}": v for k, v in trainer.evaluate(run.max_steps).items()})
        logs.update(trainer.flip_ratios.results())
        logs.update(trainer.rates())
        callbacks.on_epoch_end(epoch, logs)
    callbacks.on_train_end()
