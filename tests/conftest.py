"""Test-wide settings: quiet TensorFlow logs, deterministic ops, no network."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    import keras

    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def started_runs(monkeypatch):
    """The runs `bnno train` would start (the training itself is not run)."""
    from bnno import lifecycle

    runs = []

    def train(run, echo=print):
        runs.append(run)
        return {"history": [], "epochs": 0}

    monkeypatch.setattr(lifecycle, "train", train)
    return runs


@pytest.fixture
def plugin_registries(monkeypatch):
    """bnno's registries of models and plugins as they are, restored after the test: a
    plugin loaded here must not stay registered in a process that runs other tests."""
    from bnno import models, plugins

    models.names()  # bnno's own models first, as the CLI imports them
    monkeypatch.setattr(models.MODELS, "_entries", dict(models.MODELS._entries))
    monkeypatch.setattr(plugins, "_LOADED", dict(plugins._LOADED))
    monkeypatch.setattr(plugins, "_MODELS", dict(plugins._MODELS))
    return plugins


@pytest.fixture(scope="session")
def engine_cache(tmp_path_factory):
    """Where bnno makes the engine's NumPy-1 Python (pip installs NumPy 1.26 from the
    package index), once per test run: pytest-xdist's workers share it (the first makes
    it under a lock; the others wait, then reuse it). The tests that need it are skipped
    where it cannot be made."""
    pytest.importorskip("larq_compute_engine")
    import fcntl

    from bnno import engine_runtime
    from bnno.errors import RunError

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's, not the worker's
    cache = shared / "engine-cache"
    with open(shared / "engine-cache.lock", "w") as lock, pytest.MonkeyPatch.context() as patch:
        fcntl.flock(lock, fcntl.LOCK_EX)
        patch.setenv("BNNO_CACHE", str(cache))
        try:
            engine_runtime.runtime_python(echo=lambda line: None)
        except RunError as error:
            pytest.skip(f"no Python with NumPy 1.x for the engine's interpreter: {error}")
    return cache
