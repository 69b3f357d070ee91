"""Plain progress lines for logs that are not terminals: exact lines on a fake clock."""

import io
import sys

import keras
import pytest

from bnno.progress import PlainProgress, default_every_steps, format_duration, progress_callback


class FakeClock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


EPOCH_LOGS = {
    "loss": 1.2001, "accuracy": 0.561, "top5_accuracy": 0.95, "val_loss": 1.3456,
    "val_accuracy": 0.5123, "val_top5_accuracy": 0.94, "flip_ratio": 0.0012,
    "flip_ratio/conv": 0.002, "learning_rate": 0.01, "gamma": 1e-4, "wall_seconds": 12.0,
}


def run_epoch(progress, clock, epoch, steps, seconds_per_step, validation_seconds, logs):
    progress.on_epoch_begin(epoch)
    began = clock.now
    for step in range(steps):
        clock.now = began + (step + 1) * seconds_per_step
        progress.on_train_batch_end(step, {"loss": 1.2345, "accuracy": 0.5432})
    clock.now += validation_seconds
    progress.on_epoch_end(epoch, logs)


def assert_plain(lines):
    for line in lines:
        assert "\x1b" not in line and "\r" not in line and "\n" not in line, repr(line)


def test_step_and_epoch_lines():
    # 500 steps of 0.25 s (50 images each: 200 images/s), a line every 200 steps, then
    # 55 s of validation: the epoch took 180 s, so 97 more take 4:51:00.
    lines, clock = [], FakeClock(1000.0)
    progress = PlainProgress(500, 100, 50, every_steps=200, echo=lines.append, clock=clock)
    run_epoch(progress, clock, 2, 500, 0.25, 55.0, EPOCH_LOGS)
    assert lines == [
        "epoch   3/100 step 200/500  loss 1.2345  accuracy 0.5432     200 images/s  eta 0:01:15",
        "epoch   3/100 step 400/500  loss 1.2345  accuracy 0.5432     200 images/s  eta 0:00:25",
        "epoch   3/100 done          loss 1.2001  accuracy 0.5610  val_loss 1.3456  "
        "val_accuracy 0.5123  flip_ratio 1.20e-03     200 images/s  took 0:03:00  run eta 4:51:00",
    ]
    assert_plain(lines)


def test_images_per_second_and_eta_follow_the_latest_steps():
    # Steps slow down from 1 s to 2 s after step 100: the second line's rate and
    # eta are those of steps 101-200 (25 images/s, 100 steps of 2 s left).
    lines, clock = [], FakeClock()
    progress = PlainProgress(300, 1, 50, every_steps=100, echo=lines.append, clock=clock)
    progress.on_epoch_begin(0)
    for step in range(200):
        clock.now = step + 1.0 if step < 100 else 100 + 2.0 * (step - 99)
        progress.on_train_batch_end(step, {"loss": 0.5, "accuracy": 0.75})
    assert [line.split("  ", 3)[-1] for line in lines] == [
        "    50 images/s  eta 0:03:20",
        "    25 images/s  eta 0:03:20",
    ]


def test_step_lines_due_sooner_than_min_seconds_are_skipped():
    # A line is due every 10 steps of 1 s, but at most one per 30 s.
    lines, clock = [], FakeClock()
    progress = PlainProgress(100, 1, 8, every_steps=10, min_seconds=30, echo=lines.append, clock=clock)
    progress.on_epoch_begin(0)
    for step in range(100):
        clock.now = step + 1.0
        progress.on_train_batch_end(step, {"loss": 0.5, "accuracy": 0.75})
    assert [line.split()[3] for line in lines] == ["30/100", "60/100", "90/100"]


def test_a_resumed_run_estimates_from_the_epochs_it_timed_and_omits_missing_metrics():
    # Resumed at epoch 8 of 10: epochs of 600 s and 660 s leave one of 630 s.
    lines, clock = [], FakeClock()
    progress = PlainProgress(3, 10, 1920, min_seconds=1e9, echo=lines.append, clock=clock)
    logs = {"loss": 0.5, "accuracy": 0.9}
    run_epoch(progress, clock, 7, 3, 192.0, 24.0, logs)
    run_epoch(progress, clock, 8, 3, 192.0, 84.0, logs)
    run_epoch(progress, clock, 9, 3, 192.0, 84.0, logs)
    assert lines == [
        "epoch  8/10 done      loss 0.5000  accuracy 0.9000      10 images/s  took 0:10:00  run eta 0:20:00",
        "epoch  9/10 done      loss 0.5000  accuracy 0.9000      10 images/s  took 0:11:00  run eta 0:10:30",
        "epoch 10/10 done      loss 0.5000  accuracy 0.9000      10 images/s  took 0:11:00",
    ]


def test_durations_count_hours_past_a_day():
    assert [format_duration(s) for s in (0, 59.6, 75, 3600, 93784)] == [
        "0:00:00", "0:01:00", "0:01:15", "1:00:00", "26:03:04",
    ]


@pytest.mark.parametrize("steps, every", [(1, 1), (9, 1), (10, 1), (11, 2), (1000, 100), (5005, 501)])
def test_a_step_line_is_due_every_tenth_of_an_epoch(steps, every):
    assert default_every_steps(steps) == every


def test_a_terminal_keeps_keras_progress_bar_and_anything_else_gets_plain_lines(monkeypatch):
    assert isinstance(progress_callback(500, 100, 50, stream_is_tty=True), keras.callbacks.ProgbarLogger)
    plain = progress_callback(500, 100, 50, stream_is_tty=False)
    assert isinstance(plain, PlainProgress)
    assert (plain.steps_per_epoch, plain.epochs, plain.batch_size, plain.every_steps) == (500, 100, 50, 50)
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # e.g. a Slurm output file
    assert isinstance(progress_callback(500, 100, 50), PlainProgress)


def test_plain_progress_runs_inside_a_keras_callback_list(capsys):
    progress = progress_callback(4, 2, 16, stream_is_tty=False)
    progress.every_steps, progress.min_seconds = 2, 0.0
    callbacks = keras.callbacks.CallbackList([progress], add_progbar=False, epochs=2, steps=4, verbose=1)
    callbacks.on_train_begin()
    for epoch in range(2):
        callbacks.on_epoch_begin(epoch)
        for step in range(4):
            callbacks.on_train_batch_begin(step)
            callbacks.on_train_batch_end(step, {"loss": 0.25, "accuracy": 1.0})
        callbacks.on_epoch_end(epoch, {"loss": 0.25, "accuracy": 1.0, "val_loss": 0.5, "val_accuracy": 0.75})
    callbacks.on_train_end()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines] == [
        "epoch 1/2 step 2/4", "epoch 1/2 step 4/4", "epoch 1/2 done",
        "epoch 2/2 step 2/4", "epoch 2/2 step 4/4", "epoch 2/2 done",
    ]
    assert_plain(lines)
