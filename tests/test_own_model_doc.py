"""docs/own-model.md, the tutorial on training your own model through a plugin, works:
its plugin (docs/own-model/conv_shortcut.py) registers ``conv_shortcut`` with its keys,
its file of sets resolves, and the commands of its ``sh`` blocks run as written.

The commands run in ``bnno``'s own processes, as a user types them, in a temporary folder
that links to the checkout's ``docs/`` (the commands name files there), with ``/tmp/``
redirected into the test's folder and ``HOME`` there too. The data are scikit-learn's
handwritten digits (docs/example-report/digits_folder.py), data none of the other tests
use. Blocks that follow the marker ``NOT_RUN`` are illustrations (a cluster's paths)
and are left out.
"""

import csv
import math
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "own-model.md"
PLUGIN = ROOT / "docs" / "own-model" / "conv_shortcut.py"
SETS = ROOT / "docs" / "own-model" / "conv_shortcut.yaml"
#: The line before a ```sh block that the test does not run.
NOT_RUN = "<!-- illustration: not run by tests/test_own_model_doc.py -->"

KEYS = {"filters": 64, "stages": 3, "blocks": 2, "input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
        "kernel_constraint": "weight_clip"}


def documented_commands(text: str):
    """The commands of ``text``'s ```sh blocks, in order, each with its line
    continuations joined; blocks after a ``NOT_RUN`` line left out, comments dropped."""
    commands, lines, previous = [], text.splitlines(), ""
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            block = []
            i += 1
            while lines[i].strip() != "```":
                block.append(lines[i])
                i += 1
            if previous.strip() != NOT_RUN:
                joined = "\n".join(block).replace("\\\n", " ")
                commands += [line.strip() for line in joined.splitlines()
                             if line.strip() and not line.strip().startswith("#")]
        if lines[i].strip():
            previous = lines[i]
        i += 1
    return commands


def test_the_plugin_registers_conv_shortcut_and_its_sets_resolve(plugin_registries):
    from bnno import config, models

    plugins = plugin_registries
    [plugin] = plugins.load([str(PLUGIN)], environment=False, entry_points=False)
    assert plugin.file == str(PLUGIN.resolve())
    assert plugins.plugin_of("conv_shortcut") == plugin
    assert "conv_shortcut" in models.names()
    assert models.get("conv_shortcut").keys == KEYS

    bop = config.resolve("conv_shortcut", "bop", None, str(SETS))
    assert config.default_set("conv_shortcut", str(SETS)) == "bop"
    # The paper's section 5.1 recipe (binarynet:bop), with the model's keys.
    assert (bop.optimizer_name, bop["threshold"], bop["gamma"], bop["learning_rate"], bop["batch_size"]) == (
        "bop", 1e-6, 1e-3, 1e-2, 100)
    assert (bop["kernel_quantizer"], bop["kernel_constraint"]) == ("noop", "none")
    assert (bop["filters"], bop["stages"], bop["blocks"]) == (64, 3, 2)
    # The latent-weight baseline (binarynet:default): the guide's ste_sign and weight_clip.
    adam = config.resolve("conv_shortcut", "adam", "filters=16", str(SETS))
    assert (adam.optimizer_name, adam["kernel_quantizer"], adam["kernel_constraint"], adam["filters"]) == (
        "adam", "ste_sign", "weight_clip", 16)
    assert config.grid_set("conv_shortcut", "threshold", str(SETS))["grid"] == {"threshold": [0.0, 1e-6, 1e-5]}

    # The doc's figures: 16 filters wide on 16x16 digits.
    from bnno.nn.layers import QuantConv2D

    model = models.build("conv_shortcut", config.resolve("conv_shortcut", "bop", "filters=16", str(SETS)),
                         (16, 16, 3), 10)
    binary = [layer for layer in model.layers if isinstance(layer, QuantConv2D)]
    assert model.count_params() == 122_234
    assert len(binary) == 8  # 3 stages of 2 blocks, and 2 convolutions between stages
    assert sum(math.prod(layer.kernel.shape) for layer in binary) == 119_808


def test_the_docs_commands_cover_every_step_and_name_the_plugin():
    commands = documented_commands(DOC.read_text(encoding="utf-8"))
    started = [" ".join(command.split()[:2]) for command in commands]
    assert started == ["python docs/example-report/digits_folder.py", "bnno summary", "bnno train", "bnno train",
                       "bnno evaluate", "bnno sweep", "bnno report", "bnno sweep"]
    for command in commands:
        if command.startswith(("bnno train", "bnno sweep", "bnno summary", "bnno evaluate")):
            assert "--plugin docs/own-model/conv_shortcut.py" in command, command


@pytest.mark.slow
def test_the_docs_commands_run_as_written(tmp_path):
    pytest.importorskip("sklearn")
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "docs").symlink_to(ROOT / "docs")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    environment = {
        **{k: v for k, v in os.environ.items() if k not in ("BNNO_PLUGINS", "PYTHONPATH")},
        "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
    }
    outputs = []
    for command in documented_commands(DOC.read_text(encoding="utf-8")):
        command = command.replace("/tmp/", f"{scratch}/")
        result = subprocess.run(["bash", "-c", command], cwd=work, env=environment, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{(result.stdout + result.stderr)[-3000:]}"
        outputs.append(result.stdout + result.stderr)

    summary, train, again, evaluate, sweep, report, slurm = outputs[1:]
    assert "Total params: 122,234" in summary and "Binary (1-bit) params: 119,808" in summary
    assert "already finished all 3 epochs" in again
    assert "top-1" in evaluate

    run = scratch / "own-model" / "bop"
    with open(run / "history.csv", newline="") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2", "3"]
    assert (run / "model.keras").exists() and (run / "binary.weights.h5").exists()
    record = yaml.safe_load((run / "hparams.yaml").read_text())
    assert record["model"] == "conv_shortcut"
    assert record["plugin"]["file"] == str(PLUGIN.resolve()) and record["plugin"]["sha256"]

    sweep_dir = scratch / "own-model" / "threshold"
    points = sorted(p.name for p in sweep_dir.iterdir() if (p / "history.csv").exists())
    assert points == ["threshold=0.0_seed=0", "threshold=1e-05_seed=0", "threshold=1e-06_seed=0"]
    assert (scratch / "own-model" / "report.html").stat().st_size > 0
    assert "conv_shortcut" in report

    sbatch = (scratch / "own-model" / "threshold-slurm" / "sweep.sbatch").read_text()
    commands = (scratch / "own-model" / "threshold-slurm" / "commands.txt").read_text()
    assert f"--plugin {PLUGIN.resolve()}" in sbatch + commands

    # The safety rule the doc states: without the plugin, the run is refused, naming it.
    refused = subprocess.run(["bnno", "evaluate", "--output-dir", str(run)], cwd=work, env=environment,
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"--plugin {PLUGIN.resolve()}" in refused.stderr
