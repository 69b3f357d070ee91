"""XNOR-Net for ImageNet (Rastegari et al., 2016), as trained with Bop in section 5.3 of
Helwegen et al. (2019), "Latent Weights Do Not Exist" (45.9 % top-1).

An AlexNet whose first and last layers stay full precision and whose other layers are
binary, with batch normalization after every layer (after the pooling where there is
one); the paper's code ``bnn_optimization/models/xnor.py`` rebuilt with bnno's layers.

"A Bop and Beyond" (Suarez-Ramirez et al., 2021, arXiv:2104.05124) reports it with
Bop2ndOrder under the name ``xnornet_batch`` (46.9 % top-1); its code's ``xnornet`` has
layer normalization instead (``normalization: layer``).
"""

import keras

from bnno.models import MODELS, batch_normalized, normalization, register
from bnno.nn.layers import QuantConv2D


@register("xnornet", input_quantizer="ste_sign", kernel_quantizer="noop", kernel_constraint=None,
          kernel_regularization=0.0)
def xnornet(hparams: dict, input_shape: tuple, num_classes: int) -> keras.Model:
    """XNOR-Net: a full-precision first convolution, seven binary convolutions, a
    full-precision classifier.

    QC = ``QuantConv2D`` (inputs quantized), Pool = ``MaxPool2D(3, strides=2)``, BN =
    ``BatchNormalization(momentum=0.9)`` with epsilon 1e-4 unless given::

        Conv2D(96, 11x11, strides 4, "same")  BN(eps 1e-5)  ReLU  Pool  BN
        QC(256, 5x5, "same")   Pool  BN
        QC(384, 3x3, "same")         BN
        QC(384, 3x3, "same")         BN
        QC(256, 3x3, "same")   Pool  BN
        QC(4096, 6x6, "valid")       BN
        QC(4096, 1x1, "valid")       BN(eps 1e-3)  ReLU
        Flatten   Dense(num_classes)   softmax

    No layer has a bias. The 6x6 "valid" convolution needs a 6x6 feature map, so
    inputs of about 224x224 (ImageNet's).

    Reads ``input_quantizer`` ("ste_sign"), ``kernel_quantizer`` ("noop": Bop's binary
    kernels), ``kernel_constraint`` (none), ``kernel_regularization`` (the L2 amount
    on the two full-precision kernels; 0 or absent for none) and ``normalization``
    ("batch"; "layer" puts Keras' ``LayerNormalization()`` in place of every BN) from
    ``hparams``.
    """
    quantized_args = dict(
        input_quantizer=hparams["input_quantizer"],
        kernel_quantizer=hparams["kernel_quantizer"],
        kernel_constraint=hparams["kernel_constraint"],
        use_bias=False,
    )
    amount = float(hparams["kernel_regularization"] or 0.0)

    def regularizer():
        # One object per layer, so each layer owns (and serializes) its own.
        return keras.regularizers.L2(amount) if amount > 0 else None

    def batch_norm(x, epsilon=1e-4):
        return normalization(hparams, momentum=0.9, scale=True, epsilon=epsilon)(x)

    def max_pool(x):
        # Pool the real-valued sums, before batch norm and the next layer's sign:
        # max-pooling binarized values returns mostly +1 (XNOR-Net's block order).
        return keras.layers.MaxPool2D(pool_size=(3, 3), strides=(2, 2))(x)

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(
        96,
        (11, 11),
        strides=(4, 4),
        padding="same",
        use_bias=False,
        kernel_regularizer=regularizer(),
    )(inputs)
    x = batch_norm(x, epsilon=1e-5)
    x = keras.layers.Activation("relu")(x)
    x = max_pool(x)
    x = batch_norm(x)
    x = QuantConv2D(256, (5, 5), padding="same", **quantized_args)(x)
    x = max_pool(x)
    x = batch_norm(x)
    x = QuantConv2D(384, (3, 3), padding="same", **quantized_args)(x)
    x = batch_norm(x)
    x = QuantConv2D(384, (3, 3), padding="same", **quantized_args)(x)
    x = batch_norm(x)
    x = QuantConv2D(256, (3, 3), padding="same", **quantized_args)(x)
    x = max_pool(x)
    x = batch_norm(x)
    # The classifier's two hidden layers as convolutions: 6x6 "valid" over the 6x6 map,
    # then 1x1, each equivalent to a dense layer.
    x = QuantConv2D(4096, (6, 6), padding="valid", **quantized_args)(x)
    x = batch_norm(x)
    x = QuantConv2D(4096, (1, 1), strides=(1, 1), padding="valid", **quantized_args)(x)
    x = batch_norm(x, epsilon=1e-3)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(num_classes, use_bias=False, kernel_regularizer=regularizer())(x)
    # float32 so that the probabilities stay exact under mixed precision.
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="xnornet")


@MODELS.register("xnornet_batch")
def xnornet_batch(hparams: dict, input_shape: tuple, num_classes: int) -> keras.Model:
    """XNOR-Net with batch normalization, under the name "A Bop and Beyond"'s code
    gives it (its ``xnornet`` has layer normalization): bnno's ``xnornet``."""
    return xnornet(batch_normalized(hparams, "xnornet_batch"), input_shape, num_classes)
