"""`bnno` in a child process that stops itself at a moment a test chooses: after its Nth
training step, or right after its Nth checkpoint. Each helper returns the start of a
command line, to which the test appends bnno's own arguments (``train ...``).

The moments are hooks in bnno's own code, patched in the child before ``bnno.cli.main``
runs: ``preemption.EpochProgress.add_step`` (called once per training step, before
anything after the step runs: callbacks, checkpoints) and
``tf.train.CheckpointManager.save`` (epoch and in-epoch checkpoints alike).
"""

import sys
import textwrap
from typing import List, Optional

# argv: step, signal name ("none": no signal), weights file ("-": none), bnno's arguments.
_AFTER_STEP = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from bnno import lifecycle, preemption
    at, name, weights_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if weights_file != "-":  # keep the final weights of this process (a worker's own)
        export = lifecycle.export
        def export_and_keep_weights(trainer):
            np.savez(weights_file, *[w.numpy() for w in trainer.model.weights])
            export(trainer)
        lifecycle.export = export_and_keep_weights
    add_step, taken = preemption.EpochProgress.add_step, []
    def add_step_then_signal(self, *args):
        add_step(self, *args)
        taken.append(1)
        if len(taken) == at and name != "none":
            os.kill(os.getpid(), getattr(signal, name))
    preemption.EpochProgress.add_step = add_step_then_signal
    from bnno.cli import main
    sys.argv = ["bnno", *sys.argv[4:]]
    main()
    """
)

# argv: N, bnno's arguments. SIGKILL (no clean-up at all) right after the Nth checkpoint.
_AT_CHECKPOINT = textwrap.dedent(
    """
    import os, signal, sys
    import tensorflow as tf
    at = int(sys.argv[1])
    save, saved = tf.train.CheckpointManager.save, []
    def save_then_maybe_die(self, *args, **kwargs):
        path = save(self, *args, **kwargs)
        saved.append(path)
        if len(saved) == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return path
    tf.train.CheckpointManager.save = save_then_maybe_die
    from bnno.cli import main
    sys.argv = ["bnno", *sys.argv[2:]]
    main()
    """
)


def after_step(step: int, signal: Optional[str] = "SIGKILL", weights_file=None) -> List[str]:
    """bnno that sends itself ``signal`` (a name: SIGKILL, SIGTERM, SIGUSR1; None for
    none) right after its ``step``-th training step, counted in this process; with
    ``weights_file``, its final weights are also saved there (``np.savez``)."""
    return [sys.executable, "-c", _AFTER_STEP, str(step), signal or "none", str(weights_file or "-")]


def at_checkpoint(count: int) -> List[str]:
    """bnno that kills itself (SIGKILL) right after writing its ``count``-th checkpoint."""
    return [sys.executable, "-c", _AT_CHECKPOINT, str(count)]
