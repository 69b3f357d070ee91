"""Two-stage training: ``bnno train ... --init-from`` (CAS-CLab's BNN training
tricks: stage 1, then stage 2 started from it), on image-folder data the tests make."""

import csv
import pathlib
import shutil

import h5py
import keras
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from bnno import hparams, init_from, training
from bnno.cli import cli
from bnno.nn.layers import QuantConv2D
from tests.imagefolders import make_image_folder

# Width 16: at width 4 the signs of a filter's 36 weights approximate it too coarsely
# for stage 2 to start reliably where stage 1 ended. Stage 1's learning rate is raised
# so that 4 epochs learn the stripes (validation 100 %); stage 2 keeps the recipe's 2e-4,
# under which a start from scratch learns little in its first epoch.
STAGE1 = "filters=16,epochs=4,batch_size=20,learning_rate=3e-3,learning_rate_decay=none"
STAGE2 = "filters=16,epochs=1,batch_size=20"
# The exact bfloat16 binary convolutions give the same results; float32 traces faster.
FAST = ["--binary-conv", "float32"]


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def first_epoch(output_dir):
    with open(pathlib.Path(output_dir) / "history.csv", newline="") as f:
        return next(csv.DictReader(f))


def error_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("Error: "))[len("Error: "):]


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("stripes"))


@pytest.fixture(scope="module")
def stage1(stripes, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "stage1"
    result = run_cli("train", "resnet18_tricks", "--dataset", stripes, "--hparams-set", "stage1",
                     "--hparams", STAGE1, "--output-dir", out, *FAST)
    assert result.exit_code == 0, result.output
    assert float(first_epoch(out)["accuracy"]) < 0.9  # it learned in these epochs, not before
    return out


# --- matching layers ------------------------------------------------------------------------


def small_model(prelu=True, third_conv=False):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(4, 3)(x)
    if prelu:
        x = keras.layers.PReLU()(x)
    if third_conv:
        x = keras.layers.Conv2D(4, 1)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_layer_keys_are_the_keys_keras_writes_whatever_the_layer_names(tmp_path):
    first, second = small_model(), small_model()
    assert [layer.name for layer in first.layers] != [layer.name for layer in second.layers]
    keys = [key for key, _ in init_from.layer_keys(first)]
    assert keys == [key for key, _ in init_from.layer_keys(second)] == [
        "input_layer", "conv2d", "batch_normalization", "conv2d_1", "p_re_lu", "global_average_pooling2d", "dense"]
    first.save_weights(tmp_path / "first.weights.h5")
    source = init_from.read(str(tmp_path / "first.weights.h5"))
    assert sorted(source.layers) == ["batch_normalization", "conv2d", "conv2d_1", "dense", "p_re_lu"]
    for key, layer in init_from.layer_keys(first):
        for saved, variable in zip(source.layers.get(key, []), layer.weights):
            np.testing.assert_array_equal(saved, variable.numpy())
    loaded = init_from.load(second, source, keeps_binary=lambda variable: False)
    assert {row.action for row in loaded} == {"copied"}
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_layers_the_source_lacks_are_skipped_and_listed(tmp_path):
    small_model().save_weights(tmp_path / "small.weights.h5")
    source = init_from.read(str(tmp_path / "small.weights.h5"))
    target = small_model(prelu=False, third_conv=True)
    loaded = init_from.load(target, source, keeps_binary=lambda variable: False)
    assert [(row.key, row.action) for row in loaded if row.action == "skipped"] == [("conv2d_2", "skipped")]
    assert init_from.table(source, loaded) == [
        f"Initialized from {tmp_path / 'small.weights.h5'} (optimizer state starts fresh):",
        "  layers              loaded  as signs  skipped",
        "  Conv2D                   2         0        1",
        "  BatchNormalization       1         0        0",
        "  Dense                    1         0        0",
        "  Not in the source, kept as initialized: conv2d_2.",
        "  In the source but not in the model: p_re_lu.",
    ]


def test_the_kernels_bop_trains_are_found_through_a_loss_scale_optimizer():
    from bnno.nn.optimizers import Bop, CaseOptimizer, is_binary_variable

    inputs = keras.Input((4, 4, 3))
    x = QuantConv2D(2, 3, kernel_quantizer="noop", input_quantizer="ste_sign")(inputs)
    x = QuantConv2D(2, 1, kernel_quantizer="ste_sign")(x)  # a latent kernel (precision 1, but Adam's)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    bop_kernel, latent_kernel = model.layers[1].kernel, model.layers[2].kernel
    case = CaseOptimizer(
        (lambda variable: variable.path == bop_kernel.path, Bop()),
        default_optimizer=keras.optimizers.Adam(),
    )
    optimizer = keras.optimizers.LossScaleOptimizer(case)  # as under mixed_float16
    optimizer.build(model.trainable_variables)
    keeps_binary = init_from.binary_optimizer_trains(optimizer)
    assert is_binary_variable(latent_kernel) and not keeps_binary(latent_kernel)
    assert keeps_binary(bop_kernel)
    assert [keeps_binary(v) for v in model.trainable_variables].count(True) == 1
    assert not init_from.binary_optimizer_trains(keras.optimizers.Adam())(bop_kernel)


# --- stage 1, then stage 2 --------------------------------------------------------------------


@pytest.mark.slow
def test_stage2_from_stage1_starts_where_stage1_ended_and_resumes_without_it(stage1, stripes, tmp_path):
    source = tmp_path / "stage1_copy"  # a copy, so that it can disappear below
    shutil.copytree(stage1, source)
    started = run_cli("train", "resnet18_tricks", "--dataset", stripes, "--hparams-set", "stage2",
                      "--hparams", STAGE2, "--output-dir", tmp_path / "init", "--init-from", source, *FAST)
    assert started.exit_code == 0, started.output
    assert f"Initialized from {source / 'model.keras'} (optimizer state starts fresh):" in started.output
    assert "  QuantConv2D             16         0        0" in started.output  # latent weights: copied
    assert "Warning" not in started.output
    record = yaml.safe_load((tmp_path / "init" / "hparams.yaml").read_text())
    assert record["init_from"] == str(source / "model.keras")

    scratch = run_cli("train", "resnet18_tricks", "--dataset", stripes, "--hparams-set", "stage2",
                      "--hparams", STAGE2, "--output-dir", tmp_path / "scratch", *FAST)
    assert scratch.exit_code == 0, scratch.output
    assert ("Warning: resnet18_tricks set stage2 is meant to start from a trained earlier stage "
            "(--init-from RUN_DIR); without it, it trains from scratch.") in scratch.output
    assert yaml.safe_load((tmp_path / "scratch" / "hparams.yaml").read_text())["init_from"] is None

    initialized, from_scratch = first_epoch(tmp_path / "init"), first_epoch(tmp_path / "scratch")
    assert float(initialized["accuracy"]) >= float(from_scratch["accuracy"]) + 0.25, (initialized, from_scratch)

    # Running the same command again resumes from the run's own checkpoints (here: the
    # run already finished); the source is not read again, so it may be gone.
    shutil.rmtree(source)
    again = run_cli("train", "resnet18_tricks", "--dataset", stripes, "--hparams-set", "stage2",
                    "--hparams", STAGE2, "--output-dir", tmp_path / "init", "--init-from", source, *FAST)
    assert again.exit_code == 0, again.output
    assert "Initialized from" not in again.output and "already finished all 1 epochs" in again.output
    assert f"--init-from {source} is not read: the run resumes from its own checkpoints." in again.output
    assert yaml.safe_load((tmp_path / "init" / "hparams.yaml").read_text())["init_from"] == str(source / "model.keras")


def stage2_bop_trainer(stripes, output_dir, hparams_set="stage2_bop", overrides=STAGE2):
    run = training.Run(
        model="resnet18_tricks", dataset=str(stripes), hparams_set=hparams_set,
        hparams=hparams.resolve("resnet18_tricks", hparams_set, overrides), output_dir=output_dir,
        binary_conv="float32", verbose=0,
    )
    return training.Trainer(run, echo=lambda *args, **kwargs: None)


@pytest.mark.parametrize("hparams_set, as_before", [
    ("stage2", "kernel_quantizer=ste_sign"),  # the set's kernels until 2026-12
    ("stage2_bop", "channel_scale=false"),  # its +-1 kernels without a scale, until 2026-12
])
@pytest.mark.slow
def test_stage2_starts_where_stage1_ended_where_plain_signs_did_not(stage1, stripes, tmp_path, hparams_set,
                                                                   as_before):
    """The tricks' block has no batch norm after its binary convolution: stage 1's small
    kernels replaced by +-1 scaled every convolution's output up (here the features
    before the classifier moved 16 times their size), so stage 2 computed something
    else than stage 1 and started near chance on real data. alpha * sign(W), alpha = mean |W| per output channel, computes what stage
    1 computed as closely as a binary kernel can: right after --init-from, before any
    step, the features before the classifier stay near stage 1's and so does the
    validation accuracy."""
    reference = keras.saving.load_model(stage1 / "model.keras", compile=False)
    stage1_accuracy = float(list(csv.DictReader(open(stage1 / "history.csv")))[-1]["val_accuracy"])
    assert stage1_accuracy >= 0.9

    def start(overrides):
        """Stage 2's validation accuracy right after --init-from; its features' distance
        from stage 1's, relative to their size; the table printed."""
        trainer = stage2_bop_trainer(stripes, tmp_path / "unused", hparams_set, overrides)
        source = init_from.read(str(stage1))
        loaded = init_from.load(trainer.model, source, init_from.binary_optimizer_trains(trainer.optimizer))
        features = [keras.Model(m.inputs[0], m.layers[-3].output) for m in (reference, trainer.model)]
        assert isinstance(trainer.model.layers[-3], keras.layers.GlobalAveragePooling2D)
        images = np.concatenate([images for images, _ in trainer.data.validation(20)])
        before, after = (np.asarray(f(images, training=False)) for f in features)
        distance = float(np.linalg.norm(after - before) / np.linalg.norm(before))
        return trainer.evaluate()["accuracy"], distance, init_from.table(source, loaded)

    accuracy, distance, table = start(STAGE2)
    assert accuracy >= stage1_accuracy - 0.05, (accuracy, stage1_accuracy)
    assert distance < 1.0, distance
    scaled = "  Channel scales set to mean |W| of the source's kernels: 16 layers."
    assert (scaled in table) == (hparams_set == "stage2_bop")
    _, distance_before, table = start(f"{STAGE2},{as_before}")
    assert distance_before > 5.0, distance_before
    assert scaled not in table


@pytest.mark.slow
def test_stage2_bop_kernels_start_as_the_exact_signs_of_stage1s(stage1, stripes, tmp_path):
    reference = keras.saving.load_model(stage1 / "model.keras", compile=False)
    stage1_kernels = [layer.kernel.numpy() for layer in reference.layers if isinstance(layer, QuantConv2D)]
    stage1_weights = [v.numpy() for v in reference.weights]
    assert all(np.abs(k).min() > 0 and np.abs(k).max() < 1 for k in stage1_kernels)  # real-valued

    unfinished = tmp_path / "unfinished"  # a run without model.keras: its newest checkpoint is read
    shutil.copytree(stage1, unfinished, ignore=shutil.ignore_patterns("model.keras"))
    zeros = tmp_path / "zeros.weights.h5"  # sign(0) = +1
    shutil.copy(stage1 / "binary.weights.h5", zeros)
    with h5py.File(zeros, "r+") as f:
        kernel = f["layers/quant_conv2d/vars/0"]
        kernel[0, 0, 0, :] = 0.0

    trainer = stage2_bop_trainer(stripes, tmp_path / "stage2_bop")
    quant_convs = [layer for layer in trainer.model.layers if isinstance(layer, QuantConv2D)]
    keeps_binary = init_from.binary_optimizer_trains(trainer.optimizer)
    assert all(keeps_binary(layer.kernel) for layer in quant_convs)
    assert not any(keeps_binary(v) for v in trainer.model.weights if all(v is not c.kernel for c in quant_convs))
    for path, expected_file in (
        (stage1, stage1 / "model.keras"),
        (unfinished, unfinished / "checkpoints" / "ckpt-4"),
        (stage1 / "binary.weights.h5", stage1 / "binary.weights.h5"),
        (zeros, zeros),
    ):
        source = init_from.read(str(path))
        assert source.file == expected_file
        loaded = init_from.load(trainer.model, source, keeps_binary)
        for layer, kernel in zip(quant_convs, stage1_kernels):
            expected = np.where(kernel >= 0, 1.0, -1.0).astype(np.float32)
            if path == zeros and layer is quant_convs[0]:
                expected[0, 0, 0, :] = 1.0
            np.testing.assert_array_equal(layer.kernel.numpy(), expected)
        scales = [layer.scale for layer in quant_convs]  # alpha = mean |W| per output channel
        for scale, kernel in zip(scales, stage1_kernels):
            if path == zeros and scale is scales[0]:
                kernel = kernel.copy()
                kernel[0, 0, 0, :] = 0.0
            np.testing.assert_allclose(scale.numpy(), np.abs(kernel).mean(axis=(0, 1, 2)), rtol=1e-6)
        unscaled = [v for v in trainer.model.weights if all(v is not scale for scale in scales)]
        for variable, value in zip(unscaled, stage1_weights, strict=True):
            if not keeps_binary(variable):  # batch norm, PReLU, stem, shortcuts, classifier
                np.testing.assert_array_equal(variable.numpy(), value)
    assert init_from.table(source, loaded) == [
        f"Initialized from {zeros} (optimizer state starts fresh):",
        "  layers              loaded  as signs  skipped",
        "  Conv2D                   4         0        0",
        "  BatchNormalization      20         0        0",
        "  PReLU                   17         0        0",
        "  QuantConv2D             16        16        0",
        "  Dense                    1         0        0",
        "  Channel scales set to mean |W| of the source's kernels: 16 layers.",
    ]
    assert not (tmp_path / "stage2_bop").exists()  # building and loading wrote nothing


# --- bad sources: one sentence, exit 2, nothing written ----------------------------------------


def refused(stripes, tmp_path, source, model="resnet18_tricks", overrides=STAGE2, hparams_set="stage2"):
    out = tmp_path / "new_run"
    result = CliRunner().invoke(cli, [str(a) for a in (
        "train", model, "--dataset", stripes, "--hparams-set", hparams_set, "--hparams", overrides,
        "--output-dir", out, "--init-from", source, *FAST)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    return error_line(result.output)


def test_a_missing_source_is_refused(stripes, tmp_path):
    assert refused(stripes, tmp_path, tmp_path / "nowhere") == (
        f"--init-from {tmp_path / 'nowhere'} does not exist; give a run directory, a .keras file or a "
        ".weights.h5 file.")


def test_a_file_or_folder_that_holds_no_model_is_refused(stripes, tmp_path):
    (tmp_path / "notes.keras").write_text("not a model")
    (tmp_path / "notes.weights.h5").write_text("not a model")
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "folder").mkdir()
    give = "give a run directory, a .keras file or a .weights.h5 file."
    assert refused(stripes, tmp_path, tmp_path / "notes.keras") == (
        f"--init-from {tmp_path / 'notes.keras'} is not a Keras model (not a zip archive, as .keras files are); {give}")
    assert refused(stripes, tmp_path, tmp_path / "notes.weights.h5").startswith(
        f"--init-from {tmp_path / 'notes.weights.h5'} is not a Keras model (not a Keras weights file: ")
    assert refused(stripes, tmp_path, tmp_path / "notes.txt") == (
        f"--init-from {tmp_path / 'notes.txt'} is neither a run directory nor a .keras or .weights.h5 file; {give}")
    assert refused(stripes, tmp_path, tmp_path / "folder") == (
        f"--init-from {tmp_path / 'folder'}: {tmp_path / 'folder'} is not a bnno run directory: it has no "
        f"hparams.yaml; {give}")


@pytest.mark.slow
def test_a_run_of_another_architecture_is_refused_naming_the_layers(stage1, stripes, tmp_path):
    message = refused(stripes, tmp_path, stage1, model="binarynet", hparams_set="bop",
                      overrides="filters=8,dense_units=16,epochs=1,batch_size=20")
    assert message == (
        f"--init-from {stage1 / 'model.keras'} holds another architecture than binarynet: 12 layers differ "
        "in shape (quant_conv2d (3, 3, 16, 16) where the model has (3, 3, 3, 8); batch_normalization (16,), "
        "(16,), (16,), (16,) where the model has (8,), (8,), (8,); quant_conv2d_1 (3, 3, 16, 16) where the "
        "model has (3, 3, 8, 8); and 9 more); start from a run of the same model, width, input size and "
        "classes.")


def test_a_source_that_matches_no_layer_is_refused(stripes, tmp_path):
    inputs = keras.Input((4,), dtype="int32")
    keras.Model(inputs, keras.layers.Embedding(10, 3)(inputs)).save_weights(tmp_path / "embedding.weights.h5")
    assert refused(stripes, tmp_path, tmp_path / "embedding.weights.h5") == (
        f"--init-from {tmp_path / 'embedding.weights.h5'} matches no layer of resnet18_tricks (it holds "
        "embedding; the model has conv2d, batch_normalization, p_re_lu, batch_normalization_1, and 54 more): "
        "start from a run of the same model.")
