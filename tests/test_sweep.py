"""Sweeps: the grid, run names, the manifest, and the print and Slurm executors."""

import os
import shutil
import pathlib
import shlex
import stat
import subprocess

import pytest
import yaml

from bnno import sweep as sweep_lib
from bnno.errors import UsageError
from tests import instrumented


def make_sweep(tmp_path, grid=None, **fields):
    raw = grid or {"threshold": ["1e-8", "1e-6"], "gamma": ["1e-3", "1e-4"]}
    typed = sweep_lib.typed_grid("binarynet", "bop", {"epochs": "1"}, raw)
    return sweep_lib.Sweep(model="binarynet", dataset="cifar10", hparams_set="bop", grid=typed,
                           output_dir=tmp_path / "sweep", overrides={"epochs": "1"}, **fields)


def test_parse_grid_keeps_order_and_lists_whole():
    grid = sweep_lib.parse_grid(["threshold=1e-8, 1e-7,0", "gamma_boundaries=[10, 20],[30]"])
    assert list(grid) == ["threshold", "gamma_boundaries"]
    assert grid == {"threshold": ["1e-8", "1e-7", "0"], "gamma_boundaries": ["[10, 20]", "[30]"]}


@pytest.mark.parametrize("items, message", [
    (["threshold"], "--grid 'threshold' is not of the form KEY=V1,V2,..."),
    (["=1,2"], "--grid '=1,2' is not of the form KEY=V1,V2,..."),
    (["threshold=1e-8", "threshold=1e-7"], "--grid names threshold twice"),
    (["threshold=,"], "--grid threshold= has no values"),
])
def test_malformed_grids_are_one_sentence(items, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(".", r"\.")):
        sweep_lib.parse_grid(items)


def test_grid_values_take_their_keys_types_and_bad_ones_are_refused_before_any_run():
    typed = sweep_lib.typed_grid("binarynet", "bop", {}, {"threshold": ["0", "1e-8"], "epochs": ["1", "2"]})
    assert typed == {"threshold": [0.0, 1e-8], "epochs": [1, 2]}
    assert isinstance(typed["threshold"][0], float)
    with pytest.raises(UsageError, match="epochs=1.5 must be a whole number"):
        sweep_lib.typed_grid("binarynet", "bop", {}, {"epochs": ["1", "1.5"]})
    with pytest.raises(UsageError, match="Unknown hyperparameter 'treshold'"):
        sweep_lib.typed_grid("binarynet", "bop", {}, {"treshold": ["1e-8"]})
    with pytest.raises(UsageError, match="--grid threshold lists 1e-08 twice"):
        sweep_lib.typed_grid("binarynet", "bop", {}, {"threshold": ["1e-8", "1.0e-8"]})


def test_points_are_the_cross_product_times_seeds_named_by_their_values(tmp_path):
    sweep = make_sweep(tmp_path, seeds=2)
    names = [p.name for p in sweep.points()]
    assert names == [
        "threshold=1e-08_gamma=0.001_seed=0", "threshold=1e-08_gamma=0.001_seed=1",
        "threshold=1e-08_gamma=0.0001_seed=0", "threshold=1e-08_gamma=0.0001_seed=1",
        "threshold=1e-06_gamma=0.001_seed=0", "threshold=1e-06_gamma=0.001_seed=1",
        "threshold=1e-06_gamma=0.0001_seed=0", "threshold=1e-06_gamma=0.0001_seed=1",
    ]
    assert sweep.points()[2].label == "threshold=1e-08 gamma=0.0001"


def test_print_executor_prints_one_runnable_train_command_per_point(tmp_path):
    sweep = make_sweep(tmp_path, options={"preprocess": "resize_and_flip", "max_steps": 5, "tf32": False,
                                          "mixed_precision": True, "tensorboard": True})
    lines = []
    sweep_lib.print_commands(sweep, echo=lines.append)
    assert len(lines) == 4
    first = shlex.split(lines[0])
    assert first == [
        "bnno", "train", "binarynet", "--dataset", "cifar10", "--hparams-set", "bop",
        "--hparams", "epochs=1,threshold=1e-08,gamma=0.001", "--seed", "0",
        "--output-dir", str(tmp_path / "sweep" / "threshold=1e-08_gamma=0.001_seed=0"),
        "--preprocess-fn", "resize_and_flip", "--max-steps", "5", "--mixed-precision",
    ]
    # The commands parse as bnno train's own command line.
    from click.testing import CliRunner

    from bnno.cli import cli

    result = CliRunner().invoke(cli, [*first[1:], "--help"])
    assert result.exit_code == 0
    manifest = yaml.safe_load((tmp_path / "sweep" / "sweep.yaml").read_text())
    assert [r["state"] for r in manifest["runs"]] == ["pending"] * 4
    assert manifest["grid"] == {"threshold": [1e-8, 1e-6], "gamma": [1e-3, 1e-4]}


@pytest.mark.parametrize("grid_set, key, values, fixed", [
    ("sec51_gamma", "gamma", ["0.01", "0.001", "0.0001"], "threshold=1e-06"),
    ("sec51_threshold", "threshold", ["0.0", "1e-06", "1e-05"], "gamma=0.001"),
])
def test_the_section_51_grids_are_the_papers_figure_1_and_log_every_step(tmp_path, grid_set, key, values, fixed):
    """Figure 1 of Helwegen et al. (2019): gamma in {1e-2, 1e-3, 1e-4} at tau = 1e-6, tau
    in {0, 1e-6, 1e-5} at gamma = 1e-3, with pi_t per step (so --log-every 1, unless given)."""
    from click.testing import CliRunner

    from bnno.cli import cli

    def commands(*options):
        result = CliRunner().invoke(cli, [
            "sweep", "binarynet", "--dataset", "cifar10", "--grid-set", grid_set, "--executor", "print",
            "--output-dir", str(tmp_path / grid_set / str(len(options))), *options])
        assert result.exit_code == 0, result.output
        return [shlex.split(line) for line in result.output.splitlines()]

    lines = commands()
    assert [line[line.index("--hparams") + 1] for line in lines] == [f"{fixed},{key}={value}" for value in values]
    assert all(line[line.index("--hparams-set") + 1] == "bop" for line in lines)
    assert all(line[line.index("--log-every") + 1] == "1" for line in lines)
    assert all(line[line.index("--log-every") + 1] == "5" for line in commands("--log-every", "5"))


def test_a_grids_log_every_must_be_a_whole_number_of_steps(tmp_path):
    from bnno import hparams

    file = tmp_path / "sets.yaml"
    file.write_text("mine:\n  extends: binarynet:bop\ngrids:\n  g:\n    grid: {gamma: [1.0e-3]}\n    log_every: 0\n")
    with pytest.raises(UsageError, match="may have hparams_set:, hparams: {key: value} and log_every: N"):
        hparams.grid_set("binarynet", "g", str(file))
    file.write_text(file.read_text().replace("log_every: 0", "log_every: 3"))
    assert hparams.grid_set("binarynet", "g", str(file))["log_every"] == 3


def test_a_changed_grid_is_refused_with_what_differs(tmp_path):
    sweep_lib.print_commands(make_sweep(tmp_path), echo=lambda line: None)
    before = (tmp_path / "sweep" / "sweep.yaml").read_text()
    changed = make_sweep(tmp_path, grid={"threshold": ["1e-8", "1e-7"], "gamma": ["1e-3", "1e-4"]})
    with pytest.raises(UsageError) as error:
        sweep_lib.print_commands(changed, echo=lambda line: None)
    assert str(error.value).startswith(f"{tmp_path / 'sweep'} holds a sweep with another definition (grid: ")
    assert "1e-06" in str(error.value) and "1e-07" in str(error.value)
    assert str(error.value).endswith("run it with its own, or pass a new --output-dir.")
    assert (tmp_path / "sweep" / "sweep.yaml").read_text() == before  # nothing overwritten


def test_slurm_executor_writes_a_job_array_whose_tasks_run_their_own_command(tmp_path):
    sweep = make_sweep(tmp_path)
    lines = []
    script = sweep_lib.write_slurm(sweep, echo=lines.append)
    text = script.read_text()
    assert "#SBATCH --array=0-3" in text and text.startswith("#!/bin/bash")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert any(line.startswith("Submit it with: sbatch ") for line in lines)

    # A fake srun and bnno record what array task 2 would run.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    for name in ("srun", "bnno"):
        fake = bin_dir / name
        fake.write_text(f'#!/bin/bash\nprintf "%s\\n" "{name}" "$@" >> {calls}\n'
                        + ('exec "${@:2}"\n' if name == "srun" else ""))
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "2"}
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    recorded = calls.read_text().splitlines()
    expected = sweep_lib.train_command(sweep, sweep.points()[2])
    assert recorded == ["srun", "--ntasks=1", *expected, "bnno", *expected[1:]]

    result = subprocess.run(["bash", str(script)], env={**env, "SLURM_ARRAY_TASK_ID": "9"},
                            capture_output=True, text=True)
    assert result.returncode == 2 and "No run for array task 9" in result.stderr
    result = subprocess.run(["bash", str(script)], env={k: v for k, v in env.items() if k != "SLURM_ARRAY_TASK_ID"},
                            capture_output=True, text=True)
    assert result.returncode != 0 and "submit this script with sbatch" in result.stderr


def test_slurm_array_asks_for_a_warning_signal_requeue_and_appending_logs(tmp_path):
    text = sweep_lib.write_slurm(make_sweep(tmp_path), echo=lambda line: None).read_text()
    options = {}
    for line in text.splitlines():
        if line.startswith("#SBATCH"):
            key, _, value = line[len("#SBATCH"):].strip().partition("=")
            options[key] = value
    # USR1 to the job step's tasks (bnno itself), not "B:USR1" (only the batch shell).
    signal, _, seconds = options["--signal"].partition("@")
    assert signal == "USR1" and int(seconds) >= 60
    assert "--requeue" in options
    assert options["--open-mode"] == "append"


def run_array_task(tmp_path, bnno_exit, scontrol_exit=0, **slurm):
    """Array task 2 of a sweep's script, with a fake ``srun`` (runs its command), a fake
    ``bnno`` that exits with ``bnno_exit`` and a fake ``scontrol`` that records its
    arguments; returns the result and scontrol's calls."""
    script = sweep_lib.write_slurm(make_sweep(tmp_path), echo=lambda line: None)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.txt"
    bodies = {"srun": 'exec "${@:2}"\n', "bnno": f"exit {bnno_exit}\n",
              "scontrol": f'printf "%s\\n" "$*" >> {calls}\nexit {scontrol_exit}\n'}
    for name, body in bodies.items():
        fake = bin_dir / name
        fake.write_text("#!/bin/bash\n" + body)
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "2",
           "SLURM_JOB_ID": "1234", **slurm}
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, cwd=tmp_path)
    return result, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("slurm, job", [({"SLURM_ARRAY_JOB_ID": "1230"}, "1230_2"), ({}, "1234")])
def test_a_slurm_array_task_stopped_by_a_signal_requeues_itself_and_succeeds(tmp_path, slurm, job):
    result, calls = run_array_task(tmp_path, bnno_exit=75, **slurm)
    assert result.returncode == 0, result.stderr
    assert calls == [f"requeue {job}"]
    assert f"requeueing job {job}" in result.stdout


@pytest.mark.parametrize("bnno_exit", [0, 1, 2])
def test_a_slurm_array_task_passes_other_exit_statuses_through_without_requeue(tmp_path, bnno_exit):
    result, calls = run_array_task(tmp_path, bnno_exit=bnno_exit, SLURM_ARRAY_JOB_ID="1230")
    assert result.returncode == bnno_exit
    assert calls == []


def test_a_slurm_array_task_that_cannot_requeue_says_so_and_exits_75(tmp_path):
    result, calls = run_array_task(tmp_path, bnno_exit=75, scontrol_exit=1, SLURM_ARRAY_JOB_ID="1230")
    assert result.returncode == 75
    assert calls == ["requeue 1230_2"]
    assert "Could not requeue job 1230_2: submit this script again" in result.stderr


def test_local_executor_skips_finished_runs_and_marks_failures(tmp_path):
    from bnno.errors import RunError

    sweep = make_sweep(tmp_path, grid={"threshold": ["1e-8", "1e-6", "1e-5"]})
    trained = []

    def fake_train(run):
        trained.append(run.output_dir.name)
        if run.hparams["threshold"] == 1e-5:
            raise RunError("The loss became nan.")
        return {"epochs": 1, "history": [{"val_accuracy": "0.5"}]}

    lines = []
    manifest = sweep_lib.run_local(sweep, echo=lines.append, train=fake_train)
    assert [r["state"] for r in manifest["runs"]] == ["done", "done", "failed"]
    assert lines[1] .startswith("run 1/3 threshold=1e-08: done, val_accuracy 0.500, ")
    assert lines[-1] == "run 3/3 threshold=1e-05: failed: The loss became nan."
    assert trained == ["threshold=1e-08_seed=0", "threshold=1e-06_seed=0", "threshold=1e-05_seed=0"]

    trained.clear()
    lines.clear()
    sweep_lib.run_local(sweep, echo=lines.append, train=fake_train)
    assert trained == ["threshold=1e-05_seed=0"]  # only the failed one again
    assert lines[0] == "run 1/3 threshold=1e-08: finished earlier, skipped"
    on_disk = yaml.safe_load(pathlib.Path(sweep.output_dir / "sweep.yaml").read_text())
    assert on_disk["runs"][0]["val_accuracy"] == 0.5


def _history_without_times(run_dir):
    import csv

    with open(run_dir / "history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_a_local_sweep_runs_every_point_skips_them_again_and_resumes_after_a_kill(tmp_path):
    import sys

    from tests.imagefolders import make_image_folder

    folder = make_image_folder(tmp_path / "stripes")
    env = {**os.environ, "TF_DETERMINISTIC_OPS": "1"}

    def sweep_command(out):
        return ["sweep", "binarynet", "--dataset", str(folder), "--hparams-set", "bop",
                "--hparams", "filters=8,dense_units=16,epochs=2,batch_size=20",
                "--grid", "threshold=1e-8,1e-2", "--grid", "gamma=1e-3,1e-2",
                "--max-steps", "3", "--output-dir", str(out)]

    whole = tmp_path / "whole"
    result = subprocess.run([sys.executable, "-m", "bnno", *sweep_command(whole)], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if ": done" in line] == [
        "run 1/4 threshold=1e-08 gamma=0.001", "run 2/4 threshold=1e-08 gamma=0.01",
        "run 3/4 threshold=0.01 gamma=0.001", "run 4/4 threshold=0.01 gamma=0.01",
    ]
    assert lines[-1] == f"All 4 runs finished; see them with: bnno report {whole}"
    manifest = yaml.safe_load((whole / "sweep.yaml").read_text())
    assert [r["state"] for r in manifest["runs"]] == ["done"] * 4
    names = [r["name"] for r in manifest["runs"]]
    assert names[0] == "threshold=1e-08_gamma=0.001_seed=0"
    assert all((whole / name / "checkpoints" / "ckpt-2.index").exists() for name in names)

    from click.testing import CliRunner

    from bnno.cli import cli

    again = CliRunner().invoke(cli, sweep_command(whole))  # in this process: nothing left to train
    assert again.exit_code == 0, again.output
    assert sum(": finished earlier, skipped" in line for line in again.output.splitlines()) == 4

    killed_dir = tmp_path / "killed"
    # Killed right after the 3rd checkpoint of the whole process: with 2 epochs a run, the
    # first of the second run.
    killed = subprocess.run([*instrumented.at_checkpoint(3), *sweep_command(killed_dir)], env=env,
                            capture_output=True, text=True)
    assert killed.returncode == -9
    states = [r["state"] for r in yaml.safe_load((killed_dir / "sweep.yaml").read_text())["runs"]]
    assert states == ["done", "running", "pending", "pending"]
    resumed = subprocess.run([sys.executable, "-m", "bnno", *sweep_command(killed_dir)], env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "run 2/4 threshold=1e-08 gamma=0.01: resuming" in resumed.stdout
    for name in names:
        assert _history_without_times(killed_dir / name) == _history_without_times(whole / name), name

    changed = CliRunner().invoke(cli, [*sweep_command(whole)[:-2], "--seeds", "2", "--output-dir", str(whole)])
    assert changed.exit_code == 2
    assert "holds a sweep with another definition (seeds: 1 -> 2)" in changed.output


def test_a_stage2_grid_starts_every_run_from_one_stage1_run(tmp_path, monkeypatch):
    """``bnno sweep --init-from``: every run (local, printed, Slurm) starts from the same
    weights, named by their absolute path; a changed source is another sweep."""
    from click.testing import CliRunner

    from bnno.cli import cli

    stage1 = tmp_path / "stage1"  # a finished run, as --init-from finds one (nothing is read yet)
    stage1.mkdir()
    (stage1 / "hparams.yaml").write_text(yaml.safe_dump({"model": "resnet18_tricks", "hparams": {"epochs": 1}}))
    (stage1 / "model.keras").write_bytes(b"")
    monkeypatch.chdir(tmp_path)

    def sweep(source, output="sweep"):
        return CliRunner().invoke(cli, [
            "sweep", "resnet18_tricks", "--dataset", "cifar10", "--hparams-set", "stage2_bop",
            "--grid", "threshold=1e-8,1e-7", "--init-from", source, "--executor", "print",
            "--output-dir", str(tmp_path / output)])

    result = sweep("stage1")
    assert result.exit_code == 0, result.output
    commands = [shlex.split(line) for line in result.output.splitlines()]
    assert len(commands) == 2
    assert all(command[command.index("--init-from") + 1] == str(stage1) for command in commands)
    assert yaml.safe_load((tmp_path / "sweep" / "sweep.yaml").read_text())["init_from"] == str(stage1)

    plan = make_sweep(tmp_path, init_from=str(stage1))
    assert {sweep_lib.make_run(plan, point).init_from for point in plan.points()} == {str(stage1)}

    other = tmp_path / "other"
    shutil.copytree(stage1, other)
    changed = sweep("other")
    assert changed.exit_code == 2 and f"init_from: '{stage1}' -> '{other}'" in changed.output
    missing = sweep("nowhere", output="sweep2")
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert "Error: --init-from nowhere does not exist" in missing.output
    assert not (tmp_path / "sweep2").exists()
