"""bnno.nn against larq's own outputs.

The golden file was written by larq 0.14 (tests/golden/make_larq_golden.sh, in a
throwaway Keras 2 environment). It holds the inputs as well as larq's results, so
both sides compute from identical numbers.
"""

import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from bnno.nn import layers, optimizers, quantizers

GOLDEN = np.load(pathlib.Path(__file__).parents[1] / "golden" / "larq_golden.npz")
META = json.loads(str(GOLDEN["meta"]))


def test_golden_file_was_written_by_larq():
    assert META["larq"].startswith("0.14")
    assert META["tensorflow"].startswith("2.21")


@pytest.mark.parametrize("input_id", ["points", "matrix"])
@pytest.mark.parametrize("case", META["quantizer_cases"], ids=lambda c: c[0])
def test_quantizer_forward_and_gradient_match_larq(case, input_id):
    case_id, name, kwargs = case
    prefix = f"quantizer/{input_id}"
    x = tf.constant(GOLDEN[f"{prefix}/x"])
    upstream = GOLDEN[f"{prefix}/upstream"]
    quantizer = type(quantizers.get(name))(**kwargs)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = quantizer(x)
        weighted = tf.reduce_sum(y * upstream)
    gradient = tape.gradient(weighted, x)
    np.testing.assert_allclose(y.numpy(), GOLDEN[f"{prefix}/{case_id}/forward"], atol=1e-6)
    np.testing.assert_allclose(
        gradient.numpy(), GOLDEN[f"{prefix}/{case_id}/gradient"], atol=1e-6, rtol=1e-6
    )


def build_parity_model():
    """The model of make_larq_golden.PARITY_MODEL, with bnno's layers."""
    x = inputs = keras.Input(tuple(META["input_shape"]))
    for name, kind, args in META["parity_model"]:
        if kind in ("QuantConv2D", "QuantDense"):
            layer = getattr(layers, kind)(
                name=name, use_bias=False, kernel_quantizer=quantizers.NoOp(precision=1), **args
            )
        else:
            layer = getattr(keras.layers, kind)(name=name, **args)
        x = layer(x)
    return keras.Model(inputs, x)


def train_like_larq(run):
    model = build_parity_model()
    for layer in model.layers:
        n = len(layer.get_weights())
        if n:
            layer.set_weights([GOLDEN[f"init/{layer.name}/{i}"] for i in range(n)])
    gamma = run["gamma"]
    if isinstance(gamma, list):
        gamma = keras.optimizers.schedules.PolynomialDecay(
            gamma[0], decay_steps=META["steps"], end_learning_rate=gamma[1], power=1.0
        )
    bop = optimizers.Bop(threshold=run["threshold"], gamma=gamma)
    adam = keras.optimizers.Adam(run["adam_lr"])
    optimizer = optimizers.CaseOptimizer(
        (optimizers.Bop.is_binary_variable, bop), default_optimizer=adam
    )
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    features, labels = GOLDEN["data/features"], GOLDEN["data/labels"]
    kernels_per_step, losses = [], []
    for s in range(META["steps"]):
        losses.append(float(step(features[s], labels[s])))
        kernels_per_step.append(
            {l.name: l.kernel.numpy() for l in model.layers if l.name.startswith(("conv", "dense"))}
        )
    return model, bop, adam, kernels_per_step, np.array(losses)


@pytest.fixture(scope="module", params=META["runs"], ids=lambda r: r["id"])
def trained(request):
    keras.utils.set_random_seed(0)
    run = request.param
    return (f"run/{run['id']}", *train_like_larq(run))


def test_every_step_flips_exactly_the_weights_larq_flips(trained):
    prefix, model, _, _, kernels_per_step, _ = trained
    flips = 0
    for s, kernels in enumerate(kernels_per_step):
        for name, kernel in kernels.items():
            expected = GOLDEN[f"{prefix}/step{s}/{name}/kernel"]
            mismatches = np.flatnonzero(kernel.astype(np.int8) != expected)
            assert mismatches.size == 0, f"step {s}, {name}: weights {mismatches} differ"
            previous = GOLDEN[f"{prefix}/step{s - 1}/{name}/kernel"] if s else np.sign(
                GOLDEN[f"init/{name}/0"]
            )
            flips += int(np.sum(expected != previous))
    assert flips > 100  # the comparison is about real Bop activity, not a frozen net


def test_binary_weights_stay_exactly_plus_minus_one(trained):
    _, _, _, _, kernels_per_step, _ = trained
    for kernels in kernels_per_step:
        for kernel in kernels.values():
            assert set(np.unique(kernel)) <= {-1.0, 1.0}


def test_bop_moving_averages_match_larq(trained):
    prefix, model, bop, _, _, _ = trained
    for name in ("conv1", "conv2", "dense3"):
        kernel = model.get_layer(name).kernel
        m = bop._moving_averages[bop._get_variable_index(kernel)]
        np.testing.assert_allclose(m.numpy(), GOLDEN[f"{prefix}/bop_m/{name}"], atol=1e-6)


def test_adam_variables_and_state_match_larq(trained):
    prefix, model, _, adam, _, losses = trained
    np.testing.assert_allclose(losses, GOLDEN[f"{prefix}/losses"], rtol=1e-5)
    for variable in model.trainable_variables:
        if optimizers.Bop.is_binary_variable(variable):
            continue
        key = variable.path
        layer = model.get_layer(key.split("/")[0])
        index = [id(w) for w in layer.weights].index(id(variable))
        golden = {
            "weight": GOLDEN[f"{prefix}/final/{layer.name}/{index}"],
            "adam m": GOLDEN[f"{prefix}/adam_m/{key}"],
            "adam v": GOLDEN[f"{prefix}/adam_v/{key}"],
        }
        slot = adam._get_variable_index(variable)
        ours = {
            "weight": variable.numpy(),
            "adam m": adam._momentums[slot].numpy(),
            "adam v": adam._velocities[slot].numpy(),
        }
        for what in golden:
            np.testing.assert_allclose(ours[what], golden[what], atol=1e-5, err_msg=f"{key} {what}")


def test_batch_norm_moving_statistics_match_larq(trained):
    prefix, model, _, _, _, _ = trained
    # Samples per channel in one batch: 32 examples x 6x6, x 3x3 after pooling, x 1.
    samples = {"bn1": 32 * 36, "bn2": 32 * 9, "bn3": 32}
    for name, n in samples.items():
        layer = model.get_layer(name)
        moving_mean, moving_variance = layer.moving_mean, layer.moving_variance
        index = [id(w) for w in layer.weights]
        np.testing.assert_allclose(
            moving_mean.numpy(),
            GOLDEN[f"{prefix}/final/{name}/{index.index(id(moving_mean))}"],
            atol=1e-5,
        )
        # tf-keras (larq's Keras 2) updates the moving variance with Bessel's correction
        # (n / (n - 1)), Keras 3 without it: a Keras difference of at most 1/(n-1)
        # relative, not one of bnno's.
        np.testing.assert_allclose(
            moving_variance.numpy(),
            GOLDEN[f"{prefix}/final/{name}/{index.index(id(moving_variance))}"],
            rtol=1 / (n - 1),
        )
