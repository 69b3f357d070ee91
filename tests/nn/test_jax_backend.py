"""bnno.nn's building-block and optimizer tests, run again on Keras's JAX backend.

Keras picks its backend once, at import, so the files below run in a subprocess with
``KERAS_BACKEND=jax``, with their own exact expectations; what only TensorFlow has
(float64 without ``jax_enable_x64``, TensorFlow checkpoints, tf.distribute) is skipped
there with its reason. The subprocess also checks that importing ``bnno.nn`` on JAX
does not import TensorFlow. Not here: test_layers.py and test_binary_conv.py (their
expectations are computed with TensorFlow ops; the TensorFlow-only speed-ups they test
are bypassed on JAX), test_bop2nd.py and test_weight_decay.py (not yet made neutral),
test_larq_parity.py (larq's golden values, compared on JAX by test_backend_parity.py's
TensorFlow-against-JAX training instead).
"""

import os
import pathlib
import subprocess
import sys

import pytest

NEUTRAL_FILES = ["test_quantizers.py", "test_optimizers.py", "test_metrics.py", "test_summary.py"]


def run_on_jax(*arguments, timeout=600):
    here = pathlib.Path(__file__).parent
    return subprocess.run(
        [sys.executable, *arguments], cwd=here.parents[1], capture_output=True, text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"}, timeout=timeout,
    )


@pytest.fixture(autouse=True)
def _jax_installed():
    pytest.importorskip("jax", reason="the JAX extra is not installed (pip install -e '.[jax]')")


def test_importing_bnno_nn_on_jax_does_not_import_tensorflow():
    result = run_on_jax(
        "-c",
        "import sys, keras, bnno.nn; assert keras.backend.backend() == 'jax'; "
        "assert 'tensorflow' not in sys.modules, 'bnno.nn imported TensorFlow'",
    )
    assert result.returncode == 0, result.stderr[-4000:]


def test_building_block_and_optimizer_tests_pass_on_jax():
    files = [f"tests/nn/{name}" for name in NEUTRAL_FILES]
    result = run_on_jax("-m", "pytest", "-q", "-p", "no:cacheprovider", *files)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
