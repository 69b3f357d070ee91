"""Named hyperparameter sets: ``bnno/hparams/<model>.yaml``.

Each file maps set names to flat dicts of hyperparameters; a set may name another of
the same file under ``extends:`` and inherits its keys. ``--hparams k=v,k=v`` overrides
keys, each value parsed to the type the set already has (``threshold=1e-6`` becomes a
float, ``epochs=1`` an int). This module reads YAML only: it never imports TensorFlow.
"""

import copy
import functools
import pathlib
from typing import Any, Dict, List, Optional

import yaml

from bnno.errors import UsageError
from bnno.registry import unknown_choice_message

HPARAMS_DIR = pathlib.Path(__file__).parent

OPTIMIZERS = ("adam", "bop")
DECAYS = ("none", "linear", "step", "piecewise")
CONSTRAINTS = ("none", "weight_clip")

# Keys any set may be given, with their types, beyond the keys the set already has:
# the schedule settings of ``learning_rate`` and ``gamma`` (see ``bnno.recipe``).
_SCHEDULE_KEYS = {
    "{}": float,
    "{}_decay": str,
    "{}_end": float,
    "{}_decay_factor": float,
    "{}_decay_epochs": int,
    "{}_boundaries": list,
    "{}_factors": list,
}
COMMON_KEYS: Dict[str, type] = {
    "epochs": int,
    "batch_size": int,
    "optimizer": str,
    "threshold": float,
    "input_quantizer": str,
    "kernel_quantizer": str,
    "kernel_constraint": str,
    **{k.format(s): t for s in ("learning_rate", "gamma") for k, t in _SCHEDULE_KEYS.items()},
}


def _file(model: str) -> pathlib.Path:
    return HPARAMS_DIR / f"{model}.yaml"


@functools.lru_cache(maxsize=None)
def _raw_sets(model: str) -> Dict[str, dict]:
    path = _file(model)
    if not path.exists():
        raise UsageError(f"Model '{model}' has no hyperparameter file {path.name}.")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def set_names(model: str) -> List[str]:
    """The names of ``model``'s hyperparameter sets."""
    return sorted(_raw_sets(model))


def load(model: str, set_name: str) -> Dict[str, Any]:
    """The set ``set_name`` of ``model`` with ``extends`` resolved (a fresh dict)."""
    sets = _raw_sets(model)
    if set_name not in sets:
        raise UsageError(
            unknown_choice_message("hyperparameter set", set_name, list(sets), f"for {model}")
        )
    return copy.deepcopy(_resolve(sets, set_name, chain=()))


def _resolve(sets: Dict[str, dict], name: str, chain: tuple) -> dict:
    if name in chain:
        raise UsageError(f"Hyperparameter sets extend each other in a loop: {' -> '.join(chain + (name,))}.")
    values = dict(sets[name])
    parent = values.pop("extends", None)
    if parent is None:
        return values
    if parent not in sets:
        raise UsageError(unknown_choice_message("set", parent, list(sets), f"to extend from '{name}'"))
    return {**_resolve(sets, parent, chain + (name,)), **values}


def parse_overrides(text: Optional[str]) -> Dict[str, str]:
    """``"a=1,b=[1, 2],c=x"`` -> ``{"a": "1", "b": "[1, 2]", "c": "x"}`` (raw strings).

    Commas inside brackets belong to list values, so lists can be overridden too.
    """
    if not text:
        return {}
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    overrides = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise UsageError(f"Hyperparameter override '{item}' is not of the form key=value.")
        key, value = (part.strip() for part in item.split("=", 1))
        overrides[key] = value
    return overrides


def apply_overrides(hparams: Dict[str, Any], overrides: Dict[str, str], where: str) -> Dict[str, Any]:
    """``hparams`` updated with ``overrides``, each value parsed to its key's type.

    ``where`` names the set in messages ("binarynet set 'bop'"). An unknown key, or a
    value that does not parse as its key's type, is a ``UsageError`` naming it.
    """
    result = dict(hparams)
    for key, text in overrides.items():
        expected = _type_of(hparams, key, where)
        result[key] = _parse_value(key, text, expected)
    return result


def _type_of(hparams: Dict[str, Any], key: str, where: str) -> type:
    if key in hparams and hparams[key] is not None:
        return type(hparams[key])
    if key in COMMON_KEYS:
        return COMMON_KEYS[key]
    if key in hparams:  # a key the set leaves empty: take the value as YAML reads it
        return object
    raise UsageError(
        unknown_choice_message("hyperparameter", key, list(hparams) + list(COMMON_KEYS), f"for {where}")
    )


def _parse_value(key: str, text: str, expected: type):
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if expected is object:
        return value
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-6" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif expected is list:
        if isinstance(value, list):
            return value
    elif expected is str:
        return text
    raise UsageError(
        f"Hyperparameter {key}={text} must be {_TYPE_NAMES.get(expected, expected.__name__)}."
    )


_TYPE_NAMES = {
    int: "a whole number (e.g. 100)",
    float: "a number (e.g. 1e-6)",
    bool: "true or false",
    list: "a list in brackets (e.g. [10, 20])",
}


def validate(hparams: Dict[str, Any], where: str) -> None:
    """Check the values a training run depends on; ``UsageError`` naming the first bad one."""
    for key in ("epochs", "batch_size"):
        if not isinstance(hparams.get(key), int) or hparams[key] < 1:
            raise UsageError(f"Hyperparameter {key} of {where} must be a whole number of at least 1.")
    _check_choice(hparams, "optimizer", OPTIMIZERS, where)
    _check_schedule(hparams, "learning_rate", where)
    if hparams["optimizer"] == "bop":
        if not isinstance(hparams.get("threshold"), float):
            raise UsageError(f"Bop needs a number for threshold in {where}.")
        _check_schedule(hparams, "gamma", where)
    constraint = hparams.get("kernel_constraint") or "none"
    _check_choice({"kernel_constraint": constraint}, "kernel_constraint", CONSTRAINTS, where)


def _check_choice(hparams, key, choices, where):
    value = hparams.get(key)
    if value not in choices:
        raise UsageError(unknown_choice_message(key, str(value), list(choices), f"in {where}"))


def _check_schedule(hparams: Dict[str, Any], name: str, where: str) -> None:
    if not isinstance(hparams.get(name), float):
        raise UsageError(f"Hyperparameter {name} of {where} must be a number.")
    decay = hparams.get(f"{name}_decay", "none")
    _check_choice({f"{name}_decay": decay}, f"{name}_decay", DECAYS, where)
    needed = {
        "linear": [f"{name}_end"],
        "step": [f"{name}_decay_factor", f"{name}_decay_epochs"],
        "piecewise": [f"{name}_boundaries", f"{name}_factors"],
    }.get(decay, [])
    missing = [key for key in needed if hparams.get(key) is None]
    if missing:
        raise UsageError(
            f"{name}_decay={decay} in {where} also needs {' and '.join(missing)} "
            f"(e.g. --hparams {missing[0]}=...)."
        )
    if decay == "piecewise":
        boundaries, factors = hparams[f"{name}_boundaries"], hparams[f"{name}_factors"]
        if len(factors) != len(boundaries) + 1 or list(boundaries) != sorted(boundaries):
            raise UsageError(
                f"{name}_boundaries of {where} must be increasing epochs and {name}_factors "
                "must have one more entry than the boundaries."
            )


def resolve(model: str, set_name: str, overrides_text: Optional[str] = None) -> Dict[str, Any]:
    """The validated hyperparameters of ``model``'s set ``set_name`` with overrides."""
    where = f"{model} set '{set_name}'"
    hparams = apply_overrides(load(model, set_name), parse_overrides(overrides_text), where)
    validate(hparams, where)
    return hparams
