"""Binary AlexNet for ImageNet, as trained with Bop in section 5.3 of Helwegen et al.
(2019), "Latent Weights Do Not Exist" (41.1 % top-1).

AlexNet (Krizhevsky et al., 2012) with binary convolutions and dense layers, each
followed by batch normalization; the paper's code
``bnn_optimization/models/binary_alexnet.py`` rebuilt with bnno's layers.
"""

import keras

from bnno.models import batch_normalization, register
from bnno.nn.layers import QuantConv2D, QuantDense


@register("binary_alexnet", input_quantizer="ste_sign", kernel_quantizer="noop", kernel_constraint=None)
def binary_alexnet(hparams: dict, input_shape: tuple, num_classes: int) -> keras.Model:
    """Binary AlexNet: five binary convolutions, three binary dense layers, softmax.

    QC = ``QuantConv2D(padding="same")``, QD = ``QuantDense``, Pool =
    ``MaxPool2D(3, strides=2)``, BN = ``BatchNormalization(momentum=0.9)``::

        QC(64, 11x11, strides 4)  Pool  BN   <- inputs not quantized
        QC(192, 5x5)              Pool  BN
        QC(384, 3x3)                    BN
        QC(384, 3x3)                    BN
        QC(256, 3x3)              Pool  BN
        Flatten
        QD(4096) BN   QD(4096) BN   QD(num_classes) BN   softmax

    Every quantized layer has no bias and takes ``kernel_quantizer`` and
    ``kernel_constraint``; all but the first quantize their inputs with
    ``input_quantizer`` (default "ste_sign").

    Reads ``input_quantizer``, ``kernel_quantizer`` ("noop": Bop's binary kernels) and
    ``kernel_constraint`` (none) from ``hparams``. The paper's code has no kernel
    quantizer (Bop keeps the kernels binary); here the Adam baseline sets one.
    """
    input_quantizer = hparams["input_quantizer"]
    kernel_args = dict(
        kernel_quantizer=hparams["kernel_quantizer"],
        kernel_constraint=hparams["kernel_constraint"],
        use_bias=False,
    )

    def batch_norm(x):
        return batch_normalization(scale=True, momentum=0.9)(x)

    def conv_block(x, filters, kernel_size, strides=1, pool=False, first_layer=False):
        x = QuantConv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            # The first layer sees the image itself; binarizing it would lose too much.
            input_quantizer=None if first_layer else input_quantizer,
            **kernel_args,
        )(x)
        if pool:
            # Pool the convolution's real-valued sums, before batch norm and the next
            # layer's sign: max-pooling binarized values returns mostly +1 (XNOR-Net,
            # Rastegari et al., 2016).
            x = keras.layers.MaxPool2D(pool_size=3, strides=2)(x)
        return batch_norm(x)

    inputs = keras.Input(input_shape)
    x = conv_block(inputs, 64, 11, strides=4, pool=True, first_layer=True)
    x = conv_block(x, 192, 5, pool=True)
    x = conv_block(x, 384, 3)
    x = conv_block(x, 384, 3)
    x = conv_block(x, 256, 3, pool=True)
    x = keras.layers.Flatten()(x)
    for units in (4096, 4096, num_classes):
        x = QuantDense(units, input_quantizer=input_quantizer, **kernel_args)(x)
        x = batch_norm(x)
    # float32 so that the probabilities stay exact under mixed precision.
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="binary_alexnet")
