"""A validated set of hyperparameters, typed: :class:`Config`, and :func:`validate`.

A set is flat text in YAML (``gamma: 1.0e-3``, ``gamma_decay: linear``, ``gamma_end:
1.0e-6``) so that ``--hparams`` can override every part of it. :func:`validate` checks
it once (types, finite numbers, bounds, choices, complete schedules); :class:`Config`
then reads it into the typed configurations of its optimizers
(:mod:`bnno.config.optimizers`, whose schedules are :class:`bnno.config.schedules.Schedule`),
which build the Keras optimizer, and keeps the flat values as the run records them
(``hparams.yaml``) and models read their own keys from.

Only the ``build`` methods import Keras; reading and checking a configuration is text.
"""

import math
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from bnno.config.keys import (
    BOUNDS, COMMON_KEYS, CONSTRAINTS, LIST_ELEMENTS, MAX_WHOLE, NORMALIZATIONS, OPTIMIZERS, TYPE_NAMES,
    is_finite_number, is_whole,
)
from bnno.config.optimizers import OPTIMIZERS as OPTIMIZER_CONFIGS
from bnno.config.optimizers import AdamConfig
from bnno.config.schedules import Schedule
from bnno.errors import UsageError
from bnno.registry import unknown_choice_message


class Config(Mapping):
    """A validated set of hyperparameters: typed (``epochs``, ``batch_size``, ``adam``,
    ``binary``), and a read-only mapping of the flat values, which is what a run
    records in ``hparams.yaml`` and what model builders read their own keys from.

    Build one with :func:`bnno.config.resolve` (a set and its overrides) or
    :meth:`from_values` (values already typed, e.g. a run's record); :meth:`replace`
    gives a sweep's point: the same configuration with some values replaced, checked
    again as a whole.
    """

    def __init__(self, values: Mapping, where: str, overrides: Optional[Dict[str, str]] = None):
        values = dict(values)
        validate(values, where)
        self._values = values
        self.where = where  # how messages name the set ("binarynet set 'bop'")
        self.overrides: Dict[str, str] = dict(overrides or {})  # --hparams as given, for the record
        self.epochs: int = values["epochs"]
        self.batch_size: int = values["batch_size"]
        self.optimizer_name: str = values["optimizer"]
        self.adam: AdamConfig = AdamConfig.read(values)
        #: The binary kernels' optimizer (Bop, Bop2ndOrder); None in ``adam`` sets.
        binary = OPTIMIZER_CONFIGS[self.optimizer_name] if self.optimizer_name != "adam" else None
        self.binary = binary.read(values) if binary else None

    @classmethod
    def from_values(cls, values: Union["Config", Mapping], where: str = "the run") -> "Config":
        """``values`` as a configuration (itself when it is one)."""
        return values if isinstance(values, Config) else cls(values, where)

    def replace(self, values: Mapping) -> "Config":
        """This configuration with ``values`` (typed) in place of its own, checked again
        as a whole; a factor in ``<name>_decay`` ("A Bop and Beyond") is read as
        :func:`bnno.config.resolve` reads it."""
        from bnno.config.compat import factor_decays

        return Config(factor_decays({**self._values, **values}, self.where), self.where)

    # The flat values: a read-only mapping.
    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"

    def as_dict(self) -> Dict[str, Any]:
        """The flat values, a fresh dict (for YAML and for mutation)."""
        return dict(self._values)

    @property
    def schedules(self) -> Tuple[Schedule, ...]:
        return self.adam.schedules + (self.binary.schedules if self.binary else ())

    def schedules_depending_on_epochs(self) -> List[str]:
        """The names of the schedules whose values depend on the total number of epochs
        (``linear``): a run using one cannot be extended."""
        return [schedule.name for schedule in self.schedules if schedule.depends_on_epochs]

    def build_optimizer(self, steps_per_epoch: int):
        """Adam on everything (``adam``), or Bop (``bop``) or Bop2ndOrder (``bop2nd``) on
        the binary kernels and Adam on the rest (``CaseOptimizer``)."""
        adam = self.adam.build(self.epochs, steps_per_epoch)
        if self.binary is None:
            return adam
        from bnno.nn.optimizers import Bop, CaseOptimizer

        return CaseOptimizer((Bop.is_binary_variable, self.binary.build(self.epochs, steps_per_epoch)),
                             default_optimizer=adam)


# --- validation --------------------------------------------------------------------------


def validate(hparams: Dict[str, Any], where: str) -> None:
    """Check the values a training run depends on; ``UsageError`` naming the first bad one.

    In order: the type of every common key (and of the elements of lists), that every
    number is finite, the ``BOUNDS``, that epochs and batch size are given, the choices
    (optimizer, decays, kernel constraint), that each schedule has the keys its decay
    needs, with piecewise boundaries increasing, and that Xavier learning-rate scaling
    comes with Adam.
    """
    _check_types(hparams, where)
    for key in ("epochs", "batch_size"):
        if hparams.get(key) is None:
            raise UsageError(f"Hyperparameter {key} of {where} must be a whole number of at least 1.")
    _check_bounds(hparams, where)
    _check_choice(hparams, "optimizer", OPTIMIZERS, where)
    configs = [AdamConfig] + ([OPTIMIZER_CONFIGS[hparams["optimizer"]]] if hparams["optimizer"] != "adam" else [])
    for config in configs:  # the schedules of the optimizers the set uses
        for name in config.schedule_names():
            Schedule.check(hparams, name, where)
    if hparams["optimizer"] == "bop2nd":
        _check_bias_correction(hparams, where)
    _check_xavier_learning_rate_scaling(hparams, where)
    constraint = hparams.get("kernel_constraint") or "none"
    _check_choice({"kernel_constraint": constraint}, "kernel_constraint", CONSTRAINTS, where)
    normalization = hparams.get("normalization") or "batch"
    _check_choice({"normalization": normalization}, "normalization", NORMALIZATIONS, where)


def _check_xavier_learning_rate_scaling(hparams: Dict[str, Any], where: str) -> None:
    """Xavier learning-rate scaling scales latent weights' learning rates, which only
    ``adam`` sets have (the paper's section 5.2 uses it for its Adam baseline alone)."""
    if hparams.get("xavier_learning_rate_scaling") and hparams["optimizer"] != "adam":
        raise UsageError(
            f"xavier_learning_rate_scaling of {where} scales the learning rates of latent "
            f"weights, which optimizer={hparams['optimizer']} does not have (Bop trains the "
            "binary kernels themselves); use it with optimizer=adam or set it to false."
        )


def _check_bias_correction(hparams: Dict[str, Any], where: str) -> None:
    """Bias-corrected Bop2ndOrder divides by gamma and sigma: no piecewise factor of 0."""
    if not hparams.get("bias_correction"):
        return
    for name in ("gamma", "sigma"):
        if hparams.get(f"{name}_decay") == "piecewise" and 0 in hparams[f"{name}_factors"]:
            raise UsageError(
                f"{name}_factors of {where} must all be greater than 0: bias_correction "
                f"divides by {name}."
            )


def _check_types(hparams: Dict[str, Any], where: str) -> None:
    for key, expected in COMMON_KEYS.items():
        value = hparams.get(key)
        if value is None:
            continue
        fits = is_whole(value) if expected is int else isinstance(value, expected)
        if not fits:
            raise UsageError(
                f"Hyperparameter {key} of {where} must be {TYPE_NAMES[expected]}; got {value!r}."
            )
    for key, value in hparams.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"Hyperparameter {key} of {where} must be a finite number; got {value}.")
    for key, (element, description) in LIST_ELEMENTS.items():
        values = hparams.get(key)
        if values is None:
            continue
        if element is int:
            fits = all(is_whole(v) and 0 <= v <= MAX_WHOLE for v in values)
        else:
            fits = all(is_finite_number(v) and v >= 0 for v in values)
        if not fits:
            raise UsageError(
                f"Hyperparameter {key} of {where} must be a list of {description}; got {values!r}."
            )


def _check_bounds(hparams: Dict[str, Any], where: str) -> None:
    for key, (lowest, lowest_allowed, highest) in BOUNDS.items():
        value = hparams.get(key)
        if value is None:
            continue
        too_low = value < lowest if lowest_allowed else value <= lowest
        if too_low or (highest is not None and value > highest):
            bounds = f"at least {lowest}" if lowest_allowed else f"greater than {lowest}"
            bounds += f" and at most {highest}" if highest is not None else ""
            kind = "a whole number of" if COMMON_KEYS[key] is int else "a number"
            raise UsageError(f"Hyperparameter {key} of {where} must be {kind} {bounds}; got {value}.")


def _check_choice(hparams, key, choices, where):
    value = hparams.get(key)
    if value not in choices:
        raise UsageError(unknown_choice_message(key, str(value), list(choices), f"in {where}"))

