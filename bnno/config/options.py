"""The options of ``bnno train`` that every run shares, each defined once.

An option is one field of :class:`RunOptions`: its name (the keyword argument that
``bnno train`` and ``bnno sweep`` receive, and the field of ``bnno.run_dir.Run``), its
type and its default; the field's :func:`run_option` adds the flag (its name, click
type, help), whether the option is part of a run's identity (what must match for a
run to be resumed), and so how it is written back on a command line. From these come

- the click options of ``bnno train`` and ``bnno sweep`` (:func:`click_options`), and
  those of other commands that take some of them (``summary``, ``benchmark``);
- the arguments that give a ``bnno train`` command the same values
  (:func:`command_line`), which ``bnno sweep``'s print and Slurm executors write;
- the fields of ``bnno.run_dir.Run``, which subclasses :class:`RunOptions`, and the
  options in its identity (:data:`IDENTITY`).

A new option is one more field here, e.g.::

    prefetch: Optional[int] = run_option(
        "--prefetch", type=click.IntRange(min=1), metavar="N",
        help="Batches prepared ahead of the training step.")

``bnno train --prefetch 4`` then arrives as ``Run.prefetch``, a sweep passes it to every
run (its print and Slurm commands write ``--prefetch 4``), and
tests/test_config_options.py checks that it round-trips.

Nothing here imports TensorFlow: ``bnno --help`` reads these at once.
"""

import dataclasses
import functools
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import click

from bnno import preemption
from bnno.errors import UsageError

__all__ = [
    "CheckedText", "IDENTITY", "OPTIONS", "Option", "RunOptions", "click_options", "command_line", "run_option",
]

#: Marks an attribute that is not given (``None`` is a value).
UNSET: Any = object()


@dataclasses.dataclass(frozen=True)
class Option:
    """One run option: the field it fills, and how it appears on a command line."""

    #: The field of ``RunOptions`` (and ``Run``) and the keyword argument of the commands.
    name: str
    #: The field's default, which ``Run`` takes when it is not given.
    default: Any
    #: click's declaration: ``"--max-steps"``, or ``"--tf32/--no-tf32"`` for an on/off switch.
    declaration: str
    help: str
    #: click's parameter type (None: text, or the switch's boolean).
    type: Any = None
    metavar: Optional[str] = None
    show_default: bool = False
    #: Part of the run's identity: resuming a run needs the same value.
    identity: bool = False
    #: The flag's default where it differs from the field's (``--preprocess-fn``: None,
    #: the data set's own function, which the command looks up).
    flag_default: Any = UNSET
    #: The value of the flag given without one (``--tensorboard`` alone: True), for a
    #: flag that also takes one (``--tensorboard=False``).
    bare: Any = UNSET
    #: A second flag that turns a boolean option off, and its help (``--no-tensorboard``).
    off: Optional[Tuple[str, str]] = None

    @property
    def is_switch(self) -> bool:
        return "/" in self.declaration

    @property
    def off_parameter(self) -> str:
        """The keyword argument of the ``off`` flag (``no_tensorboard``)."""
        return f"no_{self.name}"

    def click_decorators(self) -> List[Callable]:
        """The click option (and its ``off`` flag, if any)."""
        settings: Dict[str, Any] = {
            "default": self.default if self.flag_default is UNSET else self.flag_default, "help": self.help,
        }
        if self.show_default:
            settings["show_default"] = True
        if self.type is not None:
            settings["type"] = self.type
        if self.metavar is not None:
            settings["metavar"] = self.metavar
        if self.bare is not UNSET:
            settings.update(is_flag=False, flag_value=self.bare)
        decorators = [click.option(self.declaration, self.name, **settings)]
        if self.off is not None:
            flag, help_text = self.off
            decorators.append(click.option(flag, self.off_parameter, is_flag=True, help=help_text))
        return decorators

    def arguments(self, value: Any) -> List[str]:
        """The command-line arguments that give this option ``value``: none for a
        boolean at its default, or a value option at None."""
        if self.is_switch or self.off is not None:
            if value == self.default:
                return []
            on_flag, _, off_flag = self.declaration.partition("/")
            if self.off is not None:
                off_flag = self.off[0]
            return [on_flag if value else off_flag]
        return [] if value is None else [self.declaration, str(value)]


def run_option(declaration: str, *, help: str, default: Any = None, **flag: Any) -> Any:
    """A field of :class:`RunOptions` with its flag (the keyword arguments of
    :class:`Option`: ``type``, ``metavar``, ``show_default``, ``identity``, ...)."""
    return dataclasses.field(default=default, metadata={"flag": dict(declaration=declaration, help=help, **flag)})


class CheckedText(click.ParamType):
    """A text option checked and written in its canonical form by ``canonical`` (which
    raises ``UsageError``): a mistake is a usage error of the option, before any work.
    ``example``: a valid value other than the default, for tests and help."""

    def __init__(self, name: str, canonical: Callable[[str], str], example: str):
        self.name, self.canonical, self.example = name, canonical, example

    def convert(self, value, param, ctx):
        try:
            return self.canonical(value)
        except UsageError as error:
            self.fail(str(error), param, ctx)


@dataclasses.dataclass(kw_only=True)
class RunOptions:
    """The options of ``bnno train`` that every run of ``train`` and ``sweep`` shares.

    Keyword-only, so that ``Run`` (a subclass) keeps its own fields first."""

    preprocess: str = run_option(
        "--preprocess-fn", default="default", flag_default=None, metavar="NAME", identity=True,
        help="Preprocess function of the data set (default: the data set's, e.g. the paper's "
        "resize_and_flip for cifar10; see `bnno list preprocess`).")
    data_dir: Optional[str] = run_option(
        "--data-dir", type=click.Path(file_okay=False), metavar="DIR",
        help="Where tensorflow-datasets keeps prepared data sets (default: tfds's own).")
    data_cache: Optional[str] = run_option(
        "--data-cache", metavar="memory|DIR", help="Cache decoded data in memory or in files under DIR.")
    image_size: Optional[int] = run_option(
        "--image-size", type=click.IntRange(min=1), metavar="N", identity=True,
        help="Resize image-folder images to N x N (needed when their sizes differ).")
    # --tensorboard also takes a value, --tensorboard=True or =False, as the command
    # lines of "A Bop and Beyond"'s README write it (a click on/off flag takes none);
    # --no-tensorboard wins over it.
    tensorboard: bool = run_option(
        "--tensorboard", default=True, type=click.BOOL, bare=True, show_default=True, metavar="[BOOL]",
        off=("--no-tensorboard", "Write no TensorBoard events."),
        help="Write TensorBoard events (--tensorboard=false: none).")
    max_steps: Optional[int] = run_option(
        "--max-steps", type=click.IntRange(min=1), metavar="N", identity=True,
        help="Quick run: at most N training (and validation) steps per epoch.")
    log_every: Optional[int] = run_option(
        "--log-every", type=click.IntRange(min=1), metavar="N",
        help="Also write loss, accuracy and flip ratios (overall and per binary layer) to "
        "TensorBoard every N steps.")
    strategy: str = run_option(
        "--strategy", default="auto", show_default=True, metavar="NAME",
        help="tf.distribute strategy: auto, default, mirrored or multi_worker.")
    # Mixed precision also changes what a checkpoint holds; TensorFloat-32 the numerics.
    mixed_precision: bool = run_option(
        "--mixed-precision/--no-mixed-precision", default=False, show_default=True, identity=True,
        help="Compute in float16 on GPUs (bfloat16 elsewhere); weights stay float32.")
    jit_compile: bool = run_option(
        "--jit-compile/--no-jit-compile", default=False, show_default=True,
        help="Compile the training step with XLA.")
    # A bnno.nn.binary_conv mode: the results are the same in every mode.
    binary_conv: str = run_option(
        "--binary-conv", default="auto", show_default=True, metavar="MODE",
        help="Binary convolutions in exact bfloat16 (same results, faster on CPUs with AMX): "
        "auto, bfloat16 or float32.")
    tf32: bool = run_option(
        "--tf32/--no-tf32", default=False, show_default=True, identity=True,
        help="TensorFloat-32 matrix products on GPUs that have them (faster; off "
        "reproduces the paper's float32 numerics).")
    # Not part of the identity: a resumed run may save more or less often, or answer
    # other signals; the results are the same.
    checkpoint_every: str = run_option(
        "--checkpoint-every", default=preemption.DEFAULT_CHECKPOINT_EVERY, show_default=True,
        metavar="INTERVAL",
        type=CheckedText("interval", lambda text: str(preemption.CheckpointInterval.parse(text)), "500"),
        help="Also write a checkpoint inside epochs, every N steps (500) or every so long "
        "(90s, 10min, 2h); 'epoch': only at the end of each epoch. A kill loses at most this.")
    stop_signals: str = run_option(
        "--stop-signals", default=preemption.DEFAULT_STOP_SIGNALS, show_default=True,
        metavar="SIGNALS",
        type=CheckedText("signals", lambda text: ",".join(preemption.parse_signals(text)) or "none", "USR1"),
        help="Signals on which training saves a checkpoint of the current step and exits "
        "with code 75 (requeue); a second one stops at once. 'none': the signals' default.")


#: Every run option, in the order of ``bnno train --help``.
OPTIONS: Tuple[Option, ...] = tuple(
    Option(name=field.name, default=field.default, **field.metadata["flag"])
    for field in dataclasses.fields(RunOptions)
)
_BY_NAME = {option.name: option for option in OPTIONS}

#: The run options that a resumed run must share with the run in its directory.
IDENTITY: Tuple[str, ...] = tuple(option.name for option in OPTIONS if option.identity)


def click_options(*names: str) -> Callable:
    """A decorator adding the run options ``names`` (all of them by default) to a click
    command, which receives them as keyword arguments named like the fields (an
    ``off`` flag folded into its option: ``--no-tensorboard`` wins over ``--tensorboard``)."""
    chosen = [_BY_NAME[name] for name in names] if names else list(OPTIONS)
    with_off = [option for option in chosen if option.off is not None]

    def decorate(command):
        decorated = _folding_off_flags(command, with_off) if with_off else command
        for option in reversed(chosen):
            for decorator in reversed(option.click_decorators()):
                decorated = decorator(decorated)
        return decorated

    return decorate


def _folding_off_flags(command: Callable, options: Sequence[Option]) -> Callable:
    """``command``, called with each option's ``off`` flag folded into its value."""

    @functools.wraps(command)
    def folded(*args, **kwargs):
        for option in options:
            off = kwargs.pop(option.off_parameter)
            kwargs[option.name] = kwargs[option.name] and not off
        return command(*args, **kwargs)

    return folded


def command_line(values: Mapping[str, Any]) -> List[str]:
    """The ``bnno train`` arguments that give the run options ``values`` (fields of
    :class:`RunOptions`, by name; options not in ``values`` are left out)."""
    unknown = sorted(set(values) - set(_BY_NAME))
    if unknown:
        raise ValueError(f"Not run options: {', '.join(unknown)}; they are {', '.join(_BY_NAME)}.")
    arguments: List[str] = []
    for option in OPTIONS:
        if option.name in values:
            arguments += option.arguments(values[option.name])
    return arguments

