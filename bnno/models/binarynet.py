"""BinaryNet for CIFAR-10 (Courbariaux et al., 2016), as trained in sections 5.1 and 5.2
of Helwegen et al. (2019), "Latent Weights Do Not Exist".

A VGG-like network of six binary 3x3 convolutions and three binary dense layers, each
followed by batch normalization; the paper's code ``bnn_optimization/models/binarynet.py``
rebuilt with bnno's layers.

"A Bop and Beyond" (Suarez-Ramirez et al., 2021, arXiv:2104.05124) trains it with layer
normalization in place of batch normalization (its code's ``binarynet``) and with batch
normalization (its ``binarynet_batch``): ``normalization: layer`` and the name
``binarynet_batch`` give both.
"""

import keras

from bnno.models import MODELS, batch_normalized, normalization, register
from bnno.nn.layers import QuantConv2D, QuantDense


@register("binarynet", filters=128, dense_units=1024, kernel_size=3, input_quantizer="ste_sign",
          kernel_quantizer="noop", kernel_constraint=None)
def binarynet(hparams: dict, input_shape: tuple, num_classes: int) -> keras.Model:
    """BinaryNet: six binary convolutions, three binary dense layers, softmax.

    ``f = filters``, ``k = kernel_size``, ``d = dense_units``; QC = ``QuantConv2D``,
    QD = ``QuantDense``, BN = ``BatchNormalization(scale=False)``::

        QC(f, k, "valid")        BN          <- inputs not quantized
        QC(f, k)       MaxPool2  BN
        QC(2f, k)                BN
        QC(2f, k)      MaxPool2  BN
        QC(4f, k)                BN
        QC(4f, k)      MaxPool2  BN
        Flatten
        QD(d) BN   QD(d) BN   QD(num_classes) BN   softmax

    Every quantized layer has no bias and takes ``kernel_quantizer`` and
    ``kernel_constraint``; all but the first quantize their inputs with
    ``input_quantizer`` (default "ste_sign") and pad "same".

    Reads ``filters`` (128), ``dense_units`` (1024), ``kernel_size`` (3),
    ``input_quantizer``, ``kernel_quantizer`` ("noop": Bop's binary kernels),
    ``kernel_constraint`` (none) and ``normalization`` ("batch"; "layer" puts Keras'
    ``LayerNormalization()`` in place of every BN) from ``hparams``.
    """
    filters = hparams["filters"]
    dense_units = hparams["dense_units"]
    kernel_size = hparams["kernel_size"]
    kernel_args = dict(
        kernel_quantizer=hparams["kernel_quantizer"],
        kernel_constraint=hparams["kernel_constraint"],
        use_bias=False,
    )
    quantized_args = dict(
        input_quantizer=hparams["input_quantizer"], **kernel_args
    )

    def batch_norm(x):
        # scale=False: a positive scale cannot change the sign the next layer takes,
        # and the paper keeps Keras' default momentum (0.99).
        return normalization(hparams, scale=False)(x)

    inputs = keras.Input(input_shape)
    # The first layer sees the image itself: binarizing it would throw away most of
    # its information, so only its kernel is binary.
    x = QuantConv2D(filters, kernel_size, **kernel_args)(inputs)
    x = batch_norm(x)
    for multiple, pool in ((1, True), (2, False), (2, True), (4, False), (4, True)):
        x = QuantConv2D(multiple * filters, kernel_size, padding="same", **quantized_args)(x)
        if pool:
            x = keras.layers.MaxPool2D(pool_size=(2, 2), strides=(2, 2))(x)
        x = batch_norm(x)
    x = keras.layers.Flatten()(x)
    for units in (dense_units, dense_units, num_classes):
        x = QuantDense(units, **quantized_args)(x)
        x = batch_norm(x)
    # float32 so that the probabilities stay exact under mixed precision.
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="binarynet")


@MODELS.register("binarynet_batch")
def binarynet_batch(hparams: dict, input_shape: tuple, num_classes: int) -> keras.Model:
    """BinaryNet with batch normalization, under the name "A Bop and Beyond"'s code
    gives it (its ``binarynet`` has layer normalization): bnno's ``binarynet``."""
    return binarynet(batch_normalized(hparams, "binarynet_batch"), input_shape, num_classes)
