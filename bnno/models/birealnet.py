"""Bi-Real Net 18 for ImageNet (Liu et al., 2018), as trained with Bop in section 5.3 of
Helwegen et al. (2019), "Latent Weights Do Not Exist" (56.6 % top-1).

A ResNet-18 whose every binary 3x3 convolution has its own real-valued shortcut, so
the real-valued activations flow past each sign; the paper's code
``bnn_optimization/models/birealnet.py`` rebuilt with bnno's layers.

"A Bop and Beyond" (Suarez-Ramirez et al., 2021, arXiv:2104.05124) reports it with
Bop2ndOrder under the name ``birealnet_batch`` (57.2 % top-1); its code's ``birealnet``
has layer normalization instead (``normalization: layer``).
"""

import keras

from bnno.models import MODELS, batch_normalized, normalization, register
from bnno.nn.layers import QuantConv2D


@register("birealnet", input_quantizer="approx_sign", kernel_quantizer="noop", kernel_constraint=None)
def birealnet(hparams: dict, input_shape: tuple, num_classes: int) -> keras.Model:
    """Bi-Real Net 18: a full-precision stem, 16 binary residual blocks, a
    full-precision classifier.

    Stem: ``Conv2D(64, 7, strides 2, "same")``, BN, ``MaxPool2D(3, strides 2, "same")``.
    Blocks: four with 64 filters, then three stages of four blocks with 128, 256 and 512
    filters, the first block of each stage halving the resolution. A block adds
    ``QuantConv2D(out, 3, "same")`` + BN to its input; where the channels change, the
    input reaches the sum through ``AvgPool2D(2)``, ``Conv2D(out, 1)`` and BN. End:
    global average pooling, ``Dense(num_classes)`` with bias, softmax. Every BN has
    momentum 0.8; every kernel is glorot-normal initialized, and no convolution has a
    bias.

    Reads ``input_quantizer`` ("approx_sign", Bi-Real Net's pseudo-gradient),
    ``kernel_quantizer`` ("noop": Bop's binary kernels), ``kernel_constraint`` (none)
    and ``normalization`` ("batch"; "layer" puts Keras' ``LayerNormalization()`` in
    place of every BN) from ``hparams``.
    """
    input_quantizer = hparams["input_quantizer"]
    kernel_quantizer = hparams["kernel_quantizer"]
    kernel_constraint = hparams["kernel_constraint"]

    def batch_norm(x):
        return normalization(hparams, momentum=0.8)(x)

    def residual_block(x, double_filters=False, filters=None):
        in_filters = x.shape[-1]
        out_filters = 2 * in_filters if double_filters else (filters or in_filters)

        shortcut = x
        if in_filters != out_filters:
            # The projection stays full precision: the shortcut is what carries the
            # real-valued activations past the binary convolutions.
            shortcut = keras.layers.AvgPool2D(2, strides=2, padding="same")(shortcut)
            shortcut = keras.layers.Conv2D(
                out_filters, 1, kernel_initializer="glorot_normal", use_bias=False
            )(shortcut)
            shortcut = batch_norm(shortcut)

        x = QuantConv2D(
            out_filters,
            3,
            strides=1 if out_filters == in_filters else 2,
            padding="same",
            input_quantizer=input_quantizer,
            kernel_quantizer=kernel_quantizer,
            kernel_initializer="glorot_normal",
            kernel_constraint=kernel_constraint,
            use_bias=False,
        )(x)
        x = batch_norm(x)
        return keras.layers.Add()([x, shortcut])

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(
        64, 7, strides=2, kernel_initializer="glorot_normal", padding="same", use_bias=False
    )(inputs)
    x = batch_norm(x)
    x = keras.layers.MaxPool2D(3, strides=2, padding="same")(x)

    # As in the paper's code: filters=64 on the stem's 64 channels, so the first block
    # has no projection.
    x = residual_block(x, filters=64)
    for _ in range(3):
        x = residual_block(x)
    for _ in range(3):
        x = residual_block(x, double_filters=True)
        for _ in range(3):
            x = residual_block(x)

    x = keras.layers.GlobalAveragePooling2D()(x)
    # The paper's Dense(activation="softmax"), split so that the softmax runs in
    # float32 under mixed precision.
    x = keras.layers.Dense(num_classes)(x)
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="birealnet")


@MODELS.register("birealnet_batch")
def birealnet_batch(hparams: dict, input_shape: tuple, num_classes: int) -> keras.Model:
    """Bi-Real Net with batch normalization, under the name "A Bop and Beyond"'s code
    gives it (its ``birealnet`` has layer normalization): bnno's ``birealnet``."""
    return birealnet(batch_normalized(hparams, "birealnet_batch"), input_shape, num_classes)
