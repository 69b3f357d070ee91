"""Training progress in plain lines, for output that is not a terminal.

Keras's progress bar redraws one line with carriage returns and escape sequences,
which is right in a terminal and unreadable in a Slurm output file, ``docker logs``
or ``bnno train ... > run.log``. ``progress_callback`` keeps Keras's bar for a
terminal and otherwise returns ``PlainProgress``, which prints whole lines::

    epoch   3/100 step 200/500  loss 1.2345  accuracy 0.5432     200 images/s  eta 0:01:15
    epoch   3/100 step 400/500  loss 1.2345  accuracy 0.5432     200 images/s  eta 0:00:25
    epoch   3/100 done          loss 1.2001  accuracy 0.5610  val_loss 1.3456  val_accuracy 0.5123  flip_ratio 1.20e-03     200 images/s  took 0:03:00  run eta 4:51:00

The trainer adds it to its ``keras.callbacks.CallbackList`` (with ``add_progbar=False``).
"""

import functools
import math
import sys
import time
from typing import Callable, Dict, Optional

import keras

__all__ = ["PlainProgress", "progress_callback", "default_every_steps", "format_duration"]

# Epoch-line metrics, in order, with their formats; those missing from the logs are left out.
EPOCH_METRICS = (
    ("loss", ".4f"),
    ("accuracy", ".4f"),
    ("val_loss", ".4f"),
    ("val_accuracy", ".4f"),
    ("flip_ratio", ".2e"),
)
STEP_METRICS = (("loss", ".4f"), ("accuracy", ".4f"))


def format_duration(seconds: float) -> str:
    """``seconds`` as hours:minutes:seconds, e.g. ``0:01:15`` or ``26:03:04``."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def default_every_steps(steps_per_epoch: int) -> int:
    """A step line every 10 % of an epoch (``ceil(steps_per_epoch / 10)`` steps).

    A fraction of the epoch, not a number of seconds, so that the lines fall on the
    same steps in every run and two logs compare line by line; together with
    ``PlainProgress``'s ``min_seconds`` (30 s) this gives, on a cluster, a line every
    30 s to a few minutes in long epochs (ImageNet: 5005 steps of 256 images, 10 to
    60 minutes per epoch) and only the epoch lines when epochs are short (CIFAR-10 on
    a GPU: about half a minute), where a line every second would bury the epochs.
    """
    return max(1, math.ceil(steps_per_epoch / 10))


def _metrics(logs: Dict[str, float], formats) -> str:
    return "  ".join(
        f"{key} {logs[key]:{spec}}" for key, spec in formats if logs.get(key) is not None
    )


class PlainProgress(keras.callbacks.Callback):
    """Prints training progress as plain lines: no escape sequences, no ``\\r``.

    After step k of an epoch, when k is a multiple of ``every_steps`` and at least
    ``min_seconds`` have passed since the epoch began or the last step line, one line:
    epoch and step, the epoch's running loss and accuracy (the ``logs`` of
    ``on_train_batch_end``), training images per second since that previous line,
    and the time left in the epoch's training steps at that rate (``eta``).

    After each epoch, one line: the epoch's loss, accuracy, val_loss, val_accuracy and
    flip_ratio (those present in ``logs``), its training images per second, the time
    from ``on_epoch_begin`` to ``on_epoch_end`` (``took``, validation included) and,
    but after the last epoch, the time left for the run: the remaining epochs times
    the mean time of the epochs this process has timed (``run eta``).

    Args:
        steps_per_epoch: training steps per epoch.
        epochs: the run's number of epochs (epochs are counted from 0, as in Keras,
            and printed from 1).
        batch_size: images per step (the global batch).
        every_steps: steps between step lines; default ``default_every_steps``.
        min_seconds: the least time between step lines; a line due sooner is skipped.
        echo: prints one line (default: ``print``, flushed, so that a log file shows
            it at once).
        clock: seconds, monotonic.
    """

    def __init__(
        self,
        steps_per_epoch: int,
        epochs: int,
        batch_size: int,
        every_steps: Optional[int] = None,
        min_seconds: float = 30.0,
        echo: Callable[[str], None] = functools.partial(print, flush=True),
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.batch_size = batch_size
        self.every_steps = every_steps or default_every_steps(steps_per_epoch)
        self.min_seconds = min_seconds
        self.echo = echo
        self.clock = clock
        self._epoch_seconds = []  # durations of the epochs timed by this process
        self._step_width = len(str(steps_per_epoch))
        self._epoch_width = len(str(epochs))

    def _epoch_label(self, epoch: int) -> str:
        return f"epoch {epoch + 1:>{self._epoch_width}}/{self.epochs}"

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_began = self._window_began = self._train_ended = self.clock()
        # A run resumed inside the epoch starts after the steps it had trained.
        self._first_step = int((logs or {}).get("resumed_at_step", 0))
        self._window_step = self._steps_done = self._first_step

    def on_train_batch_end(self, batch, logs=None):
        step, now = batch + 1, self.clock()
        self._steps_done, self._train_ended = step, now
        seconds = now - self._window_began
        if step % self.every_steps or seconds < self.min_seconds:
            return
        seconds_per_step = max(seconds, 1e-9) / (step - self._window_step)
        eta = (self.steps_per_epoch - step) * seconds_per_step
        self.echo(
            f"{self._epoch_label(self._epoch)} "
            f"step {step:>{self._step_width}}/{self.steps_per_epoch}  "
            f"{_metrics(logs or {}, STEP_METRICS)}  "
            f"{self.batch_size / seconds_per_step:6.0f} images/s  eta {format_duration(eta)}"
        )
        self._window_began, self._window_step = now, step

    def on_epoch_end(self, epoch, logs=None):
        took = self.clock() - self._epoch_began
        self._epoch_seconds.append(took)
        parts = [
            self._epoch_label(epoch) + " " + "done".ljust(len("step /") + 2 * self._step_width),
            _metrics(logs or {}, EPOCH_METRICS),
        ]
        train_seconds = self._train_ended - self._epoch_began
        steps_trained = self._steps_done - self._first_step
        if steps_trained and train_seconds > 0:
            parts.append(f"{steps_trained * self.batch_size / train_seconds:6.0f} images/s")
        parts.append(f"took {format_duration(took)}")
        remaining = self.epochs - (epoch + 1)
        if remaining > 0:
            mean = sum(self._epoch_seconds) / len(self._epoch_seconds)
            parts.append(f"run eta {format_duration(remaining * mean)}")
        self.echo("  ".join(part for part in parts if part))


def progress_callback(
    steps_per_epoch: int,
    epochs: int,
    batch_size: int,
    stream_is_tty: Optional[bool] = None,
    echo: Callable[[str], None] = functools.partial(print, flush=True),
) -> keras.callbacks.Callback:
    """Keras's ``ProgbarLogger`` when the output is a terminal (``stream_is_tty``;
    default: whether ``sys.stdout`` is one), ``PlainProgress`` otherwise."""
    if stream_is_tty is None:
        stream_is_tty = bool(getattr(sys.stdout, "isatty", lambda: False)())
    if stream_is_tty:
        return keras.callbacks.ProgbarLogger()
    return PlainProgress(steps_per_epoch, epochs, batch_size, echo=echo)
