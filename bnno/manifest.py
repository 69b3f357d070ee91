"""A sweep's manifest, ``sweep.yaml`` in the sweep's directory: the sweep's definition
(model, data set, set, grid, seeds, overrides), the train options of its runs, and
every run with its values and state (pending, running, done, failed, or interrupted:
stopped by a signal after saving its step, resumed when the sweep runs again).

:mod:`bnno.sweep` writes it as the runs go; :mod:`bnno.report` reads it to list a
sweep's runs in the grid's order. Both read and write it here, and only here.
"""

import pathlib
from typing import Any, Dict

import yaml

from bnno import run_dir
from bnno.errors import RunError

__all__ = ["MANIFEST_FILE", "read_manifest", "write_manifest"]

#: The manifest's name in a sweep's directory.
MANIFEST_FILE = "sweep.yaml"


def read_manifest(path: pathlib.Path) -> Dict[str, Any]:
    """The manifest at ``path``; ``RunError`` in one sentence if it cannot be read or
    lists no runs."""
    try:
        manifest = yaml.safe_load(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise RunError(f"The sweep manifest {path} cannot be read ({run_dir.first_line(error)}).") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), list):
        raise RunError(f"The sweep manifest {path} is damaged: it lists no runs.")
    return manifest


def write_manifest(path: pathlib.Path, manifest: Dict[str, Any]) -> None:
    """Write ``manifest`` to ``path`` atomically (its folder made if need be), in the
    order of its keys."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    run_dir.atomic_write(path, yaml.safe_dump(manifest, sort_keys=False))
