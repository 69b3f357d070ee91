"""Xavier learning-rate scaling: each quantized layer's latent kernel is trained with
the optimizer's learning rate times 1 / H, where H = sqrt(1.5 / (fan_in + fan_out)) is
half the Glorot-uniform limit sqrt(6 / (fan_in + fan_out)).

BinaryConnect (Courbariaux, Bengio & David, 2015, section 2.5): "we scale the weights
learning rates respectively with the weights initialization coefficients from [Glorot &
Bengio, 2010] when optimizing with ADAM". For a kernel of shape

    (kh, kw, n_in, n_out) (a convolution):  multiplier = 1 / sqrt(1.5 / (kh * kw * (n_in + n_out)))
    (n_in, n_out)         (a dense layer):  multiplier = 1 / sqrt(1.5 / (n_in + n_out))

These are larq's ``XavierLearningRateScaling.get_lr_multiplier`` (larq <= 0.7, on
TensorFlow <= 1.13 only, ``larq/optimizers_v1.py``), which larq applies to every
quantized layer's ``quantized_latent_weights`` (``larq/layers_base.py``,
``QuantizerBase.build``: the kernel of a layer that has a kernel quantizer; a depthwise
kernel, whose last axis is its depth multiplier, takes the 4-D formula too). They are
also BinaryConnect's and BinaryNet's Theano code: ``W_LR_scale = 1./np.sqrt(1.5 /
(num_inputs + num_units))`` in ``DenseLayer.__init__`` and ``Conv2DLayer.__init__``
(``binary_connect.py`` of github.com/MatthieuCourbariaux/BinaryConnect and
``Train-time/binary_net.py`` of github.com/MatthieuCourbariaux/BinaryNet, with
``num_inputs = prod(filter_size) * input channels`` and ``num_units = prod(filter_size)
* num_filters`` for a convolution), whose ``clipping_scaling`` multiplies each
kernel's Adam update by it. Adam's and SGD's steps are proportional to the learning
rate, so scaling the learning rate (larq, bnno) and scaling the update (the Theano code)
are the same. That code keeps the latent weights in [-H, H]; larq and bnno clip them to
[-1, 1] (``weight_clip``) with the same multipliers. Every other variable (batch norm,
biases, kernels without a quantizer) keeps the optimizer's learning rate.

Helwegen et al. (2019), section 5.2, train their latent-weight baseline with Adam and
this scaling, "as recommended in" Alizadeh et al. (2019): bnno's ``adam_sec52`` set of
binarynet (``xavier_learning_rate_scaling: true``).

References:
    - Courbariaux, Bengio and David, "BinaryConnect: Training Deep Neural Networks with
      binary weights during propagations", NeurIPS 2015,
      https://arxiv.org/abs/1511.00363
    - Glorot and Bengio, "Understanding the difficulty of training deep feedforward
      neural networks", AISTATS 2010.
    - Helwegen et al., "Latent Weights Do Not Exist: Rethinking Binarized Neural Network
      Optimization", NeurIPS 2019, https://arxiv.org/abs/1906.02107, section 5.2.
"""

import math
from typing import Dict, Sequence

import keras
from keras import ops

from bnno.nn.layers import QuantizedVariable
from bnno.nn.weight_decay import AdamL2

__all__ = [
    "XavierLearningRateScaling", "XavierScaledAdam", "is_quantized_latent_weight",
    "xavier_learning_rate_multiplier",
]


def xavier_learning_rate_multiplier(shape: Sequence[int]) -> float:
    """1 / sqrt(1.5 / (fan_in + fan_out)) of a kernel of ``shape``: ``(kh, kw, n_in,
    n_out)`` has fan_in + fan_out = kh * kw * (n_in + n_out), ``(n_in, n_out)`` has
    n_in + n_out (larq's ``get_lr_multiplier``). Other ranks are a ``ValueError``."""
    shape = tuple(int(size) for size in shape)
    if len(shape) not in (2, 4):
        raise ValueError(
            "Xavier learning-rate scaling is defined for dense kernels (n_in, n_out) and "
            f"convolution kernels (kh, kw, n_in, n_out); got a kernel of shape {shape}."
        )
    fans = math.prod(shape[:-2]) * (shape[-2] + shape[-1])
    return 1.0 / math.sqrt(1.5 / fans)


def is_quantized_latent_weight(variable) -> bool:
    """True for the latent kernel of a quantized layer: a kernel that ``bnno.nn.layers``
    marked with its kernel quantizer (larq's ``quantized_latent_weights``)."""
    return isinstance(variable, QuantizedVariable) and variable.quantizer is not None


class XavierLearningRateScaling:
    """Mixin for a ``keras.optimizers.Optimizer``: the learning rate of each quantized
    latent kernel is multiplied by ``xavier_learning_rate_multiplier(kernel.shape)``;
    every other variable keeps the optimizer's.

    Put it first among the bases, before an optimizer whose ``update_step`` is linear
    in its ``learning_rate`` argument (Keras's SGD and Adam are)::

        class XavierScaledSGD(XavierLearningRateScaling, keras.optimizers.SGD): ...

    The multipliers are computed in ``build`` from the variables themselves, so they
    need no model, are not part of the config and come back with a reloaded model. The
    optimizer's variables are those of the optimizer it extends, so checkpoints have
    the same layout. Under a ``tf.distribute`` strategy ``update_step`` receives each
    replica's variable; the multiplier is found by the optimizer's variable index.
    """

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._learning_rate_multipliers = [
            xavier_learning_rate_multiplier(v.shape) if is_quantized_latent_weight(v) else 1.0
            for v in variables
        ]

    @property
    def learning_rate_multipliers(self) -> Dict[str, float]:
        """``{variable path: multiplier}`` of the variables whose learning rate is scaled
        (empty before ``build``)."""
        if not self.built:
            return {}
        return {
            variable.path: multiplier
            for variable, multiplier in zip(self._trainable_variables, self._learning_rate_multipliers)
            if multiplier != 1.0
        }

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self._learning_rate_multipliers[self._get_variable_index(variable)]
        if multiplier != 1.0:
            learning_rate = ops.multiply(ops.cast(learning_rate, variable.dtype), multiplier)
        super().update_step(gradient, variable, learning_rate)


@keras.saving.register_keras_serializable(package="bnno")
class XavierScaledAdam(XavierLearningRateScaling, AdamL2):
    """Adam with Xavier learning-rate scaling of the quantized latent kernels: the
    latent-weight baseline of Helwegen et al. (2019), section 5.2 (BinaryConnect's
    ADAM with "learning rate scaling").

    With ``l2`` above 0 it also adds coupled L2 weight decay to every gradient, as
    ``AdamL2`` does (before the step is scaled).

    Args:
        learning_rate: as ``keras.optimizers.Adam``; the rate of every variable that is
            not a quantized latent kernel.
        l2: ``AdamL2``'s coupled weight decay, at least 0 (default 0: plain Adam).
        **kwargs: further ``keras.optimizers.Adam`` arguments.
    """

    def __init__(self, learning_rate=0.001, l2=0.0, name="xavier_scaled_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, l2=l2, name=name, **kwargs)
