"""Write larq's own outputs to tests/golden/larq_golden.npz, the oracle that
tests/nn/test_larq_parity.py compares bnno against.

Runs only inside larq's environment (larq still needs Keras 2): use
tests/golden/make_larq_golden.sh, which builds that throwaway environment
(tensorflow 2.21 + tf-keras 2.21 + numpy < 2 + larq 0.14, TF_USE_LEGACY_KERAS=1).

Everything the comparison needs is in the file: the quantizer inputs and upstream
gradients, the parity model's initial weights and training batches, the
hyperparameters, and larq's results. The parity model itself is described in
PARITY_MODEL below and built the same way by the test, layer name for layer name.
"""

import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import larq as lq  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SEED = 2019
STEPS = 40
BATCH = 32
INPUT_SHAPE = (6, 6, 2)
CLASSES = 3

# Quantizer cases: (case id, larq name, keyword arguments).
QUANTIZER_CASES = [
    ("ste_sign", "ste_sign", {}),
    ("ste_sign_clip_0.5", "ste_sign", {"clip_value": 0.5}),
    ("ste_sign_unclipped", "ste_sign", {"clip_value": None}),
    ("approx_sign", "approx_sign", {}),
    ("swish_sign", "swish_sign", {}),
    ("swish_sign_beta_2", "swish_sign", {"beta": 2.0}),
    ("ste_heaviside", "ste_heaviside", {}),
    ("ste_tern", "ste_tern", {}),
    ("ste_tern_twn", "ste_tern", {"ternary_weight_networks": True}),
    ("ste_tern_threshold_0.5", "ste_tern", {"threshold_value": 0.5}),
    ("magnitude_aware_sign", "magnitude_aware_sign", {}),
]
QUANTIZER_FUNCTIONS = {
    "ste_sign": lq.quantizers.ste_sign,
    "approx_sign": lq.quantizers.approx_sign,
    "swish_sign": lq.quantizers.swish_sign,
    "ste_heaviside": lq.quantizers.ste_heaviside,
    "ste_tern": lq.quantizers.ste_tern,
    "magnitude_aware_sign": lambda x, **kw: lq.quantizers.MagnitudeAwareSign(**kw)(x),
}

# The parity model, in order: (layer name, kind, arguments). Kernels of the quantized
# layers are binary (NoOp(precision=1)) and trained by Bop; BatchNormalization and the
# final Dense are trained by Adam.
PARITY_MODEL = [
    ("conv1", "QuantConv2D", {"filters": 4, "kernel_size": 3, "padding": "same"}),
    ("bn1", "BatchNormalization", {"momentum": 0.9, "scale": False}),
    ("conv2", "QuantConv2D", {"filters": 4, "kernel_size": 3, "padding": "same",
                              "input_quantizer": "ste_sign"}),
    ("pool2", "MaxPool2D", {"pool_size": 2}),
    ("bn2", "BatchNormalization", {"momentum": 0.9, "scale": False}),
    ("flatten", "Flatten", {}),
    ("dense3", "QuantDense", {"units": 16, "input_quantizer": "ste_sign"}),
    ("bn3", "BatchNormalization", {"momentum": 0.9}),
    ("logits", "Dense", {"units": CLASSES}),
]

# Training runs: (run id, Bop threshold, gamma, or a linear decay of gamma).
RUNS = [
    {"id": "constant_gamma", "threshold": 1e-4, "gamma": 0.05, "adam_lr": 0.01},
    {"id": "decaying_gamma", "threshold": 1e-4, "gamma": [0.1, 0.01], "adam_lr": 0.01},
]


def quantizer_golden(rng, out):
    points = np.array(
        [-2.0, -1.5, -1.0, -0.999, -0.5, -0.05, -1e-7, 0.0, 1e-7, 0.05, 0.5, 0.999,
         1.0, 1.5, 2.0],
        dtype=np.float32,
    )
    matrix = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    for input_id, x in (("points", points), ("matrix", matrix)):
        upstream = rng.normal(size=x.shape).astype(np.float32)
        out[f"quantizer/{input_id}/x"] = x
        out[f"quantizer/{input_id}/upstream"] = upstream
        for case_id, name, kwargs in QUANTIZER_CASES:
            xt = tf.constant(x)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                y = QUANTIZER_FUNCTIONS[name](xt, **kwargs)
                weighted = tf.reduce_sum(y * upstream)
            out[f"quantizer/{input_id}/{case_id}/forward"] = y.numpy()
            out[f"quantizer/{input_id}/{case_id}/gradient"] = tape.gradient(weighted, xt).numpy()


def build_parity_model():
    layers = tf.keras.layers
    x = inputs = tf.keras.Input(INPUT_SHAPE)
    for name, kind, args in PARITY_MODEL:
        args = dict(args)
        if kind in ("QuantConv2D", "QuantDense"):
            layer = getattr(lq.layers, kind)(
                name=name, use_bias=False,
                kernel_quantizer=lq.quantizers.NoOp(precision=1), **args
            )
        else:
            layer = getattr(layers, kind)(name=name, **args)
        x = layer(x)
    return tf.keras.Model(inputs, x)


def initial_weights(model, rng):
    """Binary kernels +-1, the Dense kernel small normal; BN as initialized."""
    weights = {}
    for layer in model.layers:
        for i, w in enumerate(layer.get_weights()):
            key = f"{layer.name}/{i}"
            if layer.name.startswith(("conv", "dense")):
                w = np.where(rng.normal(size=w.shape) >= 0, 1.0, -1.0).astype(np.float32)
            elif layer.name == "logits" and w.ndim == 2:
                w = (0.3 * rng.normal(size=w.shape)).astype(np.float32)
            weights[key] = w
    return weights


def training_data(rng):
    features = rng.normal(size=(STEPS, BATCH, *INPUT_SHAPE)).astype(np.float32)
    teacher = rng.normal(size=(int(np.prod(INPUT_SHAPE)), CLASSES)).astype(np.float32)
    labels = np.argmax(features.reshape(STEPS, BATCH, -1) @ teacher, axis=-1)
    return features, labels.astype(np.int32)


def train_run(run, init, features, labels, out):
    model = build_parity_model()
    for layer in model.layers:
        n = len(layer.get_weights())
        if n:
            layer.set_weights([init[f"{layer.name}/{i}"] for i in range(n)])
    gamma = run["gamma"]
    if isinstance(gamma, list):
        gamma = tf.keras.optimizers.schedules.PolynomialDecay(
            gamma[0], decay_steps=STEPS, end_learning_rate=gamma[1], power=1.0
        )
    bop = lq.optimizers.Bop(threshold=run["threshold"], gamma=gamma)
    adam = tf.keras.optimizers.legacy.Adam(run["adam_lr"])
    optimizer = lq.optimizers.CaseOptimizer(
        (lq.optimizers.Bop.is_binary_variable, bop), default_optimizer=adam
    )
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    prefix = f"run/{run['id']}"
    binary_layers = [l for l in model.layers if l.name.startswith(("conv", "dense"))]
    losses = []
    for s in range(STEPS):
        losses.append(float(step(features[s], labels[s])))
        for layer in binary_layers:
            out[f"{prefix}/step{s}/{layer.name}/kernel"] = layer.kernel.numpy().astype(np.int8)
    out[f"{prefix}/losses"] = np.array(losses, dtype=np.float32)
    for layer in model.layers:
        for i, w in enumerate(layer.get_weights()):
            out[f"{prefix}/final/{layer.name}/{i}"] = w
    for layer in binary_layers:
        out[f"{prefix}/bop_m/{layer.name}"] = bop.get_slot(layer.kernel, "m").numpy()
    for var in model.trainable_variables:
        if lq.optimizers.Bop.is_binary_variable(var):
            continue
        layer_name, weight_name = var.name.split("/")[-2:]
        key = f"{layer_name}/{weight_name.split(':')[0]}"
        out[f"{prefix}/adam_m/{key}"] = adam.get_slot(var, "m").numpy()
        out[f"{prefix}/adam_v/{key}"] = adam.get_slot(var, "v").numpy()


def main(path):
    tf.keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    out = {}
    quantizer_golden(rng, out)
    model = build_parity_model()
    init = initial_weights(model, rng)
    for key, value in init.items():
        out[f"init/{key}"] = value
    features, labels = training_data(rng)
    out["data/features"] = features
    out["data/labels"] = labels
    for run in RUNS:
        train_run(run, init, features, labels, out)
    out["meta"] = np.array(json.dumps({
        "larq": lq.__version__, "tensorflow": tf.__version__, "numpy": np.__version__,
        "quantizer_cases": QUANTIZER_CASES, "parity_model": PARITY_MODEL, "runs": RUNS,
        "steps": STEPS, "batch": BATCH, "input_shape": INPUT_SHAPE, "classes": CLASSES,
    }))
    np.savez_compressed(path, **out)
    print(f"wrote {len(out)} arrays to {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(os.path.dirname(os.path.abspath(__file__)), "larq_golden.npz"))
