"""bnno's hyperparameter sets, one YAML file per model; read by :mod:`bnno.config.sets`.

This folder is their one home. setup.py installs it as the package
``bnno.hparams_sets`` (``package_dir``): a wheel carries the files as
``bnno/hparams_sets/*.yaml``, and an editable install (``pip install -e .``) maps that
package to this folder, so edits here take effect without reinstalling. This file is
what makes the folder a package an editable install can map: setuptools' import hook
finds no folder without one.
"""
