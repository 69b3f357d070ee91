"""A hyperparameter set turned into Keras objects: schedules and the optimizer.

The paper's recipes (Helwegen et al., 2019, sections 5.1-5.3; its code's ``bop``
sets): Bop trains the binary kernels and Adam every other variable, through
``CaseOptimizer``; ``adam`` sets train latent weights with Adam alone. ``bop2nd`` sets
train the binary kernels with Bop2ndOrder instead (Suarez-Ramirez et al., 2021, "A Bop
and Beyond", arXiv:2104.05124), with ``sigma`` and ``bias_correction``.

Adam's ``learning_rate`` and Bop's ``gamma``, ``threshold`` and ``sigma`` may each
follow a schedule, described by flat keys so that ``--hparams`` can override each part:
``<name>`` (the start value) and ``<name>_decay``, one of

- ``none``: constant;
- ``linear``: to ``<name>_end`` over the whole run (Keras ``PolynomialDecay``, power 1),
  as the paper's ImageNet sets decay gamma and the learning rate;
- ``step``: times ``<name>_decay_factor`` every ``<name>_decay_epochs`` epochs
  (staircase ``ExponentialDecay``), as the paper's section 5.2 decays gamma ("A Bop
  and Beyond" writes it ``<name>_decay=FACTOR`` with ``epochs_decay``; see
  ``bnno.hparams.factor_decays``);
- ``piecewise``: times ``<name>_factors[i]`` from epoch ``<name>_boundaries[i-1]`` on
  (``PiecewiseConstantDecay``).

Steps are counted from the data set's size (``steps_per_epoch``), never hard-coded.

``weight_decay`` (any set; default 0) is coupled L2, as PyTorch's Adam applies it in the
BNN training tricks (document 003): ``g <- g + weight_decay * w`` for every variable
Adam trains (real-valued variables, and latent weights in ``adam`` sets), never for
the kernels Bop trains (``bnno.nn.weight_decay.AdamL2``). Keras's decoupled
``weight_decay`` (AdamW) would be a different update.

``xavier_learning_rate_scaling`` (``adam`` sets; default false) multiplies the learning
rate of each quantized layer's latent kernel by 1 / sqrt(1.5 / (fan_in + fan_out)), as
the paper's section 5.2 trains its latent-weight baseline (BinaryConnect's scaling;
``bnno.nn.learning_rate_scaling.XavierScaledAdam``). ``bnno.hparams.validate`` refuses
it in ``bop`` and ``bop2nd`` sets, whose Adam trains no latent weights.
"""

from typing import Any, Dict, List, Union

import keras

from bnno.nn.learning_rate_scaling import XavierScaledAdam
from bnno.nn.optimizers import Bop, Bop2ndOrder, CaseOptimizer
from bnno.nn.weight_decay import AdamL2

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


def _adam(hparams: Dict[str, Any], steps_per_epoch: int) -> keras.optimizers.Adam:
    """Adam with the set's learning rate schedule: ``XavierScaledAdam`` when
    ``xavier_learning_rate_scaling`` is true (with ``weight_decay`` as its coupled L2),
    else ``AdamL2`` when ``weight_decay`` is above 0, else plain Keras Adam."""
    learning_rate = schedule(hparams, "learning_rate", steps_per_epoch)
    weight_decay = float(hparams.get("weight_decay") or 0.0)
    if hparams.get("xavier_learning_rate_scaling"):
        return XavierScaledAdam(learning_rate, l2=weight_decay)
    if weight_decay:
        return AdamL2(learning_rate, l2=weight_decay)
    return keras.optimizers.Adam(learning_rate)


def optimizer(hparams: Dict[str, Any], steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam on everything (``adam``), or Bop (``bop``) or Bop2ndOrder (``bop2nd``) on
    binary kernels and Adam on the rest."""
    adam = _adam(hparams, steps_per_epoch)
    if hparams["optimizer"] == "adam":
        return adam
    bop_args = dict(
        threshold=schedule(hparams, "threshold", steps_per_epoch),
        gamma=schedule(hparams, "gamma", steps_per_epoch),
    )
    if hparams["optimizer"] == "bop2nd":
        binary = Bop2ndOrder(
            **bop_args,
            sigma=schedule(hparams, "sigma", steps_per_epoch),
            bias_correction=bool(hparams.get("bias_correction", False)),
        )
    else:
        binary = Bop(**bop_args)
    return CaseOptimizer((Bop.is_binary_variable, binary), default_optimizer=adam)


#: The hyperparameters that ``optimizer`` may schedule.
SCHEDULED = ("learning_rate", "gamma", "threshold", "sigma")


def schedules_depending_on_epochs(hparams: Dict[str, Any]) -> List[str]:
    """The schedules whose values depend on the total number of epochs (``linear``
    decay): a run using one cannot be extended."""
    return [name for name in SCHEDULED if hparams.get(f"{name}_decay") == "linear"]
