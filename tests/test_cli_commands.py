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
        "binarynet bop (default): epochs=100, batch_size=100, optimizer=bop",
        "binarynet bop_sec52: epochs=500, batch_size=50",
        "binarynet adam_sec52: epochs=500, batch_size=50, optimizer=adam, learning_rate=0.001, "
        "learning_rate_decay=step,",
        "learning_rate_decay_factor=0.1, learning_rate_decay_epochs=100, xavier_learning_rate_scaling=True",
        # "A Bop and Beyond": its model names, sets and schedules as its command lines write them
        "binarynet_batch", "xnornet_batch", "birealnet_batch",
        "binarynet bop2ndOrder: epochs=100, batch_size=100, optimizer=bop2nd",
        "binarynet_batch bop2ndOrder (default): epochs=100, batch_size=100, optimizer=bop2nd",
        "binarynet_batch bop2ndOrder_unbiased_testExp: epochs=350, batch_size=50, optimizer=bop2nd, "
        "learning_rate=0.01, learning_rate_decay=0.1,",
        "threshold=1e-06, gamma=1e-07, gamma_decay=0.1, normalization=batch, bias_correction=True, "
        "sigma=0.001, sigma_decay=0.1, epochs_decay=100, threshold_decay=0.1",
        "binarynet_batch bop2ndOrder_CIFAR: ",
        "xnornet_batch bop2ndOrder_ImageNet (default): epochs=100, batch_size=1024, optimizer=bop2nd",
        "birealnet_batch bop2ndOrder_ImageNet (default): epochs=150, batch_size=1024, optimizer=bop2nd",
        "birealnet bop (default): epochs=300, batch_size=1024",
        "cifar10: resize_and_flip (default), default",
        "imagenet2012: default (default)",
        "other data sets and image folders: default (default), resize_and_flip",
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
         "Unknown model 'binarynett'; valid choices are: binary_alexnet, binarynet, binarynet_batch, birealnet, "
         "birealnet_batch, resnet18_tricks, xnornet, xnornet_batch. Did you mean 'binarynet'?"),
        (["train", "binarynet", "--dataset", "cifar10", "--hparams-set", "bob"],
         "Unknown hyperparameter set 'bob' for binarynet; valid choices are: adam_sec52, bop, bop2ndOrder, "
         "bop2ndOrder_testExp, bop2ndOrder_unbiased, bop2ndOrder_unbiased_testExp, bop_sec52, default. "
         "Did you mean 'bop'?"),
        (["train", "binarynet", "--dataset", "cifar10", "--hparams",
          "gamma_decay=piecewise,gamma_boundaries=[a,b],gamma_factors=[1,2,3]"],
         "Hyperparameter gamma_boundaries of binarynet set 'bop' must be a list of whole numbers of epochs"),
        (["summary", "binarynet", "--dataset", "cifar10", "--hparams", "gamma=nan"],
         "Hyperparameter gamma of binarynet set 'bop' must be a finite number; got nan."),
        (["train", "binarynet", "--dataset", "cifar10", "--hparams-file", "nowhere/mine.yaml"],
         "Hyperparameter file nowhere/mine.yaml does not exist."),
        (["benchmark", "binarynet", "--hparams-file", "nowhere/mine.yaml"],
         "Hyperparameter file nowhere/mine.yaml does not exist."),
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
        (["train", "binarynet_batch", "--dataset", "cifar10", "--hparams", "sigma=-1"],
         "Hyperparameter sigma of binarynet_batch set 'bop2ndOrder' must be a number greater than 0 and at "
         "most 1; got -1.0."),
        (["train", "binarynet_batch", "--dataset", "cifar10", "--hparams", "bias_correction=maybe"],
         "Hyperparameter bias_correction=maybe must be true or false."),
        (["train", "binarynet", "--dataset", "cifar10", "--hparams", "xavier_learning_rate_scaling=true"],
         "xavier_learning_rate_scaling of binarynet set 'bop' scales the learning rates of latent weights, "
         "which optimizer=bop does not have"),
        (["train", "binarynet", "--dataset", "cifar10", "--hparams", "gamma_decay=0.1"],
         "gamma_decay=0.1 in binarynet set 'bop' is a factor, which needs epochs_decay=N"),
        (["train", "binarynet", "--dataset", "cifar10", "--tensorboard=maybe"],
         "Invalid value for '--tensorboard': 'maybe' is not a valid boolean."),
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


# --- defaults: the paper's recipe, and a user's own sets --------------------------------


@pytest.mark.parametrize(
    "args, hparams_set, preprocess",
    [
        # The README's first command, and without --hparams-set: the paper's CIFAR-10 recipe.
        (["binarynet", "--dataset", "cifar10", "--hparams-set", "bop"], "bop", "resize_and_flip"),
        (["binarynet", "--dataset", "cifar10"], "bop", "resize_and_flip"),
        (["binarynet", "--dataset", "cifar10:3.0.2", "--hparams-set", "default"], "default", "resize_and_flip"),
        (["binarynet", "--dataset", "cifar10", "--preprocess-fn", "default"], "bop", "default"),
        (["xnornet", "--dataset", "imagenet2012"], "bop", "default"),
        (["alexnet", "--dataset", "mnist"], "bop", "default"),
    ],
)
def test_train_runs_the_default_set_and_preprocessing_and_records_their_names(
    started_runs, tmp_path, args, hparams_set, preprocess
):
    from bnno import hparams

    result = invoke("train", *args, "--output-prefix", tmp_path)
    assert result.exit_code == 0, result.output
    (run,) = started_runs
    assert (run.hparams_set, run.preprocess, run.hparams_file) == (hparams_set, preprocess, None)
    assert run.hparams == hparams.resolve(run.model, hparams_set)
    assert run.output_dir.name.startswith(f"{hparams_set}_")


@pytest.mark.parametrize(
    "flags, tensorboard",
    [
        ([], True), (["--tensorboard"], True), (["--no-tensorboard"], False),
        # As "A Bop and Beyond"'s README writes it, and the other values click reads as booleans.
        (["--tensorboard=True"], True), (["--tensorboard=False"], False), (["--tensorboard=false"], False),
        (["--tensorboard", "0"], False), (["--tensorboard=True", "--no-tensorboard"], False),
    ],
)
def test_tensorboard_is_a_flag_that_also_takes_true_or_false(started_runs, tmp_path, flags, tensorboard):
    result = invoke("train", "binarynet", "--dataset", "cifar10", *flags, "--output-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert started_runs[0].tensorboard is tensorboard


def test_train_with_a_users_file_records_its_path_and_set(started_runs, tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text("wide:\n  extends: binarynet:bop\n  filters: 256\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "binarynet", "--dataset", "cifar10", "--hparams-file", "mine.yaml",
                    "--hparams", "epochs=2", "--output-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    (run,) = started_runs
    assert (run.hparams_set, run.hparams_file) == ("wide", str(tmp_path / "mine.yaml"))
    assert run.hparams["filters"] == 256 and run.hparams["epochs"] == 2
    assert run.hparams["threshold"] == 1e-6  # from binarynet:bop


def test_summary_of_a_set_of_a_users_file(tmp_path):
    file = tmp_path / "mine.yaml"
    file.write_text("default_set: narrow\nnarrow:\n  extends: binarynet:bop\n  filters: 64\n"
                    "wide:\n  extends: narrow\n  filters: 256\n")
    totals = {}
    for extra in ([], ["--hparams-set", "wide"]):
        result = invoke("summary", "binarynet", "--dataset", "cifar10", "--hparams-file", file, *extra, "--json")
        assert result.exit_code == 0, result.output
        totals[tuple(extra)] = json.loads(result.output.strip().splitlines()[-1])["binary_params"]
    assert totals[()] < 10_352_000 < totals[("--hparams-set", "wide")]
    result = invoke("summary", "binarynet", "--dataset", "cifar10", "--hparams-file", file, "--hparams-set", "wid")
    assert result.exit_code == 2
    assert f"Unknown hyperparameter set 'wid' in {file}; valid choices are: narrow, wide. Did you mean 'wide'?" in result.output


@pytest.mark.parametrize(
    "args, dataset, hparams_set, preprocess",
    [
        (["binarynet"], "cifar10", "bop", "resize_and_flip"),
        (["binarynet", "--hparams-set", "default", "--preprocess-fn", "default"], "cifar10", "default", "default"),
        (["birealnet"], "imagenet2012", "bop", "default"),
    ],
)
def test_benchmark_resolves_the_default_set_and_preprocessing(monkeypatch, args, dataset, hparams_set, preprocess):
    from bnno import benchmark

    calls = []

    def fake_benchmark(model, hparams_set, hparams, *, dataset, preprocess, batch_size, steps, **kwargs):
        calls.append((model, hparams_set, dataset, preprocess))
        return {"batch_size": hparams["batch_size"], "images_per_second": 1.0,
                "step_seconds_median": 1.0, "binary_conv": "float32"}

    monkeypatch.setattr(benchmark, "benchmark", fake_benchmark)
    result = invoke("benchmark", *args)
    assert result.exit_code == 0, result.output
    assert calls == [(args[0], hparams_set, dataset, preprocess)]
    assert f"{args[0]} ({hparams_set})" in result.output
