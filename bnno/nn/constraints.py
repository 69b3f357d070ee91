"""Weight constraints for latent-weight training."""

import keras
from keras import ops

__all__ = ["WeightClip", "weight_clip", "get"]


@keras.saving.register_keras_serializable(package="bnno")
class WeightClip(keras.constraints.Constraint):
    """Clips latent weights to [-clip_value, clip_value] after every update.

    A latent weight's magnitude acts as inertia against flipping its sign; without a
    bound it can grow so large that the weight never flips again (see the larq guide
    "Training BNNs" and Helwegen et al., 2019, section 3).
    """

    def __init__(self, clip_value: float = 1.0):
        self.clip_value = clip_value

    def __call__(self, x):
        clip_value = ops.cast(self.clip_value, x.dtype)
        return ops.clip(x, -clip_value, clip_value)

    def get_config(self):
        return {"clip_value": self.clip_value}


weight_clip = WeightClip  # larq's lower-case alias: weight_clip(clip_value=1.0)


def get(identifier):
    """A constraint from ``"weight_clip"``, a Keras name or config, or an object."""
    if identifier == "weight_clip":
        return WeightClip()
    return keras.constraints.get(identifier)
