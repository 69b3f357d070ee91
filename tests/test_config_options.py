"""Run options (``bnno.config.options``), each defined once: ``bnno train`` and ``bnno
sweep`` take every one, a sweep's printed and Slurm commands carry every one, and a
run holds every one as a field, its identity the ones marked so."""

import dataclasses
import shlex

import click
import pytest
from click.testing import CliRunner

from bnno import run_dir
from bnno import sweep as sweep_lib
from bnno.cli import cli
from bnno.config import options


def example_value(option: options.Option):
    """A value of ``option`` other than its default, as a user could give it (text
    with a space, so that the command's quoting counts too)."""
    if isinstance(option.default, bool):
        return not option.default
    if isinstance(option.type, click.Choice):
        return next(choice for choice in option.type.choices if choice != option.default)
    if isinstance(option.type, (click.IntRange, click.types.IntParamType)):
        return 7
    if isinstance(option.type, (click.FloatRange, click.types.FloatParamType)):
        return 0.5
    if isinstance(option.type, options.CheckedText):
        return option.type.example
    return f"some {option.name} value"




@pytest.mark.parametrize("values", ["defaults", "others"])
def test_every_run_option_round_trips_through_a_sweeps_train_command(tmp_path, started_runs, values):
    """What `bnno sweep --executor print` (and slurm) writes, `bnno train` reads back as
    the same options: a new option cannot vanish from sweeps."""
    given = {
        option.name: option.default if values == "defaults" else example_value(option)
        for option in options.OPTIONS
    }
    if values == "others":
        assert all(given[option.name] != option.default for option in options.OPTIONS)
    plan = sweep_lib.Sweep(model="binarynet", dataset="cifar10", hparams_set="bop", grid={"threshold": [1e-6]},
                           output_dir=tmp_path / "sweep", overrides={"epochs": "1"}, options=given)
    (point,) = plan.points()
    line = shlex.join(sweep_lib.train_command(plan, point))
    arguments = shlex.split(line)  # as a shell (or the Slurm script's eval) splits it
    assert arguments[:2] == ["bnno", "train"]
    result = CliRunner().invoke(cli, arguments[1:])
    assert result.exit_code == 0, result.output
    (run,) = started_runs
    assert {name: getattr(run, name) for name in given} == given
    assert (run.seed, run.output_dir) == (0, tmp_path / "sweep" / point.name)


def test_train_and_sweep_take_every_run_option_and_a_run_holds_each_with_its_default():
    names = [option.name for option in options.OPTIONS]
    for command in ("train", "sweep"):
        parameters = [parameter.name for parameter in cli.commands[command].params]
        assert [name for name in parameters if name in names] == names  # in the definitions' order
    defaults = {field.name: field.default for field in dataclasses.fields(run_dir.Run)}
    assert {name: defaults[name] for name in names} == {option.name: option.default for option in options.OPTIONS}


def test_a_runs_identity_holds_exactly_the_options_marked_so():
    assert options.IDENTITY == ("preprocess", "image_size", "max_steps", "mixed_precision", "tf32")
    run_options_in_identity = [name for name in run_dir.Run.IDENTITY if name in {o.name for o in options.OPTIONS}]
    assert tuple(run_options_in_identity) == options.IDENTITY
    assert run_dir.Run.IDENTITY[:5] == ("model", "dataset", "hparams_set", "hparams", "seed")


def test_command_line_writes_booleans_away_from_their_defaults_and_values_that_are_set():
    assert options.command_line({
        "tf32": True, "max_steps": 5, "tensorboard": False, "data_dir": None, "mixed_precision": False,
        "strategy": "auto",
    }) == ["--no-tensorboard", "--max-steps", "5", "--strategy", "auto", "--tf32"]
    assert options.command_line({"tensorboard": True, "jit_compile": True}) == ["--jit-compile"]
    with pytest.raises(ValueError, match="Not run options: epochs"):
        options.command_line({"epochs": 3})


def test_the_options_module_imports_neither_tensorflow_nor_keras():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import bnno.config.options\n"
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
