"""The hyperparameters a set may hold: their types, bounds and choices.

Every key a set of ``hparams/<model>.yaml`` (or a user's ``--hparams-file``) may be
given beyond the keys it already has, with the type an override is parsed to and the
range :func:`bnno.config.schema.validate` checks. The optimizers' keys are those their
configurations declare (:mod:`bnno.config.optimizers`); model builders' own keys
(``filters``, ``dense_units``, ``stem``, ...) take the type of the set's value. Text
only: no TensorFlow, no Keras.
"""

import dataclasses
import math
from typing import Any, Dict, List, Optional, Tuple

from bnno.config.optimizers import OPTIMIZERS as OPTIMIZER_CONFIGS
from bnno.config.schedules import DECAYS, SCHEDULE_KEYS  # noqa: F401 (DECAYS: re-exported)

OPTIMIZERS = tuple(OPTIMIZER_CONFIGS)
NORMALIZATIONS = ("batch", "layer")
CONSTRAINTS = ("none", "weight_clip")

#: The largest whole number a count (epochs, batch size, an epoch boundary) may be:
#: TensorFlow holds step counts in 32- and 64-bit integers.
MAX_WHOLE = 2**31 - 1


def _declared() -> Tuple[Tuple[str, ...], Dict[str, type], Dict[str, Tuple[float, bool, Optional[float]]]]:
    """What the optimizer configurations declare: their schedules' names, their plain
    keys with types, and the bounds of both (a schedule's start and end values)."""
    schedules: List[str] = []
    plain: Dict[str, type] = {}
    bounds: Dict[str, Tuple[float, bool, Optional[float]]] = {}
    for config in OPTIMIZER_CONFIGS.values():
        for field in dataclasses.fields(config):
            if field.metadata.get("schedule"):
                schedules += [field.name] if field.name not in schedules else []
                bounds[field.name] = field.metadata["bounds"]
                bounds[f"{field.name}_end"] = field.metadata["end_bounds"]
            else:
                plain[field.name] = field.type
                if field.metadata.get("bounds"):
                    bounds[field.name] = field.metadata["bounds"]
    return tuple(schedules), plain, bounds


#: The scheduled hyperparameters (Adam's learning rate; Bop's gamma and threshold;
#: Bop2ndOrder's sigma), and each one's kind key (``gamma_decay``).
SCHEDULES, _OPTIMIZER_KEYS, _OPTIMIZER_BOUNDS = _declared()
DECAY_KEYS = tuple(f"{name}_decay" for name in SCHEDULES)

#: Keys any set may be given, with their types, beyond the keys the set already has.
COMMON_KEYS: Dict[str, type] = {
    "epochs": int,
    "batch_size": int,
    "optimizer": str,
    "input_quantizer": str,
    "kernel_quantizer": str,
    "kernel_constraint": str,
    "normalization": str,  # batch or layer (models that take it)
    "channel_scale": bool,  # a real factor per output channel of binary convolutions (resnet18_tricks)
    "epochs_decay": int,  # "A Bop and Beyond"'s period of factor decays (bnno.config.compat)
    **_OPTIMIZER_KEYS,
    **{key.format(name): kind for name in SCHEDULES for key, kind in SCHEDULE_KEYS.items()},
}

#: Hyperparameters added after runs were recorded without them, with the value that
#: such runs had in effect: a recorded run that lacks one resumes when the new value
#: is this one (``bnno.run_dir.check_resumable``).
ADDED_KEYS: Dict[str, Any] = {
    "channel_scale": False,
}

#: The elements of the list keys: whole numbers of epochs (``PiecewiseConstantDecay``'s
#: boundaries) and factors of the start value; with how messages say it.
LIST_ELEMENTS: Dict[str, Tuple[type, str]] = {
    **{f"{s}_boundaries": (int, "whole numbers of epochs (e.g. [30, 60])") for s in SCHEDULES},
    **{f"{s}_factors": (float, "numbers of at least 0 (e.g. [1, 0.1, 0.01])") for s in SCHEDULES},
}

#: Bounds of numeric keys: (lowest, whether the lowest itself is allowed, highest or
#: None); the optimizers' are declared with them (e.g. gamma a rate in (0, 1], a
#: threshold at least 0). A "decay" factor shrinks.
BOUNDS: Dict[str, Tuple[float, bool, Optional[float]]] = {
    "epochs": (1, True, MAX_WHOLE),
    "batch_size": (1, True, MAX_WHOLE),
    "epochs_decay": (1, True, MAX_WHOLE),
    **_OPTIMIZER_BOUNDS,
    **{f"{s}_decay_factor": (0, False, 1) for s in SCHEDULES},
    **{f"{s}_decay_epochs": (1, True, MAX_WHOLE) for s in SCHEDULES},
}

#: How messages name each type.
TYPE_NAMES = {
    int: "a whole number (e.g. 100)",
    float: "a number (e.g. 1e-6)",
    bool: "true or false",
    list: "a list in brackets (e.g. [10, 20])",
    str: "text (e.g. ste_sign)",
}


def as_float(value: Any) -> Optional[float]:
    """``value`` (a number or its text) as a float, ``None`` if it is none; an integer too
    large for a float is infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    except ValueError:
        return None


def is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False
