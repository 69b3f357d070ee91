"""``--hparams k=v,k=v``: overrides of a set's keys, each value parsed once to the type
the set already gives the key (``threshold=1e-6`` becomes a float, ``epochs=1`` an
int), or the type :data:`bnno.config.keys.COMMON_KEYS` gives a key the set lacks.
Commas inside brackets belong to list values (``gamma_boundaries=[30, 60]``)."""

from typing import Any, Dict, List, Optional

import yaml

from bnno.config.keys import COMMON_KEYS, DECAY_KEYS, TYPE_NAMES, as_float
from bnno.errors import UsageError
from bnno.registry import unknown_choice_message


def split_top_level(text: str, what: str) -> List[str]:
    """``text`` split on the commas outside brackets, each part stripped, empty parts
    left out: ``"a=1, b=[1, 2],"`` -> ``["a=1", "b=[1, 2]"]``. Unbalanced brackets are a
    ``UsageError`` that names the text as ``what`` ("Hyperparameter overrides '...'")."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0:
            break
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise UsageError(f"{what} have unbalanced brackets [ ].")
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def parse_overrides(text: Optional[str]) -> Dict[str, str]:
    """``"a=1,b=[1, 2],c=x"`` -> ``{"a": "1", "b": "[1, 2]", "c": "x"}`` (raw strings).

    Commas inside brackets belong to list values, so lists can be overridden too. An
    item that is not ``key=value``, unbalanced brackets or a key given twice is a
    ``UsageError``.
    """
    if not text:
        return {}
    overrides = {}
    for item in split_top_level(text, f"Hyperparameter overrides '{text}'"):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not key or not equals:
            raise UsageError(f"Hyperparameter override '{item}' is not of the form key=value.")
        if not value:
            raise UsageError(f"Hyperparameter override '{item}' has no value.")
        if key in overrides:
            raise UsageError(f"Hyperparameter {key} is overridden twice.")
        overrides[key] = value
    return overrides


def apply_overrides(hparams: Dict[str, Any], overrides: Dict[str, str], where: str) -> Dict[str, Any]:
    """``hparams`` updated with ``overrides``, each value parsed to its key's type.

    ``where`` names the set in messages ("binarynet set 'bop'"). An unknown key, or a
    value that does not parse as its key's type, is a ``UsageError`` naming it.
    """
    result = dict(hparams)
    for key, text in overrides.items():
        expected = type_of(hparams, key, where)
        result[key] = parse_value(key, text, expected)
    return result


def type_of(hparams: Dict[str, Any], key: str, where: str) -> type:
    """The type an override of ``key`` must have: the set's value's, or the common key's;
    ``object`` (anything YAML reads) for a key the set leaves empty. A schedule's kind
    (``gamma_decay``) is always text: a set may hold a factor there (``factor_decays``),
    and an override may still name a kind."""
    if key in DECAY_KEYS:
        return str
    if key in hparams and hparams[key] is not None:
        kind = type(hparams[key])
        return kind if kind in (bool, int, float, str, list) else object
    if key in COMMON_KEYS:
        return COMMON_KEYS[key]
    if key in hparams:
        return object
    raise UsageError(
        unknown_choice_message("hyperparameter", key, list(hparams) + list(COMMON_KEYS), f"for {where}")
    )


def parse_value(key: str, text: str, expected: type):
    """``text`` (as ``--hparams`` or ``--grid`` gives it) as a value of type ``expected``
    (see :func:`type_of`); ``UsageError`` naming the key when it is not one."""
    if expected is str:
        return text
    try:
        value = yaml.safe_load(text)
    # YAML raises more than YAMLError (ValueError for "!!int x", RecursionError for
    # deep nesting): text it cannot read is taken as text, refused below as the wrong type.
    except Exception:  # noqa: BLE001
        value = text
    return typed_value(key, value, expected, shown=text)


def typed_value(key: str, value: Any, expected: type, shown: Optional[str] = None):
    """``value`` (as YAML read it) as type ``expected``: a whole number where a float is
    expected becomes one, a schedule's kind may be a word or a factor; ``UsageError``
    naming the key (and ``shown``, the text given) when it is not one."""
    if expected is object:
        return value
    if expected is str:  # a schedule's kind: a word, or "A Bop and Beyond"'s factor
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return value
    elif expected is float:
        number = as_float(value)
        if number is not None:
            return number
    elif isinstance(value, expected) and (expected is bool or not isinstance(value, bool)):
        return value
    raise UsageError(f"Hyperparameter {key}={value if shown is None else shown} must be {TYPE_NAMES[expected]}.")

