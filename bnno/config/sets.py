"""Named hyperparameter sets: ``hparams/<model>.yaml`` at the repository's root, and a
user's own file of sets (``--hparams-file``).

A file maps set names to flat dicts of hyperparameters. A set may name another under
``extends:`` and inherits its keys: a set of the same file, or a model's built-in set
written ``model:set`` (``extends: binarynet:bop``). The top-level key ``default_set:``
is not a set: it names the set used when none is asked for (a file with a single set
needs none). ``grids:`` holds the file's named sweep grids. This module reads YAML
only: it never imports TensorFlow.
"""

import copy
import dataclasses
import functools
import pathlib
from importlib import resources
from typing import Any, Dict, List, Optional, Tuple

import yaml

from bnno.config.keys import COMMON_KEYS, as_float
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


# --- files ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SetFile:
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
def _builtin(model: str) -> SetFile:
    path = _sets_folder() / f"{model}.yaml"
    if not path.is_file():
        raise UsageError(unknown_choice_message("model", model, model_names(), "with hyperparameter sets"))
    return _parse_file(path.read_text(encoding="utf-8"), model, builtin=True)


def _user_file(file: str) -> SetFile:
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


def _parse_file(text: str, label: str, builtin: bool) -> SetFile:
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
    return SetFile(label, builtin, content, default_set, grids)


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


def source_of(model: str, file: Optional[str]) -> SetFile:
    if not file:
        from bnno import plugins

        plugin = plugins.plugin_of(model)
        if plugin is not None:  # a plugin's model: its sets are the user's own file
            raise UsageError(
                f"Model {model} (plugin {plugin.given}) has no sets of bnno's; pass --hparams-file "
                "with sets for it (a set may extend one of bnno's, e.g. extends: binarynet:bop)."
            )
    return _user_file(file) if file else _builtin(model)


# --- sets ----------------------------------------------------------------------------


def set_names(model: str, file: Optional[str] = None) -> List[str]:
    """The names of ``model``'s hyperparameter sets (of ``file`` when given)."""
    return sorted(source_of(model, file).sets)


def grid_names(model: str, file: Optional[str] = None) -> List[str]:
    """The names of the sweep grids shipped with ``model``'s sets (of ``file`` when given)."""
    return sorted(source_of(model, file).grids)


def grid_set(model: str, name: str, file: Optional[str] = None) -> Dict[str, Any]:
    """The named sweep grid ``name`` of ``model``: ``{"hparams_set": set or None,
    "hparams": {key: value}, "grid": {key: [values]}, "log_every": steps or None}``
    (values as YAML read them)."""
    grids = source_of(model, file).grids
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
    return default_of(source_of(model, file))


def default_of(source: SetFile) -> str:
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
    return load_set(source_of(model, file), set_name)


def load_set(source: SetFile, set_name: str) -> Dict[str, Any]:
    if set_name not in source.sets:
        where = f"for {source.label}" if source.builtin else f"in {source.name()}"
        raise UsageError(unknown_choice_message("hyperparameter set", set_name, list(source.sets), where))
    return _floats_as_floats(copy.deepcopy(_resolve(source, set_name, chain=())))


def set_label(source: SetFile, set_name: str) -> str:
    """How messages place a set: "binarynet set 'bop'", "set 'mine' of my.yaml"."""
    return f"{source.label} set '{set_name}'" if source.builtin else f"set '{set_name}' of {source.label}"


_Node = Tuple[bool, str, str]  # (built-in, file label, set name)


def _resolve(source: SetFile, name: str, chain: Tuple[_Node, ...]) -> Dict[str, Any]:
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


def _parent(source: SetFile, name: str, parent: Any) -> Tuple[SetFile, str]:
    """(file, set) that set ``name`` extends: ``parent`` names a set of the same file,
    or ``model:set`` a built-in one."""
    if not isinstance(parent, str):
        raise UsageError(
            f"{EXTENDS_KEY} of {set_label(source, name)} must name a set, e.g. bop or binarynet:bop."
        )
    if ":" in parent:
        model, parent_name = parent.split(":", 1)
        if model not in model_names():
            raise UsageError(unknown_choice_message(
                "model", model, model_names(), f"in {EXTENDS_KEY} of {set_label(source, name)}"
            ))
        parent_source = _builtin(model)
    else:
        parent_source, parent_name = source, parent
    if parent_name not in parent_source.sets:
        kind = "set" if parent_source is source else f"{parent_source.label} set"
        raise UsageError(unknown_choice_message(
            kind, parent_name, list(parent_source.sets), f"in {EXTENDS_KEY} of {set_label(source, name)}"
        ))
    return parent_source, parent_name


def _floats_as_floats(values: Dict[str, Any]) -> Dict[str, Any]:
    """``values`` with the number keys of ``COMMON_KEYS`` as floats: YAML reads ``5`` as
    an int and ``1e-3`` (no dot, YAML 1.1) as a string. Anything else is left for
    :func:`validate` to refuse."""
    for key, value in values.items():
        if COMMON_KEYS.get(key) is float:
            number = as_float(value)
            values[key] = value if number is None else number
    return values

