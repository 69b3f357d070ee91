"""Quantizers: a forward function that maps reals to a few levels, and the
pseudo-gradient that replaces its (almost everywhere zero) true gradient.

Every quantizer exists twice, exactly as in larq:

- a function, e.g. ``ste_sign(x, clip_value=1.0)``, for direct use;
- a serializable class, e.g. ``SteSign(clip_value=1.0)``, which layers hold and which
  carries ``precision`` (the bits of its output), read by ``Bop.is_binary_variable``
  and by ``bnno.nn.summary``.

``get("ste_sign")`` turns the names used in hyperparameter files into objects.

Binary outputs are exactly -1.0 or +1.0 (never 0, never 0.99999994) in every float
dtype: ``sign(x)`` is computed as ``sign(sign(x) + 0.1)`` (larq's ``math.sign``), so
``sign(0) = +1``.
"""

from typing import Callable, Optional, Union

import keras
from keras import ops

from bnno.nn import fused
from bnno.registry import Registry

__all__ = [
    "ApproxSign",
    "MagnitudeAwareSign",
    "NoOp",
    "Quantizer",
    "SteHeaviside",
    "SteSign",
    "SteTern",
    "SwishSign",
    "approx_sign",
    "get",
    "magnitude_aware_sign",
    "names",
    "serialize",
    "ste_heaviside",
    "ste_sign",
    "ste_tern",
    "swish_sign",
]


def binary_sign(x):
    """sign(x) with sign(0) = +1: -1 for x < 0, +1 for x >= 0 (larq ``math.sign``)."""
    return ops.sign(ops.add(ops.sign(x), ops.cast(0.1, x.dtype)))


def heaviside(x):
    """+1 for x > 0, 0 for x <= 0 (larq ``math.heaviside``)."""
    return ops.sign(ops.relu(x))


def _with_pseudo_gradient(forward: Callable, pseudo_gradient: Callable):
    """``forward`` on the forward pass; ``upstream * pseudo_gradient(x)`` on the backward.

    ``pseudo_gradient(x, upstream)`` receives the input and the incoming gradient and
    returns the gradient with respect to ``x``.
    """

    @ops.custom_gradient
    def quantize(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return pseudo_gradient(x, upstream)

        return forward(x), grad

    def call(x):
        # A variable is read into a tensor first (``ops.copy``): the custom gradient
        # then sees a plain tensor and the gradient reaches the variable through the
        # read, in eager mode, in tf.function and under tf.distribute alike.
        return quantize(ops.copy(x))

    return call


def _binary_sign_fused(x):
    """``binary_sign``, in one XLA pass where ``bnno.nn.fused`` applies."""
    return fused.compiled(binary_sign)(x) if fused.active() else binary_sign(x)


def pass_inside_clip(x, upstream, clip_value):
    """``upstream`` where |x| <= clip_value, 0 elsewhere: the straight-through
    estimator's backward pass (``ste_sign``'s pseudo-gradient times the incoming
    gradient), which ``bnno.nn.fused`` compiles as it stands."""
    inside = ops.less_equal(ops.abs(x), ops.cast(clip_value, x.dtype))
    return ops.where(inside, upstream, ops.zeros_like(upstream))


def _clipped_identity_gradient(clip_value: Optional[float]):
    """Straight-through estimator: pass ``upstream`` where |x| <= clip_value, else 0."""

    def gradient(x, upstream):
        if clip_value is None:
            return upstream
        if fused.active():  # one XLA pass (bnno.nn.fused)
            return fused.compiled(pass_inside_clip)(x, upstream, clip_value)
        return pass_inside_clip(x, upstream, clip_value)

    return gradient


def ste_sign(x, clip_value: Optional[float] = 1.0):
    r"""Sign with the straight-through estimator (Courbariaux et al., 2016; BinaryNet).

    Forward: q(x) = -1 for x < 0, +1 for x >= 0.
    Pseudo-gradient: dq/dx = 1 for |x| <= clip_value, 0 otherwise (not clipped when
    ``clip_value`` is None).
    """
    return _with_pseudo_gradient(_binary_sign_fused, _clipped_identity_gradient(clip_value))(x)


def _approx_sign_gradient(x, upstream):
    abs_x = ops.abs(x)
    inside = ops.less_equal(abs_x, ops.cast(1.0, x.dtype))
    return ops.where(inside, (1 - abs_x) * 2 * upstream, ops.zeros_like(upstream))


def approx_sign(x):
    r"""Sign with the ApproxSign pseudo-gradient of Bi-Real Net (Liu et al., 2018).

    Forward: q(x) = -1 for x < 0, +1 for x >= 0.
    Pseudo-gradient: dq/dx = 2 - 2|x| for |x| <= 1, 0 otherwise.
    """
    return _with_pseudo_gradient(binary_sign, _approx_sign_gradient)(x)


def swish_sign(x, beta: float = 5.0):
    r"""Sign with the SignSwish pseudo-gradient (Darabi et al., 2018).

    Forward: q(x) = -1 for x < 0, +1 for x >= 0.
    Pseudo-gradient: dq/dx = beta * (2 - beta*x * tanh(beta*x / 2)) / (1 + cosh(beta*x)).
    """

    def gradient(x, upstream):
        b_x = beta * x
        return upstream * beta * (2 - b_x * ops.tanh(b_x * 0.5)) / (1 + ops.cosh(b_x))

    return _with_pseudo_gradient(binary_sign, gradient)(x)


def ste_heaviside(x, clip_value: Optional[float] = 1.0):
    r"""Heaviside step with the straight-through estimator.

    Forward: q(x) = +1 for x > 0, 0 for x <= 0.
    Pseudo-gradient: dq/dx = 1 for |x| <= clip_value, 0 otherwise.
    """
    return _with_pseudo_gradient(heaviside, _clipped_identity_gradient(clip_value))(x)


def ste_tern(
    x,
    threshold_value: float = 0.05,
    ternary_weight_networks: bool = False,
    clip_value: Optional[float] = 1.0,
):
    r"""Ternarization with the straight-through estimator (Li et al., 2016: TWN).

    Forward: q(x) = +1 for x > t, 0 for |x| < t, -1 for x < -t, where t is
    ``threshold_value``, or, with ``ternary_weight_networks``, t = 0.7 * mean(|x|).
    Pseudo-gradient: dq/dx = 1 for |x| <= clip_value, 0 otherwise.
    """

    def forward(x):
        if ternary_weight_networks:
            threshold = 0.7 * ops.sum(ops.abs(x)) / ops.cast(ops.size(x), x.dtype)
        else:
            threshold = ops.cast(threshold_value, x.dtype)
        return ops.sign(ops.sign(x + threshold) + ops.sign(x - threshold))

    return _with_pseudo_gradient(forward, _clipped_identity_gradient(clip_value))(x)


def magnitude_aware_sign(x, clip_value: Optional[float] = 1.0):
    r"""Magnitude-aware sign of Bi-Real Net (Liu et al., 2018, section 3.3).

    Forward: q(x) = mean(|x|) * sign(x), the mean taken per output channel (over all
    axes but the last) and treated as a constant by the gradient.
    Pseudo-gradient: mean(|x|) * (1 for |x| <= clip_value, 0 otherwise).
    """
    x = ops.convert_to_tensor(x)
    axes = tuple(range(len(x.shape) - 1))
    scale = ops.stop_gradient(ops.mean(ops.abs(x), axis=axes))
    return scale * ste_sign(x, clip_value=clip_value)


class Quantizer:
    """Base of the serializable quantizers: a callable with a ``precision`` in bits.

    ``precision`` is what optimizers (``Bop.is_binary_variable``) and the model summary
    read: 1 for binary quantizers, 2 for ternary, ``None`` when unknown.
    ``plus_minus_one`` is True when every output is exactly -1.0 or +1.0, which lets
    ``bnno.nn.binary_conv`` compute convolutions of those outputs exactly in bfloat16.
    """

    precision: Optional[int] = None
    plus_minus_one: bool = False

    def __call__(self, inputs):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Quantizer":
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


_by_name: Registry[type] = Registry("quantizer")


def _registered(name: str):
    """Register a quantizer class under its larq string name and with Keras."""

    def decorator(cls):
        cls = keras.saving.register_keras_serializable(package="bnno")(cls)
        return _by_name.register(name)(cls)

    return decorator


@_registered("ste_sign")
class SteSign(Quantizer):
    __doc__ = ste_sign.__doc__
    precision = 1
    plus_minus_one = True

    def __init__(self, clip_value: Optional[float] = 1.0):
        self.clip_value = clip_value

    def __call__(self, inputs):
        return ste_sign(inputs, clip_value=self.clip_value)

    def get_config(self):
        return {"clip_value": self.clip_value}


@_registered("approx_sign")
class ApproxSign(Quantizer):
    __doc__ = approx_sign.__doc__
    precision = 1
    plus_minus_one = True

    def __call__(self, inputs):
        return approx_sign(inputs)


@_registered("swish_sign")
class SwishSign(Quantizer):
    __doc__ = swish_sign.__doc__
    precision = 1
    plus_minus_one = True

    def __init__(self, beta: float = 5.0):
        self.beta = beta

    def __call__(self, inputs):
        return swish_sign(inputs, beta=self.beta)

    def get_config(self):
        return {"beta": self.beta}


@_registered("ste_heaviside")
class SteHeaviside(Quantizer):
    __doc__ = ste_heaviside.__doc__
    precision = 1

    def __init__(self, clip_value: Optional[float] = 1.0):
        self.clip_value = clip_value

    def __call__(self, inputs):
        return ste_heaviside(inputs, clip_value=self.clip_value)

    def get_config(self):
        return {"clip_value": self.clip_value}


@_registered("ste_tern")
class SteTern(Quantizer):
    __doc__ = ste_tern.__doc__
    precision = 2

    def __init__(
        self,
        threshold_value: float = 0.05,
        ternary_weight_networks: bool = False,
        clip_value: Optional[float] = 1.0,
    ):
        self.threshold_value = threshold_value
        self.ternary_weight_networks = ternary_weight_networks
        self.clip_value = clip_value

    def __call__(self, inputs):
        return ste_tern(
            inputs,
            threshold_value=self.threshold_value,
            ternary_weight_networks=self.ternary_weight_networks,
            clip_value=self.clip_value,
        )

    def get_config(self):
        return {
            "threshold_value": self.threshold_value,
            "ternary_weight_networks": self.ternary_weight_networks,
            "clip_value": self.clip_value,
        }


@_registered("magnitude_aware_sign")
class MagnitudeAwareSign(Quantizer):
    __doc__ = magnitude_aware_sign.__doc__
    precision = 1

    def __init__(self, clip_value: Optional[float] = 1.0):
        self.clip_value = clip_value

    def __call__(self, inputs):
        return magnitude_aware_sign(inputs, clip_value=self.clip_value)

    def get_config(self):
        return {"clip_value": self.clip_value}


@_registered("noop")
class NoOp(Quantizer):
    """Identity, q(x) = x, that marks a kernel with a ``precision``.

    ``NoOp(precision=1)`` as a layer's ``kernel_quantizer`` leaves the kernel as it is
    and tells ``Bop.is_binary_variable`` (and the summary) that the kernel is binary:
    the way to train a kernel with Bop, which keeps it at exactly +-1 itself.
    """

    def __init__(self, precision: int = 1):
        self.precision = precision

    def __call__(self, inputs):
        return inputs

    def get_config(self):
        return {"precision": self.precision}


_classes_of_functions = {
    ste_sign: SteSign,
    approx_sign: ApproxSign,
    swish_sign: SwishSign,
    ste_heaviside: SteHeaviside,
    ste_tern: SteTern,
    magnitude_aware_sign: MagnitudeAwareSign,
}

QuantizerLike = Union[None, str, dict, Quantizer, Callable]


def names():
    """The string names ``get`` accepts."""
    return _by_name.names()


def get(identifier: QuantizerLike) -> Optional[Callable]:
    """A quantizer from a name (``"ste_sign"``), a serialized config, a ``Quantizer``
    or any callable; ``None`` stays ``None``.

    Raises ``ValueError`` naming the valid names and the closest one for an unknown
    name, and for anything that is not a quantizer.
    """
    if identifier is None or isinstance(identifier, Quantizer):
        return identifier
    if isinstance(identifier, str):
        return _by_name.get(identifier)()
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if callable(identifier):
        # The module's own functions become their classes, so they carry a precision.
        cls = _classes_of_functions.get(identifier)
        return cls() if cls is not None else identifier
    raise ValueError(
        f"Cannot interpret {identifier!r} as a quantizer; give one of "
        f"{', '.join(names())}, a Quantizer or a callable."
    )


def serialize(quantizer: Optional[Callable]):
    """The config that ``get`` turns back into ``quantizer`` (``None`` for none)."""
    if quantizer is None:
        return None
    return keras.saving.serialize_keras_object(quantizer)
