"""What checkpoints inside an epoch cost `bnno train` (issue 19; benchmarks/README.md).

Two figures for the paper's BinaryNet with its `bop` set (CIFAR-10 shapes):

- the seconds to write one checkpoint inside an epoch (model, Bop and Adam state, the
  epoch's progress), the cost paid once per ``--checkpoint-every`` interval;
- the microseconds per step of the bookkeeping the loop now does around every step
  (``InEpochCheckpoints.before_step`` and ``after_step``, default interval, no signal).

    python benchmarks/checkpoint_cost.py [--batch-size 100] [--writes 5]
"""

import argparse
import pathlib
import statistics
import tempfile
import time
import types


def checkpoint_seconds(batch_size: int, writes: int):
    from bnno import config, training
    from bnno.benchmark import OneBatch

    hparams = config.resolve("binarynet", "bop", f"batch_size={batch_size}")
    with tempfile.TemporaryDirectory(prefix="bnno-checkpoint-cost-") as scratch:
        run = training.Run(model="binarynet", dataset="synthetic", hparams_set="bop", hparams=hparams,
                           output_dir=pathlib.Path(scratch), verbose=0)
        trainer = training.Trainer(run, echo=lambda *args: None,
                                   data=OneBatch((32, 32, 3), 10, batch_size, writes, seed=0))
        trainer.begin_epoch(0)
        seconds = []
        for step in range(1, writes + 1):
            trainer.progress.step = step
            began = time.perf_counter()
            trainer.save_in_epoch(0)
            seconds.append(time.perf_counter() - began)
        folder = pathlib.Path(scratch) / "checkpoints" / "in_epoch"
        size = sum(path.stat().st_size for path in folder.glob(f"step-{writes}.*"))
    return seconds, size


def bookkeeping_microseconds(steps: int = 200_000) -> float:
    from bnno.preemption import CheckpointInterval, EpochProgress
    from bnno.training import InEpochCheckpoints

    trainer = types.SimpleNamespace(is_chief=True, multi_worker=False, steps_per_epoch=1251,
                                    progress=EpochProgress(), requests=None)
    checkpoints = InEpochCheckpoints(trainer, CheckpointInterval.parse("10min"), types.SimpleNamespace(received=None))
    began = time.perf_counter()
    for step in range(steps):
        checkpoints.before_step()
        trainer.progress.step = step % trainer.steps_per_epoch + 1
        checkpoints.after_step(0, stop=False, save=False)
    return (time.perf_counter() - began) / steps * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--writes", type=int, default=5)
    arguments = parser.parse_args()
    seconds, size = checkpoint_seconds(arguments.batch_size, arguments.writes)
    print(f"checkpoint inside an epoch: median {statistics.median(seconds):.3f} s "
          f"({', '.join(f'{s:.3f}' for s in seconds)}), {size / 2**20:.0f} MiB")
    print(f"per-step bookkeeping: {bookkeeping_microseconds():.2f} us")


if __name__ == "__main__":
    main()
