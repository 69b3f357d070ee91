from setuptools import find_packages, setup

setup(
    name="bnno",
    version="0.1.0",
    description=(
        "Reproduce and extend 'Latent Weights Do Not Exist: Rethinking Binarized "
        "Neural Network Optimization' (Bop, NeurIPS 2019) on TensorFlow 2.21 / Keras 3"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # The hyperparameter sets live in the repository's top-level hparams/ folder and are
    # installed as the package bnno.hparams_sets, read with importlib.resources: a wheel
    # (and so a plain `pip install .` and the Docker image) carries the YAML files, and
    # an editable install maps the package to the folder itself, so edits take effect
    # without reinstalling. hparams/__init__.py makes the folder a package that
    # setuptools' editable import hook can map.
    packages=find_packages(include=["bnno", "bnno.*"]) + ["bnno.hparams_sets"],
    package_dir={"bnno.hparams_sets": "hparams"},
    package_data={"bnno.hparams_sets": ["*.yaml"]},
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-datasets>=4.9",
        # tensorflow-datasets imports it when downloading without declaring it.
        "importlib_resources",
        "click>=8.1",
        "pyyaml>=6",
        # --init-from reads .keras and .weights.h5 files itself (Keras depends on it too).
        "h5py",
        "tensorboard>=2.21,<2.22",
        # bnno report's figures (plots are part of reproducing a paper).
        "matplotlib>=3.8",
    ],
    extras_require={
        # pytest-xdist: the suite runs in parallel processes (README's test command).
        # scikit-learn: its handwritten digits, real data for the tests of the documented
        # tutorials (docs/own-model.md) and of bnno export.
        "test": ["pytest>=8", "pytest-xdist>=3", "scikit-learn"],
        # Keras 3's JAX backend for bnno.nn (KERAS_BACKEND=jax); TensorFlow stays installed.
        "jax": ["jax>=0.4"],
        # bnno export --format lce: the Larq Compute Engine's converter and interpreter,
        # whose wheels exist for CPython 3.10-3.12 on x86-64 (Linux, macOS) only.
        "deploy": [
            "larq-compute-engine==0.16.0; python_version >= '3.10' and python_version < '3.13' "
            "and platform_machine == 'x86_64'",
        ],
    },
    entry_points={"console_scripts": ["bnno=bnno.cli:main"]},
)
