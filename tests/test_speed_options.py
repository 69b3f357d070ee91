"""--mixed-precision and --jit-compile: same training, binary values still exact."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from bnno.cli import cli
from bnno.nn import layers
from tests.imagefolders import make_image_folder


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("stripes"), train_per_class=20, validation_per_class=4)


def train_args(stripes, out, flag):
    return [
        "train", "binarynet", "--dataset", str(stripes), "--hparams-set", "bop", flag,
        "--hparams", "filters=8,dense_units=16,epochs=1,batch_size=10", "--output-dir", str(out),
        "--no-tensorboard",
    ]


@pytest.mark.parametrize("flag", ["--mixed-precision", "--jit-compile"])
@pytest.mark.slow
def test_speed_options_train_with_binary_kernels_exactly_plus_minus_one(stripes, tmp_path, flag):
    out = tmp_path / "run"
    if flag == "--jit-compile":
        # XLA refuses op determinism, which the test session turns on: a fresh process.
        env = {k: v for k, v in os.environ.items() if k != "TF_DETERMINISTIC_OPS"}
        result = subprocess.run([sys.executable, "-m", "bnno", *train_args(stripes, out, flag)],
                                env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
    else:
        result = CliRunner().invoke(cli, train_args(stripes, out, flag))
        assert result.exit_code == 0, result.output[-2000:]
        # The process-wide precision policy is restored after the run.
        assert keras.mixed_precision.global_policy().name == "float32"
    model = keras.saving.load_model(out / "model.keras")
    kernels = [l.kernel for l in model.layers if isinstance(l, (layers.QuantConv2D, layers.QuantDense))]
    assert len(kernels) == 9
    for kernel in kernels:
        assert kernel.dtype == "float32"
        assert set(np.unique(kernel.numpy())) == {-1.0, 1.0}
    if flag == "--mixed-precision":
        assert model.layers[1].dtype_policy.name == "mixed_bfloat16"  # no GPU here
        assert type(model.optimizer).__name__ in ("CaseOptimizer", "LossScaleOptimizer")


def test_jit_compile_with_op_determinism_is_a_usage_error(stripes, tmp_path):
    result = CliRunner().invoke(cli, train_args(stripes, tmp_path / "run", "--jit-compile"))
    assert result.exit_code == 2
    assert "--jit-compile cannot be used with TF_DETERMINISTIC_OPS=1" in result.output


def test_an_unknown_binary_conv_mode_is_a_usage_error_with_the_closest_choice(stripes, tmp_path):
    args = train_args(stripes, tmp_path / "run", "--binary-conv=bfloat")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "Unknown --binary-conv mode 'bfloat'" in result.output
    assert "auto, bfloat16, float32" in result.output and "Did you mean 'bfloat16'?" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, expected", [
    (dict(binary_conv="float32"), "float32"),
    (dict(binary_conv="bfloat16"), "bfloat16"),
    (dict(binary_conv="bfloat16", jit_compile=True), "bfloat16"),  # asked for: honoured
    (dict(binary_conv="auto", jit_compile=True), "float32"),
    (dict(binary_conv="auto", mixed_precision=True), "float32"),
])
def test_binary_conv_mode_of_a_run(tmp_path, options, expected):
    from bnno import training

    run = training.Run(model="binarynet", dataset="cifar10", hparams_set="bop", hparams={},
                       output_dir=tmp_path, **options)
    assert training.binary_conv_mode(run) == expected


def test_auto_binary_conv_mode_follows_the_cpu(tmp_path, monkeypatch):
    from bnno import training
    from bnno.nn import binary_conv

    run = training.Run(model="binarynet", dataset="cifar10", hparams_set="bop", hparams={},
                       output_dir=tmp_path)
    for has_amx, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(binary_conv, "cpu_has_amx_bf16", lambda: has_amx)
        assert training.binary_conv_mode(run) == expected
    monkeypatch.setattr(binary_conv, "cpu_has_amx_bf16", lambda: True)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # not oneDNN's kernels: not auto
    assert training.binary_conv_mode(run) == "float32"


@pytest.mark.slow
def test_training_with_exact_bfloat16_binary_convolutions_is_the_same(stripes, tmp_path):
    result = CliRunner().invoke(cli, train_args(stripes, tmp_path / "run", "--binary-conv=bfloat16"))
    assert result.exit_code == 0, result.output[-2000:]
    assert "Binary convolutions: exact bfloat16" in result.output
    result = CliRunner().invoke(cli, train_args(stripes, tmp_path / "run2", "--binary-conv=float32"))
    assert result.exit_code == 0, result.output[-2000:]
    assert "Binary convolutions" not in result.output
    # The same training, bit for bit: history and every weight.
    history = [
        [line.rsplit(",", 1)[0] for line in (tmp_path / run / "history.csv").read_text().splitlines()]
        for run in ("run", "run2")
    ]
    assert history[0] == history[1]  # every column but the last, wall_seconds
    fast, reference = (keras.saving.load_model(tmp_path / run / "model.keras") for run in ("run", "run2"))
    for got, expected in zip(fast.weights, reference.weights):
        np.testing.assert_array_equal(got.numpy(), expected.numpy(), err_msg=got.path)
