"""bnno export: a run's model as a real 1-bit model (Larq Compute Engine), its per-layer
account, the check against the Keras model, and one-sentence refusals."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from bnno import export, tflite_file
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


@pytest.mark.parametrize("name, binary, full_precision", [
    # Bi-Real Net 18 (Liu et al. 2018): 16 binary 3x3 convolutions; the stem, the three
    # 1x1 shortcuts that downsample and the classifier are full precision.
    ("birealnet", 16, ["conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "dense"]),
    # XNOR-Net (Rastegari et al. 2016, as larq-zoo builds it): 4 binary convolutions and
    # the two binary 4096-wide layers as convolutions; first and last layer full precision.
    ("xnornet", 6, ["conv2d", "dense"]),
])
def test_the_imagenet_models_account_at_their_imagenet_shape(name, binary, full_precision):
    import keras

    from bnno import config, models

    keras.backend.clear_session()
    model = models.build(name, config.resolve(name, "bop", ""), (224, 224, 3), 1000)
    signs(model)
    rows = export.account(model)
    assert [row.name for row in rows if row.binary] == [layer.name for layer in export._quantized_layers(model)]
    assert sum(row.binary for row in rows) == binary
    assert [(row.name, row.why) for row in rows if not row.binary] == [
        (layer, "full precision in the model") for layer in full_precision]


@pytest.mark.slow
def test_magnitude_aware_kernels_become_binary_convolutions_that_compute_the_same(engine_cache, monkeypatch):
    """XNOR-Net's latent recipe (hparams/xnornet.yaml, adam): magnitude_aware_sign
    kernels, ±c per output channel. The engine takes them as LceBconv2d with the scale
    folded into its output, and computes what Keras computes."""
    from bnno import engine_runtime

    monkeypatch.setenv("BNNO_CACHE", str(engine_cache))
    model = tiny_binarynet(kernel_quantizer="magnitude_aware_sign")
    rng = np.random.default_rng(4)
    for layer in export._quantized_layers(model):
        layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32"))
    images = rng.uniform(-1, 1, (64, 16, 16, 3)).astype("float32")
    for _ in range(30):  # batch statistics away from their initial 0 and 1
        model(images, training=True)
    export.quantize_kernels(model)
    conversion = export.convert(model, "binarynet")
    assert conversion.ops["LceBconv2d"] == 8 and "FULLY_CONNECTED" not in conversion.ops
    engine = engine_runtime.predict(conversion.flatbuffer, images[:32], echo=lambda line: None)
    np.testing.assert_allclose(engine, model.predict(images[:32], verbose=0), atol=1e-5)


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


@pytest.mark.slow  # three conversions
def test_a_model_the_engine_cannot_take_or_makes_float_is_refused_in_one_sentence(monkeypatch):
    import tensorflow as tf

    from bnno.errors import RunError

    class Refusing:
        @staticmethod
        def convert_saved_model(path):
            raise ValueError("'tf.Erf' op is neither a custom op nor a flex op\nwith more lines")

    class Float:  # writes every convolution as a float CONV_2D
        @staticmethod
        def convert_saved_model(path):
            return tf.lite.TFLiteConverter.from_saved_model(path).convert()

    model = tiny_binarynet()
    signs(model)
    with pytest.raises(RunError) as refused:
        export.convert(model, "my_net", engine=Refusing)
    assert str(refused.value) == ("larq-compute-engine's converter cannot take my_net ('tf.Erf' op is neither a "
                                  "custom op nor a flex op); nothing was written.")
    with pytest.raises(RunError) as float_model:
        export.convert(model, "my_net", engine=Float)
    assert str(float_model.value) == ("The engine made 0 of the 8 binary convolutions of my_net binary "
                                      "(LceBconv2d); nothing was written.")

    class Unconvertible:
        @staticmethod
        def convert():
            raise RuntimeError("'tf.Erf' op is not supported\nwith more lines")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", staticmethod(lambda path: Unconvertible))
    with pytest.raises(RunError) as not_even_float:
        export.convert(model, "my_net", engine=Refusing)
    assert str(not_even_float.value) == ("TFLite's converter cannot take my_net ('tf.Erf' op is not supported); "
                                         "nothing was written.")


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
def exported(digits, engine_cache, tmp_path_factory):
    """A BinaryNet trained two epochs on digits with the bop set (Bop's ±1 kernels),
    exported by `bnno export --json`: (run, model.tflite, the CLI's result). Latent
    ste_sign kernels (the default set, Adam) export the same way
    (test_latent_kernels_are_exported_as_their_signs; README's Deploy table measures
    one): one trained set here keeps CI's slow tier short."""
    pytest.importorskip("larq_compute_engine")
    folder = tmp_path_factory.mktemp("exported")
    run, flatbuffer = folder / "run", folder / "model.tflite"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BNNO_CACHE", str(engine_cache))
        subprocess.run([sys.executable, "-m", "bnno", "train", "binarynet", "--dataset", str(digits),
                        "--image-size", "16", "--hparams-set", "bop", "--hparams",
                        "filters=16,dense_units=64,batch_size=50,epochs=2", "--output-dir", str(run),
                        "--no-tensorboard"], check=True, capture_output=True)
        result = CliRunner().invoke(cli, ["export", str(run), "--output", str(flatbuffer), "--check-images", "1000",
                                          "--json"])
    return run, flatbuffer, result


@pytest.mark.slow
def test_a_trained_binarynet_exports_to_lce_with_every_binary_layer_binary_and_agrees(exported, digits):
    run, flatbuffer, result = exported
    assert result.exit_code == 0, result.output
    account = json.loads(result.output.strip().splitlines()[-1])
    # all but the first convolution, whose input (the image) is not binarized
    assert [(row["kind"], row["binary"]) for row in account["layers"]] == (
        [("QuantConv2D", False)] + [("QuantConv2D", True)] * 5 + [("QuantDense", True)] * 3)
    assert account["layers"][0]["why"] == "its input is not binarized (no ±1 input quantizer)"
    assert account["ops"]["LceBconv2d"] == 8 and "FULLY_CONNECTED" not in account["ops"]
    assert account["images"] == 360 and account["agreement"] >= 0.99
    assert account["bytes"] == flatbuffer.stat().st_size
    assert account["bytes"] < 0.1 * account["float_tflite_bytes"]
    assert "Top-1 agreement with the Keras model: " in result.output
    # The file names the run it came from, for bnno evaluate and bnno benchmark --inference.
    stored = tflite_file.read_metadata(flatbuffer.read_bytes())
    assert stored["run"] == str(run.resolve()) and stored["model"] == "binarynet"
    assert stored["dataset"] == str(digits)
    assert stored["image_size"] == 16 and stored["weights"] == "model.keras"


@pytest.mark.slow
def test_an_exported_model_is_evaluated_by_the_engine_like_the_run(exported, engine_cache, monkeypatch):
    run, flatbuffer, _ = exported
    monkeypatch.setenv("BNNO_CACHE", str(engine_cache))
    of_run = CliRunner().invoke(cli, ["evaluate", str(run)])
    of_file = CliRunner().invoke(cli, ["evaluate", str(flatbuffer)])
    assert of_run.exit_code == 0 and of_file.exit_code == 0, of_run.output + of_file.output
    top1_run = float(of_run.output.split("top-1 ")[1].split(",")[0])
    top1_file = float(of_file.output.split("top-1 ")[1].split(",")[0])
    # The export agrees with the Keras model on >= 99 % of these 360 images.
    assert abs(top1_run - top1_file) <= 0.01
    assert "model.tflite on " in of_file.output and "(360 validation images, Larq Compute Engine)" in of_file.output
    wrong_size = CliRunner().invoke(cli, ["evaluate", str(flatbuffer), "--dataset", stored_dataset(flatbuffer),
                                          "--image-size", "8"])
    assert wrong_size.exit_code == 2
    assert "model.tflite takes images of shape (16, 16, 3), but " in wrong_size.output
    assert "with default gives (8, 8, 3); pass the --dataset, --preprocess-fn or --image-size it was trained with." \
        in wrong_size.output


def stored_dataset(flatbuffer):
    return tflite_file.read_metadata(flatbuffer.read_bytes())["dataset"]


@pytest.mark.slow
def test_inference_latency_of_an_export_times_the_engine_the_float_model_and_keras(exported, engine_cache,
                                                                                   monkeypatch):
    run, flatbuffer, _ = exported
    monkeypatch.setenv("BNNO_CACHE", str(engine_cache))
    result = CliRunner().invoke(cli, ["benchmark", "--inference", str(flatbuffer), "--threads", "1", "--steps", "3",
                                      "--warmup", "1", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["run"] == str(run.resolve()) and figures["threads"] == [1] and figures["repeats"] == 3
    assert [row["model"] for row in figures["models"]] == [
        "engine, 1-bit", "float TFLite, XNNPACK", "float TFLite, builtin", "Keras (TensorFlow)"]
    assert all(row["milliseconds"]["1"] > 0 for row in figures["models"])
    assert figures["engine_ops"]["LceBconv2d"] == 8
    assert result.output.splitlines()[1].split() == ["model", "1", "thread"]
