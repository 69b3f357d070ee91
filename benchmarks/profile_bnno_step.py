"""Where bnno's training step spends its time: a ``tf.profiler`` trace of the step that
``bnno benchmark`` times, summed by TensorFlow op type.

Builds the same ``Trainer`` as ``bnno benchmark`` (one synthetic batch held in memory),
runs ``--warmup`` steps, traces ``--steps`` steps, and prints, per op type, the op time
per step summed over all threads (so on two cores the total can exceed the wall time),
its share, and the number of ops; then the wall time per step.

    python benchmarks/profile_bnno_step.py binarynet --hparams-set bop --batch-size 100 \
        [--binary-conv float32] [--top 25] [--by name]

``--by name`` sums by the op's name scope (the layer) instead of its type.
"""

import argparse
import collections
import pathlib
import tempfile
import time


def _trainer(model, hparams_set, batch_size, steps, binary_conv):
    from bnno import benchmark, config as hparams_lib, training

    hparams = hparams_lib.load(model, hparams_set)
    shape, classes = benchmark.BACKEND_NEUTRAL_SHAPES["cifar10"]
    scratch = tempfile.mkdtemp(prefix="bnno-profile-")
    run = training.Run(
        model=model, dataset="synthetic", hparams_set=hparams_set,
        hparams={**hparams, "batch_size": batch_size}, output_dir=pathlib.Path(scratch),
        binary_conv=binary_conv, verbose=0,
    )
    data = benchmark.OneBatch(shape, classes, batch_size, steps, seed=0)
    return training.Trainer(run, echo=lambda *a, **k: None, data=data)


def _op_events(log_dir):
    """(op name, op type, duration in ns) of every TensorFlow op event in the trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    for path in pathlib.Path(log_dir).rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            for line in plane.lines:
                for event in line.events:
                    name = plane.event_metadata[event.metadata_id].name
                    # TensorFlow's executor names op events "name:type".
                    if ":" not in name or name.startswith(("tf_", "Iterator")):
                        continue
                    op_name, op_type = name.rsplit(":", 1)
                    if op_type in ("Process", "Run") or op_type.strip().startswith("__"):
                        continue  # the executor's own spans around the ops
                    yield op_name, op_type, event.duration_ps // 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model", nargs="?", default="binarynet")
    parser.add_argument("--hparams-set", default="bop")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--binary-conv", default="auto")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--by", choices=("type", "name"), default="type")
    args = parser.parse_args()

    import tensorflow as tf

    trainer = _trainer(args.model, args.hparams_set, args.batch_size, args.warmup + args.steps, args.binary_conv)
    batches = iter(trainer.distribute(trainer.data.train(trainer.batch_size, 0, 0)))
    for _ in range(args.warmup):
        float(trainer.train_step(*next(batches))[0])
    log_dir = tempfile.mkdtemp(prefix="bnno-trace-")
    tf.profiler.experimental.start(log_dir)
    start = time.perf_counter()
    for _ in range(args.steps):
        float(trainer.train_step(*next(batches))[0])
    wall = (time.perf_counter() - start) / args.steps
    tf.profiler.experimental.stop()

    totals, counts = collections.Counter(), collections.Counter()
    for op_name, op_type, nanoseconds in _op_events(log_dir):
        key = op_type if args.by == "type" else op_name.rsplit("/", 1)[0]
        totals[key] += nanoseconds
        counts[key] += 1
    busy = sum(totals.values())
    print(f"{'op ' + args.by:<48} {'ms/step':>9} {'share':>7} {'ops/step':>9}")
    for key, nanoseconds in totals.most_common(args.top):
        print(f"{key[:48]:<48} {nanoseconds / 1e6 / args.steps:9.1f} {nanoseconds / busy:7.1%} "
              f"{counts[key] / args.steps:9.0f}")
    print(f"{'all ops (thread time)':<48} {busy / 1e6 / args.steps:9.1f}")
    print(f"wall time per step (traced): {wall * 1000:.0f} ms; binary convolutions: {trainer.binary_conv}")


if __name__ == "__main__":
    main()
