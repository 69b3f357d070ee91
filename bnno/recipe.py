"""A hyperparameter set turned into Keras objects: schedules and the optimizer.

The paper's recipes (Helwegen et al., 2019, sections 5.1-5.3; its code's ``bop``
sets): Bop trains the binary kernels and Adam every other variable, through
``CaseOptimizer``; ``adam`` sets train latent weights with Adam alone.

A schedule is described by flat keys, so that ``--hparams`` can override each part:
``<name>`` (the start value) and ``<name>_decay``, one of

- ``none``: constant;
- ``linear``: to ``<name>_end`` over the whole run (Keras ``PolynomialDecay``, power 1),
  as the paper's ImageNet sets decay gamma and the learning rate;
- ``step``: times ``<name>_decay_factor`` every ``<name>_decay_epochs`` epochs
  (staircase ``ExponentialDecay``), as the paper's section 5.2 decays gamma;
- ``piecewise``: times ``<name>_factors[i]`` from epoch ``<name>_boundaries[i-1]`` on
  (``PiecewiseConstantDecay``).

Steps are counted from the data set's size (``steps_per_epoch``), never hard-coded.
"""

from typing import Any, Dict, List, Union

import keras

from bnno.nn.optimizers import Bop, CaseOptimizer

Schedule = Union[float, keras.optimizers.schedules.LearningRateSchedule]


def schedule(hparams: Dict[str, Any], name: str, steps_per_epoch: int) -> Schedule:
    """The schedule (or constant) that ``hparams`` describes for ``name``."""
    start = float(hparams[name])
    decay = hparams.get(f"{name}_decay", "none")
    schedules = keras.optimizers.schedules
    if decay == "none":
        return start
    if decay == "linear":
        return schedules.PolynomialDecay(
            start,
            decay_steps=hparams["epochs"] * steps_per_epoch,
            end_learning_rate=float(hparams[f"{name}_end"]),
            power=1.0,
        )
    if decay == "step":
        return schedules.ExponentialDecay(
            start,
            decay_steps=hparams[f"{name}_decay_epochs"] * steps_per_epoch,
            decay_rate=float(hparams[f"{name}_decay_factor"]),
            staircase=True,
        )
    if decay == "piecewise":
        return schedules.PiecewiseConstantDecay(
            boundaries=[int(epoch) * steps_per_epoch for epoch in hparams[f"{name}_boundaries"]],
            values=[start * float(f) for f in hparams[f"{name}_factors"]],
        )
    raise ValueError(f"Unknown decay '{decay}' for {name}.")  # validate() prevents this


def optimizer(hparams: Dict[str, Any], steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam on everything (``adam``), or Bop on binary kernels and Adam on the rest (``bop``)."""
    adam = keras.optimizers.Adam(schedule(hparams, "learning_rate", steps_per_epoch))
    if hparams["optimizer"] == "adam":
        return adam
    bop = Bop(threshold=float(hparams["threshold"]), gamma=schedule(hparams, "gamma", steps_per_epoch))
    return CaseOptimizer((Bop.is_binary_variable, bop), default_optimizer=adam)


def schedules_depending_on_epochs(hparams: Dict[str, Any]) -> List[str]:
    """The schedules (``learning_rate``, ``gamma``) whose values depend on the total
    number of epochs (``linear`` decay): a run using one cannot be extended."""
    return [name for name in ("learning_rate", "gamma") if hparams.get(f"{name}_decay") == "linear"]
