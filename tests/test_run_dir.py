"""A run's directory over its life: recorded data, extended epochs, damaged checkpoints."""

import csv
import os
import pathlib
import shutil

import pytest
import yaml
from click.testing import CliRunner

from bnno.cli import cli
from tests.imagefolders import make_image_folder

TINY = "filters=8,dense_units=16,batch_size=20"


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("stripes"))


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def train(stripes, out, epochs, *extra):
    return run_cli("train", "binarynet", "--dataset", stripes, "--hparams-set", "bop",
                   "--hparams", f"{TINY},epochs={epochs}", "--output-dir", out, *extra)


def history(output_dir):
    with open(pathlib.Path(output_dir) / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def record(output_dir):
    return yaml.safe_load((pathlib.Path(output_dir) / "hparams.yaml").read_text())


@pytest.mark.slow
def test_evaluate_reads_the_data_dir_the_run_was_trained_with_or_the_one_given(tmp_path, monkeypatch):
    import bnno.data.testing  # noqa: F401  (registers bnno_test_digits, prepared without download)
    from bnno.data import network

    # bnno_test_digits generates its examples; only tfds's network check needs faking.
    monkeypatch.setattr(network, "can_reach", lambda url, timeout=3.0: True)
    data_dir, out = tmp_path / "tfds", tmp_path / "run"
    assert run_cli("prepare", "bnno_test_digits", "--data-dir", data_dir).exit_code == 0
    # From here on, as on a compute node: no network, the data only where it was prepared.
    monkeypatch.setattr(network, "can_reach", lambda url, timeout=3.0: False)
    result = run_cli("train", "binarynet", "--dataset", "bnno_test_digits", "--data-dir", data_dir, "--image-size", 16,
                     "--hparams", "filters=8,dense_units=16,batch_size=10,epochs=1", "--output-dir", out)
    assert result.exit_code == 0, result.output
    assert record(out)["data_dir"] == str(data_dir)

    result = run_cli("evaluate", "--output-dir", out)
    assert result.exit_code == 0, result.output
    assert f"epoch 1: top-1 {float(history(out)[-1]['val_accuracy']):.4f}" in result.output

    # The prepared data moved (e.g. to a compute node's scratch disk): --data-dir says where.
    moved = tmp_path / "scratch"
    shutil.move(data_dir, moved)
    result = run_cli("evaluate", "--output-dir", out)
    assert result.exit_code == 1 and "bnno prepare" in result.output
    result = run_cli("evaluate", "--output-dir", out, "--data-dir", moved)
    assert result.exit_code == 0, result.output
    assert f"epoch 1: top-1 {float(history(out)[-1]['val_accuracy']):.4f}" in result.output


@pytest.mark.slow
def test_a_relative_image_folder_is_recorded_absolute_and_found_from_anywhere(stripes, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.chdir(stripes.parent)
    result = train(stripes.name, out, 1)
    assert result.exit_code == 0, result.output
    assert record(out)["dataset"] == str(stripes)

    monkeypatch.chdir(tmp_path)  # somewhere the relative name means nothing
    result = run_cli("evaluate", "--output-dir", out)
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_raising_epochs_extends_a_finished_run_and_records_it(stripes, tmp_path):
    out = tmp_path / "run"
    assert train(stripes, out, 1).exit_code == 0
    first_epoch = history(out)[0]

    result = train(stripes, out, 3)
    assert result.exit_code == 0, result.output
    assert "Epochs of this run: 1 -> 3" in result.output and "Resuming after epoch 1 of 3." in result.output
    assert [r["epoch"] for r in history(out)] == ["1", "2", "3"]
    assert history(out)[0] == first_epoch  # the first epoch is kept as it was
    extended = record(out)
    assert extended["hparams"]["epochs"] == 3
    assert extended["extensions"][0]["epochs"] == [1, 3]
    assert extended["extensions"][0]["after_epoch"] == 1
    # Running the extended command again is a finished run, not another extension.
    result = train(stripes, out, 3)
    assert result.exit_code == 0 and "already finished all 3 epochs" in result.output
    assert len(record(out)["extensions"]) == 1


def test_a_run_with_a_linear_schedule_cannot_be_extended_and_says_why(stripes, tmp_path):
    out = tmp_path / "run"
    linear = "gamma_decay=linear,gamma_end=1e-6"
    result = run_cli("train", "binarynet", "--dataset", stripes, "--hparams-set", "bop", "--output-dir", out,
                     "--hparams", f"{TINY},epochs=1,{linear}")
    assert result.exit_code == 0, result.output
    result = run_cli("train", "binarynet", "--dataset", stripes, "--hparams-set", "bop", "--output-dir", out,
                     "--hparams", f"{TINY},epochs=2,{linear}")
    assert result.exit_code == 2
    assert "cannot be extended from 1 to 2 epochs: its gamma schedule is linear over the whole run" in result.output
    assert "Traceback" not in result.output
    assert [r["epoch"] for r in history(out)] == ["1"] and record(out)["hparams"]["epochs"] == 1


def _truncate(path: pathlib.Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.mark.slow
def test_an_unreadable_newest_checkpoint_is_kept_aside_and_the_run_resumes_from_the_one_before(
        stripes, tmp_path):
    out = tmp_path / "run"
    assert train(stripes, out, 3).exit_code == 0
    whole = history(out)
    checkpoints = out / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.index")) == ["ckpt-1.index", "ckpt-2.index", "ckpt-3.index"]
    damaged = next(checkpoints.glob("ckpt-3.data-*"))
    _truncate(damaged)
    damaged_bytes = damaged.read_bytes()

    result = train(stripes, out, 3)
    assert result.exit_code == 0, result.output
    assert f"Checkpoint ckpt-3 in {checkpoints} is unreadable" in result.output
    assert "Resuming from ckpt-2; the unreadable checkpoints are kept in" in result.output
    assert "Resuming after epoch 2 of 3." in result.output
    # The damaged files are kept, not deleted; epoch 3 is trained and saved again.
    assert (checkpoints / "unreadable" / damaged.name).read_bytes() == damaged_bytes
    assert (checkpoints / "ckpt-3.index").exists()
    resumed = history(out)
    assert [r["epoch"] for r in resumed] == ["1", "2", "3"]
    assert resumed[:2] == whole[:2]
    assert float(resumed[2]["loss"]) == pytest.approx(float(whole[2]["loss"]), rel=1e-4)


@pytest.mark.slow
def test_no_readable_checkpoint_is_refused_with_what_to_do_and_nothing_is_touched(stripes, tmp_path):
    out = tmp_path / "run"
    assert train(stripes, out, 2).exit_code == 0
    for data in (out / "checkpoints").glob("ckpt-*.data-*"):
        _truncate(data)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    result = train(stripes, out, 3)
    assert result.exit_code == 1
    assert f"None of the 2 checkpoints in {out / 'checkpoints'} can be read; nothing was changed there" \
        in result.output
    assert "Traceback" not in result.output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not os.path.exists(out / "checkpoints" / "unreadable")


@pytest.mark.parametrize("tf32", [False, True])
def test_tensorfloat32_is_off_unless_asked_for_and_is_part_of_a_runs_identity(tf32, tmp_path):
    import tensorflow as tf

    from bnno import hparams, run_dir, training
    from bnno.benchmark import OneBatch

    tf.config.experimental.enable_tensor_float_32_execution(not tf32)  # the opposite first
    values = hparams.resolve("binarynet", "bop", f"{TINY},epochs=1")
    run = training.Run(model="binarynet", dataset="synthetic", hparams_set="bop", hparams=values,
                       output_dir=tmp_path, tf32=tf32, verbose=0)
    try:
        training.Trainer(run, data=OneBatch((16, 16, 3), 3, batch_size=20, steps=1, seed=0))
        assert tf.config.experimental.tensor_float_32_execution_enabled() is tf32
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(True)  # TensorFlow's default
    run_dir.write_record(run)
    assert record(tmp_path)["tf32"] is tf32
    other = training.Run(**{**vars(run), "tf32": not tf32})
    with pytest.raises(Exception, match=f"tf32: {tf32} -> {not tf32}"):
        run_dir.check_resumable(other)


def test_a_record_made_before_a_key_existed_resumes_with_that_keys_old_value(tmp_path):
    """Runs of stage2_bop recorded before ``channel_scale`` existed resume with
    ``--hparams channel_scale=false,threshold=1e-8`` (what they ran), and are refused in
    one sentence with the set's new values."""
    from bnno import hparams, run_dir
    from bnno.errors import UsageError

    old = hparams.resolve("resnet18_tricks", "stage2_bop", "channel_scale=false,threshold=1e-8")
    run = run_dir.Run(model="resnet18_tricks", dataset="cifar10", hparams_set="stage2_bop", hparams=old,
                      output_dir=tmp_path)
    run_dir.write_record(run)
    recorded = record(tmp_path)
    del recorded["hparams"]["channel_scale"]  # as written before the key existed
    (tmp_path / "hparams.yaml").write_text(yaml.safe_dump(recorded))

    assert run_dir.check_resumable(run) is None
    new = run_dir.Run(**{**vars(run), "hparams": hparams.resolve("resnet18_tricks", "stage2_bop")})
    with pytest.raises(UsageError, match=r"other settings \(channel_scale: False -> True; "
                                         r"threshold: 1e-08 -> 1e-07\); resume it with its own settings"):
        run_dir.check_resumable(new)
