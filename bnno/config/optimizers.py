"""One typed configuration per optimizer, each declaring its own hyperparameters and
building its Keras optimizer.

A field is a hyperparameter of the set, under its own name: a :func:`schedule` (the
flat keys of :class:`~bnno.config.schedules.Schedule`) or a :func:`hyperparameter`
(a number or a switch), each with its bounds. :mod:`bnno.config.keys` collects these
declarations into the keys any set may be given, their types and bounds, so adding an
optimizer's hyperparameter is one field here (and its use in ``build``): ``--hparams``
parses it, :func:`bnno.config.schema.validate` checks it, the run records it.

The paper's recipes (Helwegen et al., 2019, sections 5.1-5.3; its code's ``bop``
sets): Bop trains the binary kernels and Adam every other variable, through
``CaseOptimizer``; ``adam`` sets train latent weights with Adam alone. ``bop2nd`` sets
train the binary kernels with Bop2ndOrder instead (Suarez-Ramirez et al., 2021, "A Bop
and Beyond", arXiv:2104.05124). Only ``build`` imports Keras.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any, Dict, Optional, Tuple

from bnno.config.schedules import Schedule

#: (lowest, whether the lowest itself is allowed, highest or None)
Bounds = Tuple[float, bool, Optional[float]]
AT_LEAST_0: Bounds = (0, True, None)
RATE: Bounds = (0, False, 1)  # a rate in (0, 1]: Bop's gamma (the paper uses 1e-5 to 1e-2), sigma


def schedule(start: Bounds, end: Bounds, doc: str):
    """A scheduled hyperparameter; ``start`` and ``end`` bound its start and end values."""
    return dataclasses.field(metadata={"schedule": True, "bounds": start, "end_bounds": end, "doc": doc})


def hyperparameter(default: Any, doc: str, bounds: Optional[Bounds] = None):
    """A plain hyperparameter (its type is the field's), ``default`` when a set lacks it."""
    return dataclasses.field(default=default, metadata={"bounds": bounds, "doc": doc})


class _OptimizerConfig:
    """What every optimizer configuration shares: reading its fields from flat values."""

    @classmethod
    def read(cls, values: Mapping):
        """The configuration of the (checked) flat ``values``."""
        kwargs = {}
        for field in dataclasses.fields(cls):
            if field.metadata.get("schedule"):
                kwargs[field.name] = Schedule.read(values, field.name)
            else:
                value = values.get(field.name)
                kwargs[field.name] = field.default if value is None else field.type(value)
        return cls(**kwargs)

    @classmethod
    def schedule_names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("schedule"))

    @property
    def schedules(self) -> Tuple[Schedule, ...]:
        return tuple(getattr(self, name) for name in self.schedule_names())


@dataclasses.dataclass(frozen=True)
class AdamConfig(_OptimizerConfig):
    """Adam (Keras's defaults for beta1, beta2 and epsilon) on the real-valued variables
    (all variables in ``adam`` sets)."""

    learning_rate: Schedule = schedule(AT_LEAST_0, AT_LEAST_0, "Adam's learning rate")
    weight_decay: float = hyperparameter(
        0.0, "coupled L2, g <- g + weight_decay * w, as PyTorch's Adam in the BNN training tricks "
        "(CAS-CLab); never on the kernels Bop trains (bnno.nn.weight_decay.AdamL2)", AT_LEAST_0)
    xavier_learning_rate_scaling: bool = hyperparameter(
        False, "each quantized latent kernel's learning rate times 1/sqrt(1.5/(fan_in + fan_out)) "
        "(BinaryConnect, section 2.5; the Bop paper's section 5.2 baseline; "
        "bnno.nn.learning_rate_scaling.XavierScaledAdam)")

    def build(self, epochs: int, steps_per_epoch: int):
        import keras

        from bnno.nn.learning_rate_scaling import XavierScaledAdam
        from bnno.nn.weight_decay import AdamL2

        learning_rate = self.learning_rate.build(epochs, steps_per_epoch)
        if self.xavier_learning_rate_scaling:
            return XavierScaledAdam(learning_rate, l2=self.weight_decay)
        if self.weight_decay:
            return AdamL2(learning_rate, l2=self.weight_decay)
        return keras.optimizers.Adam(learning_rate)


@dataclasses.dataclass(frozen=True)
class BopConfig(_OptimizerConfig):
    """Bop (Helwegen et al., 2019, Algorithm 1) on the binary kernels: a weight flips
    when the moving average of its gradient (adaptivity rate ``gamma``) agrees with it
    in sign and exceeds ``threshold``."""

    gamma: Schedule = schedule(RATE, (0, True, 1), "Bop's adaptivity rate")
    threshold: Schedule = schedule(AT_LEAST_0, AT_LEAST_0, "Bop's threshold tau")

    def build(self, epochs: int, steps_per_epoch: int):
        from bnno.nn.optimizers import Bop

        return Bop(threshold=self.threshold.build(epochs, steps_per_epoch),
                   gamma=self.gamma.build(epochs, steps_per_epoch))


@dataclasses.dataclass(frozen=True)
class Bop2ndOrderConfig(_OptimizerConfig):
    """Bop2ndOrder ("A Bop and Beyond"): Bop's average normalized by that of the squared
    gradient (rate ``sigma``), biased or ``bias_correction``-ed."""

    gamma: Schedule = schedule(RATE, (0, True, 1), "Bop's adaptivity rate")
    threshold: Schedule = schedule(AT_LEAST_0, AT_LEAST_0, "Bop's threshold tau")
    sigma: Schedule = schedule(RATE, (0, True, 1), "the squared gradient's adaptivity rate")
    bias_correction: bool = hyperparameter(False, "m / gamma and v / sigma")

    def build(self, epochs: int, steps_per_epoch: int):
        from bnno.nn.optimizers import Bop2ndOrder

        return Bop2ndOrder(
            threshold=self.threshold.build(epochs, steps_per_epoch), gamma=self.gamma.build(epochs, steps_per_epoch),
            sigma=self.sigma.build(epochs, steps_per_epoch), bias_correction=self.bias_correction,
        )


#: The configuration of each ``optimizer`` a set may name: ``adam`` trains every
#: variable; the others train the binary kernels, beside Adam on the rest.
OPTIMIZERS: Dict[str, type] = {"adam": AdamConfig, "bop": BopConfig, "bop2nd": Bop2ndOrderConfig}
