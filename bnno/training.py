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
from bnno.errors import Interrupted, RunError, UsageError
from bnno.preemption import CheckpointInterval, EpochProgress, StopSignals, interruption_message, parse_signals
from bnno.registry import unknown_choice_message
from bnno.run_dir import Run

__all__ = [
    "InEpochCheckpoints", "Run", "Trainer", "binary_conv_mode", "restoring_precision_policy", "run_epochs",
    "step_summaries",
]


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
    ``train_step(images, labels)``, ``distribute(dataset)``, ``begin_epoch``,
    ``train_epoch``, ``evaluate``, ``rates()``, ``restore_newest_checkpoint()``,
    ``save_in_epoch``.
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
        self.multi_worker = distribute.is_multi_worker(self.strategy)
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
        # What the run has done of the epoch in progress (restored from a checkpoint
        # inside an epoch: ``resumed``), and the flip counts at the last point of the
        # step summaries (``--log-every``), which such a checkpoint also keeps.
        self.resumed: Optional[EpochProgress] = None
        self.progress = EpochProgress()
        self.epoch_began = time.monotonic()
        self.step_summary_counts: Dict[str, tuple] = {}
        # Requests every worker must act on after the same step: [stop (a signal), save
        # (the chief's clock)]. Each worker's own values ride on the step's all-reduce of
        # its accuracy tallies, so all learn the sum after that step at no extra cost.
        self.requests = tf.Variable([0.0, 0.0], trainable=False, dtype=tf.float32, name="requests")
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
            layers = len(self.flip_ratios.metrics)
            self.epoch_progress = self.tf.Variable(
                self.tf.zeros([EpochProgress.size(layers)], self.tf.float64), trainable=False, name="epoch_progress"
            )

    def _make_checkpoints(self) -> None:
        tf = self.tf
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self.epoch)
        # Every worker saves (saving may need collectives); only the chief's copy is kept.
        self.checkpoints = tf.train.CheckpointManager(
            self.checkpoint, str(self.write_dir / run_dir.CHECKPOINT_DIR), max_to_keep=run_dir.CHECKPOINTS_KEPT
        )
        self.checkpoint_dir = self.run.output_dir / run_dir.CHECKPOINT_DIR
        # Inside an epoch: the same state and the epoch's progress, in their own folder
        # (each CheckpointManager keeps a state file of its own).
        self.in_epoch_checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, epoch=self.epoch, progress=self.epoch_progress
        )
        self.in_epoch_checkpoints = tf.train.CheckpointManager(
            self.in_epoch_checkpoint, str(self.write_dir / run_dir.CHECKPOINT_DIR / run_dir.IN_EPOCH_DIR),
            max_to_keep=run_dir.IN_EPOCH_KEPT, checkpoint_name="step",
        )

    # -- checkpoints ------------------------------------------------------------------

    def _checkpoints_newest_first(self, in_epoch: bool) -> List[pathlib.Path]:
        """The run's checkpoints by the step they were taken after, newest first; an
        epoch's own checkpoint before one inside it of the same step (it also holds
        the epoch's validation)."""
        candidates = [
            (run_dir.checkpoint_number(prefix) * self.steps_per_epoch, 1, prefix)
            for prefix in run_dir.checkpoints_newest_first(self.checkpoint_dir)
        ]
        if in_epoch:
            candidates += [
                (run_dir.checkpoint_number(prefix), 0, prefix)
                for prefix in run_dir.in_epoch_checkpoints_newest_first(self.checkpoint_dir)
            ]
        return [prefix for _, _, prefix in sorted(candidates, key=lambda c: c[:2], reverse=True)]

    def restore_newest_checkpoint(
        self, set_aside_unreadable: bool = True, in_epoch: bool = True
    ) -> Optional[pathlib.Path]:
        """Restore the newest readable checkpoint of the run; returns it (``None`` when
        the run has none yet). With ``in_epoch``, checkpoints inside an epoch count
        too; restoring one sets ``resumed``, the progress of its epoch.

        An unreadable one (truncated by a full disk or a crash during a copy) is
        reported and, with ``set_aside_unreadable``, moved into an ``unreadable/``
        folder beside it so that its steps are trained and saved again; nothing is
        deleted. ``RunError`` when none can be read.
        """
        candidates = self._checkpoints_newest_first(in_epoch)
        unreadable: List[pathlib.Path] = []
        for prefix in candidates:
            inside_epoch = prefix.parent.name == run_dir.IN_EPOCH_DIR
            checkpoint = self.in_epoch_checkpoint if inside_epoch else self.checkpoint
            try:
                checkpoint.restore(str(prefix)).assert_existing_objects_matched()
            except Exception as error:  # noqa: BLE001 - any failure to read means unreadable
                self.echo(f"Checkpoint {prefix.name} in {prefix.parent} is unreadable "
                          f"({run_dir.first_line(error)}).")
                unreadable.append(prefix)
                continue
            if unreadable and set_aside_unreadable and self.is_chief:
                folders = sorted({str(run_dir.set_aside(damaged)) for damaged in unreadable})
                self.echo(f"Resuming from {prefix.name}; the unreadable checkpoints are kept in "
                          f"{' and '.join(folders)}.")
            # Flips are counted against the restored kernels, not the fresh ones.
            self.flip_ratios.reset_reference()
            self.resumed = None
            if inside_epoch:
                self.resumed = EpochProgress.from_vector(
                    self.epoch_progress.numpy(), len(self.flip_ratios.metrics)
                )
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

        tf, model, optimizer, requests = self.tf, self.model, self.optimizer, self.requests
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
            return loss, tf.concat([self._tally(labels, probabilities), requests.read_value()], 0)

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

    def begin_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (from 0): from the progress restored with a checkpoint
        inside it (``resumed``), or from nothing."""
        resumed, self.resumed = self.resumed, None
        metrics = self.flip_ratios.metrics
        if resumed is not None:
            self.progress = resumed
            for metric, (flips, seen) in zip(metrics, resumed.flip_counts):
                metric.flips.assign(flips)
                metric.weights_seen.assign(seen)
            self.step_summary_counts = {metric.name: counts for metric, counts in zip(metrics, resumed.summary_counts)}
        else:
            self.progress = EpochProgress()
            self.flip_ratios.reset_state()
            self.step_summary_counts = {}
        self.epoch_began = time.monotonic() - self.progress.seconds

    def train_epoch(
        self, epoch: int, callbacks, checkpoints: Optional["InEpochCheckpoints"] = None
    ) -> Dict[str, float]:
        """The training steps of epoch ``epoch`` (from 0) after those in ``progress``
        (``begin_epoch``); ``checkpoints`` saves inside it and stops on a signal."""
        progress = self.progress
        dataset = self.data.train(self.batch_size, epoch=epoch, seed=self.run.seed, skip_batches=progress.step)
        for images, labels in self.distribute(dataset.take(self.steps_per_epoch - progress.step)):
            if checkpoints is not None:
                checkpoints.before_step()
            callbacks.on_train_batch_begin(progress.step)
            loss, step_tally = self.train_step(images, labels)
            loss, step_tally = float(loss), step_tally.numpy().tolist()
            if not math.isfinite(loss):
                raise RunError(
                    f"The loss became {loss} at epoch {epoch + 1}, step {progress.step + 1}, so training "
                    f"stopped; the last good checkpoint (epoch {int(self.epoch.numpy())}) is kept "
                    f"in {self.run.output_dir}. Lower learning_rate or gamma with --hparams and "
                    "train into a new --output-dir."
                )
            progress.add_step(loss, step_tally[:3])
            running = {"loss": progress.loss_sum / progress.step, "accuracy": progress.tally[0] / progress.tally[2]}
            callbacks.on_train_batch_end(progress.step - 1, running)
            if checkpoints is not None:
                checkpoints.after_step(epoch, stop=step_tally[3] > 0, save=step_tally[4] > 0)
        return {"loss": progress.loss_sum / max(progress.step, 1), **_accuracies(progress.tally)}

    def save_in_epoch(self, epoch: int) -> pathlib.Path:
        """Write a checkpoint after the last step taken of epoch ``epoch`` (with
        ``progress``); returns its prefix in the run's directory."""
        metrics = self.flip_ratios.metrics
        progress = self.progress
        progress.seconds = time.monotonic() - self.epoch_began
        progress.flip_counts = list(self.flip_ratios.layer_counts().values())
        progress.summary_counts = [self.step_summary_counts.get(metric.name, (0.0, 0.0)) for metric in metrics]
        self.epoch_progress.assign(progress.to_vector(len(metrics)))
        written = self.in_epoch_checkpoints.save(checkpoint_number=epoch * self.steps_per_epoch + progress.step)
        return self.checkpoint_dir / run_dir.IN_EPOCH_DIR / pathlib.Path(written).name

    def drop_in_epoch_checkpoints(self) -> None:
        """Delete the checkpoints inside the epoch whose own checkpoint was just
        written: that one holds everything they hold, and more."""
        for prefix in run_dir.in_epoch_checkpoints_newest_first(self.write_dir / run_dir.CHECKPOINT_DIR):
            for path in prefix.parent.glob(prefix.name + ".*"):
                path.unlink(missing_ok=True)

    def barrier(self) -> None:
        """Wait until every worker gets here (a tiny all-reduce), e.g. so that no
        worker exits while another still writes its checkpoint."""
        self._sum_over_replicas(self.strategy.run(lambda: self.tf.constant(1.0)))

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

    class EpochHistory(keras.callbacks.Callback):
        """Writes the history row (with the training wall time so far, summed over
        resumes) after every epoch."""

        wall_seconds = history.wall_seconds

        def on_epoch_end(self, epoch, logs=None):
            # From the epoch's beginning, in earlier processes too (a resumed epoch).
            self.wall_seconds += time.monotonic() - trainer.epoch_began
            history.append(epoch + 1, {**logs, "wall_seconds": self.wall_seconds})
            trainer.epoch.assign(epoch + 1)

    class EpochCheckpoint(keras.callbacks.Callback):
        """Writes the epoch's checkpoint after its records (history row, TensorBoard), so
        that a crash just after the checkpoint loses none of them: the run resumes after
        the epoch and would not write them again. A crash before it repeats the epoch,
        which writes the same values again."""

        def on_epoch_end(self, epoch, logs=None):
            trainer.checkpoints.save(checkpoint_number=epoch + 1)
            trainer.drop_in_epoch_checkpoints()

    callbacks = [EpochHistory()]
    if run.tensorboard and trainer.is_chief:
        callbacks.append(
            keras.callbacks.TensorBoard(
                log_dir=str(run.output_dir), write_graph=False, profile_batch=0, update_freq="epoch"
            )
        )
        if run.log_every:
            callbacks.append(step_summaries(trainer, run.log_every))
    callbacks.append(EpochCheckpoint())
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
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if (batch + 1) % every:
                return
            counted = trainer.flip_ratios.layer_counts()
            # The counts restart each epoch; a checkpoint inside it keeps the last point's.
            since = {}  # per layer: (flips, weights seen) since the last point
            for name, (flips, seen) in counted.items():
                flips_before, seen_before = trainer.step_summary_counts.get(name, (0.0, 0.0))
                since[name] = (flips - flips_before, seen - seen_before)
            trainer.step_summary_counts = counted
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


class InEpochCheckpoints:
    """Checkpoints inside an epoch, and the stop on a signal (``bnno.preemption``).

    After every step it writes a checkpoint when ``--checkpoint-every`` is due (a number
    of steps: global step a multiple of it; a time: on the chief's clock since the last
    checkpoint, the epoch's included) or when a worker received one of
    ``--stop-signals``; after a signal's checkpoint it raises ``Interrupted``. One
    process stops after the step during which the signal came. Several workers must
    save after the same step: the requests of each (``Trainer.requests``) reach all
    through the next step's own all-reduce, so they stop one step later; a number of
    steps is the same everywhere.
    """

    def __init__(self, trainer: Trainer, interval: CheckpointInterval, signals: StopSignals, clock=time.monotonic):
        self.trainer, self.interval, self.signals, self.clock = trainer, interval, signals, clock
        self.sent = [0.0, 0.0]
        self.saved_at = clock()

    def epoch_saved(self) -> None:
        """An epoch's checkpoint was just written: the interval starts again."""
        self.saved_at = self.clock()

    def before_step(self) -> None:
        trainer = self.trainer
        stop = 1.0 if self.signals.received else 0.0
        due = bool(trainer.is_chief and self.interval.seconds and self.clock() - self.saved_at >= self.interval.seconds)
        wanted = [stop, 1.0 if due else 0.0]
        if wanted != self.sent:  # a variable write only when a request changes
            trainer.requests.assign(wanted)
            self.sent = wanted

    def after_step(self, epoch: int, stop: bool, save: bool) -> None:
        trainer = self.trainer
        # One process needs no agreement: it stops after the step the signal came in.
        stop = stop or (self.signals.received is not None and not trainer.multi_worker)
        step = trainer.progress.step
        global_step = epoch * trainer.steps_per_epoch + step
        by_steps = bool(self.interval.steps) and global_step % self.interval.steps == 0
        # At the epoch's last step its own checkpoint follows (after validation), unless
        # the run must stop now: then the resumed run validates.
        if stop or ((save or by_steps) and step < trainer.steps_per_epoch):
            written = trainer.save_in_epoch(epoch)
            self.saved_at = self.clock()
            if stop:
                if trainer.multi_worker:
                    trainer.barrier()  # no worker exits while another still writes
                raise Interrupted(interruption_message(
                    self.signals.received, epoch, step, trainer.steps_per_epoch, str(written)
                ))


def run_epochs(trainer: Trainer, start: int, epochs: int, history: run_dir.History) -> None:
    """Epochs ``start`` to ``epochs`` of training (the first from where a checkpoint
    inside it left off), each followed by validation; the callbacks write progress,
    TensorBoard, the history file and the epochs' checkpoints, and checkpoints inside
    epochs are written as ``--checkpoint-every`` and ``--stop-signals`` ask."""
    run = trainer.run
    callbacks = _callbacks(trainer, epochs, history)
    with StopSignals(parse_signals(run.stop_signals)) as signals:
        checkpoints = InEpochCheckpoints(trainer, CheckpointInterval.parse(run.checkpoint_every), signals)
        callbacks.on_train_begin()
        for epoch in range(start, epochs):
            trainer.begin_epoch(epoch)
            callbacks.on_epoch_begin(epoch, {"resumed_at_step": trainer.progress.step})
            logs = trainer.train_epoch(epoch, callbacks, checkpoints)
            logs.update({f"val_{k}": v for k, v in trainer.evaluate(run.max_steps).items()})
            logs.update(trainer.flip_ratios.results())
            logs.update(trainer.rates())
            callbacks.on_epoch_end(epoch, logs)
            checkpoints.epoch_saved()
        callbacks.on_train_end()
