"""bnno's wheel (what `pip install .` and the Docker image install) carries the
hyperparameter sets of the repository's top-level hparams/ folder."""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
# What `pip install .` reads (the Dockerfile copies the same).
SOURCES = ("setup.py", "pyproject.toml", "README.md", "bnno", "hparams")


def build_isolation_flags():
    """Build with this environment's setuptools when it can build wheels (offline and
    faster); otherwise let pip fetch the build requirements."""
    can_build = importlib.util.find_spec("setuptools") is not None and (
        importlib.util.find_spec("wheel") is not None
        or importlib.util.find_spec("setuptools.command.bdist_wheel") is not None
    )
    return ["--no-build-isolation"] if can_build else []


def pip(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_wheel_carries_the_hyperparameter_sets(tmp_path):
    # A copy of the sources: a build in the repository would leave build/ behind.
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, source / name)
    pip("wheel", str(source), "--no-deps", "--quiet", *build_isolation_flags(), "-w", str(tmp_path / "dist"),
        cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("bnno-*.whl")
    models = sorted(path.stem for path in (ROOT / "hparams").glob("*.yaml"))
    assert models
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"bnno/hparams_sets/{model}.yaml" for model in models} <= set(names)
    assert {"bnno/hparams.py", "bnno/config/__init__.py", "bnno/config/schema.py"} <= set(names)

    target = tmp_path / "site"
    pip("install", "--no-deps", "--quiet", "--target", str(target), str(wheel), cwd=tmp_path)
    code = (
        "import json, pathlib, sys\n"
        "from importlib import resources\n"
        "import bnno\n"
        "from bnno import hparams\n"
        "target = pathlib.Path(sys.argv[1]).resolve()\n"
        "folder = pathlib.Path(str(resources.files(hparams.SETS_PACKAGE))).resolve()\n"
        "assert pathlib.Path(bnno.__file__).resolve().is_relative_to(target), bnno.__file__\n"
        "assert folder.is_relative_to(target), folder\n"
        "print(json.dumps({'models': hparams.model_names(), 'sets': hparams.set_names('binarynet'),\n"
        "                  'default': hparams.default_set('binarynet')}))\n"
    )
    # Outside the repository, so that only the installed copy can be imported.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", code, str(target)], cwd=outside, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert result.returncode == 0, result.stderr
    installed = json.loads(result.stdout.strip().splitlines()[-1])
    sets = ["adam_sec52", "bop", "bop2ndOrder", "bop2ndOrder_testExp", "bop2ndOrder_unbiased",
            "bop2ndOrder_unbiased_testExp", "bop_sec52", "default"]
    assert installed == {"models": models, "sets": sets, "default": "bop"}
