"""``quantized_scope``: read quantized kernels as their quantized values.

With latent weights (e.g. ``kernel_quantizer="ste_sign"``) a layer's kernel variable
holds real-valued latent weights; the network computes with their quantized values.
Inside ``quantized_scope()``, reading such a kernel (``model.get_weights()``,
``model.save_weights``, ``model.save``, ``variable.numpy()``) gives the quantized
values instead, e.g. the binary weights to deploy (larq ``context.quantized_scope``).
"""

import contextlib
import threading

__all__ = ["quantized_scope", "should_quantize"]

_state = threading.local()


@contextlib.contextmanager
def quantized_scope(quantize: bool = True):
    """Within the block, quantized kernels read as quantized (``quantize=True``) or as
    latent weights (``quantize=False``); the previous behaviour is restored after."""
    previous = should_quantize()
    _state.should_quantize = quantize
    try:
        yield quantize
    finally:
        _state.should_quantize = previous


def should_quantize() -> bool:
    """Whether quantized kernels currently read as their quantized values."""
    return getattr(_state, "should_quantize", False)
