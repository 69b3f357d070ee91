"""Flip ratio: the share of binary weights whose sign changed in a training step.

Bop flips a weight when its averaged gradient is strong enough; how many weights flip
per step is the most direct view of what Bop is doing, and it is what the paper's
section 5.1 hyperparameter analysis watches (Helwegen et al., 2019, Figure 1 and
equation 7: pi_t = log(flipped weights at step t / all weights + e^-9)).
"""

from typing import Dict, List, Tuple

import keras
from keras import ops

from bnno.nn.optimizers import is_binary_variable
from bnno.nn.quantizers import binary_sign

__all__ = ["FlipRatio", "FlipRatios", "binary_kernels"]


@keras.saving.register_keras_serializable(package="bnno")
class FlipRatio(keras.metrics.Metric):
    """Share of one binary kernel's weights whose sign changed, averaged over the
    steps since the last ``reset_state``.

    Call ``update_state()`` once after every optimizer step. It compares the kernel's
    signs with those it saw at the previous call (or at construction), so the first
    update counts the flips of the first step. ``reset_state`` clears the average
    (e.g. each epoch) but keeps the reference signs; ``reset_reference`` takes the
    kernel's current signs as the reference (after the kernel is restored from a
    checkpoint, so that the restore is not counted as flips).
    """

    def __init__(self, kernel, name="flip_ratio", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kernel = kernel
        self.size = int(ops.size(kernel))
        self.previous_sign = self.add_variable(
            shape=kernel.shape, initializer="zeros", name="previous_sign"
        )
        self.reset_reference()
        self.flips = self.add_variable(shape=(), initializer="zeros", name="flips")
        self.weights_seen = self.add_variable(shape=(), initializer="zeros", name="seen")

    def reset_reference(self):
        self.previous_sign.assign(binary_sign(ops.convert_to_tensor(self.kernel)))

    def update_state(self):
        sign = binary_sign(ops.convert_to_tensor(self.kernel))
        changed = ops.sum(ops.cast(ops.not_equal(sign, self.previous_sign), "float32"))
        self.flips.assign_add(changed)
        self.weights_seen.assign_add(float(self.size))
        self.previous_sign.assign(sign)
        return changed / self.size

    def result(self):
        return ops.divide_no_nan(self.flips, self.weights_seen)

    def reset_state(self):
        self.flips.assign(0.0)
        self.weights_seen.assign(0.0)

    def get_config(self):  # the kernel is not serializable; the metric is rebuilt
        return {"name": self.name}


def binary_kernels(model) -> Dict[str, object]:
    """The model's binary kernels (``is_binary_variable``: what Bop trains), keyed by
    their layer's name."""
    kernels = {}
    for variable in model.trainable_variables:
        if is_binary_variable(variable):
            kernels[variable.path.rsplit("/", 1)[0]] = variable
    return kernels


class FlipRatios:
    """Flip ratios of every binary kernel of a model: per layer and overall.

    ``results()`` gives ``{"flip_ratio": overall, "flip_ratio/<layer>": ...}``, where
    the overall ratio counts all binary weights together (larger layers weigh more),
    ready to log to TensorBoard.
    """

    def __init__(self, model):
        self.metrics: List[FlipRatio] = [
            FlipRatio(kernel, name=f"flip_ratio/{layer}")
            for layer, kernel in binary_kernels(model).items()
        ]

    def update_state(self):
        for metric in self.metrics:
            metric.update_state()

    def reset_state(self):
        for metric in self.metrics:
            metric.reset_state()

    def reset_reference(self):
        for metric in self.metrics:
            metric.reset_reference()

    def layer_counts(self) -> Dict[str, Tuple[float, float]]:
        """``{"flip_ratio/<layer>": (flips, weights seen)}`` of each binary kernel since
        the last ``reset_state``, in the model's order."""
        if not self.metrics:
            return {}
        # One read from the device for every layer: with --log-every 1 (the paper's
        # section 5.1 grids) this runs after every step.
        values = ops.convert_to_numpy(ops.stack([v.value for m in self.metrics for v in (m.flips, m.weights_seen)]))
        return {m.name: (float(values[2 * i]), float(values[2 * i + 1])) for i, m in enumerate(self.metrics)}

    def counts(self) -> Tuple[float, float]:
        """(flips, weights seen) of all binary kernels since the last ``reset_state``."""
        per_layer = self.layer_counts().values()
        return sum(flips for flips, _ in per_layer), sum(seen for _, seen in per_layer)

    def results(self) -> Dict[str, float]:
        if not self.metrics:
            return {}
        flips, seen = self.counts()
        results = {"flip_ratio": flips / seen if seen else 0.0}
        results.update({m.name: float(m.result()) for m in self.metrics})
        return results
