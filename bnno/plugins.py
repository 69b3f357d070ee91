"""Users' own models, from outside the package: plugins.

A plugin is a Python file or an importable module that registers model builders with
:func:`bnno.register_model` (the decorator bnno's own models use, as timm's
``@register_model``), and may register preprocess functions or tensorflow-datasets
builders the same way (importing a tfds ``DatasetBuilder`` registers it with tfds).
bnno imports plugins from three places, all through :func:`load`:

- ``--plugin FILE_OR_MODULE`` (repeatable) on every command that names a model;
- the environment variable ``BNNO_PLUGINS`` (files or modules separated by ``:``; for
  clusters, where a job's environment reaches every node);
- the ``bnno.plugins`` entry-point group of installed packages (``[project.entry-points.
  "bnno.plugins"] my_models = "my_package.models"`` in their ``pyproject.toml``).

A run directory is data, never code: reading a run (resume, ``evaluate``,
``--init-from``, ``report``) never imports a file because its record names it. A run
trained with a plugin's model records the plugin and the SHA-256 of its file
(:meth:`Plugin.record`); :func:`check_record` refuses, in one sentence, a record whose
plugin the user did not give (saying which ``--plugin`` to add) or whose file changed.

Nothing here imports TensorFlow; a plugin may.
"""

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import pathlib
import sys
import traceback
from typing import Any, Dict, Iterator, List, Optional, Sequence

from bnno.errors import UsageError

__all__ = ["ENTRY_POINT_GROUP", "ENV_VAR", "Plugin", "check_record", "load", "plugin_of"]

ENV_VAR = "BNNO_PLUGINS"
ENTRY_POINT_GROUP = "bnno.plugins"


@dataclasses.dataclass(frozen=True)
class Plugin:
    """One imported plugin: as the user named it (``given``: an absolute file path, a
    module name, or ``entry point NAME``), and the file that was read, with its hash."""

    given: str
    file: Optional[str]
    sha256: Optional[str]

    def record(self) -> Dict[str, Optional[str]]:
        """What a run's ``hparams.yaml`` keeps of it."""
        return {"plugin": self.given, "file": self.file, "sha256": self.sha256}

    @property
    def option(self) -> str:
        """How to give it again on a command line: ``--plugin X`` (an installed entry
        point needs nothing)."""
        return "" if self.given.startswith("entry point ") else f"--plugin {self.given}"


_LOADED: Dict[str, Plugin] = {}  # by absolute file, module name or entry point
_MODELS: Dict[str, Plugin] = {}  # model name -> the plugin that registered it
_loading: List[Plugin] = []  # the plugin being imported (its registrations are its own)


def file_hash(path: str) -> Optional[str]:
    """The SHA-256 of a file's bytes (None when there is no such file)."""
    try:
        return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def loading() -> Optional[Plugin]:
    """The plugin being imported now (None outside a plugin's import)."""
    return _loading[-1] if _loading else None


def note_model(name: str) -> None:
    """Remember which plugin registered model ``name`` (called by ``register_model``)."""
    plugin = loading()
    if plugin is not None:
        _MODELS[name] = plugin


def plugin_of(model: str) -> Optional[Plugin]:
    """The plugin that registered ``model`` (None for bnno's own models)."""
    return _MODELS.get(model)


def record_of(model: str) -> Optional[Dict[str, Optional[str]]]:
    """What a run's record keeps of the plugin that provides ``model`` (None for bnno's)."""
    plugin = plugin_of(model)
    return plugin.record() if plugin else None


def load(given: Sequence[str] = (), *, environment: bool = True, entry_points: bool = True) -> List[Plugin]:
    """Import the plugins ``given`` (files or modules, as ``--plugin`` names them), then
    those of ``BNNO_PLUGINS`` and of installed packages' entry points; each once per
    process. Returns the plugins of ``given``. ``UsageError`` in one sentence for a
    plugin that does not exist or fails to import (its file, line and error)."""
    plugins = [_load_named(name, "--plugin") for name in given]
    if environment:
        for name in _environment_plugins():
            _load_named(name, ENV_VAR)
    if entry_points:
        for entry_point in _entry_points():
            _load_entry_point(entry_point)
    return plugins


def _environment_plugins() -> Iterator[str]:
    for name in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if name.strip():
            yield name.strip()


def _entry_points():
    from importlib import metadata

    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def _looks_like_file(name: str) -> bool:
    """A path (``models.py``, ``./x``, ``dir/x``) rather than a module name; a package's
    folder in the working directory is imported as the module it is."""
    return name.endswith(".py") or os.sep in name or "/" in name or os.path.isfile(name)


def _load_named(name: str, where: str) -> Plugin:
    if _looks_like_file(name):
        path = pathlib.Path(name).expanduser().resolve()
        if not path.is_file():
            raise UsageError(f"{where} {name}: there is no such file; pass a Python file or an importable module.")
        return _once(str(path), lambda plugin: _import_file(path, plugin), file=str(path))
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise UsageError(
            f"{where} {name}: there is no such file, and no importable module of that name; pass a "
            "Python file (.py) or a module on the Python path."
        )
    return _once(name, lambda plugin: importlib.import_module(name), file=spec.origin)


def _load_entry_point(entry_point) -> Plugin:
    key = f"entry point {entry_point.name}"
    module = entry_point.value.split(":")[0].strip()
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None

    def load(plugin):
        loaded = entry_point.load()
        if callable(loaded) and not isinstance(loaded, type(sys)):
            loaded()  # a register() function rather than a module that registers on import

    return _once(key, load, file=spec.origin if spec else None)


def _once(key: str, do_import, file: Optional[str]) -> Plugin:
    if key in _LOADED:
        return _LOADED[key]
    plugin = Plugin(given=key, file=file, sha256=file_hash(file) if file else None)
    _loading.append(plugin)
    try:
        do_import(plugin)
    except UsageError as error:
        raise UsageError(f"Plugin {key}: {error}") from None
    except BaseException as error:  # noqa: BLE001 - any failure of the user's code, one sentence
        if isinstance(error, KeyboardInterrupt):
            raise
        raise UsageError(f"Plugin {key} cannot be imported: {where_it_failed(error, file)}.") from None
    finally:
        _loading.pop()
    _LOADED[key] = plugin
    return plugin


def _import_file(path: pathlib.Path, plugin: Plugin) -> Any:
    """Import the file ``path`` as a module of its own (its folder on ``sys.path``
    meanwhile, so that it may import its neighbours)."""
    module_name = f"bnno_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    finally:
        sys.path.remove(str(path.parent))
    return module


def where_it_failed(error: BaseException, file: Optional[str]) -> str:
    """``line N: Type: first line of the message``, at the plugin file's own line where
    it has one (else the innermost line of the traceback)."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    kind = type(error).__name__
    if isinstance(error, SyntaxError) and error.lineno:
        text = error.msg
        place = f"{error.filename}, line {error.lineno}" if error.filename != file else f"line {error.lineno}"
        return f"{place}: {kind}: {text}"
    frames = traceback.extract_tb(error.__traceback__)
    own = [frame for frame in frames if file and os.path.abspath(frame.filename) == os.path.abspath(file)]
    frame = own[-1] if own else (frames[-1] if frames else None)
    place = ""
    if frame is not None:
        place = f"line {frame.lineno}: " if own else f"{frame.filename}, line {frame.lineno}: "
    return f"{place}{kind}" + (f": {message}" if message else "")


def check_record(record: Dict[str, Any], where: str) -> None:
    """Refuse to use a run whose model came from a plugin that is not loaded now (it
    says which ``--plugin`` to add) or whose file changed since the run recorded it.
    Imports nothing: a record is data."""
    recorded = record.get("plugin")
    if not recorded:
        return
    model = record.get("model")
    plugin = plugin_of(model)
    if plugin is None:
        given = recorded.get("plugin") or recorded.get("file")
        how = (f"install the package that provides it ({given})" if str(given).startswith("entry point ")
               else f"add --plugin {given}")
        raise UsageError(
            f"{where} was trained with model '{model}' of a plugin, which bnno does not import "
            f"unless told to; {how}."
        )
    if recorded.get("sha256") and plugin.sha256 != recorded["sha256"]:
        raise UsageError(
            f"{where} was trained with model '{model}' of {recorded.get('file')}, which has changed "
            f"since (SHA-256 {recorded['sha256'][:12]}... then, {str(plugin.sha256)[:12]}... now); "
            "restore that file, or train into a new --output-dir."
        )
