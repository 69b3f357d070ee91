"""Named hyperparameter sets: ``hparams/<model>.yaml`` at the repository's root, and a
user's own file of sets (``--hparams-file``).

A file maps set names to flat dicts of hyperparameters. A set may name another under
``extends:`` and inherits its keys: a set of the same file, or a model's built-in set
written ``model:set`` (``extends: binarynet:bop``). The top-level key ``default_set:``
is not a set: it names the set used when none is asked for (a file with a single set
needs none). ``--hparams k=v,k=v`` overrides keys, each value parsed to the type the
set already has (``threshold=1e-6`` becomes a float, ``epochs=1`` an int).

A schedule's kind, ``<name>_decay``, is a word (``none``, ``linear``, ``step``,
``piecewise``; see ``bnno.recipe``). A number there is the step factor of "A Bop and
Beyond" (Suarez-Ramirez et al., 2021), whose command lines write
``epochs_decay=100,gamma_decay=0.1``: see :func:`factor_decays`.

:func:`validate` checks every value a training run depends on (types, finite numbers,
ranges, choices, complete schedules), so that a mistake is one ``UsageError`` sentence
before training rather than a traceback during it. This module reads YAML only: it
never imports TensorFlow.
"""

import copy
import dataclasses
import functools
import math
import pathlib
from importlib import resources
from typing import Any, Dict, List, Optional, Tuple

import yaml

from bnno.errors import RunError, UsageError
from bnno.registry import unknown_choice_message

#: The package holding the models' files: setup.py installs the repository's top-level
#: ``hparams/`` folder as this package (see the comment there).
SETS_PACKAGE = "bnno.hparams_sets"
#: The top-level key of a file that names its default set (it is not a set).
DEFAULT_SET_KEY = "default_set"
#: The top-level key of a file that holds its named sweep grids (not a set either).
GRIDS_KEY = "grids"
#: The key of a set that names the set it inherits from.
EXTENDS_KEY = "extends"

OPTIMIZERS = ("adam", "bop", "bop2nd")
NORMALIZATIONS = ("batch", "layer")
DECAYS = ("none", "linear", "step", "piecewise")
CONSTRAINTS = ("none", "weight_clip")

#: The largest whole number a count (epochs, batch size, an epoch boundary) may be:
#: TensorFlow holds step counts in 32- and 64-bit integers.
MAX_WHOLE = 2**31 - 1

# Keys any set may be given, with their types, beyond the keys the set already has:
# the schedule settings of Adam's learning rate and of Bop's and Bop2ndOrder's gamma,
# threshold and sigma (see ``bnno.recipe``).
_SCHEDULE_KEYS = {
    "{}": float,
    "{}_decay": str,
    "{}_end": float,
    "{}_decay_factor": float,
    "{}_decay_epochs": int,
    "{}_boundaries": list,
    "{}_factors": list,
}
_SCHEDULES = ("learning_rate", "gamma", "threshold", "sigma")
_DECAY_KEYS = tuple(f"{name}_decay" for name in _SCHEDULES)  # each schedule's kind
COMMON_KEYS: Dict[str, type] = {
    "epochs": int,
    "batch_size": int,
    "optimizer": str,
    "threshold": float,
    "input_quantizer": str,
    "kernel_quantizer": str,
    "kernel_constraint": str,
    "normalization": str,  # batch or layer (models that take it)
    "bias_correction": bool,  # Bop2ndOrder's
    "epochs_decay": int,  # "A Bop and Beyond"'s period of factor decays (factor_decays)
    "weight_decay": float,  # coupled L2 on what Adam trains (bnno.recipe)
    "xavier_learning_rate_scaling": bool,  # adam sets: latent kernels' rates times 1/H (bnno.recipe)
    "channel_scale": bool,  # a real factor per output channel of binary convolutions (resnet18_tricks)
    **{k.format(s): t for s in _SCHEDULES for k, t in _SCHEDULE_KEYS.items()},
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
    **{f"{s}_boundaries": (int, "whole numbers of epochs (e.g. [30, 60])") for s in _SCHEDULES},
    **{f"{s}_factors": (float, "numbers of at least 0 (e.g. [1, 0.1, 0.01])") for s in _SCHEDULES},
}

#: Bounds of numeric keys: (lowest, whether the lowest itself is allowed, highest or
#: None). Bop's gamma is a rate in (0, 1] (the paper uses 1e-5 to 1e-2), and so is
#: Bop2ndOrder's sigma; a threshold may be 0; a "decay" factor shrinks.
BOUNDS: Dict[str, Tuple[float, bool, Optional[float]]] = {
    "epochs": (1, True, MAX_WHOLE),
    "batch_size": (1, True, MAX_WHOLE),
    "epochs_decay": (1, True, MAX_WHOLE),
    "threshold": (0, True, None),
    "threshold_end": (0, True, None),
    "sigma": (0, False, 1),
    "sigma_end": (0, True, 1),
    "weight_decay": (0, True, None),
    "learning_rate": (0, True, None),
    "learning_rate_end": (0, True, None),
    "gamma": (0, False, 1),
    "gamma_end": (0, True, 1),
    **{f"{s}_decay_factor": (0, False, 1) for s in _SCHEDULES},
    **{f"{s}_decay_epochs": (1, True, MAX_WHOLE) for s in _SCHEDULES},
}


# --- files ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _SetFile:
    """The sets of one YAML file: a model's built-in file, or a user's."""

    label: str  # the model (built-in), or the path as the user wrote it
    builtin: bool
    sets: Dict[str, Dict[str, Any]]
    default_set: Optional[str]
    grids: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)

    def name(self) -> str:
        return _file_name(self.label, self.builtin)


def _file_name(label: str, builtin: bool) -> str:
    """How messages name a file: "hparams/binarynet.yaml", or the user's path."""
    return f"hparams/{label}.yaml" if builtin else label


def _sets_folder():
    try:
        return resources.files(SETS_PACKAGE)
    except ModuleNotFoundError:  # an editable install made before hparams/ moved
        raise RunError(
            f"bnno's hyperparameter sets (package {SETS_PACKAGE}) are not installed; "
            "reinstall bnno (pip install -e . in its repository)."
        ) from None


def model_names() -> List[str]:
    """The models that have built-in sets (a file ``hparams/<model>.yaml``)."""
    return sorted(f.name[: -len(".yaml")] for f in _sets_folder().iterdir() if f.name.endswith(".yaml"))


@functools.lru_cache(maxsize=None)
def _builtin(model: str) -> _SetFile:
    path = _sets_folder() / f"{model}.yaml"
    if not path.is_file():
        raise UsageError(unknown_choice_message("model", model, model_names(), "with hyperparameter sets"))
    return _parse_file(path.read_text(encoding="utf-8"), model, builtin=True)


def _user_file(file: str) -> _SetFile:
    path = pathlib.Path(file).expanduser()
    if not path.exists():
        raise UsageError(f"Hyperparameter file {file} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"Hyperparameter file {file} is not UTF-8 text.") from None
    except OSError as error:
        raise UsageError(f"Hyperparameter file {file} cannot be read: {error.strerror}.") from None
    return _parse_file(text, str(file), builtin=False)


def _parse_file(text: str, label: str, builtin: bool) -> _SetFile:
    """The sets of a file's ``text``; ``UsageError`` saying what is wrong with it."""
    name = _file_name(label, builtin)
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UsageError(f"Hyperparameter file {name} is not valid YAML: {_yaml_problem(error)}.") from None
    except (ValueError, TypeError, RecursionError) as error:  # e.g. "!!int x"
        raise UsageError(f"Hyperparameter file {name} is not valid YAML: {error}.") from None
    if not isinstance(content, dict) or not content:
        raise UsageError(
            f"Hyperparameter file {name} must map set names to sets of hyperparameters "
            "(like bnno's hparams/<model>.yaml)."
        )
    default_set = content.pop(DEFAULT_SET_KEY, None)
    grids = content.pop(GRIDS_KEY, None) or {}
    for set_name, values in content.items():
        is_set = isinstance(values, dict) and all(isinstance(key, str) for key in values)
        if not (isinstance(set_name, str) and is_set):
            raise UsageError(
                f"Hyperparameter file {name} must map set names to sets of key: value pairs; "
                f"its entry '{set_name}' is not one."
            )
    if not content:
        raise UsageError(f"Hyperparameter file {name} has no sets, only {DEFAULT_SET_KEY}.")
    if default_set is not None and (not isinstance(default_set, str) or default_set not in content):
        raise UsageError(
            unknown_choice_message(DEFAULT_SET_KEY, str(default_set), list(content), f"in {name}")
        )
    _check_grids(grids, content, name)
    return _SetFile(label, builtin, content, default_set, grids)


def _check_grids(grids: Any, sets: Dict[str, Any], name: str) -> None:
    """A file's named sweep grids: ``{name: {hparams_set: S, hparams: {k: v}, grid: {k: [v, ...]},
    log_every: N}}``; ``log_every`` is the run option ``--log-every`` for every run of the grid."""
    if not isinstance(grids, dict):
        raise UsageError(f"{GRIDS_KEY} in hyperparameter file {name} must map grid names to grids.")
    for grid_name, grid in grids.items():
        log_every = grid.get("log_every", 1) if isinstance(grid, dict) else None
        valid = (
            isinstance(grid, dict) and set(grid) <= {"hparams_set", "hparams", "grid", "log_every"}
            and isinstance(grid.get("grid"), dict) and grid["grid"]
            and all(isinstance(values, list) and values for values in grid["grid"].values())
            and isinstance(grid.get("hparams", {}), dict)
            and isinstance(log_every, int) and not isinstance(log_every, bool) and log_every >= 1
        )
        if not valid:
            raise UsageError(
                f"Grid '{grid_name}' in hyperparameter file {name} must have grid: {{key: [values]}} "
                "and may have hparams_set:, hparams: {key: value} and log_every: N (steps, at least 1)."
            )
        if grid.get("hparams_set") is not None and grid["hparams_set"] not in sets:
            raise UsageError(unknown_choice_message(
                "hyperparameter set", str(grid["hparams_set"]), list(sets), f"in grid '{grid_name}' of {name}"))


def _yaml_problem(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None) or "it cannot be parsed"
    mark = getattr(error, "problem_mark", None)
    return f"{problem} (line {mark.line + 1})" if mark is not None else problem


def _source(model: str, file: Optional[str]) -> _SetFile:
    return _user_file(file) if file else _builtin(model)


# --- sets ----------------------------------------------------------------------------


def set_names(model: str, file: Optional[str] = None) -> List[str]:
    """The names of ``model``'s hyperparameter sets (of ``file`` when given)."""
    return sorted(_source(model, file).sets)


def grid_names(model: str, file: Optional[str] = None) -> List[str]:
    """The names of the sweep grids shipped with ``model``'s sets (of ``file`` when given)."""
    return sorted(_source(model, file).grids)


def grid_set(model: str, name: str, file: Optional[str] = None) -> Dict[str, Any]:
    """The named sweep grid ``name`` of ``model``: ``{"hparams_set": set or None,
    "hparams": {key: value}, "grid": {key: [values]}, "log_every": steps or None}``
    (values as YAML read them)."""
    grids = _source(model, file).grids
    where = f"for {model}" if file is None else f"in {file}"
    if not grids:
        raise UsageError(f"There are no grid sets {where}; give the grid with --grid KEY=V1,V2,...")
    if name not in grids:
        raise UsageError(unknown_choice_message("grid set", name, list(grids), where))
    grid = copy.deepcopy(grids[name])
    return {"hparams_set": grid.get("hparams_set"), "hparams": grid.get("hparams", {}), "grid": grid["grid"],
            "log_every": grid.get("log_every")}


def default_set(model: str, file: Optional[str] = None) -> str:
    """The set a command uses when none is named: the ``default_set`` of ``model``'s file
    (of ``file`` when given), or the file's only set."""
    return _default_set(_source(model, file))


def _default_set(source: _SetFile) -> str:
    if source.default_set is not None:
        return source.default_set
    if len(source.sets) == 1:
        return next(iter(source.sets))
    raise UsageError(
        f"Hyperparameter file {source.name()} has several sets and no {DEFAULT_SET_KEY}; "
        f"pass --hparams-set with one of: {', '.join(sorted(source.sets))}."
    )


def load(model: str, set_name: str, file: Optional[str] = None) -> Dict[str, Any]:
    """The set ``set_name`` of ``model`` (of ``file`` when given) with ``extends``
    resolved and the values of number keys as floats (a fresh dict, not validated)."""
    return _load(_source(model, file), set_name)


def _load(source: _SetFile, set_name: str) -> Dict[str, Any]:
    if set_name not in source.sets:
        where = f"for {source.label}" if source.builtin else f"in {source.name()}"
        raise UsageError(unknown_choice_message("hyperparameter set", set_name, list(source.sets), where))
    return _floats_as_floats(copy.deepcopy(_resolve(source, set_name, chain=())))


def _where(source: _SetFile, set_name: str) -> str:
    """How messages place a set: "binarynet set 'bop'", "set 'mine' of my.yaml"."""
    return f"{source.label} set '{set_name}'" if source.builtin else f"set '{set_name}' of {source.label}"


_Node = Tuple[bool, str, str]  # (built-in, file label, set name)


def _resolve(source: _SetFile, name: str, chain: Tuple[_Node, ...]) -> Dict[str, Any]:
    """The keys of set ``name`` merged over those of the sets it extends."""
    node = (source.builtin, source.label, name)
    if node in chain:
        names = [f"{label}:{set_}" if builtin else set_ for builtin, label, set_ in chain + (node,)]
        raise UsageError(f"Hyperparameter sets extend each other in a loop: {' -> '.join(names)}.")
    values = dict(source.sets[name])
    parent = values.pop(EXTENDS_KEY, None)
    if parent is None:
        return values
    parent_source, parent_name = _parent(source, name, parent)
    return {**_resolve(parent_source, parent_name, chain + (node,)), **values}


def _parent(source: _SetFile, name: str, parent: Any) -> Tuple[_SetFile, str]:
    """(file, set) that set ``name`` extends: ``parent`` names a set of the same file,
    or ``model:set`` a built-in one."""
    if not isinstance(parent, str):
        raise UsageError(
            f"{EXTENDS_KEY} of {_where(source, name)} must name a set, e.g. bop or binarynet:bop."
        )
    if ":" in parent:
        model, parent_name = parent.split(":", 1)
        if model not in model_names():
            raise UsageError(unknown_choice_message(
                "model", model, model_names(), f"in {EXTENDS_KEY} of {_where(source, name)}"
            ))
        parent_source = _builtin(model)
    else:
        parent_source, parent_name = source, parent
    if parent_name not in parent_source.sets:
        kind = "set" if parent_source is source else f"{parent_source.label} set"
        raise UsageError(unknown_choice_message(
            kind, parent_name, list(parent_source.sets), f"in {EXTENDS_KEY} of {_where(source, name)}"
        ))
    return parent_source, parent_name


def _floats_as_floats(values: Dict[str, Any]) -> Dict[str, Any]:
    """``values`` with the number keys of ``COMMON_KEYS`` as floats: YAML reads ``5`` as
    an int and ``1e-3`` (no dot, YAML 1.1) as a string. Anything else is left for
    :func:`validate` to refuse."""
    for key, value in values.items():
        if COMMON_KEYS.get(key) is float:
            number = _as_float(value)
            values[key] = value if number is None else number
    return values


def _as_float(value: Any) -> Optional[float]:
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


# --- overrides -----------------------------------------------------------------------


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
        expected = _type_of(hparams, key, where)
        result[key] = _parse_value(key, text, expected)
    return result


def _type_of(hparams: Dict[str, Any], key: str, where: str) -> type:
    """The type an override of ``key`` must have: the set's value's, or the common key's;
    ``object`` (anything YAML reads) for a key the set leaves empty. A schedule's kind
    (``gamma_decay``) is always text: a set may hold a factor there (``factor_decays``),
    and an override may still name a kind."""
    if key in _DECAY_KEYS:
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


def _parse_value(key: str, text: str, expected: type):
    if expected is str:
        return text
    try:
        value = yaml.safe_load(text)
    # YAML raises more than YAMLError (ValueError for "!!int x", RecursionError for
    # deep nesting): text it cannot read is taken as text, refused below as the wrong type.
    except Exception:  # noqa: BLE001
        value = text
    if expected is object:
        return value
    if expected is float:
        number = _as_float(value)
        if number is not None:
            return number
    elif isinstance(value, expected) and (expected is bool or not isinstance(value, bool)):
        return value
    raise UsageError(f"Hyperparameter {key}={text} must be {_TYPE_NAMES[expected]}.")


_TYPE_NAMES = {
    int: "a whole number (e.g. 100)",
    float: "a number (e.g. 1e-6)",
    bool: "true or false",
    list: "a list in brackets (e.g. [10, 20])",
    str: "text (e.g. ste_sign)",
}


# --- validation ----------------------------------------------------------------------


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
    _check_schedule(hparams, "learning_rate", where)
    if hparams["optimizer"] in ("bop", "bop2nd"):
        _check_schedule(hparams, "threshold", where)
        _check_schedule(hparams, "gamma", where)
    if hparams["optimizer"] == "bop2nd":
        _check_schedule(hparams, "sigma", where)
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


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _check_types(hparams: Dict[str, Any], where: str) -> None:
    for key, expected in COMMON_KEYS.items():
        value = hparams.get(key)
        if value is None:
            continue
        fits = _is_whole(value) if expected is int else isinstance(value, expected)
        if not fits:
            raise UsageError(
                f"Hyperparameter {key} of {where} must be {_TYPE_NAMES[expected]}; got {value!r}."
            )
    for key, value in hparams.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"Hyperparameter {key} of {where} must be a finite number; got {value}.")
    for key, (element, description) in LIST_ELEMENTS.items():
        values = hparams.get(key)
        if values is None:
            continue
        if element is int:
            fits = all(_is_whole(v) and 0 <= v <= MAX_WHOLE for v in values)
        else:
            fits = all(_is_finite_number(v) and v >= 0 for v in values)
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


def _check_schedule(hparams: Dict[str, Any], name: str, where: str) -> None:
    if not isinstance(hparams.get(name), float):
        raise UsageError(f"Hyperparameter {name} of {where} must be a number.")
    decay = hparams.get(f"{name}_decay") or "none"
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


def resolve(
    model: str,
    set_name: Optional[str] = None,
    overrides_text: Optional[str] = None,
    file: Optional[str] = None,
) -> Dict[str, Any]:
    """The validated hyperparameters of ``model``'s set ``set_name`` (of ``file``, a
    user's YAML file of sets, when given; the default set when ``set_name`` is None),
    with the overrides ``overrides_text`` (``"k=v,k=v"``) applied."""
    source = _source(model, file)
    set_name = _default_set(source) if set_name is None else set_name
    where = _where(source, set_name)
    hparams = apply_overrides(_load(source, set_name), parse_overrides(overrides_text), where)
    hparams = factor_decays(hparams, where)
    validate(hparams, where)
    return hparams


#: "A Bop and Beyond"'s period, in epochs, of the schedules it gives as factors.
EPOCHS_DECAY_KEY = "epochs_decay"


def factor_decays(hparams: Dict[str, Any], where: str) -> Dict[str, Any]:
    """``hparams`` with every schedule given as a factor written in bnno's keys.

    bnno names a schedule's kind in ``<name>_decay`` with a word (``none``, ``linear``,
    ``step``, ``piecewise``). "A Bop and Beyond" (Suarez-Ramirez et al., 2021,
    arXiv:2104.05124) gives the same key a number, the factor of a staircase decay whose
    period is its ``epochs_decay``, shared by every schedule: its command lines write
    ``epochs_decay=100,threshold_decay=0.1,gamma_decay=0.1,sigma_decay=0.1``. A word is
    never a number, so both read unambiguously: a finite number in ``<name>_decay`` (or
    its text, from ``--hparams``) becomes ``<name>_decay=step``, ``<name>_decay_factor``
    = the number and ``<name>_decay_epochs`` = ``epochs_decay``; anything else is left
    for :func:`validate`. A factor without ``epochs_decay`` is a ``UsageError`` that
    shows both ways to write it. The result is what a run records.
    """
    result = dict(hparams)
    period = result.get(EPOCHS_DECAY_KEY)
    for key in _DECAY_KEYS:
        value = result.get(key)
        factor = None if value is None or value in DECAYS else _as_float(value)
        if factor is None or not math.isfinite(factor):
            continue
        if period is None:
            raise UsageError(
                f"{key}={value} in {where} is a factor, which needs {EPOCHS_DECAY_KEY}=N (times "
                f"{value} every N epochs, as in 'A Bop and Beyond'); or write "
                f"{key}=step,{key}_factor={value},{key}_epochs=N."
            )
        if not _is_whole(period):
            continue  # validate() says what epochs_decay must be
        result.update({key: "step", f"{key}_factor": factor, f"{key}_epochs": period})
    return result
