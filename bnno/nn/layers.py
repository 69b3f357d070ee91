"""Quantized layers: Keras 3 ``Conv2D``, ``Dense`` and ``DepthwiseConv2D`` whose inputs
and kernel pass through quantizers (larq ``layers``).

``input_quantizer`` binarizes the incoming activations; ``kernel_quantizer`` maps the
kernel variable to the values the layer computes with. The output of a binary layer is
not binary (it is a sum), so the next layer quantizes its own inputs (larq guide
"Building BNNs").

The kernel variable carries ``precision`` (the kernel quantizer's bits) and reads as
its quantized value inside ``bnno.nn.context.quantized_scope()``. A kernel with
``precision == 1`` is what ``Bop.is_binary_variable`` selects.
"""

from typing import Optional

import keras
import numpy as np
from keras import ops

from bnno.nn import binary_conv, constraints, context, quantizers

__all__ = [
    "BatchNormalization", "QuantConv2D", "QuantDense", "QuantDepthwiseConv2D", "QuantizedVariable",
]


class QuantizedVariable(keras.Variable):
    """A kernel variable that reads as ``quantizer(value)`` inside ``quantized_scope``.

    Only reads into NumPy are affected (``numpy()``, ``np.asarray``, hence
    ``get_weights`` and saving): layers apply their quantizer explicitly in ``call``,
    and optimizers always update the latent value.
    """

    quantizer = None
    precision: Optional[int] = None

    def numpy(self):
        # The latent value as TensorFlow's Variable.numpy() reads it; the base Keras
        # Variable.numpy() (JAX) goes through __array__, which comes back here.
        latent = ops.convert_to_numpy(self.value)
        if self.quantizer is None or not context.should_quantize():
            return latent
        return ops.convert_to_numpy(self.quantizer(latent))

    def __array__(self, dtype=None, copy=None):
        value = np.asarray(self.numpy())
        return value if dtype is None else value.astype(dtype)


def _mark_quantized(variable, quantizer):
    # Keras creates variables inside `Layer.add_weight`; turning the finished variable
    # into a QuantizedVariable (which adds behaviour, no state) keeps every Keras code
    # path that builds, tracks, distributes and saves it unchanged.
    variable.__class__ = QuantizedVariable
    variable.quantizer = quantizer
    variable.precision = getattr(quantizer, "precision", None)


class _QuantizedLayerMixin:
    """Adds ``input_quantizer`` and a quantized kernel to a Keras layer."""

    def _init_quantizers(self, input_quantizer, kernel_quantizer):
        self.input_quantizer = quantizers.get(input_quantizer)
        self.kernel_quantizer = quantizers.get(kernel_quantizer)

    def add_weight(self, *args, name=None, **kwargs):
        variable = super().add_weight(*args, name=name, **kwargs)
        if name == "kernel" and self.kernel_quantizer is not None:
            _mark_quantized(variable, self.kernel_quantizer)
        return variable

    def _quantized_inputs_and_kernel(self, inputs):
        if self.input_quantizer is not None:
            inputs = self.input_quantizer(inputs)
        kernel = self.kernel
        if self.kernel_quantizer is not None:
            kernel = self.kernel_quantizer(kernel)
        return inputs, kernel

    def _quantizer_config(self, kernel_key="kernel_quantizer"):
        return {
            "input_quantizer": quantizers.serialize(self.input_quantizer),
            kernel_key: quantizers.serialize(self.kernel_quantizer),
        }


def _same_padding(input_size, kernel_size, stride, dilation):
    """(before, after) padding that TensorFlow's "same" padding would add."""
    effective_kernel = (kernel_size - 1) * dilation + 1
    output_size = -(-input_size // stride)
    total = max((output_size - 1) * stride + effective_kernel - input_size, 0)
    return total // 2, total - total // 2


@keras.saving.register_keras_serializable(package="bnno")
class QuantConv2D(_QuantizedLayerMixin, keras.layers.Conv2D):
    """2D convolution with quantized inputs and kernel (larq ``QuantConv2D``).

    Takes every ``keras.layers.Conv2D`` argument, plus:
        input_quantizer: quantizer (object or name) for the inputs, or None.
        kernel_quantizer: quantizer (object or name) for the kernel, or None.
        pad_values: the value "same" padding pads with. Binarized inputs are +-1, so
            padding with 0 adds a third value; ``pad_values=1.0`` keeps them binary.
        channel_scale: multiply each output channel by a real-valued factor alpha (a
            weight named ``channel_scale``, started at 1), XNOR-Net's scaling factor of
            the binary kernel: the layer computes alpha * conv(x, sign(W)). Bop keeps
            ``W`` at exactly +-1, so the kernel's magnitude lives here; alpha is an
            ordinary real-valued variable (no ``precision``), trained by the
            optimizer of the real-valued variables. The kernel's gradient is scaled by
            alpha.

    References:
        - Rastegari et al., "XNOR-Net", ECCV 2016, https://arxiv.org/abs/1603.05279
          (section 3.1: W ~ alpha * B with alpha = mean |W| per output channel).

    When the input quantizer outputs only +-1 (``ste_sign``, ``approx_sign``,
    ``swish_sign``) and the kernel is +-1, the convolution is computed exactly in
    bfloat16 where ``bnno.nn.binary_conv`` is enabled (CPUs with AMX): the same
    result, bit for bit, 2.5-3.5x faster on BinaryNet's layers.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        *args,
        input_quantizer=None,
        kernel_quantizer=None,
        kernel_constraint=None,
        pad_values=0.0,
        channel_scale=False,
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            *args,
            kernel_constraint=constraints.get(kernel_constraint),
            **kwargs,
        )
        self._init_quantizers(input_quantizer, kernel_quantizer)
        self.pad_values = float(pad_values)
        self.channel_scale = bool(channel_scale)

    def build(self, input_shape):
        super().build(input_shape)
        if self.channel_scale:
            # Created after the kernel (and bias), so that it is the layer's last weight:
            # bnno.init_from relies on that order.
            self.scale = self.add_weight(name="channel_scale", shape=(self.filters,), initializer="ones")

    def call(self, inputs):
        inputs, kernel = self._quantized_inputs_and_kernel(inputs)
        if self.padding == "same" and self.pad_values != 0.0:
            outputs = self._convolve_with_padding_value(inputs, kernel)
        else:
            outputs = self._binary_convolution(inputs, kernel, self.padding)
            if outputs is None:
                outputs = self.convolution_op(inputs, kernel)
        if self.channel_scale:
            scale_shape = (1,) * (self.rank + 1) + (self.filters,)
            if self.data_format != "channels_last":
                scale_shape = (1, self.filters) + (1,) * self.rank
            outputs = ops.multiply(outputs, ops.cast(ops.reshape(self.scale, scale_shape), outputs.dtype))
        if self.use_bias:
            bias_shape = (1,) * (self.rank + 1) + (self.filters,)
            if self.data_format != "channels_last":
                bias_shape = (1, self.filters) + (1,) * self.rank
            outputs = ops.add(outputs, ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _convolve_with_padding_value(self, inputs, kernel):
        spatial_axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        pad_width = [(0, 0)] * 4
        for i, axis in enumerate(spatial_axes):
            pad_width[axis] = _same_padding(
                inputs.shape[axis], self.kernel_size[i], self.strides[i], self.dilation_rate[i]
            )
        padded = ops.pad(inputs, pad_width, constant_values=self.pad_values)
        outputs = self._binary_convolution(padded, kernel, "valid")
        if outputs is not None:
            return outputs
        return ops.conv(
            padded,
            kernel,
            strides=list(self.strides),
            padding="valid",
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )

    def _binary_convolution(self, inputs, kernel, padding):
        """The convolution computed exactly in bfloat16 (``bnno.nn.binary_conv``) when
        it is enabled and the inputs are +-1; None otherwise."""
        qualifies = (
            keras.backend.backend() == "tensorflow"  # first: enabled() imports TensorFlow
            and binary_conv.enabled()
            and getattr(self.input_quantizer, "plus_minus_one", False)
            and self.pad_values in (0.0, 1.0, -1.0)
            and self.data_format == "channels_last"
            and self.groups == 1
            and self.compute_dtype == "float32"
            and inputs.dtype == "float32"
        )
        if not qualifies:
            return None
        return binary_conv.conv2d(
            inputs, kernel, self.strides, padding, self.dilation_rate,
            check_kernel=not getattr(self.kernel_quantizer, "plus_minus_one", False),
        )

    def get_config(self):
        return {
            **super().get_config(), **self._quantizer_config(), "pad_values": self.pad_values,
            "channel_scale": self.channel_scale,
        }


@keras.saving.register_keras_serializable(package="bnno")
class QuantDense(_QuantizedLayerMixin, keras.layers.Dense):
    """Densely connected layer with quantized inputs and kernel (larq ``QuantDense``).

    Takes every ``keras.layers.Dense`` argument, plus ``input_quantizer`` and
    ``kernel_quantizer`` (objects or names, or None).
    """

    def __init__(
        self,
        units,
        *args,
        input_quantizer=None,
        kernel_quantizer=None,
        kernel_constraint=None,
        **kwargs,
    ):
        super().__init__(
            units, *args, kernel_constraint=constraints.get(kernel_constraint), **kwargs
        )
        self._init_quantizers(input_quantizer, kernel_quantizer)

    def call(self, inputs, training=None):
        inputs, kernel = self._quantized_inputs_and_kernel(inputs)
        outputs = ops.matmul(inputs, kernel)
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        return {**super().get_config(), **self._quantizer_config()}


@keras.saving.register_keras_serializable(package="bnno")
class QuantDepthwiseConv2D(_QuantizedLayerMixin, keras.layers.DepthwiseConv2D):
    """Depthwise 2D convolution with quantized inputs and kernel (larq
    ``QuantDepthwiseConv2D``).

    Takes every ``keras.layers.DepthwiseConv2D`` argument, plus ``input_quantizer`` and
    ``depthwise_quantizer`` (larq's name; ``kernel_quantizer`` is accepted as well).
    """

    def __init__(
        self,
        kernel_size,
        *args,
        input_quantizer=None,
        depthwise_quantizer=None,
        kernel_quantizer=None,
        depthwise_constraint=None,
        **kwargs,
    ):
        if depthwise_quantizer is not None and kernel_quantizer is not None:
            raise ValueError(
                "Give either depthwise_quantizer or kernel_quantizer to "
                "QuantDepthwiseConv2D, not both; they name the same quantizer."
            )
        super().__init__(
            kernel_size,
            *args,
            depthwise_constraint=constraints.get(depthwise_constraint),
            **kwargs,
        )
        self._init_quantizers(input_quantizer, depthwise_quantizer or kernel_quantizer)

    def call(self, inputs):
        inputs, kernel = self._quantized_inputs_and_kernel(inputs)
        outputs = ops.depthwise_conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            channels = self.bias.shape[0]
            bias_shape = (1,) * (self.rank + 1) + (channels,)
            if self.data_format != "channels_last":
                bias_shape = (1, channels) + (1,) * self.rank
            outputs = ops.add(outputs, ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        return {**super().get_config(), **self._quantizer_config("depthwise_quantizer")}


@keras.saving.register_keras_serializable(package="bnno")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization``, computed by TensorFlow's fused kernel.

    Same arguments, variables and results as the Keras layer, moving statistics
    included (Keras 3 semantics: the moving variance averages the biased batch
    variance). Keras 3 builds batch normalization from a dozen small operations
    forward and more backward; TensorFlow's ``FusedBatchNormV3`` is one operation
    each way, which is what tf-keras (and so larq and the paper's code) used. In
    BinaryNet's Bop training step on two CPU cores the Keras version took 14 % of the
    busy time, the fused one about 2 % (benchmarks/README.md).

    The fused kernel serves rank-2 and rank-4 channels-last inputs without a mask; it
    clamps ``epsilon`` to at least 1.001e-5, as tf-keras did. 16-bit inputs (mixed
    precision) go in as they are, with float32 statistics, which saved 11 % of the
    mixed_bfloat16 step against casting them to float32 first. Everything else (other
    ranks and axes, masks, renormalization, statistics synchronized across replicas,
    other backends) falls back to the Keras computation.
    """

    def _fusable(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and not self.synchronized
            and len(inputs.shape) in (2, 4)
            and self.axis in (-1, len(inputs.shape) - 1)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        # The fused kernel takes 16-bit inputs as they are and keeps its statistics,
        # scale and offset in float32 (what Keras gets by casting inputs up).
        x = inputs if inputs.dtype in (tf.float16, tf.bfloat16) else tf.cast(inputs, tf.float32)
        channels = x.shape[-1]
        if len(x.shape) == 2:
            x = tf.reshape(x, [-1, 1, 1, channels])
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        epsilon = max(self.epsilon, 1.001e-5)
        if training and self.trainable:
            y, mean, corrected_variance = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, epsilon=epsilon, data_format="NHWC", is_training=True
            )
            # The kernel reports the variance with Bessel's correction (n / (n - 1));
            # Keras 3 averages the biased one into the moving variance.
            n = tf.cast(tf.size(x) // channels, tf.float32)
            variance = corrected_variance * tf.math.divide_no_nan(n - 1.0, n)
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(
                self.moving_variance * momentum + variance * (1.0 - momentum)
            )
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32), epsilon=epsilon,
                data_format="NHWC", is_training=False,
            )
        if len(inputs.shape) == 2:
            y = tf.reshape(y, [-1, channels])
        return tf.cast(y, self.compute_dtype)
