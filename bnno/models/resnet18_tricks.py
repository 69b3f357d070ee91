"""ResNet-18 built with the BNN training tricks of CAS-CLab's "Training Tricks for
Binarized Neural Networks" (the document, below), for two-stage training.

The tricks, each as the document gives it:

1. Modified block: batch norm, then the binary activation, then the (binary)
   convolution, plus the shortcut, then PReLU.
2. PReLU as the activation (one slope per channel, PyTorch's ``nn.PReLU(planes)``).
3. Double skip connections: each of ResNet-18's eight basic blocks (two 3x3
   convolutions, one shortcut) becomes two modified blocks, so every binary
   convolution has its own shortcut (as in Bi-Real Net; larq's guide "Building BNNs":
   "bypass every single convolutional layer").
4. Full-precision downsampling shortcuts, in the document's order: 1x1 convolution
   with stride 1, batch norm, then 2x2 average pooling with stride 2.

The first and last layers stay full precision (larq's guide "Building BNNs", "First &
Last Layer"). Stage 1 trains real-valued kernels under binary activations, stage 2 1-bit
kernels started from stage 1 (``bnno train ... --init-from``); the sets are in
``hparams/resnet18_tricks.yaml``.

References:
    - CAS-CLab, "Training Tricks for Binarized Neural Networks" (a collection of BNN
      training tricks, in PyTorch),
      https://github.com/CAS-CLab/Training-Tricks-for-Binarized-Neural-Networks
    - Larq, "Building BNNs" (guide),
      https://docs.larq.dev/larq/guides/bnn-architecture/
    - He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
      https://arxiv.org/abs/1512.03385 (ResNet-18).
    - Liu et al., "Bi-Real Net", ECCV 2018, https://arxiv.org/abs/1808.00278 (a
      shortcut around every binary convolution).
    - Helwegen et al., "Latent Weights Do Not Exist", NeurIPS 2019,
      https://arxiv.org/abs/1906.02107 (Bop, for ``stage2_bop``).
    - Rastegari et al., "XNOR-Net", ECCV 2016, https://arxiv.org/abs/1603.05279
      (alpha = mean |W| per output channel, for stage 2).
"""

import keras

from bnno.errors import UsageError
from bnno.models import batch_normalization, register
from bnno.nn.layers import QuantConv2D
from bnno.registry import unknown_choice_message

#: Inputs whose shorter side is below this get the CIFAR stem (3x3, stride 1, no max
#: pooling): the ImageNet stem would shrink a 32x32 image to 8x8 before the first block.
SMALL_INPUT = 128
STEMS = ("auto", "cifar", "imagenet")


def stem_for(input_shape: tuple, stem: str = "auto") -> str:
    """"cifar" or "imagenet": the stem ``stem`` names, or for "auto" the one that fits
    ``input_shape`` (height, width, channels)."""
    if stem not in STEMS:
        raise UsageError(unknown_choice_message("stem", stem, list(STEMS), "for resnet18_tricks"))
    if stem != "auto":
        return stem
    return "cifar" if min(input_shape[0], input_shape[1]) < SMALL_INPUT else "imagenet"


@register("resnet18_tricks", filters=64, stem="auto", input_quantizer="ste_sign", kernel_quantizer=None,
          kernel_constraint=None, channel_scale=False)
def resnet18_tricks(hparams: dict, input_shape: tuple, num_classes: int) -> keras.Model:
    """ResNet-18 with the training tricks: a full-precision stem, 16 modified blocks in
    four stages, a full-precision classifier.

    ``f = filters`` (64); BN = batch norm (momentum 0.9, epsilon 1e-5: PyTorch's
    ``BatchNorm2d`` defaults), PReLU = ``keras.layers.PReLU`` with one slope per
    channel, started at 0.25 (PyTorch's ``nn.PReLU``)::

        stem "imagenet": Conv2D(f, 7, stride 2)  BN  PReLU  MaxPool2D(3, stride 2)
        stem "cifar":    Conv2D(f, 3)            BN  PReLU
        4 stages of 4 blocks with f, 2f, 4f, 8f filters; the first block of stages
            2-4 halves the resolution and changes the channels, and its shortcut is
            Conv2D(out, 1) BN AvgPool2D(2, stride 2); every other shortcut is the input
        block: y = PReLU(QuantConv2D(out, 3, stride)(BN(x)) + shortcut(x)), the
            QuantConv2D binarizing its inputs with ``input_quantizer``
        GlobalAveragePooling2D  Dense(num_classes)  softmax

    The stem is ResNet-18's with PReLU for its ReLU (the document shows only the
    block). No convolution has a bias: the document's sketch leaves PyTorch's default
    (and its padding of 0, which could not be added to the shortcut), while larq's
    guide and Bi-Real Net give binary convolutions none. Kernels are glorot-normal
    initialized, as in bnno's Bi-Real Net; "same" padding pads the binarized inputs
    with 0, as PyTorch's convolutions do.

    PReLU needs no code of bnno's: ``keras.layers.PReLU`` computes PyTorch's
    ``max(0, x) + a * min(0, x)``, with ``shared_axes=[1, 2]`` one slope ``a`` per
    channel; the slopes are real-valued variables, trained by Adam (and never by Bop).

    Reads ``filters`` (64), ``stem`` ("auto": "cifar" below 128 pixels, else
    "imagenet"), ``input_quantizer`` ("ste_sign": the document's ``BinActive``, sign
    with the gradient passed where |x| < 1, but for single points: ``ste_sign`` also
    passes it at |x| = 1, and gives sign(0) = +1 where PyTorch gives 0),
    ``kernel_quantizer`` (none: real kernels, stage 1; "magnitude_aware_sign" for latent
    weights or "noop" for Bop's binary kernels, stage 2), ``kernel_constraint`` (none;
    "weight_clip" for latent weights) and ``channel_scale`` (false; true in
    ``stage2_bop``: a real-valued factor per output channel of each binary convolution,
    ``QuantConv2D(channel_scale=True)``).

    **Why stage 2 needs the kernels' magnitude.** The block has no batch norm after its
    binary convolution, so the convolution's output scale reaches the sum with the
    shortcut unchanged: stage 1's real kernels (|W| about 0.03-0.05) replaced by +-1
    would multiply every convolution's output some 20-30 times and stage 2 would start
    near chance. Stage 2 therefore computes alpha * conv(x, sign(W)) with alpha = mean
    |W| per output channel, the least-squares binary approximation of W (XNOR-Net,
    section 3.1; Bi-Real Net's magnitude-aware sign, section 3.3), so it starts where
    stage 1 ended: ``stage2`` through ``magnitude_aware_sign`` on its latent weights,
    ``stage2_bop`` through ``channel_scale`` beside Bop's +-1 kernels, which
    ``--init-from`` sets to mean |W| of stage 1's kernels (``bnno.init_from``).
    """
    filters = int(hparams["filters"])
    stem = stem_for(input_shape, str(hparams["stem"]))
    binary_args = dict(
        input_quantizer=hparams["input_quantizer"],
        kernel_quantizer=hparams["kernel_quantizer"],
        kernel_constraint=hparams["kernel_constraint"],
        kernel_initializer="glorot_normal",
        use_bias=False,
        channel_scale=bool(hparams["channel_scale"]),
    )

    def batch_norm(x):
        return batch_normalization(momentum=0.9, epsilon=1e-5)(x)

    def prelu(x):
        return keras.layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2])(x)

    def block(x, out_filters, strides):
        """The document's BasicBlock: BN, binary activation, conv, + shortcut, PReLU."""
        shortcut = x
        if strides != 1 or x.shape[-1] != out_filters:
            shortcut = keras.layers.Conv2D(out_filters, 1, kernel_initializer="glorot_normal", use_bias=False)(x)
            shortcut = batch_norm(shortcut)
            shortcut = keras.layers.AvgPool2D(2, strides=2, padding="same")(shortcut)
        y = batch_norm(x)
        y = QuantConv2D(out_filters, 3, strides=strides, padding="same", **binary_args)(y)
        return prelu(keras.layers.Add()([y, shortcut]))

    inputs = keras.Input(input_shape)
    if stem == "imagenet":
        x = keras.layers.Conv2D(filters, 7, strides=2, padding="same", kernel_initializer="glorot_normal",
                                use_bias=False)(inputs)
        x = prelu(batch_norm(x))
        x = keras.layers.MaxPool2D(3, strides=2, padding="same")(x)
    else:
        x = keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer="glorot_normal",
                                use_bias=False)(inputs)
        x = prelu(batch_norm(x))

    for stage, multiple in enumerate((1, 2, 4, 8)):
        for index in range(4):  # two ResNet-18 basic blocks, each two modified blocks
            strides = 2 if stage > 0 and index == 0 else 1
            x = block(x, multiple * filters, strides)

    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(num_classes)(x)
    # float32 so that the probabilities stay exact under mixed precision.
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="resnet18_tricks")
