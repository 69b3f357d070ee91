"""Two replicas train like one device: run as ``python -m tests.nn.replicas OPTIMIZER``.

A small BNN (a binary dense layer, synchronized batch norm, a dense layer) is trained
with CaseOptimizer(OPTIMIZER on the binary kernel, Adam on the rest) on the same batches,
once on the default strategy and once on a MirroredStrategy over two logical CPUs; the
binary kernels must be identical, everything else equal to float tolerance. Logical
devices must be configured before TensorFlow starts, hence a fresh process; it prints
"MIRRORED OK <flips>" on success. OPTIMIZER is ``bop`` or ``bop2nd``.
"""

import sys

import keras
import numpy as np
import tensorflow as tf

BATCH = 16


def binary_optimizer(name: str):
    from bnno.nn import optimizers

    if name == "bop":
        return optimizers.Bop(threshold=1e-4, gamma=0.1)
    sigma = keras.optimizers.schedules.PolynomialDecay(0.05, 6, 0.2, power=1.0)
    return optimizers.Bop2ndOrder(threshold=0.05, gamma=0.2, sigma=sigma, bias_correction=True)


def build(name: str):
    from bnno.nn import layers, optimizers

    keras.utils.set_random_seed(7)
    inputs = keras.Input((6,))
    x = layers.QuantDense(8, kernel_quantizer="noop", use_bias=False, name="binary")(inputs)
    # Synchronized: statistics over the global batch, as on one device.
    x = keras.layers.BatchNormalization(synchronized=True, name="bn")(x)
    x = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, x)
    optimizer = optimizers.CaseOptimizer(
        (optimizers.Bop.is_binary_variable, binary_optimizer(name)),
        default_optimizer=keras.optimizers.Adam(0.01),
    )
    optimizer.build(model.trainable_variables)
    return model, optimizer


def train(name: str, strategy, batches):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    with strategy.scope():
        model, optimizer = build(name)

    @tf.function
    def step(x, y):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                per_example = loss_fn(y, model(x, training=True))
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=BATCH)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))

        strategy.run(replica_step, args=(x, y))

    for x, y in batches:
        dataset = tf.data.Dataset.from_tensors((x, y))
        for dx, dy in strategy.experimental_distribute_dataset(dataset):
            step(dx, dy)
    return model, optimizer


def main(name: str, steps: int) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(BATCH, 6)).astype("float32"), rng.integers(0, 3, BATCH)) for _ in range(steps)]
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    single, single_opt = train(name, tf.distribute.get_strategy(), batches)
    multi, multi_opt = train(name, mirrored, batches)
    for a, b in zip(single.weights, multi.weights):
        if a.path.startswith("binary"):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        else:
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    for a, b in zip(single_opt.optimizers[0].variables, multi_opt.optimizers[0].variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7, err_msg=a.path)
    initial = np.sign(build(name)[0].get_layer("binary").kernel.numpy())
    flips = int(np.sum(single.get_layer("binary").kernel.numpy() != initial))
    assert flips > 0
    assert multi_opt.iterations.numpy() == steps and multi_opt.optimizers[0].iterations.numpy() == steps
    print("MIRRORED OK", flips)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
