"""The ``bnno`` command line. Commands parse, call library code and print; no
training logic lives here. TensorFlow is imported inside commands only, so that
``bnno --help`` answers at once.

Library errors become one-sentence messages: ``bnno.errors.UsageError`` exits 2,
``bnno.errors.RunError`` exits 1, and a run stopped by a signal after its checkpoint
(``bnno.errors.Interrupted``) exits 75 (``REQUEUE_EXIT_CODE``); none prints a traceback.
"""

import functools
import inspect
import json
import os
import pathlib
import shlex
import subprocess
import sys

import click

from bnno import __version__
from bnno.config.options import click_options
from bnno.errors import REQUEUE_EXIT_CODE, Interrupted, RunError, UsageError

LIST_TOPICS = ("models", "hparams", "preprocess", "datasets")


def _quiet_tensorflow():
    # TensorFlow's C++ start-up chatter (CUDA probing, CPU features) is noise to users.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _reporting_errors(command):
    """Turn bnno's errors into click's: usage errors exit 2, run errors exit 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        if not kwargs.get("verbose"):
            _quiet_tensorflow()
        try:
            return command(*args, **kwargs)
        except UsageError as error:
            raise click.UsageError(str(error)) from None
        except RunError as error:
            raise click.ClickException(str(error)) from None
        except Interrupted as error:  # a signal; the checkpoint of the step is written
            click.echo(str(error), err=True)
            sys.exit(REQUEUE_EXIT_CODE)
        except KeyboardInterrupt:
            raise click.ClickException(
                "Interrupted. The checkpoints written so far are kept; run the same command "
                "with the same --output-dir to resume."
            ) from None

    return wrapper


#: Commands that run on Keras's JAX backend (KERAS_BACKEND=jax); the others need TensorFlow.
JAX_COMMANDS = ("benchmark",)


def _starting_tensorflow(command):
    """Adds ``--verbose`` to a command that imports TensorFlow; without it, TensorFlow
    is imported first with its start-up chatter filtered out (``bnno.quiet``; nothing
    is imported under ``KERAS_BACKEND=jax``, where a missing jax is a usage error)."""

    @click.option("--verbose", is_flag=True,
                  help="Keep TensorFlow's start-up messages (CUDA, oneDNN, CPU features).")
    @functools.wraps(command)
    def wrapper(*args, verbose, **kwargs):
        from bnno import quiet

        quiet.check_jax_installed()  # with --verbose too: one sentence, not Keras's traceback
        name = command.__name__.rstrip("_")
        if quiet.jax_requested() and name not in JAX_COMMANDS:
            raise UsageError(
                f"bnno {name} runs on TensorFlow only (so far only {', '.join(JAX_COMMANDS)} runs "
                "on Keras's JAX backend); unset KERAS_BACKEND."
            )
        if not verbose:
            quiet.start_tensorflow()
        return command(*args, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bnno")
def cli():
    """bnno: binarized neural networks trained with Bop (Helwegen et al., NeurIPS 2019).

    \b
    Reproduce the paper, e.g.:
      bnno train binarynet --dataset cifar10 --hparams-set bop --hparams threshold=1e-6,gamma=1e-3
      bnno train birealnet --dataset imagenet2012 --hparams-set bop
    """


def plugin_option(command):
    """Adds ``--plugin`` (repeatable) to a command that names a model, and imports the
    plugins (with those of ``BNNO_PLUGINS`` and installed entry points) before the
    command runs; the command receives the ``--plugin`` ones as ``plugins`` if it
    takes them. Innermost, so that TensorFlow is started quietly first."""
    takes_plugins = "plugins" in inspect.signature(command).parameters

    @click.option("--plugin", "plugin_names", multiple=True, metavar="FILE|MODULE",
                  help="Import your own models from a Python file or module (repeatable; also "
                  "BNNO_PLUGINS and the bnno.plugins entry points); see docs/own-model.md.")
    @functools.wraps(command)
    def wrapper(*args, plugin_names, **kwargs):
        from bnno import plugins

        loaded = plugins.load(plugin_names)
        if takes_plugins:
            kwargs["plugins"] = loaded
        return command(*args, **kwargs)

    return wrapper


def _model_name(name: str, output_dir=None) -> str:
    """The registered name of model ``name``. A run directory whose record names a
    plugin that is not loaded answers with the ``--plugin`` to add (nothing is imported
    because a record names it)."""
    from bnno import models, plugins, run_dir

    if output_dir is not None and (pathlib.Path(output_dir).expanduser() / run_dir.HPARAMS_FILE).exists():
        try:
            record = run_dir.read_record(pathlib.Path(output_dir).expanduser())
        except RunError:
            record = {}
        if record.get("model") == name:
            plugins.check_record(record, str(output_dir))
    try:
        return models.canonical(name)
    except UsageError as error:
        if "Did you mean" in str(error):  # a typo of a known name
            raise
        raise UsageError(f"{str(error).rstrip('.')}; a model of your own needs --plugin FILE "
                         "(see docs/own-model.md).") from None


def _resolve_hparams(model: str, hparams_set, overrides: str, hparams_file):
    """(set name, validated hyperparameters): ``hparams_set``, or the default set of the
    model (of ``hparams_file``, a user's YAML file of sets, when given)."""
    from bnno import config as hparams

    if hparams_set is None:
        hparams_set = hparams.default_set(model, hparams_file)
    return hparams_set, hparams.resolve(model, hparams_set, overrides, file=hparams_file)


def _preprocess_name(preprocess, dataset: str) -> str:
    """``preprocess``, or the default preprocess function of ``dataset`` when None."""
    from bnno import data

    return data.default_preprocess(dataset) if preprocess is None else preprocess


hparams_set_option = click.option(
    "--hparams-set", default=None, metavar="SET",
    help="Named hyperparameter set of the model, or of --hparams-file (default: its default "
    "set; see `bnno list hparams`).",
)
hparams_file_option = click.option(
    "--hparams-file", default=None, metavar="FILE",
    help="A YAML file of your own sets, laid out like bnno's hparams/<model>.yaml; a set may "
    "extend a built-in one (extends: binarynet:bop).",
)
hparams_option = click.option(
    "--hparams", "overrides", default="", metavar="K=V,...",
    help="Override hyperparameters of the set, e.g. threshold=1e-6,gamma=1e-3,epochs=1.",
)
dataset_option = click.option(
    "--dataset", required=True, metavar="DATASET",
    help="A tensorflow-datasets name (cifar10, cifar10:3.0.2, imagenet2012, mnist) or an "
    "image folder laid out <split>/<class>/<image>.",
)
# Options that some other commands share with train (defined in bnno.config.options).
preprocess_option = click_options("preprocess")
image_size_option = click_options("image_size")
strategy_option = click_options("strategy")
mixed_precision_option = click_options("mixed_precision")
jit_compile_option = click_options("jit_compile")
binary_conv_option = click_options("binary_conv")
data_dir_option = click_options("data_dir")


def run_options(command):
    """The options of ``bnno train`` that every run of a command shares (``train``,
    ``sweep``), each defined once in :mod:`bnno.config.options`; they arrive as
    keyword arguments named like ``run_dir.Run``'s fields.

    ``--tensorboard`` also takes a value, ``--tensorboard=True`` or ``=False``, as the
    command lines of "A Bop and Beyond"'s README write it (a click on/off flag takes
    none); ``--no-tensorboard`` wins over it."""
    return click_options()(command)


def _absolute_file(path):
    return str(pathlib.Path(path).expanduser().resolve()) if path else None


def _absolute_source(path):
    """``--init-from`` of a sweep, checked now (not by its first run, maybe hours later
    on another node) and absolute, for runs started elsewhere."""
    if path is None:
        return None
    from bnno import init_from

    init_from.locate(path)
    return _absolute_file(path)


@cli.command()
@click.argument("model")
@dataset_option
@hparams_set_option
@hparams_option
@hparams_file_option
@click.option("--output-dir", "--logdir", "output_dir", type=click.Path(file_okay=False), default=None,
              metavar="DIR", help="The run's directory; the same directory again resumes the run.")
@click.option("--output-prefix", default="~/bnno-logs", show_default=True, metavar="DIR",
              help="Without --output-dir, runs go to PREFIX/<dataset>/<model>/<set>_<timestamp>.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights, shuffling and augmentation.")
@click.option("--init-from", default=None, metavar="PATH",
              help="Start from the weights of a run directory (its model.keras, or its newest "
              "checkpoint) or a .keras or .weights.h5 file: layers that match are copied, Bop's "
              "binary kernels take their signs, the optimizer starts fresh; a resumed run ignores it.")
@run_options
@_reporting_errors
@_starting_tensorflow
@plugin_option
def train(model, dataset, hparams_set, overrides, hparams_file, output_dir, output_prefix, seed, init_from,
          **options):
    """Train MODEL (binarynet, binary_alexnet, xnornet, birealnet, resnet18_tricks) on a data set."""
    from bnno import lifecycle, plugins, run_dir

    model = _model_name(model, output_dir)
    hparams_set, resolved = _resolve_hparams(model, hparams_set, overrides, hparams_file)
    options["preprocess"] = _preprocess_name(options["preprocess"], dataset)
    if output_dir is None:
        output_dir = run_dir.default_output_dir(output_prefix, dataset, model, hparams_set)
    run = run_dir.Run(
        model=model, dataset=dataset, hparams_set=hparams_set, hparams=resolved,
        output_dir=pathlib.Path(output_dir).expanduser(), overrides=resolved.overrides,
        hparams_file=_absolute_file(hparams_file), seed=seed, init_from=init_from,
        plugin=plugins.record_of(model), command_line=shlex.join(["bnno", *sys.argv[1:]]), **options,
    )
    result = lifecycle.train(run, echo=click.echo)
    last = result["history"][-1] if result["history"] else {}
    click.echo(
        f"Finished {result['epochs']} epochs; val_accuracy {last.get('val_accuracy', '?')}; "
        f"outputs in {run.output_dir}"
    )


@cli.command()
@click.argument("model")
@dataset_option
@hparams_set_option
@hparams_option
@hparams_file_option
@click.option("--grid", "grid_items", multiple=True, metavar="KEY=V1,V2,...",
              help="Values of one hyperparameter to sweep; repeat for a cross product.")
@click.option("--grid-set", default=None, metavar="NAME",
              help="A named grid of the model's sets, e.g. the paper's sec51_threshold and "
              "sec51_gamma (see `bnno list hparams`); its --log-every, if it has one, unless given.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs per point of the grid, with seeds 0..N-1.")
@click.option("--output-dir", "output_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="The sweep's directory: one run directory per point and sweep.yaml.")
@click.option("--init-from", default=None, metavar="PATH",
              help="Start every run from these weights, as `bnno train --init-from` does (e.g. a "
              "stage-2 grid from one stage-1 run).")
@click.option("--executor", default="local", show_default=True, metavar="local|print|slurm",
              help="local: train the runs here one after another; print: print one bnno train "
              "command per run; slurm: write a job-array batch script.")
@run_options
@_reporting_errors
@_starting_tensorflow
@plugin_option
def sweep(model, dataset, hparams_set, overrides, hparams_file, grid_items, grid_set, seeds,
          output_dir, init_from, executor, plugins, **options):
    """Train MODEL at every point of a hyperparameter grid (section 5.1 of the paper).

    \b
    e.g. bnno sweep binarynet --dataset cifar10 --grid-set sec51_threshold --output-dir runs/sec51
         bnno sweep binarynet --dataset cifar10 --grid threshold=1e-8,1e-6 --grid gamma=1e-3,1e-4 \\
             --hparams epochs=50 --output-dir runs/grid --executor slurm
    Running the same command again skips finished runs and resumes an interrupted one.
    """
    from bnno import config as hp
    from bnno import lifecycle
    from bnno import sweep as sweep_lib
    from bnno.registry import unknown_choice_message

    if executor not in sweep_lib.EXECUTORS:
        raise UsageError(unknown_choice_message("executor", executor, list(sweep_lib.EXECUTORS)))
    model = _model_name(model)
    grid, fixed = {}, {}
    if grid_set is not None:
        named = hp.grid_set(model, grid_set, hparams_file)
        hparams_set = hparams_set or named["hparams_set"]
        fixed = {key: sweep_lib.format_value(value) for key, value in named["hparams"].items()}
        grid = {key: list(values) for key, values in named["grid"].items()}  # typed by YAML
        if options["log_every"] is None:  # the grid's own, e.g. per step for the paper's Figure 1
            options["log_every"] = named["log_every"]
    grid.update(sweep_lib.parse_grid(grid_items))
    hparams_set = hparams_set or hp.default_set(model, hparams_file)
    overrides = {**fixed, **hp.parse_overrides(overrides)}
    options["preprocess"] = _preprocess_name(options["preprocess"], dataset)
    hparams_file = _absolute_file(hparams_file)
    plan = sweep_lib.Sweep(
        model=model, dataset=lifecycle.absolute_if_folder(dataset), hparams_set=hparams_set,
        grid=sweep_lib.typed_grid(model, hparams_set, overrides, grid, hparams_file),
        output_dir=pathlib.Path(output_dir).expanduser().resolve(), seeds=seeds, overrides=overrides,
        hparams_file=hparams_file, options=options,
        # Checked now, not by the first run; absolute, for runs started elsewhere (Slurm).
        init_from=_absolute_source(init_from),
        # Every run's command names them again (Slurm runs it on other nodes).
        plugins=[plugin.given for plugin in plugins],
    )
    if executor == "print":
        sweep_lib.print_commands(plan, echo=click.echo)
    elif executor == "slurm":
        sweep_lib.write_slurm(plan, echo=click.echo)
    else:
        manifest = sweep_lib.run_local(plan, echo=click.echo)
        failed = [run["name"] for run in manifest["runs"] if run["state"] == "failed"]
        if failed:
            raise RunError(
                f"{len(failed)} of {len(manifest['runs'])} runs failed ({', '.join(failed)}); the others "
                f"are in {plan.output_dir}. Run the same command again to retry them."
            )
        click.echo(f"All {len(manifest['runs'])} runs finished; see them with: bnno report {plan.output_dir}")


@cli.command(name="list")
@click.argument("topic", required=False, default=None, metavar="[models|hparams|preprocess|datasets]")
@_reporting_errors
@_starting_tensorflow
@plugin_option
def list_(topic):
    """What is registered: models, hyperparameter sets with their values, preprocess
    functions and data sets."""
    from bnno.registry import unknown_choice_message

    topics = LIST_TOPICS if topic is None else (topic,)
    for name in topics:
        if name not in LIST_TOPICS:
            raise UsageError(unknown_choice_message("topic", name, list(LIST_TOPICS)))
    for name in topics:
        click.echo(f"{name}:")
        for line in _LISTERS[name]():
            click.echo(f"  {line}")


def _list_models():
    from bnno import models

    from bnno import plugins

    for name in models.names():
        aliases = [a for a, target in models.ALIASES.items() if target == name]
        plugin = plugins.plugin_of(name)
        yield (name + (f" (also: {', '.join(aliases)})" if aliases else "")
               + (f" (plugin {plugin.given})" if plugin else ""))


def _default_first(names, default):
    """(name, label) of each of ``names``: ``default`` first, labelled "(default)"."""
    yield default, f"{default} (default)"
    yield from ((name, name) for name in names if name != default)


def _list_hparams():
    from bnno import config as hparams

    for model in hparams.model_names():  # a plugin's sets are in its --hparams-file
        for set_name, label in _default_first(hparams.set_names(model), hparams.default_set(model)):
            values = hparams.load(model, set_name)
            yield f"{model} {label}: " + ", ".join(f"{k}={v}" for k, v in values.items())
        for grid_name in hparams.grid_names(model):
            grid = hparams.grid_set(model, grid_name)
            fixed = "".join(f", {k}={v}" for k, v in grid["hparams"].items())
            swept = "; ".join(f"{k} in {v}" for k, v in grid["grid"].items())
            logged = f"; --log-every {grid['log_every']}" if grid["log_every"] else ""
            yield (f"{model} grid {grid_name} (bnno sweep --grid-set): set {grid['hparams_set']}{fixed}; "
                   f"{swept}{logged}")


def _list_preprocess():
    from bnno import data

    def functions(dataset):
        names = _default_first(data.preprocess_names(dataset), data.default_preprocess(dataset))
        return ", ".join(label for _, label in names)

    for dataset in data.known_datasets():
        yield f"{dataset}: {functions(dataset)}"
    yield f"other data sets and image folders: {functions('mnist')}"


def _list_datasets():
    from bnno import data

    yield from data.known_datasets()
    yield "any tensorflow-datasets image-classification name (e.g. mnist, fashion_mnist)"
    yield "an image folder laid out <split>/<class>/<image> (train plus test or validation)"


_LISTERS = {
    "models": _list_models, "hparams": _list_hparams,
    "preprocess": _list_preprocess, "datasets": _list_datasets,
}


@cli.command()
@click.argument("model")
@dataset_option
@hparams_set_option
@hparams_option
@hparams_file_option
@preprocess_option
@data_dir_option
@image_size_option
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of the totals.")
@_reporting_errors
@_starting_tensorflow
@plugin_option
def summary(model, dataset, hparams_set, overrides, hparams_file, preprocess, data_dir, image_size,
            as_json):
    """Per-layer bits, parameters, MACs and memory of MODEL for a data set's input
    shape and classes (no download needed)."""
    from bnno import data, models
    from bnno.nn import summary as bnn_summary

    model = _model_name(model)
    _, resolved = _resolve_hparams(model, hparams_set, overrides, hparams_file)
    input_shape, num_classes = data.describe(
        dataset, preprocess=_preprocess_name(preprocess, dataset), data_dir=data_dir,
        image_size=image_size,
    )
    keras_model = models.build(model, resolved, input_shape, num_classes)
    result = bnn_summary.summary(keras_model, print_fn=click.echo)
    if as_json:
        click.echo(json.dumps(result["totals"]))


@cli.command()
@click.argument("model")
@hparams_set_option
@hparams_option
@hparams_file_option
@click.option("--dataset", default=None, metavar="DATASET",
              help="Whose input shape and classes to use (default: cifar10 for binarynet, "
              "imagenet2012 for the others); no download needed.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, metavar="B",
              help="Global batch (default: the set's batch_size).")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Timed training steps, after the warm-up.")
@click.option("--warmup", type=click.IntRange(min=1), default=3, show_default=True,
              help="Untimed first steps (tracing and compilation).")
@click.option("--pipeline", is_flag=True, help="Also time the input pipeline.")
@click.option("--inference", is_flag=True,
              help="Instead: latency per image (batch 1) of MODEL given as a run directory or a "
              ".tflite from bnno export, as a 1-bit model in the Larq Compute Engine, as a float "
              "TFLite model and as the Keras model (needs the deploy extra).")
@click.option("--threads", default="1,2", show_default=True, metavar="N,...",
              help="With --inference: the thread counts to time.")
@preprocess_option
@strategy_option
@mixed_precision_option
@jit_compile_option
@binary_conv_option
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of the figures.")
@_reporting_errors
@_starting_tensorflow
@plugin_option
def benchmark(model, hparams_set, overrides, hparams_file, dataset, batch_size, steps, warmup,
              pipeline, inference, threads, preprocess, strategy, mixed_precision, jit_compile, binary_conv,
              as_json, plugins):
    """Training images per second of MODEL on synthetic in-memory data (and, with
    --pipeline, of the input pipeline).

    With KERAS_BACKEND=jax (the jax extra): Keras's jitted training step on JAX,
    without TensorFlow; the JSON names the backend and device.

    With --inference, MODEL is a run directory or a .tflite written by bnno export:
    milliseconds per image at batch 1 and each of --threads, of the engine's 1-bit
    model, the float TFLite model and the Keras model, --warmup then --steps runs each."""
    from bnno import benchmark as bench

    if inference:
        training_only = {"--hparams-set": hparams_set, "--hparams": overrides, "--hparams-file": hparams_file,
                         "--dataset": dataset, "--batch-size": batch_size, "--pipeline": pipeline}
        given = [name for name, value in training_only.items() if value]
        if given:
            raise UsageError(f"{', '.join(given)} time training, not --inference; leave "
                             f"{'it' if len(given) == 1 else 'them'} out.")
        _benchmark_inference(model, threads, warmup, steps, plugins, as_json)
        return

    model = _model_name(model)
    hparams_set, resolved = _resolve_hparams(model, hparams_set, overrides, hparams_file)
    dataset = dataset or bench.DEFAULT_DATASETS.get(model, bench.IMAGENET)
    if bench.on_tensorflow():  # bnno.data imports TensorFlow
        preprocess = _preprocess_name(preprocess, dataset)
    result = bench.benchmark(
        model, hparams_set, resolved, dataset=dataset, batch_size=batch_size, steps=steps,
        warmup=warmup, pipeline=pipeline, preprocess=preprocess, strategy=strategy,
        mixed_precision=mixed_precision, jit_compile=jit_compile, binary_conv=binary_conv,
        echo=click.echo,
    )
    click.echo(
        f"{model} ({hparams_set}), batch {result['batch_size']}: "
        f"{result['images_per_second']:.1f} images/s training "
        f"(median step {result['step_seconds_median'] * 1000:.0f} ms over {steps} steps; "
        f"{result['binary_conv']} binary convolutions)"
    )
    if pipeline:
        click.echo(f"input pipeline ({result['preprocess']}): {result['pipeline_images_per_second']:.1f} images/s")
    if as_json:
        click.echo(json.dumps(result))


def _benchmark_inference(target, threads, warmup, steps, plugins, as_json):
    from bnno import benchmark as bench
    from bnno import export as exporting
    from bnno import inference

    if not bench.on_tensorflow():
        raise UsageError("--inference needs TensorFlow (it converts the model): unset KERAS_BACKEND.")
    try:
        counts = [int(count) for count in threads.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise UsageError(f"--threads takes whole numbers of at least 1 separated by commas, e.g. 1,2; not {threads!r}.")
    if not pathlib.Path(target).exists():
        raise UsageError(f"--inference times a run directory or a .tflite file; {target} does not exist.")
    exporting.require_engine("--inference")
    result = inference.latency(target, threads=counts, warmup=warmup, repeats=steps,
                               plugins=[plugin.given for plugin in plugins if plugin.option], echo=click.echo)
    for line in inference.latency_lines(result):
        click.echo(line)
    if as_json:
        click.echo(json.dumps(result))


@cli.command()
@click.argument("path", required=False, type=click.Path(exists=True, path_type=pathlib.Path),
                metavar="[RUN_DIR|MODEL.tflite]")
@click.option("--output-dir", "--logdir", "output_dir", default=None,
              type=click.Path(exists=True, file_okay=False, path_type=pathlib.Path), metavar="DIR",
              help="A run's directory (or give it as the argument).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Where tensorflow-datasets keeps prepared data sets (default: the one the run "
              "was trained with).")
@click.option("--dataset", default=None, metavar="DATASET",
              help="For a .tflite only: the data set to evaluate on (default: the one bnno export "
              "stored in it).")
@preprocess_option
@image_size_option
@_reporting_errors
@_starting_tensorflow
@plugin_option
def evaluate(path, output_dir, data_dir, dataset, preprocess, image_size):
    """Top-1 and top-5 accuracy on the validation split of a finished or running run,
    or of a model written by `bnno export` (a .tflite, run by the Larq Compute Engine)."""
    from bnno import inference, lifecycle

    if (path is None) == (output_dir is None):
        raise UsageError("Give one run directory or .tflite file to evaluate (as the argument or --output-dir).")
    path = path or output_dir
    if inference.is_flatbuffer_path(path):
        results = inference.evaluate_flatbuffer(path, data_dir=data_dir, dataset=dataset, preprocess=preprocess,
                                                image_size=image_size, echo=click.echo)
        click.echo(
            f"{path.name} on {results['dataset']} ({results['images']} validation images, Larq Compute "
            f"Engine): top-1 {results['accuracy']:.4f}, top-5 {results['top5_accuracy']:.4f}"
        )
        return
    if dataset or preprocess or image_size:
        raise UsageError("--dataset, --preprocess-fn and --image-size are for a .tflite; a run is evaluated "
                         "on the data it was trained on.")
    results = lifecycle.evaluate(path, data_dir=data_dir, echo=click.echo)
    click.echo(
        f"epoch {results['epoch']}: top-1 {results['accuracy']:.4f}, "
        f"top-5 {results['top5_accuracy']:.4f}, loss {results['loss']:.4f}"
    )


@cli.command(name="export")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=pathlib.Path), metavar="RUN_DIR")
@click.option("--format", "fmt", default="lce", show_default=True, metavar="lce|saved_model|keras",
              help="lce: a TFLite flatbuffer with the Larq Compute Engine's binary ops (needs the "
              "deploy extra); saved_model: the inference graph; keras: a .keras file.")
@click.option("--output", required=True, type=click.Path(path_type=pathlib.Path), metavar="PATH",
              help="Where to write it (a new path for saved_model).")
@click.option("--checkpoint", default=None, metavar="PREFIX",
              help="An epoch's checkpoint (RUN_DIR/checkpoints/ckpt-N) instead of the final weights.")
@click.option("--check-images", type=click.IntRange(min=1), default=300, show_default=True, metavar="N",
              help="Validation images on which the export must agree with the Keras model (lce).")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of the account.")
@_reporting_errors
@_starting_tensorflow
@plugin_option
def export_(run, fmt, output, checkpoint, check_images, as_json):
    """Write a run's model for deployment: with --format lce a real 1-bit model (binary
    convolutions and dense layers as LceBconv2d), checked against the Keras model."""
    from bnno import export as exporting

    result = exporting.export(run, fmt, output, checkpoint=checkpoint, check_images=check_images,
                              echo=click.echo)
    for line in exporting.report_lines(result, output):
        click.echo(line)
    if as_json:
        click.echo(json.dumps(result))


@cli.command()
@click.argument("datasets", nargs=-1, required=True)
@data_dir_option
@_reporting_errors
@_starting_tensorflow
def prepare(datasets, data_dir):
    """Download and prepare data sets ahead of training (where there is network)."""
    from bnno import data

    data.prepare(list(datasets), data_dir=data_dir)
    click.echo(f"Prepared {', '.join(datasets)}" + (f" under {data_dir}" if data_dir else ""))


@cli.command()
@click.option("--logdir", default="~/bnno-logs", show_default=True, metavar="DIR",
              help="Directory of runs to show.")
@click.option("--port", type=int, default=6006, show_default=True)
@_reporting_errors
def tensorboard(logdir, port):
    """Start TensorBoard on the runs under DIR."""
    logdir = os.path.expanduser(logdir)
    if not os.path.isdir(logdir):
        raise UsageError(f"There are no runs at {logdir}; pass --logdir with a directory of runs.")
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--port", str(port)]
    sys.exit(subprocess.call(command))


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...",
                type=click.Path(exists=True, file_okay=False, path_type=pathlib.Path))
@click.option("--output", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              metavar="FILE", help="Write the report to FILE: .html (one self-contained file) or .md "
              "(Markdown linking the plots' PNGs).")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=pathlib.Path),
              default=None, metavar="DIR",
              help="Write the plots as PNGs into DIR (for .md, default: <name>_plots/ next to it).")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line of every run.")
@_reporting_errors
def report(paths, output, plots_dir, as_json):
    """Table, plots and paper comparison of runs: each PATH is a run directory or a
    directory of runs (a sweep). Reads only the runs' files; runs may still be training."""
    from bnno import report as reporting

    if output is not None:
        reporting.output_format(output)
    result = reporting.collect(paths)
    click.echo(result.table())
    for source in result.sources():
        click.echo(f"Paper: {source}")
    for note in result.notes():
        click.echo(note)
    if output is not None or plots_dir is not None:
        for path in reporting.write(result, output=output, plots_dir=plots_dir):
            click.echo(f"Wrote {path}")
    if as_json:
        click.echo(json.dumps(result.as_json()))


def main():
    cli()
