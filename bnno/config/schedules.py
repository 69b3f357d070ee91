"""A scheduled hyperparameter: a start value and how it decays over training.

A set writes a schedule as flat keys so that ``--hparams`` can override each part:
``<name>`` (the start value) and ``<name>_decay``, one of

- ``none``: constant;
- ``linear``: to ``<name>_end`` over the whole run (Keras ``PolynomialDecay``, power 1),
  as the paper's ImageNet sets decay gamma and the learning rate;
- ``step``: times ``<name>_decay_factor`` every ``<name>_decay_epochs`` epochs
  (staircase ``ExponentialDecay``), as the paper's section 5.2 decays gamma ("A Bop
  and Beyond" writes it ``<name>_decay=FACTOR`` with ``epochs_decay``; see
  :mod:`bnno.config.compat`);
- ``piecewise``: times ``<name>_factors[i]`` from epoch ``<name>_boundaries[i-1]`` on
  (``PiecewiseConstantDecay``).

Steps are counted from the data set's size (``steps_per_epoch``), never hard-coded.
Only :meth:`Schedule.build` imports Keras.
"""

import dataclasses
from collections.abc import Mapping
from typing import Optional, Tuple

from bnno.errors import UsageError
from bnno.registry import unknown_choice_message

DECAYS = ("none", "linear", "step", "piecewise")

#: The flat keys of a schedule named ``{}``, with their types.
SCHEDULE_KEYS = {
    "{}": float,
    "{}_decay": str,
    "{}_end": float,
    "{}_decay_factor": float,
    "{}_decay_epochs": int,
    "{}_boundaries": list,
    "{}_factors": list,
}


@dataclasses.dataclass(frozen=True)
class Schedule:
    """One scheduled hyperparameter: ``start``, and how it decays (see the module's
    docstring). Read from the flat keys ``<name>``, ``<name>_decay``, ``<name>_end``,
    ``<name>_decay_factor``, ``<name>_decay_epochs``, ``<name>_boundaries`` and
    ``<name>_factors``."""

    name: str
    start: float
    kind: str = "none"
    end: Optional[float] = None
    factor: Optional[float] = None
    every_epochs: Optional[int] = None
    boundaries: Tuple[int, ...] = ()
    factors: Tuple[float, ...] = ()

    #: The keys each kind needs beyond the start value.
    NEEDS = {
        "linear": ("{}_end",),
        "step": ("{}_decay_factor", "{}_decay_epochs"),
        "piecewise": ("{}_boundaries", "{}_factors"),
    }

    @classmethod
    def read(cls, values: Mapping, name: str) -> "Schedule":
        """The schedule of ``name`` in the (checked) flat ``values``."""
        return cls(
            name=name,
            start=float(values[name]),
            kind=values.get(f"{name}_decay") or "none",
            end=values.get(f"{name}_end"),
            factor=values.get(f"{name}_decay_factor"),
            every_epochs=values.get(f"{name}_decay_epochs"),
            boundaries=tuple(values.get(f"{name}_boundaries") or ()),
            factors=tuple(values.get(f"{name}_factors") or ()),
        )

    @staticmethod
    def check(values: Mapping, name: str, where: str) -> None:
        """``UsageError`` unless ``values`` describe a complete schedule of ``name``: a
        number to start from, a known kind, the keys the kind needs, and piecewise
        boundaries that increase with one factor more than boundaries."""
        if not isinstance(values.get(name), float):
            raise UsageError(f"Hyperparameter {name} of {where} must be a number.")
        decay = values.get(f"{name}_decay") or "none"
        if decay not in DECAYS:
            raise UsageError(unknown_choice_message(f"{name}_decay", str(decay), list(DECAYS), f"in {where}"))
        missing = [key.format(name) for key in Schedule.NEEDS.get(decay, ()) if values.get(key.format(name)) is None]
        if missing:
            raise UsageError(
                f"{name}_decay={decay} in {where} also needs {' and '.join(missing)} "
                f"(e.g. --hparams {missing[0]}=...)."
            )
        if decay == "piecewise":
            boundaries, factors = values[f"{name}_boundaries"], values[f"{name}_factors"]
            if len(factors) != len(boundaries) + 1 or list(boundaries) != sorted(boundaries):
                raise UsageError(
                    f"{name}_boundaries of {where} must be increasing epochs and {name}_factors "
                    "must have one more entry than the boundaries."
                )

    @property
    def depends_on_epochs(self) -> bool:
        """Whether its values depend on the run's total number of epochs (``linear``):
        a run using it cannot be extended."""
        return self.kind == "linear"

    def build(self, epochs: int, steps_per_epoch: int):
        """``start`` (a float) when constant, else a Keras ``LearningRateSchedule`` over
        optimizer steps."""
        if self.kind == "none":
            return self.start
        import keras

        schedules = keras.optimizers.schedules
        if self.kind == "linear":
            return schedules.PolynomialDecay(
                self.start, decay_steps=epochs * steps_per_epoch, end_learning_rate=float(self.end), power=1.0,
            )
        if self.kind == "step":
            return schedules.ExponentialDecay(
                self.start, decay_steps=self.every_epochs * steps_per_epoch, decay_rate=float(self.factor),
                staircase=True,
            )
        if self.kind == "piecewise":
            return schedules.PiecewiseConstantDecay(
                boundaries=[int(epoch) * steps_per_epoch for epoch in self.boundaries],
                values=[self.start * float(f) for f in self.factors],
            )
        raise ValueError(f"Unknown decay '{self.kind}' for {self.name}.")  # check() prevents this
