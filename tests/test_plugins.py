"""Users' own models with every command (bnno.plugins, bnno.register_model): loading
from files, modules, BNNO_PLUGINS and entry points; one-sentence errors; run records
that name a plugin but never import it."""

import os
import shlex
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml
from click.testing import CliRunner

from bnno import models, plugins
from bnno.cli import cli
from tests import instrumented
from tests.imagefolders import make_image_folder

PLUGIN = textwrap.dedent(
    '''
    """A model from outside bnno: a full-precision stem, one binary convolution."""
    import bnno


    @bnno.register_model("{name}", filters=8)
    def build(hparams, input_shape, num_classes):
        import keras
        from bnno.nn import layers

        inputs = keras.Input(input_shape)
        x = keras.layers.Conv2D(hparams["filters"], 3, padding="same", use_bias=False)(inputs)
        x = keras.layers.BatchNormalization()(x)
        x = layers.QuantConv2D(hparams["filters"], 3, padding="same", use_bias=False, input_quantizer="ste_sign",
                               kernel_quantizer="ste_sign", kernel_constraint="weight_clip")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
    '''
)

SETS = textwrap.dedent(
    """
    default_set: bop
    bop:
      extends: binarynet:bop
      filters: 8
      epochs: 2
      batch_size: 20
    """
)


@pytest.fixture(autouse=True)
def clean_registries(plugin_registries):
    """Each test's plugins are gone after it, as in a new process (tests/conftest.py)."""


@pytest.fixture
def plugin_file(tmp_path):
    folder = tmp_path / "elsewhere"  # outside the repository
    folder.mkdir()
    path = folder / "my_models.py"
    path.write_text(PLUGIN.format(name="my_net"))
    (folder / "my_sets.yaml").write_text(SETS)
    return path


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("stripes"))


def bnno(*arguments):
    return CliRunner().invoke(cli, [str(a) for a in arguments])


def test_a_plugin_file_registers_its_model_and_list_names_the_plugin(plugin_file):
    result = bnno("list", "models", "--plugin", plugin_file)
    assert result.exit_code == 0, result.output
    assert f"  my_net (plugin {plugin_file})" in result.output.splitlines()
    assert plugins.plugin_of("my_net").file == str(plugin_file)
    assert models.get("my_net").keys == {"filters": 8}


def test_summary_counts_a_plugin_models_bits_and_macs(plugin_file, stripes):
    result = bnno("summary", "my_net", "--plugin", plugin_file, "--hparams-file", plugin_file.parent / "my_sets.yaml",
                  "--dataset", stripes, "--json")
    assert result.exit_code == 0, result.output
    totals = yaml.safe_load(result.output.strip().splitlines()[-1])
    assert totals["binary_params"] == 8 * 8 * 3 * 3  # the one binary convolution
    assert totals["binary_macs"] == 16 * 16 * 8 * 8 * 3 * 3  # at each of 16x16 positions


def test_an_unknown_model_far_from_bnnos_points_to_plugin():
    result = bnno("summary", "conv_shortcut", "--dataset", "cifar10")
    assert result.exit_code == 2
    assert ("valid choices are: binary_alexnet, binarynet, binarynet_batch, birealnet, birealnet_batch, "
            "resnet18_tricks, xnornet, xnornet_batch; a model of your own needs --plugin FILE (see "
            "docs/own-model.md).") in " ".join(result.output.split())


def test_a_plugin_model_without_a_sets_file_asks_for_one(plugin_file, stripes):
    result = bnno("summary", "my_net", "--plugin", plugin_file, "--dataset", stripes)
    assert result.exit_code == 2
    assert (f"Model my_net (plugin {plugin_file}) has no sets of bnno's; pass --hparams-file with sets for it "
            "(a set may extend one of bnno's, e.g. extends: binarynet:bop).") in result.output


def test_a_module_on_the_path_and_bnno_plugins_load_too(plugin_file, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_file.parent))
    assert [p.given for p in plugins.load(["my_models"], entry_points=False)] == ["my_models"]
    assert plugins.plugin_of("my_net").given == "my_models"

    other = plugin_file.parent / "other.py"
    other.write_text(PLUGIN.format(name="other_net"))
    monkeypatch.setenv("BNNO_PLUGINS", f"{other}{os.pathsep}")
    result = bnno("list", "models")
    assert f"  other_net (plugin {other})" in result.output.splitlines()


def test_an_installed_packages_entry_point_is_found_without_plugin(tmp_path, monkeypatch):
    """A throwaway distribution on sys.path: its dist-info declares the entry point."""
    site = tmp_path / "site"
    (site / "acme_bnn").mkdir(parents=True)
    (site / "acme_bnn" / "__init__.py").write_text("")
    (site / "acme_bnn" / "models.py").write_text(PLUGIN.format(name="acme_net"))
    info = site / "acme_bnn-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-bnn\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[bnno.plugins]\nacme = acme_bnn.models\n")
    monkeypatch.syspath_prepend(str(site))
    result = bnno("list", "models")
    assert result.exit_code == 0, result.output
    assert "  acme_net (plugin entry point acme)" in result.output.splitlines()
    assert plugins.plugin_of("acme_net").file == str(site / "acme_bnn" / "models.py")


@pytest.mark.parametrize("source, message", [
    ('import bnno\nx = 1\nraise RuntimeError("the GPU is busy\\nand more")\n',
     " cannot be imported: line 3: RuntimeError: the GPU is busy."),
    ("import bnno\ndef build(:\n", " cannot be imported: line 2: SyntaxError: invalid syntax."),
    ("import bnno\nimport not_a_module_anywhere\n",
     " cannot be imported: line 2: ModuleNotFoundError: No module named 'not_a_module_anywhere'."),
    ('import bnno\n@bnno.register_model("binarynet")\ndef build(h, s, n):\n    pass\n',
     ": Model name 'binarynet' is taken by one of bnno's own models; register yours under another name."),
])
def test_a_plugin_that_fails_to_import_is_one_sentence_with_its_file_and_line(tmp_path, source, message):
    path = tmp_path / "broken.py"
    path.write_text(source)
    result = bnno("list", "models", "--plugin", path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Error: Plugin {path}{message}" in result.output


def test_two_plugins_cannot_take_one_name(plugin_file, tmp_path):
    twin = tmp_path / "twin.py"
    twin.write_text(PLUGIN.format(name="my_net"))
    result = bnno("list", "models", "--plugin", plugin_file, "--plugin", twin)
    assert result.exit_code == 2
    assert (f"Plugin {twin}: Model name 'my_net' is taken by plugin {plugin_file}; register yours under "
            "another name.") in result.output


@pytest.mark.parametrize("given, message", [
    ("missing.py", "--plugin missing.py: there is no such file; pass a Python file or an importable module."),
    ("no_such_module", "--plugin no_such_module: there is no such file, and no importable module of that name"),
])
def test_a_plugin_that_does_not_exist_is_one_sentence(given, message):
    result = bnno("list", "models", "--plugin", given)
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize("body, message", [
    ("    return None\n", "Model bad_net of plugin {path} was built as a NoneType, not a keras.Model; its "
     "builder must return one (e.g. keras.Model(inputs, outputs))."),
    ("    return {}['width']\n", "Model bad_net of plugin {path} failed to build for images of shape (16, 16, 3) "
     "and 3 classes: line 4: KeyError: 'width'."),
])
def test_a_builder_that_returns_no_model_or_fails_is_one_sentence(tmp_path, stripes, body, message):
    path = tmp_path / "bad.py"
    path.write_text('import bnno\n@bnno.register_model("bad_net")\ndef build(hparams, input_shape, num_classes):\n'
                    + body)
    (tmp_path / "sets.yaml").write_text(SETS)
    result = bnno("summary", "bad_net", "--plugin", path, "--hparams-file", tmp_path / "sets.yaml",
                  "--dataset", stripes)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message.format(path=path) in result.output


# --- a run directory is data, never code ------------------------------------------------


def record_naming(plugin_path, run, model="spy_net", sha256="0" * 64):
    run.mkdir(parents=True)
    record = {
        "model": model, "dataset": "cifar10", "hparams_set": "bop", "hparams": {"epochs": 1, "batch_size": 20},
        "seed": 0, "preprocess": "default",
        "plugin": {"plugin": str(plugin_path), "file": str(plugin_path), "sha256": sha256},
    }
    (run / "hparams.yaml").write_text(yaml.safe_dump(record))
    (run / "history.csv").write_text("epoch,loss,accuracy,top5_accuracy,val_loss,val_accuracy\n1,1.0,0.5,1,1.0,0.5\n")


def test_a_record_naming_a_plugin_imports_nothing_unless_the_user_gives_it(tmp_path):
    marker = tmp_path / "imported"
    spy = tmp_path / "spy.py"
    spy.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
                   + PLUGIN.format(name="spy_net"))
    run = tmp_path / "someone_elses_run"
    record_naming(spy, run)
    add = f"add --plugin {spy}."
    for arguments in (["evaluate", "--output-dir", run],
                      ["train", "spy_net", "--dataset", "cifar10", "--output-dir", run],
                      ["train", "binarynet", "--dataset", "cifar10", "--init-from", run,
                       "--output-dir", tmp_path / "stage2"]):
        result = bnno(*arguments)
        assert result.exit_code == 2, result.output
        assert f"{run} was trained with model 'spy_net' of a plugin, which bnno does not import unless told to; " \
               f"{add}" in result.output.replace("--init-from ", ""), result.output
    # report reads files only: no plugin needed
    result = bnno("report", run)
    assert result.exit_code == 0, result.output
    assert not marker.exists()


def test_a_run_whose_plugin_file_changed_is_refused(tmp_path):
    spy = tmp_path / "spy.py"
    spy.write_text(PLUGIN.format(name="spy_net"))
    run = tmp_path / "run"
    record_naming(spy, run, sha256="f" * 64)
    result = bnno("evaluate", "--output-dir", run, "--plugin", spy)
    assert result.exit_code == 2
    assert (f"{run} was trained with model 'spy_net' of {spy}, which has changed since (SHA-256 ffffffffffff... "
            f"then, {plugins.file_hash(str(spy))[:12]}... now); restore that file, or train into a new "
            "--output-dir.") in result.output


def test_a_sweeps_commands_carry_the_plugin_for_other_nodes(plugin_file, tmp_path, stripes):
    sets = plugin_file.parent / "my_sets.yaml"
    result = bnno("sweep", "my_net", "--plugin", plugin_file, "--hparams-file", sets, "--dataset", stripes,
                  "--grid", "threshold=1e-6,1e-5", "--output-dir", tmp_path / "sweep", "--executor", "slurm")
    assert result.exit_code == 0, result.output
    commands = (tmp_path / "sweep" / "commands.txt").read_text().splitlines()
    assert len(commands) == 2
    for command in commands:
        arguments = shlex.split(command)
        assert arguments[arguments.index("--plugin") + 1] == str(plugin_file)
    assert yaml.safe_load((tmp_path / "sweep" / "sweep.yaml").read_text())["plugins"] == [str(plugin_file)]


# --- end to end ------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_plugin_model_trains_resumes_after_kill_9_evaluates_starts_a_stage_sweeps_and_reports(
        plugin_file, stripes, tmp_path):
    env = {**os.environ, "TF_DETERMINISTIC_OPS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    sets = plugin_file.parent / "my_sets.yaml"
    run = tmp_path / "run"
    train = ["train", "my_net", "--plugin", str(plugin_file), "--hparams-file", str(sets), "--dataset", str(stripes),
             "--output-dir", str(run), "--checkpoint-every", "2"]
    killed = subprocess.run([*instrumented.after_step(9), *train], env=env, capture_output=True,
                            text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    record = yaml.safe_load((run / "hparams.yaml").read_text())
    assert record["plugin"] == {"plugin": str(plugin_file), "file": str(plugin_file),
                                "sha256": plugins.file_hash(str(plugin_file))}

    resumed = subprocess.run([sys.executable, "-m", "bnno", *train], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming in epoch 2 of 2, after step 2 of 6 (checkpoints/in_epoch/step-8)." in resumed.stdout
    assert (run / "model.keras").exists()

    result = bnno("evaluate", "--output-dir", run, "--plugin", plugin_file)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("epoch 2: top-1 ")

    # A second stage from the plugin run's weights
    result = bnno("train", "my_net", "--plugin", plugin_file, "--hparams-file", sets, "--dataset", stripes,
                  "--hparams", "epochs=1", "--init-from", run, "--output-dir", tmp_path / "stage2")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "stage2" / "hparams.yaml").read_text())["init_from"] == str(run / "model.keras")

    sweep = tmp_path / "sweep"
    result = bnno("sweep", "my_net", "--plugin", plugin_file, "--hparams-file", sets, "--dataset", stripes,
                  "--grid", "threshold=1e-6,1e-5", "--hparams", "epochs=1", "--output-dir", sweep)
    assert result.exit_code == 0, result.output
    assert "All 2 runs finished" in result.output
    plugins._LOADED.clear()  # report needs no plugin: a fresh registry as in a new process
    result = bnno("report", sweep, "--output", tmp_path / "report.md")
    assert result.exit_code == 0, result.output
    assert "my_net" in (tmp_path / "report.md").read_text()


PREPROCESS_PLUGIN = textwrap.dedent(
    """
    import bnno
    from bnno.data import preprocess


    @bnno.register_preprocess("{name}"{datasets})
    def inverted(spec):
        plain = preprocess.default(spec)
        return plain._replace(train=lambda image, seed: -plain.train(image, seed),
                              evaluate=lambda image: -plain.evaluate(image))
    """
)


def test_a_plugin_registers_a_preprocess_function_but_never_over_bnnos(tmp_path):
    from bnno import data
    from bnno.data import preprocess

    generic = dict(preprocess.GENERIC._entries)
    try:
        path = tmp_path / "inverted.py"
        path.write_text(PREPROCESS_PLUGIN.format(name="inverted", datasets=""))
        result = bnno("list", "preprocess", "--plugin", path)
        assert result.exit_code == 0, result.output
        assert "  other data sets and image folders: default (default), inverted, resize_and_flip" in result.output
        assert data.default_preprocess("mnist") == "default"  # defaults stay bnno's

        for name, datasets, message in [
            ("resize_and_flip", "", "Preprocess function name 'resize_and_flip' is taken for preprocess functions; "
             "register yours under another name."),
            ("mine", ', "mnist"', "Data set mnist has no preprocess functions of its own (only cifar10, "
             "imagenet2012 do); register 'mine' without a data set"),
        ]:
            clash = tmp_path / f"clash_{name}.py"
            clash.write_text(PREPROCESS_PLUGIN.format(name=name, datasets=datasets))
            result = bnno("list", "preprocess", "--plugin", clash)
            assert result.exit_code == 2 and f"Plugin {clash}: {message}" in result.output
    finally:
        preprocess.GENERIC._entries.clear()
        preprocess.GENERIC._entries.update(generic)


def test_a_package_folder_in_the_working_directory_is_imported_as_its_module(tmp_path, monkeypatch):
    (tmp_path / "acme_models").mkdir()
    (tmp_path / "acme_models" / "__init__.py").write_text(PLUGIN.format(name="acme_folder_net"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = bnno("list", "models", "--plugin", "acme_models")
    assert result.exit_code == 0, result.output
    assert "  acme_folder_net (plugin acme_models)" in result.output.splitlines()
