"""Binary convolutions computed exactly in bfloat16, where that is faster than float32.

A convolution of +-1 inputs with a +-1 kernel adds up products that are each +-1, so
every output is an integer, at most ``kh * kw * in_channels`` in magnitude (4,608 in
BinaryNet's widest layer). float32 holds such integers exactly; bfloat16, with 8
significant bits, holds every integer up to 256 and every even integer up to 512.
oneDNN's bfloat16 convolution multiplies exactly, accumulates in float32 and rounds
once, at its output. So a bfloat16 convolution whose every output is one of those
integers gives exactly the float32 result.

``conv2d`` splits the input channels into groups of ``c`` channels, small enough that
each group's sum is such an integer:

- ``kh * kw * c <= 512`` with ``c`` even: every output of a group then sums an even
  number of +-1 terms (``c`` per kernel tap inside the image; "same" padding adds
  zeros for whole positions), so it is an even integer of magnitude at most 512;
- ``kh * kw * c <= 256`` otherwise.

It convolves all groups at once, as one grouped bfloat16 convolution whose output
holds each group's partial sums, and adds the partial sums in float32, where they are
exact (in one pass that XLA compiles). The forward result is the float32
convolution's, bit for bit. The backward pass is the float32 one, through the same
operations as TensorFlow's own ``Conv2D`` gradient, so gradients are identical too
and training is unchanged to the last flipped bit.

On CPUs with AMX (Intel Sapphire Rapids and later) bfloat16 convolutions run several
times faster than float32 ones. On BinaryNet's five binary layers (batch 100, two
cores) the exact bfloat16 forward convolution, with its kernel check and partial sums,
was 2.5-3.5x faster than float32 (138 ms against 384 ms in all), and the training
step about 20 % faster (benchmarks/README.md). ``mode()`` decides where it is
used: ``"auto"`` (the default) uses it on CPUs with AMX, with TensorFlow's oneDNN
kernels (``TF_ENABLE_ONEDNN_OPTS`` not 0) allowed to use AMX (``ONEDNN_MAX_CPU_ISA``
not set below it), when no GPU is visible,
``"bfloat16"`` always, ``"float32"`` never.

Only inputs and kernels that are exactly +-1 qualify: the layer's input quantizer must
output only -1 and +1 (``Quantizer.plus_minus_one``), and the kernel is checked at run
time (a Bop kernel that still holds its real-valued initial values, before the first
step, takes the float32 path).
"""

import contextlib
import functools
import os
from typing import Optional

from bnno.nn.context import ScopedSetting

__all__ = [
    "MODES", "channel_group_size", "conv2d", "cpu_has_amx_bf16", "enabled", "gpus_visible", "mode", "use",
]

#: ``auto``: bfloat16 on CPUs with AMX and no GPU; ``bfloat16``: always; ``float32``: never.
MODES = ("auto", "bfloat16", "float32")

#: The most groups used. Measured (batch 100, two cores, 3x3, 512 output channels):
#: 16, 32 and 64 groups took 37, 80 and 97 ms against 90, 176 and 179 ms in float32.
#: The partial sums take groups / 2 times the float32 output's memory, so the
#: number of groups is bounded rather than left to grow unmeasured.
MAX_GROUPS = 64

#: The fewest channels in a group (unless the layer has fewer): narrower groups are
#: unmeasured, and oneDNN's grouped kernels are built for wide ones.
MIN_GROUP_SIZE = 8

_mode = ScopedSetting("binary_conv.mode", "auto")


def mode() -> str:
    """The current mode, one of ``MODES``."""
    return _mode.get()


@contextlib.contextmanager
def use(new_mode: str):
    """Within the block, binary convolutions traced (e.g. by ``tf.function``) use
    ``new_mode``; the previous mode is restored after."""
    if new_mode not in MODES:
        raise ValueError(f"Unknown binary convolution mode {new_mode!r}; choose from {MODES}.")
    with _mode.scope(new_mode):
        yield new_mode


@functools.lru_cache(maxsize=None)
def cpu_has_amx_bf16() -> bool:
    """Whether this CPU has AMX with bfloat16 (the ``amx_bf16`` flag of
    ``/proc/cpuinfo``; False where there is none to read), which makes ``"auto"`` take
    the bfloat16 path. Read once per process."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(
                line.startswith("flags") and "amx_bf16" in line.split() for line in cpuinfo
            )
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def gpus_visible() -> bool:
    """Whether TensorFlow sees a GPU (then ``"auto"`` keeps float32). Read once per process."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _onednn_enabled() -> bool:
    # TensorFlow's oneDNN kernels (on by default on x86) accumulate bfloat16 products
    # in float32; exactness was not checked for its other kernels.
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")


def _onednn_may_use_amx() -> bool:
    # ONEDNN_MAX_CPU_ISA (or its older name DNNL_MAX_CPU_ISA) caps the instructions
    # oneDNN generates, e.g. AVX2 to behave as on an older CPU; below AMX its bfloat16
    # convolutions are emulated and slower than float32.
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        cap = os.environ.get(name, "").strip().upper()
        if cap and cap not in ("ALL", "DEFAULT") and "AMX" not in cap:
            return False
    return True


def enabled(in_mode: Optional[str] = None) -> bool:
    """Whether qualifying convolutions take the bfloat16 path in ``in_mode`` (by
    default the current mode)."""
    in_mode = in_mode or _mode.get()
    if in_mode == "auto":
        return (cpu_has_amx_bf16() and _onednn_enabled() and _onednn_may_use_amx()
                and not gpus_visible())
    return in_mode == "bfloat16"


def channel_group_size(in_channels: int, taps: int) -> Optional[int]:
    """The largest group of input channels whose +-1 sums bfloat16 holds exactly
    (see the module's docstring), or None if none of at least ``MIN_GROUP_SIZE``
    channels, in at most ``MAX_GROUPS`` groups, qualifies. ``taps`` is ``kh * kw``."""
    for size in range(in_channels, min(in_channels, MIN_GROUP_SIZE) - 1, -1):
        if in_channels % size or in_channels // size > MAX_GROUPS:
            continue
        if taps * size <= (512 if size % 2 == 0 else 256):
            return size
    return None


def conv2d(inputs, kernel, strides, padding: str, dilations, check_kernel: bool = True):
    """``tf.nn.conv2d(inputs, kernel, ...)`` for channels-last float32 ``inputs`` that
    are exactly +-1 (the caller guarantees it) and a float32 ``kernel``.

    With ``check_kernel`` the bfloat16 path is taken only if every kernel value is
    exactly +-1; otherwise the float32 convolution runs. Returns None when the kernel's
    shape has no exact grouping (``channel_group_size``); the caller convolves as usual.
    """
    import tensorflow as tf

    height, width, in_channels, out_channels = kernel.shape
    group_size = channel_group_size(in_channels, height * width)
    if group_size is None:
        return None
    groups = in_channels // group_size
    conv_args = dict(
        strides=[1, *strides, 1], padding=padding.upper(), dilations=[1, *dilations, 1]
    )

    def float32_conv(x, w):
        return tf.raw_ops.Conv2D(input=x, filter=w, **conv_args)

    def bfloat16_conv(x, w):
        # Group g convolves input channels [g*c, (g+1)*c) with its slice of the kernel;
        # its output channels [g*out, (g+1)*out) are that group's partial sums.
        grouped = tf.reshape(
            tf.transpose(
                tf.reshape(w, [height, width, groups, group_size, out_channels]),
                [0, 1, 3, 2, 4],
            ),
            [height, width, group_size, groups * out_channels],
        )
        partial = tf.raw_ops.Conv2D(
            input=tf.cast(x, tf.bfloat16), filter=tf.cast(grouped, tf.bfloat16), **conv_args
        )
        if groups == 1:
            return tf.cast(partial, tf.float32)
        total = _group_sum(groups, out_channels)(partial)
        total.set_shape(partial.shape[:3].concatenate([out_channels]))
        return total

    @tf.custom_gradient
    def convolve(x, w):
        if check_kernel:
            kernel_is_binary = tf.reduce_all(tf.equal(tf.abs(w), 1.0))
            outputs = tf.cond(
                kernel_is_binary, lambda: bfloat16_conv(x, w), lambda: float32_conv(x, w)
            )
        else:
            outputs = bfloat16_conv(x, w)

        def gradient(upstream):
            # What TensorFlow's registered Conv2D gradient computes, with the same ops.
            input_gradient = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=w, out_backprop=upstream, **conv_args
            )
            kernel_gradient = tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.shape(w), out_backprop=upstream, **conv_args
            )
            return input_gradient, kernel_gradient

        return outputs, gradient

    return convolve(tf.convert_to_tensor(inputs), tf.convert_to_tensor(kernel))


@functools.lru_cache(maxsize=None)
def _group_sum(groups: int, out_channels: int):
    """A function from the grouped convolution's bfloat16 output ``[..., groups *
    out_channels]`` to the float32 sum over the groups ``[..., out_channels]``.

    XLA compiles the cast and the sum into one pass over the partial sums. As two
    TensorFlow operations they write and read a float32 copy of every partial sum,
    which cost about 8 % of BinaryNet's training step (benchmarks/README.md).
    """
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def group_sum(partial):
        partial = tf.cast(partial, tf.float32)
        shape = tf.shape(partial)
        per_group = tf.reshape(partial, tf.concat([shape[:3], [groups, out_channels]], 0))
        return tf.reduce_sum(per_group, axis=3)

    return group_sum
