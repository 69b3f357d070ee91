"""Where text becomes typed values, once: a model's hyperparameter set and the overrides
of ``--hparams``, resolved into a :class:`Config` that builds the optimizer.

Modules, one concept each:

- :mod:`bnno.config.sets`: set files (``hparams/<model>.yaml``, ``--hparams-file``),
  ``extends:``, ``default_set:`` and named sweep grids;
- :mod:`bnno.config.overrides`: ``--hparams k=v,k=v``, each value parsed to its key's type;
- :mod:`bnno.config.schedules`: ``Schedule``, a start value and its decay, built into a
  Keras schedule from the steps per epoch;
- :mod:`bnno.config.optimizers`: ``AdamConfig``, ``BopConfig``, ``Bop2ndOrderConfig``,
  each declaring its hyperparameters (type, default, bounds) and building its optimizer;
- :mod:`bnno.config.keys`: the keys a set may hold, their types, bounds and choices
  (the optimizers' from their declarations);
- :mod:`bnno.config.schema`: :func:`validate`, and ``Config``, a checked set, typed;
- :mod:`bnno.config.compat`: "A Bop and Beyond"'s notation of schedules;
- :mod:`bnno.config.options`: the options of ``bnno train`` that every run shares.

``threshold`` from ``--hparams threshold=1e-6`` to ``Bop``: a field of ``BopConfig``
declares it (a schedule, at least 0); :func:`bnno.config.overrides.apply_overrides`
parses the text to a float, :func:`bnno.config.schema.validate` checks it,
``Config.binary.threshold`` holds it as a ``Schedule``, and ``BopConfig.build`` passes it
to ``Bop``. Nothing here imports TensorFlow; only
the ``build`` methods import Keras.
"""

from typing import Optional

from bnno.config.compat import EPOCHS_DECAY_KEY, factor_decays
from bnno.config.keys import ADDED_KEYS, COMMON_KEYS, DECAYS, OPTIMIZERS
from bnno.config.optimizers import AdamConfig, Bop2ndOrderConfig, BopConfig
from bnno.config.schedules import Schedule
from bnno.config.overrides import (
    apply_overrides, parse_overrides, parse_value, split_top_level, type_of, typed_value,
)
from bnno.config.schema import Config, validate
from bnno.config.sets import (
    DEFAULT_SET_KEY, SETS_PACKAGE, default_set, grid_names, grid_set, load, model_names, set_names,
)
from bnno.config.sets import default_of, load_set, set_label, source_of

__all__ = [
    "ADDED_KEYS", "AdamConfig", "Bop2ndOrderConfig", "BopConfig", "COMMON_KEYS", "Config", "DECAYS",
    "DEFAULT_SET_KEY", "EPOCHS_DECAY_KEY", "OPTIMIZERS", "SETS_PACKAGE", "Schedule", "apply_overrides",
    "default_set", "factor_decays", "grid_names", "grid_set", "load", "model_names", "parse_overrides",
    "parse_value", "resolve", "set_names", "split_top_level", "type_of", "typed_value", "validate",
]


def resolve(
    model: str,
    set_name: Optional[str] = None,
    overrides_text: Optional[str] = None,
    file: Optional[str] = None,
) -> Config:
    """The validated configuration of ``model``'s set ``set_name`` (of ``file``, a
    user's YAML file of sets, when given; the default set when ``set_name`` is None),
    with the overrides ``overrides_text`` (``"k=v,k=v"``) applied; its ``overrides``
    are those as given (text), for the run's record."""
    source = source_of(model, file)
    set_name = default_of(source) if set_name is None else set_name
    where = set_label(source, set_name)
    overrides = parse_overrides(overrides_text)
    values = apply_overrides(load_set(source, set_name), overrides, where)
    return Config(factor_decays(values, where), where, overrides)
