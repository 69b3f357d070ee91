"""bnno.nn's building-block and optimizer tests, run again on Keras's JAX backend.

Keras picks its backend once, at import, so the files in ``NEUTRAL_FILES`` run in
subprocesses with ``KERAS_BACKEND=jax``, with their own exact expectations (NumPy's, or
worked by hand): quantizers, layers (convolutions against NumPy's), Bop, Bop2ndOrder,
CaseOptimizer, coupled weight decay, Xavier learning-rate scaling, metrics and model
summaries. What only TensorFlow has is skipped there with its reason: float64 without
``jax_enable_x64`` (test_quantizers.py), TensorFlow checkpoints and tf.distribute
(test_optimizers.py, test_bop2nd.py, test_learning_rate_scaling.py, which also skips
Keras's LossScaleOptimizer applied eagerly), TensorFlow's fused batch-normalization
kernel and its bfloat16 path, and Keras's synchronized batch statistics (test_layers.py;
on JAX bnno's BatchNormalization is Keras's own, which test_layers.py checks). The
subprocess also checks that importing ``bnno.nn`` on JAX does not import TensorFlow.

Not run here: test_binary_conv.py (the exact bfloat16 convolution of +-1 values is a
TensorFlow-only speed-up, written with TensorFlow ops, that layers bypass on JAX),
test_larq_parity.py (larq's golden values, compared on JAX by test_backend_parity.py's
TensorFlow-against-JAX training instead), test_backend_parity.py (which starts its
own JAX subprocess) and test_fused.py (XLA fusions of TensorFlow's element-wise
operations; on JAX, XLA compiles the whole step anyway).
"""

import os
import pathlib
import subprocess
import sys

import pytest

# In an order whose alternate files, the two halves that run side by side in
# test_building_block_and_optimizer_tests_pass_on_jax, take about as long on JAX.
NEUTRAL_FILES = [
    "test_summary.py", "test_bop2nd.py", "test_quantizers.py", "test_optimizers.py",
    "test_layers.py", "test_metrics.py", "test_weight_decay.py", "test_learning_rate_scaling.py",
]


def jax_command(*arguments):
    return dict(
        args=[sys.executable, *arguments], cwd=pathlib.Path(__file__).parents[2], text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )


def run_on_jax(*arguments, timeout=600):
    return subprocess.run(**jax_command(*arguments), capture_output=True, timeout=timeout)


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


@pytest.mark.slow
def test_building_block_and_optimizer_tests_pass_on_jax(tmp_path):
    # This process only waits, so the files run in two pytest processes at once, one
    # per core of CI's two cores: about 30 s each instead of about 60 s for one process.
    processes = min(2, os.cpu_count() or 1)
    groups = [NEUTRAL_FILES[i::processes] for i in range(processes)]
    running = [
        subprocess.Popen(
            **jax_command(
                "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / str(i)}",
                *(f"tests/nn/{name}" for name in group),
            ),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for i, group in enumerate(groups)
    ]
    try:
        outputs = [process.communicate(timeout=600)[0] for process in running]
    finally:
        for process in running:
            process.kill()
            process.wait()
    for group, process, output in zip(groups, running, outputs):
        assert process.returncode == 0, f"{group}:\n{output[-6000:]}"
        assert " passed" in output and " failed" not in output, output[-6000:]
