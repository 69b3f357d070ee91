"""Coupled weight decay (L2 on the gradient), as PyTorch's optimizers apply ``weight_decay``.

CAS-CLab's "Training Tricks for Binarized Neural Networks" ("Weight decay setting" and
"Optimizer": 1e-5 in stage 1, 0 in stage 2, with ``torch.optim.Adam(model.parameters(),
lr, weight_decay=...)``) use PyTorch's coupled decay: before the Adam update, every
gradient becomes

    g <- g + weight_decay * w

so the decay passes through Adam's moments and is normalized with the gradient, exactly
as if ``weight_decay / 2 * ||w||^2`` were added to the loss. Keras's own
``weight_decay`` argument is *decoupled* (AdamW, Loshchilov & Hutter, 2019:
``w <- w - learning_rate * weight_decay * w`` beside the Adam step), which is a
different update: it is not used here.

Bop's binary kernels never get this decay: in bnno's ``bop`` recipes only the
real-valued variables (and, in latent-weight recipes, the latent weights) are trained
by Adam; Bop keeps its kernels at exactly +-1, where a decay has no meaning.

References:
    - CAS-CLab, "Training Tricks for Binarized Neural Networks" (a collection of BNN
      training tricks, in PyTorch),
      https://github.com/CAS-CLab/Training-Tricks-for-Binarized-Neural-Networks
    - Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
      https://arxiv.org/abs/1711.05101 (why decoupled decay differs).
"""

import keras
from keras import ops

__all__ = ["AdamL2"]


@keras.saving.register_keras_serializable(package="bnno")
class AdamL2(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with coupled L2 weight decay: every gradient ``g`` of a
    variable ``w`` becomes ``g + l2 * w`` before the Adam update (PyTorch's
    ``Adam(weight_decay=l2)``; not Keras's decoupled ``weight_decay``).

    The decay is added after gradient clipping and loss-scale division, where PyTorch
    adds it (inside ``optimizer.step()``), and applies to every variable this
    optimizer trains: inside a ``CaseOptimizer`` with Bop, that is every variable
    except Bop's binary kernels.

    Args:
        learning_rate: as ``keras.optimizers.Adam``.
        l2: the decay coefficient (PyTorch's ``weight_decay``), at least 0.
        **kwargs: further ``keras.optimizers.Adam`` arguments.
    """

    def __init__(self, learning_rate=0.001, l2=0.0, name="adam_l2", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not l2 >= 0:
            raise ValueError(f"l2 must be at least 0, got {l2}.")
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = ops.add(
                ops.cast(gradient, variable.dtype),
                ops.multiply(ops.cast(self.l2, variable.dtype), variable),
            )
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}
