"""bnno.models, bnno.config and ``bnno benchmark`` on Keras's JAX backend, without TensorFlow.

Keras picks its backend once, at import, so each check runs in a subprocess with
``KERAS_BACKEND=jax``; each also asserts that TensorFlow was never imported there.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
NO_TENSORFLOW = "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'"


def run_on_jax(code: str, timeout=600):
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"}, timeout=timeout,
    )


def run_cli_on_jax(arguments, setup: str = ""):
    """``bnno ARGUMENTS`` through the CLI's main, then the TensorFlow check."""
    return run_on_jax(
        f"import sys\n{setup}\nfrom bnno.cli import cli\n"
        f"try:\n    cli({arguments!r})\nexcept SystemExit as exit:\n    code = exit.code\n"
        f"{NO_TENSORFLOW}\nsys.exit(code)\n"
    )


jax_installed = pytest.mark.skipif(
    __import__("importlib").util.find_spec("jax") is None,
    reason="the JAX extra is not installed (pip install -e '.[jax]')",
)


@jax_installed
@pytest.mark.slow
def test_benchmark_on_jax_reports_the_backend_and_device_without_tensorflow():
    result = run_cli_on_jax([
        "benchmark", "binarynet", "--hparams-set", "bop", "--hparams", "filters=8,dense_units=16",
        "--batch-size", "8", "--steps", "2", "--warmup", "1", "--json",
    ])
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith("binarynet (bop), batch 8: ") and "images/s training" in lines[-2]
    figures = json.loads(lines[-1])
    assert figures["backend"] == "jax" and figures["jit_compile"] is True
    assert figures["device"] and figures["device_kind"]
    assert figures["model"] == "binarynet" and figures["dataset"] == "cifar10"
    assert figures["batch_size"] == 8 and figures["steps"] == 2
    assert figures["images_per_second"] > 0


@jax_installed
def test_benchmark_on_jax_refuses_what_needs_tensorflow_in_one_sentence():
    result = run_cli_on_jax(["benchmark", "binarynet", "--pipeline", "--steps", "1", "--warmup", "1"])
    assert result.returncode == 2, result.stderr[-4000:]
    assert "--pipeline needs TensorFlow (unset KERAS_BACKEND)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("verbose", [[], ["--verbose"]])
def test_asking_for_jax_without_jax_is_one_sentence_not_a_traceback(verbose):
    # sys.modules["jax"] = None makes jax unimportable, as if it were not installed.
    result = run_cli_on_jax(["benchmark", "binarynet", "--steps", "1", *verbose],
                            setup="sys.modules['jax'] = None")
    assert result.returncode == 2, (result.stdout + result.stderr)[-4000:]
    assert "KERAS_BACKEND=jax asks for Keras's JAX backend, but jax is not installed" in result.stderr
    assert "Traceback" not in result.stderr


TRAIN_BINARYNET = f"""
import json, sys
import keras, numpy as np
from bnno import hparams, models
from bnno.config import Config
from bnno.nn.optimizers import Bop

assert keras.backend.backend() == "jax"
resolved = hparams.resolve("binarynet", "bop", "filters=8,dense_units=16")
model = models.build("binarynet", resolved, (32, 32, 3), 10)
model.compile(optimizer=Config.from_values(resolved).build_optimizer(3), loss="sparse_categorical_crossentropy",
              jit_compile=True)
rng = np.random.default_rng(0)
images = rng.uniform(-1, 1, size=(8, 32, 32, 3)).astype("float32")
labels = rng.integers(0, 10, size=8).astype("int32")
binary = [v for v in model.trainable_variables if Bop.is_binary_variable(v)]
seen = {{"binary": len(binary), "losses": [], "all_plus_minus_one": []}}
for _ in range(3):
    seen["losses"].append(float(model.train_on_batch(images, labels)))
    seen["all_plus_minus_one"].append(
        all(bool(np.all(np.abs(np.asarray(v.numpy())) == 1.0)) for v in binary))
{NO_TENSORFLOW}
print(json.dumps(seen))
"""


@jax_installed
@pytest.mark.slow
def test_binarynet_trains_on_jax_with_bop_kernels_staying_plus_minus_one():
    result = run_on_jax(TRAIN_BINARYNET)
    assert result.returncode == 0, result.stderr[-4000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["binary"] == 9  # six convolutions, three dense layers
    assert seen["all_plus_minus_one"] == [True, True, True]
    assert all(loss == loss and loss > 0 for loss in seen["losses"])


@pytest.mark.parametrize("args", [
    ["train", "binarynet", "--dataset", "cifar10"],
    ["summary", "binarynet", "--dataset", "cifar10"],
    ["list"],
])
def test_commands_that_need_tensorflow_say_so_under_the_jax_backend(args, monkeypatch):
    from click.testing import CliRunner

    from bnno.cli import cli

    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setattr("bnno.quiet.check_jax_installed", lambda: None)  # whether or not jax is here
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    name = args[0]
    assert (f"bnno {name} runs on TensorFlow only (so far only benchmark runs on Keras's JAX backend); "
            "unset KERAS_BACKEND.") in result.output
    assert "Traceback" not in result.output
