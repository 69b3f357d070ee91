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
