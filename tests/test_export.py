"""bnno export: a run's model as a real 1-bit model (Larq Compute Engine), its per-layer
account, the check against the Keras model, and one-sentence refusals."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from bnno import export
from bnno.cli import cli


def tiny_binarynet(**hparams):
    """BinaryNet 4 filters wide, its layers named from the start (quant_conv2d, ...)."""
    import keras

    from bnno import config, models

    keras.backend.clear_session()

    values = config.resolve("binarynet", "bop", "filters=4,dense_units=8")
    return models.build("binarynet", {**values, **hparams}, (16, 16, 3), 3)


def signs(model, seed=0):
    """Every quantized kernel set to random ±1, as Bop leaves them."""
    rng = np.random.default_rng(seed)
    for layer in export._quantized_layers(model):
        layer.kernel.assign(np.where(rng.random(layer.kernel.shape) < 0.5, -1.0, 1.0).astype("float32"))


def test_binary_kernels_are_one_magnitude_per_output_channel():
    assert export._binary_values(np.array([[1.0, -0.5], [-1.0, 0.5]]))
    assert not export._binary_values(np.array([[1.0, -0.5], [-0.9, 0.5]]))
    assert not export._binary_values(np.array([[0.0, 1.0], [0.0, -1.0]]))  # zero is not a sign


def test_the_account_says_which_layers_become_binary_and_why():
    model = tiny_binarynet()
    signs(model)
    first = export._quantized_layers(model)[1]
    first.kernel.assign(first.kernel.numpy() * 0.3)  # still binary: ±0.3
    second = export._quantized_layers(model)[2]
    second.kernel.assign(second.kernel.numpy() * np.linspace(0.1, 1, second.kernel.shape[0])[:, None, None, None])
    rows = {row.name: (row.binary, row.why) for row in export.account(model, dense_as_convolutions=["quant_dense"])}
    assert len(rows) == 9  # BinaryNet's layers with kernels are all quantized
    assert rows["quant_conv2d"] == (False, "its input is not binarized (no ±1 input quantizer)")
    assert rows["quant_conv2d_1"] == (True, "LceBconv2d")
    assert rows["quant_conv2d_2"] == (False, "its kernel is not binary (values other than ±c)")
    assert rows["quant_dense"] == (True, "LceBconv2d, as a 1x1 convolution on a 1x1 map")
    assert rows["quant_dense_1"] == (False, "the engine has no binary fully-connected op (larq compute-engine "
                                            "issue 53)")


def test_binary_dense_layers_as_1x1_convolutions_compute_the_same():
    model = tiny_binarynet()
    signs(model)
    copy, replaced = export.binary_dense_as_convolutions(model)
    dense = [layer.name for layer in export._quantized_layers(model) if type(layer).__name__ == "QuantDense"]
    assert replaced == sorted(dense) and len(dense) == 3
    images = np.random.default_rng(1).uniform(-1, 1, size=(8, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(model.predict(images, verbose=0), copy.predict(images, verbose=0))


def test_latent_kernels_are_exported_as_their_signs():
    model = tiny_binarynet(kernel_quantizer="ste_sign")
    rng = np.random.default_rng(2)
    for layer in export._quantized_layers(model):
        layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32"))
    latent = [layer.kernel.numpy() for layer in export._quantized_layers(model)]
    export.quantize_kernels(model)
    for before, layer in zip(latent, export._quantized_layers(model)):
        np.testing.assert_array_equal(layer.kernel.numpy(), np.where(before >= 0, 1.0, -1.0))


def test_an_unknown_format_a_run_without_weights_and_an_existing_output_are_one_sentence(tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tmp_path), "--format", "tflight", "--output", "m.tflite"])
    assert result.exit_code == 2
    assert "Unknown --format 'tflight'; valid choices are: keras, lce, saved_model." in result.output
    run = tmp_path / "run"
    run.mkdir()
    (run / "hparams.yaml").write_text(
        "model: binarynet\ndataset: cifar10\nhparams_set: bop\nhparams: {filters: 4, dense_units: 8, epochs: 1, "
        "batch_size: 20}\npreprocess: default\n")
    result = CliRunner().invoke(cli, ["export", str(run), "--format", "keras", "--output", str(tmp_path / "m.keras")])
    assert result.exit_code == 1
    assert f"{run} has no weights to export yet: it has not finished an epoch." in result.output
    assert not (tmp_path / "m.keras").exists()
    (tmp_path / "mine.tflite").write_text("a file of the user's")
    result = CliRunner().invoke(cli, ["export", str(run), "--format", "keras",
                                      "--output", str(tmp_path / "mine.tflite")])
    assert result.exit_code == 2
    assert f"{tmp_path / 'mine.tflite'} exists; pass a new --output (nothing is overwritten)." in result.output
    assert (tmp_path / "mine.tflite").read_text() == "a file of the user's"


def test_without_the_engine_lce_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "larq_compute_engine", None)  # import fails
    with pytest.raises(Exception) as missing:
        export.require_engine()
    assert str(missing.value) == ('--format lce needs larq-compute-engine: pip install "bnno[deploy]" (or '
                                  'larq-compute-engine==0.16.0).')
    monkeypatch.setattr(export, "ENGINE_PYTHONS", ())
    with pytest.raises(Exception) as unsupported:
        export.require_engine()
    assert "which has wheels for Python 3.10-3.12 only, not 3." in str(unsupported.value)


# --- real exports ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """scikit-learn's handwritten digits (UCI): real data none of this was made for."""
    pytest.importorskip("sklearn")
    folder = tmp_path_factory.mktemp("digits") / "digits"
    script = pathlib.Path(__file__).resolve().parents[1] / "docs" / "example-report" / "digits_folder.py"
    subprocess.run([sys.executable, str(script), str(folder)], check=True)
    return folder


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory):
    """Where bnno makes the engine's NumPy-1 Python (pip installs NumPy 1.26 from the
    package index), once for these tests; they are skipped where it cannot be made."""
    pytest.importorskip("larq_compute_engine")
    from bnno import engine_runtime
    from bnno.errors import RunError

    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BNNO_CACHE", str(cache))
        try:
            engine_runtime.runtime_python(echo=lambda line: None)
        except RunError as error:
            pytest.skip(f"no Python with NumPy 1.x for the engine's interpreter: {error}")
    return cache


@pytest.mark.slow
# Bop's ±1 kernels. Latent ste_sign kernels (the default set, Adam) export the same way
# (test_latent_kernels_are_exported_as_their_signs; README's Deploy table measures one):
# one trained set here keeps CI's slow tier short.
@pytest.mark.parametrize("hparams_set", ["bop"])
def test_a_trained_binarynet_exports_to_lce_with_every_binary_layer_binary_and_agrees(
        digits, engine_cache, tmp_path, monkeypatch, hparams_set):
    pytest.importorskip("larq_compute_engine")
    monkeypatch.setenv("BNNO_CACHE", str(engine_cache))
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "bnno", "train", "binarynet", "--dataset", str(digits), "--image-size", "16",
                    "--hparams-set", hparams_set, "--hparams", "filters=16,dense_units=64,batch_size=50,epochs=2",
                    "--output-dir", str(run), "--no-tensorboard"], check=True, capture_output=True)
    result = CliRunner().invoke(cli, ["export", str(run), "--output", str(tmp_path / "model.tflite"),
                                      "--check-images", "1000", "--json"])
    assert result.exit_code == 0, result.output
    account = json.loads(result.output.strip().splitlines()[-1])
    # all but the first convolution, whose input (the image) is not binarized
    assert [(row["kind"], row["binary"]) for row in account["layers"]] == (
        [("QuantConv2D", False)] + [("QuantConv2D", True)] * 5 + [("QuantDense", True)] * 3)
    assert account["layers"][0]["why"] == "its input is not binarized (no ±1 input quantizer)"
    assert account["ops"]["LceBconv2d"] == 8 and "FULLY_CONNECTED" not in account["ops"]
    assert account["images"] == 360 and account["agreement"] >= 0.99
    assert account["bytes"] == (tmp_path / "model.tflite").stat().st_size
    assert account["bytes"] < 0.1 * account["float_tflite_bytes"]
    assert "Top-1 agreement with the Keras model: " in result.output
