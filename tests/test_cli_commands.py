"""bnno list / summary, and every foreseeable mistake as one sentence, never a traceback."""

import json

import pytest
from click.testing import CliRunner

from bnno.cli import cli
from tests.imagefolders import make_image_folder


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_list_shows_models_sets_with_values_preprocess_and_datasets():
    result = invoke("list")
    assert result.exit_code == 0, result.output
    for expected in (
        "binarynet", "binary_alexnet (also: alexnet)", "xnornet", "birealnet",
        "binarynet bop: epochs=100, batch_size=100, optimizer=bop",
        "binarynet bop_sec52: epochs=500, batch_size=50",
        "birealnet bop: epochs=300, batch_size=1024",
        "cifar10: default, resize_and_flip",
        "imagenet2012: default",
    ):
        assert expected in result.output


@pytest.mark.parametrize(
    "model, dataset, hparams_set, total, binary",
    [
        ("binarynet", "cifar10", "bop", 10_363_550, 10_352_000),
        ("binary_alexnet", "imagenet2012", "bop", 61_869_664, 61_827_776),
        ("alexnet", "imagenet2012", "bop", 61_869_664, 61_827_776),
        ("xnornet", "imagenet2012", "bop", 62_406_432, 58_236_928),
        ("birealnet", "imagenet2012", "bop", 11_699_112, 10_985_472),
    ],
)
def test_summary_json_counts_the_papers_parameters(model, dataset, hparams_set, total, binary):
    result = invoke("summary", model, "--dataset", dataset, "--hparams-set", hparams_set, "--json")
    assert result.exit_code == 0, result.output
    totals = json.loads(result.output.strip().splitlines()[-1])
    assert totals["total_params"] == total
    assert totals["binary_params"] == binary
    assert totals["fp_params"] == total - binary
    assert {"memory_bytes", "binary_macs", "fp_macs"} <= set(totals)


def test_summary_of_binarynet_macs():
    result = invoke("summary", "binarynet", "--dataset", "cifar10", "--hparams-set", "bop", "--json")
    totals = json.loads(result.output.strip().splitlines()[-1])
    assert totals["fp_macs"] == 3 * 3 * 3 * 128 * 30 * 30  # the first layer's real-valued inputs
    assert totals["binary_macs"] > 100 * totals["fp_macs"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "binarynett", "--dataset", "cifar10"],
         "Unknown model 'binarynett'; valid choices are: binary_alexnet, binarynet, birealnet, xnornet. Did you mean 'binarynet'?"),
        (["train", "binarynet", "--dataset", "cifar10", "--hparams-set", "bob"],
         "Unknown hyperparameter set 'bob' for binarynet; valid choices are: bop, bop_sec52, default. Did you mean 'bop'?"),
        (["train", "birealnet", "--dataset", "imagenet2012"],
         "Unknown hyperparameter set 'default' for birealnet; valid choices are: adam, bop."),
        (["train", "binarynet", "--dataset", "cifar10", "--hparams-set", "bop", "--hparams", "treshold=1e-6"],
         "Did you mean 'threshold'?"),
        (["train", "binarynet", "--dataset", "cifar10", "--hparams-set", "bop", "--hparams", "epochs=ten"],
         "Hyperparameter epochs=ten must be a whole number"),
        (["summary", "binarynet", "--dataset", "cifar10", "--hparams", "kernel_quantizer=ste_sgn"],
         "Unknown quantizer 'ste_sgn'"),
        (["summary", "binarynet", "--dataset", "cifar10", "--preprocess-fn", "resize_flip"],
         "Did you mean 'resize_and_flip'?"),
        (["summary", "binarynet", "--dataset", "cifar1"], "cifar10"),
        (["train", "binarynet", "--dataset", "cifar10", "--strategy", "mirored"],
         "Did you mean 'mirrored'?"),
        (["list", "model"], "Did you mean 'models'?"),
    ],
)
def test_usage_mistakes_exit_2_with_one_clear_sentence(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_an_image_folder_without_a_validation_split_is_a_usage_error(tmp_path):
    root = make_image_folder(tmp_path / "data", train_per_class=2, validation_per_class=1)
    for image in (root / "validation").rglob("*.png"):
        image.unlink()
    for folder in sorted((root / "validation").rglob("*"), reverse=True):
        folder.rmdir()
    (root / "validation").rmdir()
    result = invoke("train", "binarynet", "--dataset", root, "--hparams-set", "bop")
    assert result.exit_code == 2, result.output
    assert "validation" in result.output and "test" in result.output
    assert "Traceback" not in result.output


def test_a_missing_folder_is_a_usage_error(tmp_path):
    result = invoke("train", "binarynet", "--dataset", tmp_path / "nowhere" / "data", "--hparams-set", "bop")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_evaluate_of_a_directory_that_is_no_run_exits_1(tmp_path):
    result = invoke("evaluate", "--output-dir", tmp_path)
    assert result.exit_code == 1
    assert f"{tmp_path} is not a bnno run directory: it has no hparams.yaml." in result.output


def test_a_model_too_deep_for_the_images_is_a_usage_error():
    result = invoke("summary", "xnornet", "--dataset", "cifar10", "--hparams-set", "bop")
    assert result.exit_code == 2, result.output
    assert "Model xnornet cannot be built for images of shape (32, 32, 3)" in result.output
    assert "Traceback" not in result.output


def test_no_network_answers_at_once_with_what_to_do(tmp_path, monkeypatch):
    from bnno.data import network

    monkeypatch.setattr(network, "can_reach", lambda *args, **kwargs: False)
    result = invoke("train", "binarynet", "--dataset", "cifar10", "--hparams-set", "bop",
                    "--data-dir", tmp_path / "tfds")
    assert result.exit_code == 1, result.output
    assert "is not prepared under" in result.output
    assert "bnno prepare cifar10 --data-dir" in result.output
    assert "Traceback" not in result.output


def test_prepare_checks_an_image_folder(tmp_path):
    root = make_image_folder(tmp_path / "data", train_per_class=2, validation_per_class=1)
    result = invoke("prepare", root)
    assert result.exit_code == 0, result.output
    assert f"Prepared {root}" in result.output


def test_tensorboard_without_runs_says_where_it_looked(tmp_path):
    result = invoke("tensorboard", "--logdir", tmp_path / "none")
    assert result.exit_code == 2
    assert f"There are no runs at {tmp_path / 'none'}" in result.output
