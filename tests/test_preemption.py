"""Preempted runs: checkpoints inside an epoch, stop signals, and a resumed run that
ends bit for bit like an uninterrupted one (bnno.preemption, bnno.training)."""

import csv
import os
import pathlib
import random
import signal
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from bnno.cli import cli
from bnno.errors import REQUEUE_EXIT_CODE, Interrupted
from bnno.preemption import CheckpointInterval, EpochProgress, StopSignals, parse_signals
from tests import instrumented
from tests.imagefolders import make_image_folder

# 120 training images in batches of 20: 6 steps an epoch.
TINY = "filters=8,dense_units=16,epochs=2,batch_size=20"
STEPS_PER_EPOCH = 6


# --- the options -----------------------------------------------------------------------


@pytest.mark.parametrize("text, steps, seconds, canonical", [
    ("500", 500, None, "500"), ("500steps", 500, None, "500"), ("1 step", 1, None, "1"),
    ("90s", None, 90, "90s"), ("10min", None, 600, "10min"), ("1.5h", None, 5400, "90min"),
    ("2h", None, 7200, "2h"), ("0.5m", None, 30, "30s"), ("epoch", None, None, "epoch"),
])
def test_checkpoint_intervals_are_steps_times_or_epochs(text, steps, seconds, canonical):
    interval = CheckpointInterval.parse(text)
    assert (interval.steps, interval.seconds) == (steps, seconds)
    assert str(interval) == canonical and CheckpointInterval.parse(canonical) == interval


@pytest.mark.parametrize("text", ["0", "ten", "1.5", "-3", "0s", "5 days", ""])
def test_a_bad_interval_is_one_sentence_with_the_forms(text):
    with pytest.raises(Exception) as error:
        CheckpointInterval.parse(text)
    assert str(error.value) == (
        f"--checkpoint-every {text.strip()!r} is not an interval; pass a number of steps (500), a time "
        "(90s, 10min, 2h) or 'epoch' (checkpoints only at the end of each epoch)."
    )


def test_stop_signals_are_named_with_or_without_sig_and_none_is_none():
    assert parse_signals("TERM,INT,USR1") == ("TERM", "INT", "USR1")
    assert parse_signals("sigterm, usr2,TERM") == ("TERM", "USR2")
    assert parse_signals("none") == ()
    with pytest.raises(Exception, match=r"Unknown --stop-signals signal 'TREM'.*Did you mean 'TERM'\?"):
        parse_signals("TERM,TREM")


@pytest.mark.parametrize("option, value, message", [
    ("--checkpoint-every", "ten", "--checkpoint-every 'ten' is not an interval"),
    ("--stop-signals", "KILL", "Unknown --stop-signals signal 'KILL'"),
])
def test_bad_preemption_options_are_usage_errors_before_anything_runs(option, value, message, tmp_path):
    result = CliRunner().invoke(cli, ["train", "binarynet", "--dataset", "cifar10", option, value,
                                      "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_the_defaults_are_ten_minutes_and_term_int_usr1(started_runs):
    result = CliRunner().invoke(cli, ["train", "binarynet", "--dataset", "cifar10"])
    assert result.exit_code == 0, result.output
    assert (started_runs[0].checkpoint_every, started_runs[0].stop_signals) == ("10min", "TERM,INT,USR1")
    CliRunner().invoke(cli, ["train", "binarynet", "--dataset", "cifar10", "--checkpoint-every", "500steps",
                             "--stop-signals", "sigusr1"])
    assert (started_runs[1].checkpoint_every, started_runs[1].stop_signals) == ("500", "USR1")


# --- the pieces --------------------------------------------------------------------------


def test_epoch_progress_round_trips_through_its_vector_exactly():
    progress = EpochProgress(
        step=417, loss_sum=0.1 + 0.2 + 1e-17, tally=[311.0, 400.0, 834.0], seconds=1234.5678,
        flip_counts=[(np.float32(3.3), 2.9e9), (7.0, 8.0)], summary_counts=[(1.0, 2.0), (3.0, 4.0)],
    )
    vector = np.array(progress.to_vector(2), dtype=np.float64)
    assert vector.shape == (EpochProgress.size(2),)
    again = EpochProgress.from_vector(vector, 2)
    assert again.step == 417 and again.loss_sum == progress.loss_sum and again.tally == progress.tally
    assert again.seconds == progress.seconds
    assert again.flip_counts == [(float(np.float32(3.3)), 2.9e9), (7.0, 8.0)]
    assert again.summary_counts == [(1.0, 2.0), (3.0, 4.0)]
    # No step summaries yet: their counts are zeros of the right length.
    assert EpochProgress(flip_counts=[(1.0, 2.0)]).to_vector(1)[-2:] == [0.0, 0.0]


STOP_TWICE = textwrap.dedent(
    """
    import os, signal, sys
    from bnno.preemption import StopSignals
    with StopSignals(["TERM", "USR1"]) as signals:
        os.kill(os.getpid(), signal.SIGUSR1)
        print(signals.received, signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal: the default, at once
        print("still running", flush=True)
    """
)


def test_the_first_signal_is_noted_and_a_second_one_stops_at_once():
    result = subprocess.run([sys.executable, "-c", STOP_TWICE], capture_output=True, text=True, timeout=60)
    assert result.stdout == "SIGUSR1 True\n"
    assert result.returncode == -signal.SIGTERM


def test_stop_signals_restore_the_previous_handlers():
    before = signal.getsignal(signal.SIGUSR2)
    with StopSignals(["USR2"]):
        assert signal.getsignal(signal.SIGUSR2) not in (before, signal.SIG_DFL)
    assert signal.getsignal(signal.SIGUSR2) is before


class FakeTrainer:
    """What InEpochCheckpoints uses of a Trainer; saving records the step."""

    def __init__(self, is_chief=True, multi_worker=False, steps_per_epoch=100):
        self.is_chief, self.multi_worker, self.steps_per_epoch = is_chief, multi_worker, steps_per_epoch
        self.progress = EpochProgress()
        self.requests = types.SimpleNamespace(assign=self.assign)
        self.assigned, self.saved, self.barriers = [], [], 0

    def assign(self, values):
        self.assigned.append(list(values))

    def save_in_epoch(self, epoch):
        self.saved.append((epoch, self.progress.step))
        return pathlib.Path(f"/runs/r/checkpoints/in_epoch/step-{epoch * self.steps_per_epoch + self.progress.step}")

    def barrier(self):
        self.barriers += 1


def drive(checkpoints, trainer, epoch, steps, clock=None, seconds_per_step=0.0, requests_of_others=(0, 0)):
    """Run ``steps`` fake steps: before, the step (the all-reduce sums this worker's and
    the others' requests), after."""
    for _ in range(steps):
        checkpoints.before_step()
        sent = trainer.assigned[-1] if trainer.assigned else [0.0, 0.0]
        trainer.progress.step += 1
        if clock is not None:
            clock.now += seconds_per_step
        summed = [a + b for a, b in zip(sent, requests_of_others)]
        checkpoints.after_step(epoch, stop=summed[0] > 0, save=summed[1] > 0)


def test_a_number_of_steps_saves_at_multiples_of_the_global_step_but_not_at_an_epoch_end():
    trainer = FakeTrainer(steps_per_epoch=6)
    checkpoints = preemption_checkpoints(trainer, "4")
    for epoch in range(3):
        trainer.progress = EpochProgress()
        drive(checkpoints, trainer, epoch, 6)
    # global steps 4, 8, 16 inside epochs; 12 is the end of epoch 2 (its own checkpoint)
    assert trainer.saved == [(0, 4), (1, 2), (2, 4)]
    assert trainer.assigned == []  # nothing to tell the other workers


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def preemption_checkpoints(trainer, interval, signals=None, clock=None):
    from bnno.training import InEpochCheckpoints

    signals = signals or types.SimpleNamespace(received=None)
    return InEpochCheckpoints(trainer, CheckpointInterval.parse(interval), signals, clock=clock or Clock())


def test_a_time_interval_is_the_chiefs_clock_and_every_worker_saves_after_the_same_step():
    clock = Clock()
    chief = FakeTrainer(steps_per_epoch=1000)
    checkpoints = preemption_checkpoints(chief, "10min", clock=clock)
    drive(checkpoints, chief, 0, 25, clock=clock, seconds_per_step=60.0)
    # due after 10 minutes (step 10 ends at 600 s): asked before step 11, saved after it
    assert chief.saved == [(0, 11), (0, 22)]
    assert chief.assigned == [[0.0, 1.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]]

    # Another worker never asks; it saves when the chief's request arrives with a step.
    worker, clock = FakeTrainer(is_chief=False, multi_worker=True, steps_per_epoch=1000), Clock()
    checkpoints = preemption_checkpoints(worker, "10min", clock=clock)
    drive(checkpoints, worker, 0, 10, clock=clock, seconds_per_step=60.0)
    drive(checkpoints, worker, 0, 1, clock=clock, seconds_per_step=60.0, requests_of_others=(0, 1))
    assert worker.saved == [(0, 11)] and worker.assigned == []


def test_the_epochs_checkpoint_restarts_the_time_interval():
    clock = Clock()
    trainer = FakeTrainer(steps_per_epoch=1000)
    checkpoints = preemption_checkpoints(trainer, "10min", clock=clock)
    drive(checkpoints, trainer, 0, 9, clock=clock, seconds_per_step=60.0)
    checkpoints.epoch_saved()
    trainer.progress = EpochProgress()
    drive(checkpoints, trainer, 1, 9, clock=clock, seconds_per_step=60.0)
    assert trainer.saved == []


def test_a_signal_saves_the_step_it_came_in_and_stops_with_one_line():
    signals = types.SimpleNamespace(received=None)
    trainer = FakeTrainer(steps_per_epoch=1251)
    checkpoints = preemption_checkpoints(trainer, "epoch", signals)
    drive(checkpoints, trainer, 4, 411)
    signals.received = "SIGTERM"  # during step 412
    with pytest.raises(Interrupted) as stopped:
        trainer.progress.step += 1
        checkpoints.after_step(4, stop=False, save=False)
    assert trainer.saved == [(4, 412)] and trainer.barriers == 0
    assert str(stopped.value) == (
        "Stopped (SIGTERM received) at epoch 5, step 412 of 1251, after saving "
        "/runs/r/checkpoints/in_epoch/step-5416; run the same command to resume from it "
        "(exit code 75: requeue)."
    )


def test_workers_stop_together_one_step_after_any_of_them_is_signalled():
    signals = types.SimpleNamespace(received=None)
    signalled = FakeTrainer(multi_worker=True, steps_per_epoch=50)
    checkpoints = preemption_checkpoints(signalled, "epoch", signals)
    drive(checkpoints, signalled, 0, 3)
    signals.received = "SIGUSR1"  # during step 3: not yet in any all-reduce
    checkpoints.after_step(0, stop=False, save=False)
    assert signalled.saved == []
    with pytest.raises(Interrupted, match=r"^Stopped \(SIGUSR1 received\) at epoch 1, step 4 of 50"):
        drive(checkpoints, signalled, 0, 1)  # step 4 carries the request to every worker
    assert signalled.saved == [(0, 4)] and signalled.barriers == 1

    other = FakeTrainer(multi_worker=True, is_chief=False, steps_per_epoch=50)
    checkpoints = preemption_checkpoints(other, "epoch")
    drive(checkpoints, other, 0, 3)
    with pytest.raises(Interrupted, match=r"^Stopped \(another worker was signalled\) at epoch 1, step 4 of 50"):
        drive(checkpoints, other, 0, 1, requests_of_others=(1, 0))
    assert other.saved == [(0, 4)] and other.barriers == 1


def test_a_signal_at_the_last_step_of_an_epoch_saves_it_and_the_resumed_run_validates():
    signals = types.SimpleNamespace(received=None)
    trainer = FakeTrainer(steps_per_epoch=6)
    checkpoints = preemption_checkpoints(trainer, "3", signals)
    drive(checkpoints, trainer, 0, 5)
    signals.received = "SIGINT"
    with pytest.raises(Interrupted):
        drive(checkpoints, trainer, 0, 1)
    assert trainer.saved == [(0, 3), (0, 6)]


def test_a_local_sweep_stopped_by_a_signal_marks_the_run_interrupted_and_resumes_it(tmp_path):
    from bnno import sweep as sweep_lib
    from tests.test_sweep import make_sweep

    sweep = make_sweep(tmp_path, grid={"threshold": ["1e-8", "1e-6"]})
    trained = []

    def stopped_in_the_second_run(run):
        trained.append(run.output_dir.name)
        if len(trained) == 2:
            raise Interrupted("Stopped (SIGTERM received) at epoch 1, step 3 of 6, ...")
        return {"epochs": 1, "history": [{"val_accuracy": "0.5"}]}

    lines = []
    with pytest.raises(Interrupted):
        sweep_lib.run_local(sweep, echo=lines.append, train=stopped_in_the_second_run)
    on_disk = yaml.safe_load((sweep.output_dir / "sweep.yaml").read_text())
    assert [r["state"] for r in on_disk["runs"]] == ["done", "interrupted"]
    assert lines[-1] == "run 2/2 threshold=1e-06: interrupted; run the same command again to resume it"

    trained.clear()
    manifest = sweep_lib.run_local(sweep, echo=lines.append, train=lambda run: trained.append(run.output_dir.name)
                                   or {"epochs": 1, "history": []})
    assert trained == ["threshold=1e-06_seed=0"] and [r["state"] for r in manifest["runs"]] == ["done", "done"]


def test_the_cli_says_one_line_and_exits_75_when_a_signal_stopped_the_run(monkeypatch):
    from bnno import lifecycle

    def stopped(run, echo=print):
        raise Interrupted("Stopped (SIGTERM received) at epoch 2, step 3 of 6, after saving x; run it again.")

    monkeypatch.setattr(lifecycle, "train", stopped)
    result = CliRunner().invoke(cli, ["train", "binarynet", "--dataset", "cifar10"])
    assert result.exit_code == REQUEUE_EXIT_CODE == 75
    assert result.output.strip().splitlines() == [
        "Stopped (SIGTERM received) at epoch 2, step 3 of 6, after saving x; run it again."
    ]


def test_skipped_batches_are_exactly_the_first_ones_of_the_epoch(stripes):
    from bnno import data

    folder = data.load(str(stripes))
    whole = [(x.numpy(), y.numpy()) for x, y in folder.train(20, epoch=1, seed=3)]
    resumed = [(x.numpy(), y.numpy()) for x, y in folder.train(20, epoch=1, seed=3, skip_batches=4)]
    assert len(whole) == STEPS_PER_EPOCH and len(resumed) == STEPS_PER_EPOCH - 4
    for (a_x, a_y), (b_x, b_y) in zip(whole[4:], resumed):
        np.testing.assert_array_equal(a_x, b_x)  # the same images, the same augmentation
        np.testing.assert_array_equal(a_y, b_y)


# --- whole runs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("stripes"))


def train_command(stripes, out, *options):
    return ["train", "binarynet", "--dataset", str(stripes), "--hparams-set", "bop", "--hparams", TINY,
            "--output-dir", str(out), "--log-every", "1", *options]


ENV = {**os.environ, "TF_DETERMINISTIC_OPS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def bnno(*arguments):
    return subprocess.run([sys.executable, "-m", "bnno", *arguments], env=ENV, capture_output=True, text=True)


def signalled_after_step(step, name, *arguments):
    """bnno, sent signal ``name`` right after its ``step``-th training step."""
    return subprocess.run([*instrumented.after_step(step, name), *arguments], env=ENV, capture_output=True, text=True)


@pytest.fixture(scope="module")
def uninterrupted(stripes, tmp_path_factory):
    """A run never stopped, with the default interval (no checkpoint inside its short epochs)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = bnno(*train_command(stripes, out))
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def history(out):
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row.pop("wall_seconds")
    return rows


def assert_same_run(expected, actual):
    """The same history, weights, optimizer state (Bop's moving averages), per-epoch flip
    ratios and per-step TensorBoard curves."""
    import keras

    import bnno.nn  # noqa: F401  (registers bnno's layers and optimizers with Keras)
    from bnno.report import events

    assert history(actual) == history(expected)
    a, b = keras.saving.load_model(expected / "model.keras"), keras.saving.load_model(actual / "model.keras")
    for x, y in zip(a.weights + a.optimizer.variables, b.weights + b.optimizer.variables, strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), err_msg=x.path)
    scalars_a, _ = events.read(expected / "train")
    scalars_b, _ = events.read(actual / "train")
    tags = [t for t in scalars_a if t.startswith(("step_", "epoch_flip_ratio"))]
    assert "step_flip_ratio" in tags and len(scalars_a["step_loss"]) == 2 * STEPS_PER_EPOCH
    for tag in tags:
        assert scalars_b[tag] == scalars_a[tag], tag


@pytest.mark.slow
def test_a_run_killed_right_after_an_epochs_checkpoint_resumes_without_losing_the_epoch(stripes, uninterrupted,
                                                                                        tmp_path):
    out = tmp_path / "run"
    # Killed right after the checkpoint of epoch 1, the last thing its epoch writes (after
    # its history row and TensorBoard records): a crash at a known moment.
    killed = subprocess.run([*instrumented.at_checkpoint(1), *train_command(stripes, out)], env=ENV,
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (out / "checkpoints" / "ckpt-1.index").exists()
    assert not (out / "checkpoints" / "ckpt-2.index").exists() and not (out / "model.keras").exists()
    resumed = bnno(*train_command(stripes, out))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming after epoch 1 of 2." in resumed.stdout
    assert [row["epoch"] for row in history(out)] == ["1", "2"]  # epoch 1's row once: not written again
    assert_same_run(uninterrupted, out)


@pytest.mark.slow
def test_a_run_killed_at_a_random_step_resumes_inside_the_epoch_to_the_same_result(stripes, uninterrupted, tmp_path):
    out = tmp_path / "run"
    step = random.randint(STEPS_PER_EPOCH + 3, 2 * STEPS_PER_EPOCH - 1)  # inside epoch 2, after its first checkpoint
    killed = signalled_after_step(step, "SIGKILL", *train_command(stripes, out, "--checkpoint-every", "2"))
    assert killed.returncode == -signal.SIGKILL, f"killed after step {step}: {killed.stderr[-2000:]}"
    # Killed before anything after the step ran: the last checkpoint is of the
    # multiple of 2 before it, and the kill lost at most the interval.
    saved = (step - 1) // 2 * 2
    assert 0 < step - saved <= 2
    checkpoints = sorted(p.name for p in (out / "checkpoints" / "in_epoch").glob("step-*.index"))
    assert checkpoints[-1] == f"step-{saved}.index", (step, checkpoints)

    resumed = bnno(*train_command(stripes, out, "--checkpoint-every", "2"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (f"Resuming in epoch 2 of 2, after step {saved - STEPS_PER_EPOCH} of {STEPS_PER_EPOCH} "
            f"(checkpoints/in_epoch/step-{saved}).") in resumed.stdout, (step, resumed.stdout)
    assert_same_run(uninterrupted, out)
    record = yaml.safe_load((out / "hparams.yaml").read_text())
    assert record["run_options"]["checkpoint_every"] == "2"
    assert record["run_options"]["stop_signals"] == "TERM,INT,USR1"
    # The epoch's checkpoint replaced those inside it.
    assert not list((out / "checkpoints" / "in_epoch").glob("step-*"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGUSR1"])  # SIGTERM: test_distribute, with two workers
def test_a_signal_saves_the_current_step_exits_75_and_the_run_resumes_from_it(stripes, uninterrupted, tmp_path, name):
    out = tmp_path / "run"
    stopped = signalled_after_step(4, name, *train_command(stripes, out))
    assert stopped.returncode == REQUEUE_EXIT_CODE, stopped.stderr[-2000:]
    message = (f"Stopped ({name} received) at epoch 1, step 4 of 6, after saving "
               f"{out}/checkpoints/in_epoch/step-4; run the same command to resume from it (exit code 75: requeue).")
    assert stopped.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in stopped.stderr
    assert not (out / "history.csv").exists() and not (out / "model.keras").exists()

    resumed = bnno(*train_command(stripes, out))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming in epoch 1 of 2, after step 4 of 6 (checkpoints/in_epoch/step-4)." in resumed.stdout
    assert_same_run(uninterrupted, out)
