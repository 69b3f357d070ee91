"""Runs that clusters preempt: checkpoints inside an epoch, and a clean stop on a signal.

Shared GPU clusters preempt, time-limit and requeue jobs. Slurm sends a signal before it
kills a job (``#SBATCH --signal=USR1@120``; SIGTERM when it preempts); Kubernetes and
cloud spot machines send SIGTERM and wait a grace period before SIGKILL. bnno

- writes a checkpoint inside the epoch every ``--checkpoint-every`` steps or minutes
  (:class:`CheckpointInterval`; default :data:`DEFAULT_CHECKPOINT_EVERY`), so that a
  kill, even ``kill -9``, loses at most that interval of training;
- on one of ``--stop-signals`` (:class:`StopSignals`; default SIGTERM, SIGINT and
  SIGUSR1) finishes the current step, writes a checkpoint of it, says so in one line
  and exits with ``bnno.errors.REQUEUE_EXIT_CODE`` (75), which bnno's Slurm scripts
  turn into ``scontrol requeue``. A second signal stops the process at once (the
  system's default action): every file is written atomically, and a resumed run starts
  from the newest checkpoint it can read.

A run resumed from a checkpoint inside an epoch continues at the next step with the
same batches, the same optimizer and Bop state and the same running metrics as an
uninterrupted run (:class:`EpochProgress`), so both end bit for bit alike.

Nothing here imports TensorFlow: the command line parses these options at once.
"""

import dataclasses
import re
import signal
import threading
from typing import Dict, List, Optional, Sequence, Tuple

from bnno.errors import UsageError
from bnno.registry import unknown_choice_message

__all__ = [
    "CheckpointInterval", "DEFAULT_CHECKPOINT_EVERY", "DEFAULT_STOP_SIGNALS", "EpochProgress", "StopSignals",
]

#: Inside an epoch, a checkpoint every 10 minutes of training: a preemption or a crash
#: loses at most 10 minutes. Time, not steps, so that the promise holds on every machine
#: and data set; epochs shorter than this (CIFAR-10 on a GPU: about 30 s) are never
#: checkpointed inside, and a long one (ImageNet at batch 1024, an hour or more) gets
#: one every 10 minutes, each costing about as long as writing the epoch's checkpoint.
DEFAULT_CHECKPOINT_EVERY = "10min"

#: Signals that stop a run cleanly: SIGTERM (Kubernetes, spot machines, Slurm's
#: preemption, ``kill``), SIGINT (Ctrl-C) and SIGUSR1 (Slurm's ``--signal=USR1@120``
#: warning before a time limit, as PyTorch Lightning also uses it).
DEFAULT_STOP_SIGNALS = "TERM,INT,USR1"

#: The signals ``--stop-signals`` may name (without ``SIG``).
STOPPABLE_SIGNALS = ("TERM", "INT", "USR1", "USR2", "HUP")

_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
_INTERVAL = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>steps?|s|sec|m|min|h)?\s*$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class CheckpointInterval:
    """How often a run writes a checkpoint inside an epoch: every ``steps`` training
    steps (counted over the whole run, so ``500`` means global steps 500, 1000, ...),
    every ``seconds`` of training, or neither (only at the end of each epoch)."""

    steps: Optional[int] = None
    seconds: Optional[float] = None

    @classmethod
    def parse(cls, text: str) -> "CheckpointInterval":
        """``500`` or ``500steps`` (steps), ``90s``, ``10min``, ``2h`` (time), or
        ``epoch`` (only at epoch ends); ``UsageError`` otherwise."""
        text = str(text).strip()
        if text.lower() in ("epoch", "epochs"):
            return cls()
        match = _INTERVAL.match(text)
        if match:
            number, unit = float(match["number"]), (match["unit"] or "steps").lower()
            if unit.startswith("step"):
                if number >= 1 and number == int(number):
                    return cls(steps=int(number))
            elif number > 0:
                return cls(seconds=number * _SECONDS[unit])
        raise UsageError(
            f"--checkpoint-every {text!r} is not an interval; pass a number of steps (500), "
            "a time (90s, 10min, 2h) or 'epoch' (checkpoints only at the end of each epoch)."
        )

    def __str__(self) -> str:
        if self.steps:
            return str(self.steps)
        if self.seconds:
            for unit, size in (("h", 3600), ("min", 60)):
                if self.seconds % size == 0:
                    return f"{int(self.seconds // size)}{unit}"
            return f"{self.seconds:g}s"
        return "epoch"

    def describe(self) -> str:
        """For a log line: ``every 500 steps``, ``every 10min``, ``only at epoch ends``."""
        if self.steps:
            return f"every {self.steps} steps"
        return f"every {self}" if self.seconds else "only at epoch ends"


def parse_signals(text: str) -> Tuple[str, ...]:
    """``TERM,INT,USR1`` (or ``SIGTERM``, any case) as signal names without ``SIG``;
    ``none`` as no signal; ``UsageError`` for a name that is not one of
    :data:`STOPPABLE_SIGNALS`."""
    text = str(text).strip()
    if text.lower() in ("none", ""):
        return ()
    names: List[str] = []
    for item in text.split(","):
        name = item.strip().upper()
        name = name[3:] if name.startswith("SIG") else name
        if name not in STOPPABLE_SIGNALS:
            raise UsageError(unknown_choice_message("--stop-signals signal", item.strip(), list(STOPPABLE_SIGNALS)))
        if name not in names:
            names.append(name)
    return tuple(names)


class StopSignals:
    """While active (a ``with`` block), the first of the named signals is noted
    (``received``, e.g. ``"SIGTERM"``) instead of stopping the process, and every named
    signal gets the system's default action back: a second one stops the process at
    once. The loop reads ``received`` between steps. The previous handlers come back
    at the end of the block.

    Signal handlers can only be set in the main thread; elsewhere (a run started from
    another thread) the block changes nothing and the signals keep their handlers.
    """

    def __init__(self, names: Sequence[str]):
        self.signals = [getattr(signal, f"SIG{name}") for name in names]
        self.received: Optional[str] = None
        self._previous: Dict[int, object] = {}

    def _note(self, signum, frame) -> None:
        # Only note it: the loop saves between steps. Nothing is printed here (a
        # handler may interrupt a print), and the next signal stops at once.
        self.received = signal.Signals(signum).name
        for number in self.signals:
            signal.signal(number, signal.SIG_DFL)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for number in self.signals:
                self._previous[number] = signal.signal(number, self._note)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()


@dataclasses.dataclass
class EpochProgress:
    """What a run has done of the epoch in progress, saved with a checkpoint inside it:
    the steps taken, the sums behind the epoch's loss and accuracies, the training
    seconds spent on it (by earlier processes too), each binary layer's flip count
    (``FlipRatio``'s flips and weights seen), and the flip counts at the last point of
    the step summaries (``--log-every``), so that their next point is the same.

    Saved as one float64 vector (:meth:`to_vector`): every value is a Python float or a
    float32 count, both exact in float64.
    """

    step: int = 0
    loss_sum: float = 0.0
    tally: List[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0, 0.0])  # top-1, top-k, examples
    seconds: float = 0.0
    flip_counts: List[Tuple[float, float]] = dataclasses.field(default_factory=list)
    summary_counts: List[Tuple[float, float]] = dataclasses.field(default_factory=list)

    HEAD = 6  # step, loss_sum, three tallies, seconds

    @staticmethod
    def size(layers: int) -> int:
        """The vector's length for a model with ``layers`` binary layers."""
        return EpochProgress.HEAD + 4 * layers

    def add_step(self, loss: float, tally: Sequence[float]) -> None:
        self.step += 1
        self.loss_sum += loss
        self.tally = [a + float(b) for a, b in zip(self.tally, tally)]

    def to_vector(self, layers: int) -> List[float]:
        def pairs(counts):
            counts = list(counts) or [(0.0, 0.0)] * layers
            return [float(value) for pair in counts for value in pair]

        return [float(self.step), self.loss_sum, *self.tally, self.seconds,
                *pairs(self.flip_counts), *pairs(self.summary_counts)]

    @classmethod
    def from_vector(cls, vector: Sequence[float], layers: int) -> "EpochProgress":
        values = [float(v) for v in vector]
        middle = cls.HEAD + 2 * layers
        head, flips, summaries = values[:cls.HEAD], values[cls.HEAD:middle], values[middle:]
        return cls(
            step=int(head[0]), loss_sum=head[1], tally=head[2:5], seconds=head[5],
            flip_counts=list(zip(flips[0::2], flips[1::2])),
            summary_counts=list(zip(summaries[0::2], summaries[1::2])),
        )


def interruption_message(signal_name: Optional[str], epoch: int, step: int, steps_per_epoch: int,
                         checkpoint: str) -> str:
    """The one line a stopped run prints."""
    cause = f"{signal_name} received" if signal_name else "another worker was signalled"
    return (
        f"Stopped ({cause}) at epoch {epoch + 1}, step {step} of {steps_per_epoch}, after saving "
        f"{checkpoint}; run the same command to resume from it (exit code 75: requeue)."
    )

