"""BNN building blocks on Keras 3, with larq's names and semantics.

Submodules: ``quantizers``, ``layers``, ``constraints``, ``optimizers``, ``context``,
``metrics``, ``summary``, ``weight_decay``. Importing ``bnno.nn`` imports Keras (and
TensorFlow).
"""

from bnno.nn import constraints, context, layers, metrics, optimizers, quantizers, summary, weight_decay

__all__ = [
    "constraints", "context", "layers", "metrics", "optimizers", "quantizers", "summary", "weight_decay",
]
