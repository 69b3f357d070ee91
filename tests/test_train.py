"""End-to-end training through the command line: outputs, learning, resume, errors."""

import csv
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from bnno.cli import cli
from tests.imagefolders import make_image_folder

TINY_BINARYNET = "filters=8,dense_units=16,epochs=2,batch_size=20"


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("stripes"))


def run_cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def history(output_dir):
    with open(pathlib.Path(output_dir) / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_leaves_everything_a_researcher_needs(stripes, tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "train", "binarynet", "--dataset", stripes, "--hparams-set", "bop",
        "--hparams", TINY_BINARYNET, "--output-dir", out,
    )
    assert result.exit_code == 0, result.output
    assert "Finished 2 epochs" in result.output
    record = yaml.safe_load((out / "hparams.yaml").read_text())
    assert record["model"] == "binarynet" and record["hparams_set"] == "bop"
    assert record["hparams"]["filters"] == 8 and record["hparams"]["threshold"] == 1e-6
    assert record["overrides"]["filters"] == "8"
    assert record["versions"]["tensorflow"].startswith("2.21")
    # What reproduces the paper's numerics on GPUs, and where the data came from.
    assert record["tf32"] is False and record["data_dir"] is None
    assert record["dataset"] == str(stripes) and os.path.isabs(record["dataset"])
    rows = history(out)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) == {
        "epoch", "loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy", "val_top5_accuracy",
        "wall_seconds",
    }
    assert 0 < float(rows[0]["wall_seconds"]) <= float(rows[1]["wall_seconds"])
    assert (out / "checkpoints" / "checkpoint").exists()
    assert (out / "model.keras").exists() and (out / "binary.weights.h5").exists()
    assert "Total params" in (out / "summary.txt").read_text()
    events = list(out.glob("train/events.out.tfevents.*")) + list(out.glob("validation/events.out.tfevents.*"))
    assert len(events) >= 2


def test_tensorboard_events_hold_the_papers_curves(stripes, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run_cli("train", "binarynet", "--dataset", stripes, "--hparams-set", "bop",
            "--hparams", TINY_BINARYNET, "--output-dir", out)
    train_events = EventAccumulator(str(out / "train")).Reload()
    tags = set(train_events.Tags()["tensors"]) | set(train_events.Tags()["scalars"])
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_top5_accuracy", "epoch_learning_rate",
                "epoch_gamma", "epoch_flip_ratio"):
        assert tag in tags, sorted(tags)
    assert any(tag.startswith("epoch_flip_ratio/") for tag in tags)
    validation_tags = set(EventAccumulator(str(out / "validation")).Reload().Tags()["tensors"])
    assert {"epoch_loss", "epoch_accuracy", "epoch_top5_accuracy"} <= validation_tags


@pytest.mark.slow
def test_bop_learns_a_learnable_image_folder(tmp_path):
    # The paper's bop recipe (threshold 1e-6, gamma 1e-3, Adam 1e-2), shrunk in size.
    # 30 steps an epoch: BinaryNet's batch norm keeps Keras' momentum 0.99 (as the
    # paper), so its moving statistics need a few hundred steps before validation.
    data = make_image_folder(tmp_path / "data", train_per_class=100, validation_per_class=20)
    out = tmp_path / "learn"
    result = run_cli(
        "train", "binarynet", "--dataset", data, "--hparams-set", "bop", "--output-dir", out,
        "--hparams", "filters=16,dense_units=64,epochs=8,batch_size=10", "--no-tensorboard",
    )
    assert result.exit_code == 0, result.output
    final = history(out)[-1]
    assert float(final["val_accuracy"]) >= 0.9, history(out)


def test_bop_kernels_stay_binary_and_binary_weights_are_exported(stripes, tmp_path):
    import keras

    from bnno.nn import layers

    out = tmp_path / "run"
    run_cli("train", "binarynet", "--dataset", stripes, "--hparams-set", "default",
            "--hparams", TINY_BINARYNET, "--output-dir", out)
    model = keras.saving.load_model(out / "model.keras")
    latent = [l.kernel.numpy() for l in model.layers if isinstance(l, layers.QuantConv2D)]
    assert not set(np.unique(latent[1])) <= {-1.0, 1.0}  # the default set trains latent weights
    model.load_weights(out / "binary.weights.h5")
    binary = [l.kernel.numpy() for l in model.layers if isinstance(l, layers.QuantConv2D)]
    for kernel in binary:
        assert set(np.unique(kernel)) <= {-1.0, 1.0}


@pytest.mark.slow
def test_a_finished_run_says_so_and_keeps_its_files(stripes, tmp_path):
    out = tmp_path / "run"
    args = ("train", "binarynet", "--dataset", stripes, "--hparams-set", "bop",
            "--hparams", TINY_BINARYNET, "--output-dir", out)
    run_cli(*args)
    before = history(out)
    result = run_cli(*args)
    assert result.exit_code == 0
    assert "already finished all 2 epochs" in result.output
    assert history(out) == before


@pytest.mark.slow
def test_resuming_with_other_hyperparameters_is_refused(stripes, tmp_path):
    out = tmp_path / "run"
    run_cli("train", "binarynet", "--dataset", stripes, "--hparams-set", "bop",
            "--hparams", TINY_BINARYNET, "--output-dir", out)
    result = CliRunner().invoke(cli, [
        "train", "binarynet", "--dataset", str(stripes), "--hparams-set", "bop",
        "--hparams", TINY_BINARYNET + ",gamma=1e-2", "--output-dir", str(out)])
    assert result.exit_code == 2
    assert "holds a run with other settings (gamma: 0.001 -> 0.01)" in result.output
    assert "Traceback" not in result.output


def test_a_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(stripes, tmp_path):
    # Epoch 1 trains normally; from epoch 2 on the learning rate is 3e38, near float32's
    # largest number: one Adam step takes batch norm's scales and offsets there, and the
    # next step's logits overflow.
    out = tmp_path / "nan"
    result = CliRunner().invoke(cli, [
        "train", "binarynet", "--dataset", str(stripes), "--hparams-set", "default",
        "--output-dir", str(out), "--hparams",
        "filters=8,dense_units=16,epochs=3,batch_size=20,learning_rate_decay=piecewise,"
        "learning_rate_boundaries=[1],learning_rate_factors=[1, 6.0e+40]",
    ])
    assert result.exit_code == 1, result.output
    assert re.search(r"The loss became (nan|inf|-inf) at epoch 2, step \d+, so training stopped; the "
                     r"last good checkpoint \(epoch 1\) is kept in", result.output), result.output[-500:]
    assert "Traceback" not in result.output
    assert [r["epoch"] for r in history(out)] == ["1"]
    assert (out / "checkpoints" / "ckpt-1.index").exists()
    assert not (out / "checkpoints" / "ckpt-2.index").exists()
    assert not (out / "model.keras").exists()


def test_evaluate_reports_top1_and_top5_of_a_run(stripes, tmp_path):
    out = tmp_path / "run"
    run_cli("train", "binarynet", "--dataset", stripes, "--hparams-set", "bop",
            "--hparams", TINY_BINARYNET, "--output-dir", out)
    result = run_cli("evaluate", "--output-dir", out)
    assert result.exit_code == 0, result.output
    last = history(out)[-1]
    assert f"epoch 2: top-1 {float(last['val_accuracy']):.4f}" in result.output
    assert "top-5 1.0000" in result.output  # three classes: the true one is always in the top 5


@pytest.mark.slow
def test_log_every_writes_step_curves_and_the_run_carries_its_hparams_for_tensorboard(stripes, tmp_path):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = tmp_path / "run"
    result = run_cli("train", "binarynet", "--dataset", stripes, "--hparams-set", "bop",
                     "--hparams", TINY_BINARYNET, "--output-dir", out, "--log-every", 2)
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(out / "train")).Reload()
    # 120 images in batches of 20: 6 steps an epoch, a point every 2 steps, 2 epochs.
    for tag in ("step_loss", "step_accuracy", "step_flip_ratio"):
        steps = [e.step for e in events.Tensors(tag)]
        assert steps == [2, 4, 6, 8, 10, 12], tag
    flip_ratios = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("step_flip_ratio")]
    assert all(0 <= r <= 1 for r in flip_ratios) and max(flip_ratios) > 0
    # each binary layer's too, under the names of its per-epoch flip_ratio/<layer>
    tags = events.Tags()["tensors"]
    layers = [tag[len("epoch_"):] for tag in tags if tag.startswith("epoch_flip_ratio/")]
    assert len(layers) == 9 and sorted(tag for tag in tags if tag.startswith("step_flip_ratio/")) == sorted(
        f"step_{layer}" for layer in layers)
    assert [e.step for e in events.Tensors(f"step_{layers[-1]}")] == [2, 4, 6, 8, 10, 12]
    assert [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("steps_per_epoch")] == [6]

    # TensorBoard's HParams plugin: the session's hyperparameters at the run's root.
    root = EventAccumulator(str(out)).Reload()
    content = root.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["threshold"].number_value == 1e-6 and hparams["gamma"].number_value == 1e-3
    assert hparams["hparams_set"].string_value == "bop" and hparams["filters"].number_value == 8
    assert session.session_start_info.group_name == "run"


def test_step_summaries_write_each_layers_flip_ratio_over_the_last_n_steps(tmp_path):
    """Exact values: two binary layers of 20 and 15 weights, a point every 2 steps, and
    the counts restarting each epoch (as the trainer resets them)."""
    import types

    import tensorflow as tf

    from bnno import training
    from bnno.nn import metrics
    from bnno.report import events
    from tests.nn.test_metrics import flip, model_with_two_binary_kernels

    model = model_with_two_binary_kernels()
    a, b = model.get_layer("a").kernel, model.get_layer("b").kernel
    trainer = types.SimpleNamespace(tf=tf, run=types.SimpleNamespace(output_dir=tmp_path),
                                    flip_ratios=metrics.FlipRatios(model), steps_per_epoch=4,
                                    step_summary_counts={})
    callback = training.step_summaries(trainer, every=2)
    # flips of (a, b) at each step of two epochs of four steps
    epochs = [[(4, 0), (2, 3), (0, 0), (0, 6)], [(10, 0), (0, 0), (1, 1), (0, 0)]]
    callback.on_train_begin()
    for epoch, steps in enumerate(epochs):
        trainer.flip_ratios.reset_state()  # as Trainer.begin_epoch does
        trainer.step_summary_counts = {}
        callback.on_epoch_begin(epoch)
        for batch, (flips_a, flips_b) in enumerate(steps):
            flip(a, flips_a)
            flip(b, flips_b)
            trainer.flip_ratios.update_state()
            callback.on_train_batch_end(batch, {"loss": 1.0, "accuracy": 0.5})
    callback.on_train_end()

    scalars, _ = events.read(tmp_path / "train")
    assert scalars["steps_per_epoch"] == {0: 4}
    # per step, over the last 2 steps: a has 20 weights, b 15, all 35 together
    assert scalars["step_flip_ratio/a"] == pytest.approx({2: 6 / 40, 4: 0 / 40, 6: 10 / 40, 8: 1 / 40})
    assert scalars["step_flip_ratio/b"] == pytest.approx({2: 3 / 30, 4: 6 / 30, 6: 0 / 30, 8: 1 / 30})
    assert scalars["step_flip_ratio"] == pytest.approx({2: 9 / 70, 4: 6 / 70, 6: 10 / 70, 8: 2 / 70})
    assert list(scalars["step_loss"]) == [2, 4, 6, 8]


@pytest.mark.slow
def test_a_log_file_gets_plain_lines_without_escapes_or_carriage_returns(stripes, tmp_path):
    log = tmp_path / "run.log"
    with open(log, "w") as stdout:  # bnno train ... > run.log 2>&1
        completed = subprocess.run(
            [sys.executable, "-m", "bnno", "train", "binarynet", "--dataset", str(stripes),
             "--hparams-set", "bop", "--hparams", TINY_BINARYNET, "--output-dir", str(tmp_path / "run")],
            stdout=stdout, stderr=subprocess.STDOUT,
        )
    text = log.read_text()
    assert completed.returncode == 0, text[-2000:]
    assert "\x1b" not in text and "\r" not in text
    epoch_lines = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines if " done " in line] == ["1/2", "2/2"]
    assert all("val_accuracy" in line and "images/s" in line for line in epoch_lines if " done " in line)
    # TensorFlow's start-up chatter is hidden without --verbose.
    assert "cuda" not in text.lower() and "oneDNN" not in text
