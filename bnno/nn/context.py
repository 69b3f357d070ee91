"""Settings that a ``with`` block changes and restores: ``quantized_scope`` here, and
:class:`ScopedSetting`, the one way ``bnno.nn`` holds such state (also
``bnno.nn.binary_conv.use`` and ``bnno.nn.fused.use``).

``quantized_scope``: read quantized kernels as their quantized values. With latent
weights (e.g. ``kernel_quantizer="ste_sign"``) a layer's kernel variable holds
real-valued latent weights; the network computes with their quantized values. Inside
``quantized_scope()``, reading such a kernel (``model.get_weights()``,
``model.save_weights``, ``model.save``, ``variable.numpy()``) gives the quantized
values instead, e.g. the binary weights to deploy (larq ``context.quantized_scope``).
"""

import contextlib
from typing import Any, Iterator

__all__ = ["ScopedSetting", "quantized_scope", "should_quantize"]


class ScopedSetting:
    """A value that ``with setting.scope(value):`` sets for the block and restores
    after it (also when the block raises); ``setting.get()`` reads it.

    One value for the whole process, seen by every thread, not one per thread
    (``threading.local``) or per context (``contextvars``): a scope is entered around a
    step that ``tf.function`` then traces, and ``tf.distribute``'s ``MirroredStrategy``
    calls each replica's function in a thread of its own (on one device too, eagerly
    and in ``tf.function``). A thread-local or context value set by the caller would
    not reach those threads, and the traced step would silently leave out the scoped
    behaviour (tests/nn/test_context.py shows both). Scopes are meant for the thread
    that builds, traces or saves a model; two threads entering scopes of one setting at
    the same time would see each other's values.
    """

    def __init__(self, name: str, default: Any):
        self.name = name
        self._value = default

    def get(self) -> Any:
        """The current value."""
        return self._value

    @contextlib.contextmanager
    def scope(self, value: Any) -> Iterator[Any]:
        """Within the block the setting is ``value``; the previous value is restored after."""
        previous, self._value = self._value, value
        try:
            yield value
        finally:
            self._value = previous

    def __repr__(self) -> str:
        return f"ScopedSetting({self.name!r}, {self._value!r})"


_should_quantize = ScopedSetting("should_quantize", False)


@contextlib.contextmanager
def quantized_scope(quantize: bool = True):
    """Within the block, quantized kernels read as quantized (``quantize=True``) or as
    latent weights (``quantize=False``); the previous behaviour is restored after."""
    with _should_quantize.scope(quantize):
        yield quantize


def should_quantize() -> bool:
    """Whether quantized kernels currently read as their quantized values."""
    return _should_quantize.get()
