"""conv_shortcut: a binarized network built from the larq guide's ``conv_with_shortcut``,
as a bnno plugin (docs/own-model.md).

larq's user guide "Building BNNs" (the project's reference copy:
shared/reference/001_c4b369518f9fad7b.txt) recommends, and this network follows:

- a real-valued shortcut around every binary 3x3 convolution ("use as many shortcuts
  as you can"), as Bi-Real Net does: ``conv_with_shortcut`` below is the guide's block;
- the first and the last layer in high precision, weights and incoming activations;
- batch normalization after every binary layer, with momentum 0.9 (the guide "Training
  BNNs", shared/reference/000_4fb76a4c8d62a168.txt: BNN training is noisier);
- between stages, where the channels double and the resolution halves, the guide's
  VGG-style layer: binary convolution, max pooling, then batch normalization ("accuracy
  improves when applying batch normalization after instead of before max-pooling",
  after XNOR-Net).

    Conv2D(f, 3) BN                       <- high precision: the image itself
    blocks x conv_with_shortcut           (f channels)
    QC(2f, 3) MaxPool(3, 2) BN            <- between stages: BN after pooling
    blocks x conv_with_shortcut           (2f channels)
    ...                                   (stages in all)
    GlobalAveragePooling Dense(classes)   <- high precision
    softmax

Keys: ``filters`` (64, the first stage's channels), ``stages`` (3), ``blocks`` (2,
binary convolutions with a shortcut per stage), and how the binary layers quantize:
``input_quantizer`` ("ste_sign"), ``kernel_quantizer`` ("ste_sign") and
``kernel_constraint`` ("weight_clip"): the guide's latent-weight layer. A set extending
``binarynet:bop`` replaces the last two by "noop" and "none": Bop trains the kernels as
exact +-1 values, and Adam everything else.

References:
    - larq, "Building BNNs" and "Training BNNs", https://docs.larq.dev/larq/guides/bnn-architecture/
      and https://docs.larq.dev/larq/guides/bnn-optimization/
    - Liu et al., "Bi-Real Net", ECCV 2018, https://arxiv.org/abs/1808.00278
    - Rastegari et al., "XNOR-Net", ECCV 2016, https://arxiv.org/abs/1603.05279
"""

import keras

import bnno
from bnno.nn import layers


def conv_with_shortcut(x, hparams):
    """The guide's convolutional block: a binary 3x3 convolution of ``x`` (binary
    inputs, binary kernel), batch normalized and added to ``x`` itself, the
    high-precision shortcut."""
    filters = x.shape[-1]
    shortcut = x
    x = layers.QuantConv2D(
        filters, 3, padding="same",
        input_quantizer=hparams["input_quantizer"],
        kernel_quantizer=hparams["kernel_quantizer"],
        kernel_initializer="glorot_normal",
        kernel_constraint=hparams["kernel_constraint"],
        use_bias=False,
    )(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    return keras.layers.add([x, shortcut])


@bnno.register_model("conv_shortcut", filters=64, stages=3, blocks=2, input_quantizer="ste_sign",
                     kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
def build(hparams, input_shape, num_classes):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(hparams["filters"], 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization(momentum=0.9)(x)
    for stage in range(hparams["stages"]):
        if stage > 0:
            x = layers.QuantConv2D(
                2 * x.shape[-1], 3, padding="same",
                input_quantizer=hparams["input_quantizer"],
                kernel_quantizer=hparams["kernel_quantizer"],
                kernel_constraint=hparams["kernel_constraint"],
                use_bias=False,
            )(x)
            x = keras.layers.MaxPool2D(pool_size=3, strides=2, padding="same")(x)
            x = layers.BatchNormalization(momentum=0.9)(x)
        for _ in range(hparams["blocks"]):
            x = conv_with_shortcut(x, hparams)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(num_classes)(x)
    # float32, so that the probabilities stay exact under --mixed-precision
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="conv_shortcut")
