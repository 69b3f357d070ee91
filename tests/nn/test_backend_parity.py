"""The same Bop training on TensorFlow and on JAX: the same weights flip at every step.

A small BNN (binary conv, batch norm, binary conv with +1 padding, max pool, batch
norm, binary dense, batch norm, real-valued dense) trains for 20 steps with
CaseOptimizer(Bop, Adam) through Keras's own ``train_on_batch``, once on the backend
this process runs (TensorFlow: bnno's fused batch norm, a ``tf.function`` step) and
once in a subprocess with ``KERAS_BACKEND=jax`` (Keras's batch norm, a jitted step).
Both start from the same initial weights and see the same batches, exchanged through
.npz files.

Binary kernels must agree exactly after every step: a flip is a decision, and one
different flip would be a different network. Real-valued variables agree to float32
round-off, measured against each array's largest magnitude (``assert_close_to_scale``):
the backends add up gradients and batch statistics in different orders (XLA against
TensorFlow's kernels). The moving statistics agree to ``STATISTICS_SHARE``. Gradients
that are sums with heavy cancellation (a batch norm offset's gradient sums 2,048
terms that nearly cancel) keep only a few significant digits, and Adam's normalized
step carries that into the weights and moments: hence ``GRADIENT_SHARE``, 5x the
largest difference measured (9e-4 of the array's scale, at ``bn1/beta``'s moments
under TensorFlow's deterministic kernels; 2e-6 without them).

Run as a script (``python test_backend_parity.py IN.npz OUT.npz``) it trains on the
backend Keras was started with and writes what it saw.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

STEPS, BATCH, INPUT_SHAPE, CLASSES = 20, 32, (8, 8, 3), 3
THRESHOLD, GAMMA, ADAM_LR = 1e-4, 0.05, 0.01

#: Largest difference allowed, as a share of the array's largest magnitude: for batch
#: norm's moving statistics (a Bessel correction, 1 / (n - 1) >= 5e-4, would fail) ...
STATISTICS_SHARE = 1e-5
#: ... and for everything that went through gradients (see the module's docstring).
GRADIENT_SHARE = 5e-3


def assert_close_to_scale(actual, desired, share, name):
    """|actual - desired| <= share * max|desired|, everywhere."""
    difference, scale = np.max(np.abs(actual - desired)), np.max(np.abs(desired))
    assert difference <= share * scale, f"{name}: differs by {difference:.3g}, scale {scale:.3g}"


def build_model():
    """The small BNN; its binary kernels are marked with ``NoOp(precision=1)``."""
    import keras

    from bnno.nn import layers, quantizers

    def binary(layer, **kwargs):
        return getattr(layers, layer)(
            use_bias=False, kernel_quantizer=quantizers.NoOp(precision=1), **kwargs
        )

    inputs = keras.Input(INPUT_SHAPE)
    x = binary("QuantConv2D", filters=8, kernel_size=3, padding="same", name="conv1")(inputs)
    x = layers.BatchNormalization(momentum=0.9, scale=False, name="bn1")(x)
    x = binary(
        "QuantConv2D", filters=8, kernel_size=3, padding="same", pad_values=1.0,
        input_quantizer="ste_sign", name="conv2",
    )(x)
    x = keras.layers.MaxPool2D(2, name="pool2")(x)
    x = layers.BatchNormalization(momentum=0.9, scale=False, name="bn2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = binary("QuantDense", units=16, input_quantizer="ste_sign", name="dense3")(x)
    x = layers.BatchNormalization(momentum=0.9, name="bn3")(x)
    outputs = keras.layers.Dense(CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs)


def train(inputs: dict) -> dict:
    """Train from ``inputs`` (``init/<i>``: the model's weights in ``model.weights``
    order; ``features``, ``labels``: one batch per step) on the current backend."""
    import keras

    from bnno.nn import optimizers

    model = build_model()
    for i, variable in enumerate(model.weights):
        variable.assign(inputs[f"init/{i}"])
    bop = optimizers.Bop(threshold=THRESHOLD, gamma=GAMMA)
    adam = keras.optimizers.Adam(ADAM_LR)
    model.compile(
        optimizer=optimizers.CaseOptimizer(
            (optimizers.Bop.is_binary_variable, bop), default_optimizer=adam
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # TensorFlow: a plain tf.function, as bnno trains; JAX: jitted, as Keras does.
        jit_compile=keras.backend.backend() == "jax",
    )
    kernels = [v for v in model.trainable_variables if optimizers.Bop.is_binary_variable(v)]
    results = {"losses": []}
    for step in range(STEPS):
        loss = model.train_on_batch(inputs["features"][step], inputs["labels"][step])
        results["losses"].append(float(loss))
        for kernel in kernels:
            results[f"step{step}/{kernel.path}"] = kernel.numpy().astype(np.int8)
    for variable in model.weights:
        results[f"final/{variable.path}"] = variable.numpy()
    for optimizer, slots in ((bop, ("_moving_averages",)), (adam, ("_momentums", "_velocities"))):
        for slot in slots:
            for variable in getattr(optimizer, slot):
                # Without the optimizer's name, which Keras numbers per process
                # ("adam_11" when other tests made optimizers before this one).
                results[f"state/{slot}/{variable.path.split('/', 1)[-1]}"] = variable.numpy()
    results["losses"] = np.array(results["losses"])
    results["backend"] = np.array(keras.backend.backend())
    return results


def train_in_subprocess(backend: str, inputs_path, outputs_path):
    env = {**os.environ, "KERAS_BACKEND": backend}
    completed = subprocess.run(
        [sys.executable, __file__, str(inputs_path), str(outputs_path)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return dict(np.load(outputs_path))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    pytest.importorskip("jax", reason="the JAX extra is not installed (pip install -e '.[jax]')")
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("compares TensorFlow (this process) with JAX (a subprocess)")
    keras.utils.set_random_seed(0)
    model = build_model()
    rng = np.random.default_rng(0)
    inputs = {f"init/{i}": v.numpy() for i, v in enumerate(model.weights)}
    inputs["features"] = rng.normal(size=(STEPS, BATCH, *INPUT_SHAPE)).astype(np.float32)
    inputs["labels"] = rng.integers(0, CLASSES, size=(STEPS, BATCH))
    folder = tmp_path_factory.mktemp("parity")
    np.savez(folder / "inputs.npz", **inputs)
    keras.utils.set_random_seed(0)
    return train(inputs), train_in_subprocess("jax", folder / "inputs.npz", folder / "jax.npz")


def test_the_same_weights_flip_at_every_step(both):
    tf_results, jax_results = both
    assert str(jax_results["backend"]) == "jax"
    flips, previous = 0, None
    for step in range(STEPS):
        keys = sorted(k for k in tf_results if k.startswith(f"step{step}/"))
        assert keys == sorted(k for k in jax_results if k.startswith(f"step{step}/"))
        for key in keys:
            differ = np.flatnonzero(tf_results[key] != jax_results[key])
            assert differ.size == 0, f"{key}: weights {differ} differ between backends"
            if previous is not None:
                flips += int(np.sum(tf_results[key] != previous[key.split("/", 1)[1]]))
        previous = {k.split("/", 1)[1]: tf_results[k] for k in keys}
    assert flips > 100  # real Bop activity, not a frozen network


def test_real_valued_weights_and_optimizer_state_agree(both):
    tf_results, jax_results = both
    np.testing.assert_allclose(jax_results["losses"], tf_results["losses"], rtol=1e-5)
    keys = sorted(k for k in tf_results if k.startswith(("final/", "state/")))
    assert keys == sorted(k for k in jax_results if k.startswith(("final/", "state/")))
    for key in keys:
        share = STATISTICS_SHARE if "/moving_" in key else GRADIENT_SHARE
        assert_close_to_scale(jax_results[key], tf_results[key], share, key)


if __name__ == "__main__":
    inputs_path, outputs_path = sys.argv[1:3]
    import keras

    # No seeding: the weights and batches come from IN.npz, and the step draws no
    # random numbers (keras.utils.set_random_seed would import TensorFlow itself).
    results = train(dict(np.load(inputs_path)))
    if keras.backend.backend() != "tensorflow":
        assert "tensorflow" not in sys.modules, "bnno.nn imported TensorFlow"
    np.savez(outputs_path, **results)
