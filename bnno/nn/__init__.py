"""BNN building blocks on Keras 3, with larq's names and semantics.

Submodules: ``quantizers``, ``layers``, ``constraints``, ``optimizers``, ``context``,
``metrics``, ``summary``, ``weight_decay``, ``learning_rate_scaling``. Importing
``bnno.nn`` imports Keras (and TensorFlow).
"""

from bnno.nn import (
    constraints, context, layers, learning_rate_scaling, metrics, optimizers, quantizers, summary, weight_decay,
)

__all__ = [
    "constraints", "context", "layers", "learning_rate_scaling", "metrics", "optimizers", "quantizers", "summary",
    "weight_decay",
]
