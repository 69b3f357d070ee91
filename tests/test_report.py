"""bnno report: runs to a table, JSON, plots and one file, checked against the runs'
own files (hparams.yaml, history.csv, TensorBoard events)."""

import base64
import csv
import json
import math
import pathlib
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from bnno import papers
from bnno.cli import cli
from bnno.report import plots
from bnno.report import runs as runs_lib

HEADER = ["epoch", "loss", "accuracy", "top5_accuracy", "val_loss", "val_accuracy",
          "val_top5_accuracy", "wall_seconds"]
LAYERS = ["quant_conv2d", "quant_conv2d_1", "quant_dense"]


def write_run(directory, *, model="binarynet", dataset="cifar10", hparams_set="bop", hparams=None,
              seed=0, val=(0.5, 0.7, 0.6), finished=True, wall=True):
    """A run directory as the trainer leaves it (without checkpoints and events):
    epoch N has training accuracy val - 0.05 + 0.1 and top-5 val + 0.2."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True)
    resolved = {"epochs": len(val), "batch_size": 100, "optimizer": "bop", "learning_rate": 0.01,
                "threshold": 1e-6, "gamma": 1e-3, "gamma_decay": "none", **(hparams or {})}
    record = {
        "model": model, "dataset": dataset, "hparams_set": hparams_set, "hparams": resolved,
        "preprocess": "default", "image_size": None, "seed": seed, "max_steps": None,
        "mixed_precision": False, "tf32": False, "overrides": {}, "data_dir": None,
        "command_line": "bnno train ...", "versions": {"bnno": "0.1.0"},
        "a_field_of_a_later_bnno": {"ignored": True},
    }
    (directory / "hparams.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    header = HEADER if wall else HEADER[:-1]
    lines = [",".join(header)]
    for epoch, accuracy in enumerate(val, start=1):
        values = [epoch, 1.0 / epoch, accuracy + 0.05, min(accuracy + 0.2, 1.0), 1.5 / epoch,
                  accuracy, min(accuracy + 0.2, 1.0), 12.5 * epoch]
        lines.append(",".join(f"{v:.6g}" for v in values[:len(header)]))
    (directory / "history.csv").write_text("\n".join(lines) + "\n")
    if finished:
        (directory / "model.keras").write_bytes(b"")
    return directory


def write_events(directory, scalars, wall_times=None, first_epoch=1):
    """Epoch-level scalars as Keras logs them (tag ``epoch_<name>``, step epoch - 1),
    with TensorBoard's own framework-free writer."""
    from tensorboard.summary import Writer

    writer = Writer(str(directory))
    for name, values in scalars.items():
        for step, value in enumerate(values, start=first_epoch - 1):
            wall_time = wall_times[step - first_epoch + 1] if wall_times else None
            writer.add_scalar(f"epoch_{name}", value, step, wall_time=wall_time)
    writer.close()


def flips(run_dir, overall, per_layer=None, gamma=None, learning_rate=None, wall_times=None):
    scalars = {"flip_ratio": overall}
    for layer, values in (per_layer or {}).items():
        scalars[f"flip_ratio/{layer}"] = values
    scalars["gamma"] = gamma or [1e-3] * len(overall)
    scalars["learning_rate"] = learning_rate or [0.01] * len(overall)
    write_events(pathlib.Path(run_dir) / "train", scalars, wall_times)


def history_of(run_dir):
    with open(pathlib.Path(run_dir) / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def report(*args):
    result = CliRunner().invoke(cli, ["report", *[str(a) for a in args]], catch_exceptions=False)
    return result


def last_json(output):
    return json.loads(output.strip().splitlines()[-1])


# The paper's section 5.1 layout: the threshold varied at gamma 1e-3, gamma varied at
# threshold 1e-6 (the run at both is shared).
GRID = [
    (1e-8, 1e-3, (0.40, 0.55, 0.60)),
    (1e-6, 1e-3, (0.50, 0.70, 0.65)),
    (1e-4, 1e-3, (0.30, 0.45, 0.50)),
    (1e-6, 1e-4, (0.35, 0.50, 0.75)),
    (1e-6, 1e-2, (0.60, 0.62, 0.58)),
]


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    for threshold, gamma, val in GRID:
        write_run(root / f"threshold={threshold:g}_gamma={gamma:g}",
                  hparams={"threshold": threshold, "gamma": gamma}, val=val)
    return root


def test_table_and_json_match_each_runs_history(sweep):
    result = report(sweep, "--json")
    assert result.exit_code == 0, result.output
    entries = last_json(result.output)["runs"]
    assert len(entries) == len(GRID)
    for entry in entries:
        rows = history_of(entry["run_dir"])
        record = yaml.safe_load((pathlib.Path(entry["run_dir"]) / "hparams.yaml").read_text())
        accuracies = [float(row["val_accuracy"]) for row in rows]
        assert entry["best_val_accuracy"] == max(accuracies)
        assert entry["best_val_accuracy_epoch"] == accuracies.index(max(accuracies)) + 1
        assert entry["final_val_accuracy"] == accuracies[-1]
        assert entry["final_val_top5_accuracy"] == float(rows[-1]["val_top5_accuracy"])
        assert entry["best_val_top5_accuracy"] == max(float(row["val_top5_accuracy"]) for row in rows)
        assert entry["epochs_done"] == 3 and entry["epochs_planned"] == 3
        assert entry["state"] == "finished"
        assert entry["wall_seconds"] == float(rows[-1]["wall_seconds"]) == 37.5
        assert entry["hparams"] == record["hparams"]
        assert entry["varied"] == {"threshold": record["hparams"]["threshold"],
                                   "gamma": record["hparams"]["gamma"]}
        assert (entry["model"], entry["dataset"], entry["hparams_set"]) == ("binarynet", "cifar10", "bop")
        assert entry["final_flip_ratio"] is None  # no events written
        assert entry["paper_val_accuracy"] is None and entry["paper_difference"] is None

    lines = result.output.splitlines()
    header = lines[0].split()
    assert header[:6] == ["run", "model", "data", "set", "set", "threshold"]
    assert "gamma" in header and "vs" in header
    row = next(line for line in lines if line.startswith("threshold=1e-06_gamma=0.0001 "))
    assert re.search(r"1e-06\s+0\.0001\s+3/3\s+75\.0%\s+75\.0%\s+95\.0%\s+95\.0%\s+-\s+38s\s+-\s+-$", row), row
    # aligned: every row as wide as the rule under the header
    assert len({len(line) for line in lines[1:2 + len(GRID)]}) == 1


def test_the_paper_figure_and_the_difference_for_bop_sec52_on_cifar10(tmp_path):
    run = write_run(tmp_path / "sec52", hparams_set="bop_sec52", dataset="cifar10:3.0.2",
                    val=(0.85, 0.902, 0.9))
    result = report(run, "--json")
    assert result.exit_code == 0, result.output
    (entry,) = last_json(result.output)["runs"]
    assert entry["paper_val_accuracy"] == 0.913
    assert entry["paper_difference"] == pytest.approx(0.9 - 0.913)
    assert entry["paper_source"].endswith("section 5.2")
    assert entry["varied"] == {}
    assert re.search(r"90\.2%\s+90\.0%.*91\.3%\s+-1\.3 pts$", result.output.splitlines()[2])
    assert "Paper: binarynet on cifar10 (bop_sec52): 91.3% top-1, Helwegen et al." in result.output


@pytest.mark.parametrize("model, dataset, hparams_set, expected", [
    ("binarynet", "cifar10", "bop_sec52", 0.913),
    ("binarynet", "cifar10:3.0.2", "bop_sec52", 0.913),
    ("binarynet", "cifar10", "adam_sec52", 0.909),  # section 5.2's latent-weight baseline
    ("binary_alexnet", "imagenet2012", "bop", 0.411),
    ("xnornet", "imagenet2012:5.1.0", "bop", 0.459),
    ("birealnet", "imagenet2012", "bop", 0.566),
    ("binarynet", "cifar10", "bop", None),  # section 5.1 is figures, not a number
    ("birealnet", "imagenet2012", "adam", None),
    ("binarynet", "/data/cifar10", "bop_sec52", None),  # an image folder is not the paper's data
    # "A Bop and Beyond" (Suarez-Ramirez et al., 2021), under its model names
    ("binarynet_batch", "cifar10", "bop2ndOrder_CIFAR", 0.919),
    ("binarynet_batch", "cifar10", "bop2ndOrder_unbiased_CIFAR", 0.914),
    ("xnornet_batch", "imagenet2012", "bop2ndOrder_ImageNet", 0.469),
    ("birealnet_batch", "imagenet2012", "bop2ndOrder_ImageNet", 0.572),
])
def test_papers_figures_match_model_dataset_and_set(model, dataset, hparams_set, expected):
    figure = papers.figure_for(model, dataset, hparams_set)
    assert (figure.val_accuracy if figure else None) == expected
    if figure:
        assert figure.source.startswith("section 5.")
        # "A Bop and Beyond"'s figures were read from its code's README, and say so.
        from_readme = "(as its code's README, github.com/CuauSuarez/Bop2ndOrder, prints it)"
        assert figure.source.endswith(from_readme) == (figure.paper == papers.BOP2ND_PAPER)


def test_flip_ratio_wall_time_and_resumes_come_from_the_events(tmp_path):
    run = write_run(tmp_path / "run", val=(0.5, 0.6, 0.7), wall=False)  # history without wall_seconds
    start = time.time()
    # A first session logged epochs 1 and 2; the resumed one logged epoch 2 again (the
    # first attempt died before its checkpoint) and epoch 3.
    flips(run, [0.25, 0.125], {"quant_conv2d": [0.5, 0.25]}, wall_times=[start + 10, start + 20])
    time.sleep(1.1)  # event files are named by the second they were opened
    resumed = time.time()
    write_events(run / "train", {"flip_ratio": [0.0625, 0.03125], "flip_ratio/quant_conv2d": [0.125, 0.0]},
                 wall_times=[resumed + 5, resumed + 9], first_epoch=2)
    loaded = runs_lib.load(run, "run")
    assert loaded.scalar("flip_ratio") == [(1, 0.25), (2, 0.0625), (3, 0.03125)]
    assert loaded.scalar("flip_ratio/quant_conv2d") == [(1, 0.5), (2, 0.125), (3, 0.0)]
    assert loaded.scalar("gamma") == [(1, pytest.approx(1e-3)), (2, pytest.approx(1e-3))]
    entry = last_json(report(run, "--json").output)["runs"][0]
    assert entry["final_flip_ratio"] == 0.03125
    # from each file's opening to its last event: about 20 s and 9 s
    assert entry["wall_seconds"] == pytest.approx(29, abs=1.5)


def test_broken_and_unfinished_runs_are_one_sentence_each(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "good", val=(0.5, 0.6))
    write_run(root / "running", val=(0.5, 0.6), finished=False, hparams={"epochs": 5})
    started = root / "started"
    started.mkdir()
    (started / "hparams.yaml").write_text((root / "good" / "hparams.yaml").read_text())
    orphan = root / "orphan"
    orphan.mkdir()
    (orphan / "history.csv").write_text(",".join(HEADER) + "\n1,1,1,1,1,1,1,1\n")
    damaged = write_run(root / "damaged", val=(0.5,))
    (damaged / "hparams.yaml").write_text("model: [binarynet\n")
    truncated = write_run(root / "truncated", val=(0.5, 0.6, 0.7))
    text = (truncated / "history.csv").read_text()
    (truncated / "history.csv").write_text(text[:-20])  # the last row cut short
    empty = write_run(root / "empty", val=(0.5,))
    (empty / "history.csv").write_text(",".join(HEADER) + "\n")

    result = report(root, "--json")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    data = last_json(result.output)
    names = {entry["name"]: entry for entry in data["runs"]}
    assert sorted(names) == ["good", "running", "truncated"]
    assert names["running"]["state"] == "unfinished"
    assert (names["running"]["epochs_done"], names["running"]["epochs_planned"]) == (2, 5)
    assert names["truncated"]["epochs_done"] == 2
    assert names["truncated"]["final_val_accuracy"] == 0.6
    assert "line 4 of" in names["truncated"]["notes"][0]
    assert re.search(r"running .* 2/5 ", result.output)
    reasons = {pathlib.Path(item["path"]).name: item["reason"] for item in data["skipped"]}
    assert sorted(reasons) == ["damaged", "empty", "orphan", "started"]
    assert "has not finished an epoch yet" in reasons["started"]
    assert "no hparams.yaml" in reasons["orphan"]
    assert "cannot be read" in reasons["damaged"]
    assert "has no rows" in reasons["empty"]
    for reason in reasons.values():
        assert reason in result.output and reason.count(". ") == 0 and reason.endswith("skipped.")


def test_a_path_without_runs_is_a_usage_error(tmp_path):
    (tmp_path / "nothing" / "here").mkdir(parents=True)
    result = report(tmp_path / "nothing")
    assert result.exit_code == 2
    assert "holds no bnno runs: expected a run directory (one with hparams.yaml)" in result.output
    result = report(tmp_path, "--output", tmp_path / "report.pdf")
    assert result.exit_code == 2 and "must end in .html" in result.output


# --- figures ----------------------------------------------------------------------------


def legend_texts(axes):
    return [text.get_text() for text in axes.get_legend().get_texts()]


def test_accuracy_figure_has_one_panel_per_swept_key(sweep):
    runs, _ = runs_lib.collect([sweep])
    figure = plots.accuracy_figure(runs)
    threshold_axes, gamma_axes = figure.axes
    assert figure._suptitle.get_text() == "Top-1 accuracy per epoch: training (solid), validation (dashed)"
    assert threshold_axes.get_title() == "threshold varied at gamma=0.001"
    assert gamma_axes.get_title() == "gamma varied at threshold=1e-06"
    for axes in figure.axes:
        assert axes.get_xlabel() == "epoch" and axes.get_ylabel() == "top-1 accuracy"
        assert len(axes.get_lines()) == 6  # training and validation of three runs
    assert legend_texts(threshold_axes) == ["threshold=1e-08", "threshold=1e-06", "threshold=0.0001",
                                            "training", "validation"]
    assert legend_texts(gamma_axes) == ["gamma=0.0001", "gamma=0.001", "gamma=0.01", "training", "validation"]
    # the lines are the runs' history, as the paper draws them (its Figure 1: "train: —,
    # validation: – –"): the first line is threshold 1e-8's training accuracy
    training, validation = threshold_axes.get_lines()[:2]
    assert list(training.get_xdata()) == [1, 2, 3]
    assert list(training.get_ydata()) == pytest.approx([0.45, 0.60, 0.65])
    assert list(validation.get_ydata()) == [0.40, 0.55, 0.60]
    assert (training.get_linestyle(), validation.get_linestyle()) == ("-", "--")


def test_a_full_grid_has_a_panel_per_fixed_value_and_seeds_share_panels(tmp_path):
    root = tmp_path / "grid"
    for threshold in (1e-7, 1e-6):
        for gamma in (1e-3, 1e-2):
            for seed in (0, 1):
                write_run(root / f"t{threshold:g}_g{gamma:g}_s{seed}", seed=seed,
                          hparams={"threshold": threshold, "gamma": gamma})
    runs, _ = runs_lib.collect([root])
    assert runs[0].varied == {"threshold": 1e-6, "gamma": 1e-3, "seed": 0}
    figure = plots.accuracy_figure(runs)
    assert [axes.get_title() for axes in figure.axes] == [
        "threshold varied at gamma=0.001", "threshold varied at gamma=0.01",
        "gamma varied at threshold=1e-06", "gamma varied at threshold=1e-07",
    ]
    assert legend_texts(figure.axes[0])[:4] == [
        "threshold=1e-07, seed=0", "threshold=1e-07, seed=1", "threshold=1e-06, seed=0", "threshold=1e-06, seed=1"]


def test_a_run_alone_at_its_fixed_values_is_still_drawn(sweep):
    write_run(sweep / "threshold=1e-08_gamma=0.01", hparams={"threshold": 1e-8, "gamma": 1e-2})
    runs, _ = runs_lib.collect([sweep])
    figure = plots.accuracy_figure(runs)
    assert [axes.get_title() for axes in figure.axes][-1] == "gamma varied at threshold=1e-08"
    # threshold 1e-8 at gamma 1e-2 now pairs with threshold 1e-6 at gamma 1e-2
    assert figure.axes[1].get_title() == "threshold varied at gamma=0.01"
    write_run(sweep / "threshold=1e-05_gamma=1e-05", hparams={"threshold": 1e-5, "gamma": 1e-5})
    runs, _ = runs_lib.collect([sweep])
    other = plots.accuracy_figure(runs).axes[-1]
    assert other.get_title() == "other runs"
    assert legend_texts(other)[0] == "threshold=1e-05, gamma=1e-05"


def test_runs_of_different_sets_are_panels_of_their_own(tmp_path):
    write_run(tmp_path / "a", hparams_set="bop")
    write_run(tmp_path / "b", hparams_set="bop_sec52", hparams={"epochs": 3, "batch_size": 50})
    runs, _ = runs_lib.collect([tmp_path])
    assert [run.varied for run in runs] == [{}, {}]  # nothing varies within a set
    figure = plots.accuracy_figure(runs)
    assert [axes.get_title() for axes in figure.axes] == ["binarynet on cifar10 (bop)", "binarynet on cifar10 (bop_sec52)"]
    assert legend_texts(figure.axes[0])[0] == "a"


def test_flip_ratio_figures_are_on_log_axes_overall_and_per_layer(sweep):
    flips(sweep / "threshold=1e-08_gamma=0.001", [0.25, 0.125, 0.0625],
          {"quant_conv2d": [0.5, 0.25, 0.125], "quant_conv2d_1": [0.125, 0.0625, 0.0],
           "quant_dense": [0.25, 0.0, 0.0]})
    flips(sweep / "threshold=0.0001_gamma=0.001", [0.0, 0.0, 0.0],
          {layer: [0.0, 0.0, 0.0] for layer in LAYERS})
    runs, _ = runs_lib.collect([sweep])
    figure = plots.flip_ratio_figure(runs)
    (axes,) = figure.axes  # only the threshold panel has runs with flip ratios
    assert axes.get_yscale() == "log"
    assert axes.get_title() == "threshold varied at gamma=0.001"
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("epoch", "flip ratio (share flipped per step)")
    assert len(axes.get_lines()) == 2
    assert legend_texts(axes) == ["threshold=1e-08", "threshold=0.0001 (no flips)"]
    assert list(axes.get_lines()[0].get_ydata()) == [0.25, 0.125, 0.0625]

    layers = plots.layer_flip_ratio_figure(runs)
    frozen, flipping = layers.axes  # in the runs' order: threshold=0.0001 first
    assert flipping.get_yscale() == frozen.get_yscale() == "log"
    assert flipping.get_title() == "threshold=1e-08, gamma=0.001"
    assert legend_texts(flipping) == ["quant_conv2d", "quant_conv2d_1", "quant_dense"]
    assert len(flipping.get_lines()) == 3
    assert frozen.get_legend() is None
    assert [text.get_text() for text in frozen.texts] == ["no weight flipped in any layer"]


def test_schedules_figure_draws_each_distinct_schedule_once(tmp_path):
    write_run(tmp_path / "constant", hparams={"gamma": 1e-3})
    write_run(tmp_path / "decayed", hparams={"gamma": 1e-3, "gamma_decay": "step"})
    flips(tmp_path / "constant", [0.1, 0.1, 0.1], gamma=[1e-3, 1e-3, 1e-3])
    flips(tmp_path / "decayed", [0.1, 0.1, 0.1], gamma=[1e-3, 1e-3, 1e-4])
    runs, _ = runs_lib.collect([tmp_path])
    figure = plots.schedules_figure(runs)
    gamma_axes, learning_rate_axes = figure.axes
    assert gamma_axes.get_ylabel() == "Bop's adaptivity rate γ"
    assert learning_rate_axes.get_ylabel() == "learning rate"
    assert gamma_axes.get_yscale() == learning_rate_axes.get_yscale() == "log"
    assert legend_texts(gamma_axes) == ["gamma_decay=none", "gamma_decay=step"]
    assert list(gamma_axes.get_lines()[1].get_ydata()) == pytest.approx([1e-3, 1e-3, 1e-4])
    assert legend_texts(learning_rate_axes) == ["all 2 runs"]


def test_runs_without_events_have_no_flip_or_schedule_figures(sweep):
    runs, _ = runs_lib.collect([sweep])
    assert plots.flip_ratio_figure(runs) is None
    assert plots.layer_flip_ratio_figure(runs) is None
    assert plots.schedules_figure(runs) is None
    # the sweep is Figure 1's shape: its accuracy, and no pi_t to draw, which it says
    assert list(plots.figures(runs)) == ["paper_figure1", "accuracy"]
    lower = plots.figures(runs)["paper_figure1"].axes[2:]
    assert all(not axes.get_lines() and axes.get_legend() is None for axes in lower)
    assert [axes.texts[0].get_text() for axes in lower] == [
        "no flip ratios logged\n(these runs wrote no TensorBoard events)"] * 2
    assert [axes.get_title() for axes in lower] == [r"$\pi_t$ of the last binary layer"] * 2


# --- the paper's Figure 1 -------------------------------------------------------------------

# Figure 1 of Helwegen et al. (2019), section 5.1: gamma varied at threshold 1e-6 (left),
# threshold varied at gamma 1e-3 (right); both sweeps train (1e-6, 1e-3), as the
# sec51_gamma and sec51_threshold grids do.
SEC51 = {"sec51_gamma": [(1e-6, 1e-2), (1e-6, 1e-3), (1e-6, 1e-4)],
         "sec51_threshold": [(0.0, 1e-3), (1e-6, 1e-3), (1e-5, 1e-3)]}
# each run's last binary layer flips this share of its weights at its 4 steps (2 epochs of 2)
LAST_LAYER_FLIPS = {(1e-6, 1e-2): [0.004, 0.0, 0.002, 0.001], (1e-6, 1e-3): [4e-4, 0.0, 2e-4, 1e-4],
                    (1e-6, 1e-4): [4e-5, 0.0, 0.0, 0.0], (0.0, 1e-3): [0.002, 0.001, 0.001, 0.0],
                    (1e-5, 1e-3): [0.0, 0.0, 0.0, 0.0]}


def write_step_flips(run_dir, steps_per_epoch, per_layer):
    """Flip ratios as ``bnno train --log-every 1`` logs them: ``step_flip_ratio/<layer>``
    at global steps from 1, and ``steps_per_epoch`` at step 0."""
    from tensorboard.summary import Writer

    writer = Writer(str(pathlib.Path(run_dir) / "train"))
    writer.add_scalar("steps_per_epoch", steps_per_epoch, 0)
    for layer, values in per_layer.items():
        for step, value in enumerate(values, start=1):
            writer.add_scalar(f"step_flip_ratio/{layer}", value, step)
    writer.close()


def write_sec51(root, sweeps=tuple(SEC51), per_step=True):
    """The runs of the two section 5.1 sweeps: per-epoch flip ratios of two binary layers,
    and with ``per_step`` those of every step (``--log-every 1``)."""
    for sweep_name in sweeps:
        for threshold, gamma in SEC51[sweep_name]:
            run = write_run(root / sweep_name / f"threshold={threshold:g}_gamma={gamma:g}",
                            hparams={"threshold": threshold, "gamma": gamma}, val=(0.5, 0.6))
            last = LAST_LAYER_FLIPS[threshold, gamma]
            flips(run, [0.1, 0.1], {"quant_conv2d": [0.5, 0.5],
                                    "quant_dense_2": [(last[0] + last[1]) / 2, (last[2] + last[3]) / 2]})
            if per_step:
                write_step_flips(run, 2, {"quant_conv2d": [0.5] * 4, "quant_dense_2": last})


def pi_t_by_hand(ratios):
    return [math.log(ratio + math.exp(-9)) for ratio in ratios]  # the paper's equation (7)


def one_line(text):
    return " ".join(text.split())


def test_figure1_is_drawn_as_the_papers_for_the_two_section_51_sweeps(tmp_path):
    write_sec51(tmp_path)
    runs, _ = runs_lib.collect([tmp_path])
    made = plots.figures(runs)
    assert list(made)[0] == "paper_figure1"
    figure = made["paper_figure1"]
    assert figure._suptitle.get_text() == ("The paper's Figure 1 (Helwegen et al., 2019, section 5.1): "
                                           "binarynet on cifar10 (bop)")
    upper_left, upper_right, lower_left, lower_right = figure.axes
    assert upper_left.get_title() == r"$\gamma$ varied at $\tau=10^{-6}$"
    assert upper_right.get_title() == r"$\tau$ varied at $\gamma=10^{-3}$"
    for axes in (lower_left, lower_right):
        assert axes.get_title() == r"$\pi_t$ of the last binary layer (quant_dense_2), per step"
        assert axes.get_ylim() == (-9.25, -4.0)  # the paper's axis, from -9 to -4
    assert [axes.get_xlabel() for axes in figure.axes] == ["Epoch"] * 4
    assert [axes.get_ylabel() for axes in figure.axes] == ["Accuracy", "Accuracy", r"$\pi_t$", r"$\pi_t$"]
    # legends as the paper's: gamma falling and tau rising, then the line styles
    assert legend_texts(upper_left) == [r"$\gamma=10^{-2}$", r"$\gamma=10^{-3}$", r"$\gamma=10^{-4}$",
                                        "train", "validation"]
    assert legend_texts(upper_right) == [r"$\tau=0$", r"$\tau=10^{-6}$", r"$\tau=10^{-5}$", "train", "validation"]
    assert legend_texts(lower_right) == [r"$\tau=0$", r"$\tau=10^{-6}$", r"$\tau=10^{-5}$"]

    # Upper: training solid, validation dashed, one colour per value; each column has
    # four runs (the shared point of the two sweeps is in both, drawn in one colour).
    lines = upper_right.get_lines()
    assert [line.get_linestyle() for line in lines] == ["-", "--"] * 4
    assert list(lines[0].get_ydata()) == pytest.approx([0.55, 0.65])  # training of tau = 0
    assert list(lines[1].get_ydata()) == [0.5, 0.6]  # its validation
    colors = [line.get_color() for line in lines]
    assert colors[0] == colors[1] and colors[2] == colors[4] and len(set(colors)) == 3

    # Lower: pi_t = ln(ratio + e^-9) of the last layer at every step, x in epochs.
    pi_lines = lower_right.get_lines()
    assert len(pi_lines) == 4 and len(lower_left.get_lines()) == 4
    assert list(pi_lines[0].get_xdata()) == [0.5, 1.0, 1.5, 2.0]
    assert list(pi_lines[0].get_ydata()) == pytest.approx(pi_t_by_hand([0.002, 0.001, 0.001, 0.0]))
    assert list(pi_lines[-1].get_ydata()) == [-9.0] * 4  # tau = 1e-5: no flip
    assert list(lower_left.get_lines()[0].get_ydata()) == pytest.approx(pi_t_by_hand([0.004, 0.0, 0.002, 0.001]))
    assert pi_lines[0].get_color() == colors[0]


def test_figure1_falls_back_to_the_per_epoch_flip_ratio_and_says_so(tmp_path):
    write_sec51(tmp_path, per_step=False)
    runs, _ = runs_lib.collect([tmp_path])
    figure = plots.figures(runs)["paper_figure1"]
    lower_left, lower_right = figure.axes[2:]
    assert lower_right.get_title() == (r"$\pi_t$ of the last binary layer (quant_dense_2), per epoch:" "\n"
                                       "these runs logged no per-step flip ratios; pass --log-every")
    first = lower_right.get_lines()[0]  # tau = 0: the mean of its steps' ratios per epoch
    assert list(first.get_xdata()) == [1, 2]
    assert list(first.get_ydata()) == pytest.approx(pi_t_by_hand([0.0015, 0.0005]))

    # one run that logged per step is not enough for a per-step panel
    write_step_flips(tmp_path / "sec51_gamma" / "threshold=1e-06_gamma=0.01", 2,
                     {"quant_dense_2": LAST_LAYER_FLIPS[1e-6, 1e-2]})
    runs, _ = runs_lib.collect([tmp_path])
    lower_left = plots.figures(runs)["paper_figure1"].axes[2]
    assert lower_left.get_title().endswith("per epoch:\nsome runs logged no per-step flip ratios; pass --log-every")
    assert list(lower_left.get_lines()[0].get_xdata()) == [1, 2]


def test_one_section_51_sweep_draws_its_half_and_says_which_is_missing(tmp_path):
    write_sec51(tmp_path, sweeps=["sec51_threshold"])
    runs, _ = runs_lib.collect([tmp_path])
    figure = plots.figures(runs)["paper_figure1"]
    upper, lower = figure.axes
    assert upper.get_title() == r"$\tau$ varied at $\gamma=10^{-3}$"
    assert lower.get_ylabel() == r"$\pi_t$" and len(lower.get_lines()) == 3
    assert one_line(figure._suptitle.get_text()).endswith(
        r"Only the $\tau$ half: these runs have no $\gamma$ sweep at $\tau=10^{-6}$ "
        "(gamma varied at threshold=1e-06).")


@pytest.mark.parametrize("shape", ["another fixed gamma", "epochs varied too", "latent weights"])
def test_runs_of_another_shape_have_no_figure1(tmp_path, shape):
    for number, threshold in enumerate((0.0, 1e-6, 1e-5)):
        hparams = {"threshold": threshold, "gamma": 1e-4 if shape == "another fixed gamma" else 1e-3}
        if shape == "epochs varied too":
            hparams["epochs"] = 2 + number
        if shape == "latent weights":
            hparams["optimizer"] = "adam"
        write_run(tmp_path / f"run{number}", hparams=hparams, val=(0.5, 0.6, 0.7, 0.8)[:hparams.get("epochs", 2)])
    runs, _ = runs_lib.collect([tmp_path])
    assert "paper_figure1" not in plots.figures(runs)


def test_figure1s_numbers_are_the_papers():
    from bnno.report import documents, figure1

    assert figure1.pi_t(0.0) == -9.0  # equation (7): e^-9 keeps a step without flips at -9
    assert figure1.pi_t(0.5) == math.log(0.5 + math.exp(-9))
    assert [figure1.power_of_ten(v) for v in (1e-6, 1e-2, 0.0, 2.5e-3, 0.5)] == [
        "10^{-6}", "10^{-2}", "0", r"2.5\times10^{-3}", "0.5"]
    assert documents.title("paper_figure1_2") == documents.title("paper_figure1") + " (2)"


# --- files --------------------------------------------------------------------------------


def test_html_report_is_one_self_contained_file(sweep, tmp_path):
    flips(sweep / "threshold=1e-08_gamma=0.001", [0.25, 0.125, 0.0625], {"quant_conv2d": [0.5, 0.25, 0.125]})
    output = tmp_path / "out" / "report.html"
    result = report(sweep, "--output", output)
    assert result.exit_code == 0, result.output
    assert f"Wrote {output}" in result.output
    page = output.read_text()
    assert page.count("<tr>") == len(GRID) + 1 and "<th>threshold</th>" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 5  # the paper's Figure 1, accuracy, flip ratio, per layer, schedules
    assert "<h2>The paper&#x27;s Figure 1: accuracy and π_t for Bop&#x27;s γ and τ (section 5.1)</h2>" in page
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing outside the file
    assert list((tmp_path / "out").iterdir()) == [output]


def test_markdown_report_links_the_pngs_next_to_it(sweep, tmp_path):
    output = tmp_path / "report.md"
    result = report(sweep, "--output", output)
    assert result.exit_code == 0, result.output
    text = output.read_text()
    assert "| run | model | data set | set | threshold | gamma | epochs |" in text
    assert "![Top-1 accuracy per epoch](report_plots/accuracy.png)" in text
    assert (tmp_path / "report_plots" / "accuracy.png").read_bytes().startswith(b"\x89PNG")
    result = report(sweep, "--plots", tmp_path / "figures")
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["accuracy.png", "paper_figure1.png"]


def test_the_table_needs_neither_tensorflow_nor_matplotlib(sweep):
    flips(sweep / "threshold=1e-08_gamma=0.001", [0.25, 0.125, 0.0625])
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from bnno.cli import cli\n"
        f"result = CliRunner().invoke(cli, ['report', {str(sweep)!r}, '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert '\"final_flip_ratio\": 0.0625' in result.output, result.output\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- a real run -----------------------------------------------------------------------------


def test_report_of_a_real_training_run(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    from tests.imagefolders import make_image_folder

    data = make_image_folder(tmp_path / "stripes", train_per_class=10, validation_per_class=4)
    out = tmp_path / "runs" / "tiny"
    trained = CliRunner().invoke(cli, [
        "train", "binarynet", "--dataset", str(data), "--hparams-set", "bop", "--output-dir", str(out),
        "--hparams", "filters=8,dense_units=16,epochs=2,batch_size=10", "--max-steps", "3",
    ], catch_exceptions=False)
    assert trained.exit_code == 0, trained.output

    result = report(tmp_path / "runs", "--json", "--output", tmp_path / "report.html")
    assert result.exit_code == 0, result.output
    (entry,) = last_json(result.output)["runs"]
    rows = history_of(out)
    assert entry["epochs_done"] == entry["epochs_planned"] == 2 and entry["state"] == "finished"
    assert entry["final_val_accuracy"] == float(rows[-1]["val_accuracy"])
    assert entry["best_val_accuracy"] == max(float(row["val_accuracy"]) for row in rows)
    if "wall_seconds" in rows[-1]:
        assert entry["wall_seconds"] == float(rows[-1]["wall_seconds"])
    assert entry["wall_seconds"] > 0
    # the flip ratio read without TensorFlow is TensorBoard's own reading
    accumulator = EventAccumulator(str(out / "train")).Reload()
    logged = accumulator.Tensors("epoch_flip_ratio")
    assert [event.step for event in logged] == [0, 1]
    assert entry["final_flip_ratio"] == pytest.approx(
        float(tensor_util.make_ndarray(logged[-1].tensor_proto)), rel=1e-7)
    assert 0 < entry["final_flip_ratio"] < 1

    runs, _ = runs_lib.collect([out])
    layers = plots.layer_flip_ratio_figure(runs)
    # One line per binary layer, named as the trainer logged them (Keras numbers the
    # layers of a process in order: quant_conv2d, quant_conv2d_1, ... or later numbers).
    layer_tags = sorted(tag.split("/", 1)[1] for tag in accumulator.Tags()["tensors"]
                        if tag.startswith("epoch_flip_ratio/"))
    assert sorted(legend_texts(layers.axes[0])) == layer_tags and len(layer_tags) == 9
    schedules = plots.schedules_figure(runs)
    assert [line.get_ydata()[0] for line in schedules.axes[0].get_lines()] == pytest.approx([1e-3])
    assert np.isclose(schedules.axes[1].get_lines()[0].get_ydata()[0], 0.01)


def test_a_two_stage_run_shows_where_it_started(tmp_path):
    stage2 = write_run(tmp_path / "stage2", model="resnet18_tricks", hparams_set="stage2")
    record = yaml.safe_load((stage2 / "hparams.yaml").read_text())
    record["init_from"] = str(tmp_path / "stage1" / "model.keras")
    (stage2 / "hparams.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    plain = write_run(tmp_path / "plain")

    result = report(tmp_path, "--json")
    assert result.exit_code == 0, result.output
    entries = {entry["name"]: entry for entry in last_json(result.output)["runs"]}
    assert entries["stage2"]["init_from"] == str(tmp_path / "stage1" / "model.keras")
    assert f"stage2: started from {tmp_path / 'stage1' / 'model.keras'}" in result.output
    assert entries["plain"]["init_from"] is None and plain.exists()
