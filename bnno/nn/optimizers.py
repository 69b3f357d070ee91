"""Optimizers for BNNs: Bop and Bop2ndOrder, and CaseOptimizer to train binary and
real-valued variables with different optimizers (larq ``optimizers``)."""

import copy
import warnings
from typing import Callable, List, Optional, Tuple

import keras
from keras import ops

from bnno.nn.quantizers import binary_sign

__all__ = ["Bop", "Bop2ndOrder", "CaseOptimizer", "is_binary_variable"]

Schedule = keras.optimizers.schedules.LearningRateSchedule


@keras.saving.register_keras_serializable(package="bnno")
def is_binary_variable(variable) -> bool:
    """True for variables marked binary: ``precision == 1``, as set on the kernels of
    quantized layers whose kernel quantizer is binary (e.g. ``NoOp(precision=1)``)."""
    return getattr(variable, "precision", 32) == 1


@keras.saving.register_keras_serializable(package="bnno")
class Bop(keras.optimizers.Optimizer):
    r"""Binary optimizer, Bop (Helwegen et al., 2019, "Latent Weights Do Not Exist",
    Algorithm 1): trains binary weights directly, without latent weights.

    For each binary weight w with gradient g, every step:

        m <- m + gamma * (g - m)                  (exponential moving average)
        w <- sign(-sign(w * m - threshold) * w)   (with sign(0) = +1)

    so w flips exactly when m agrees in sign with w and |m| exceeds ``threshold``.

    Args:
        threshold: how strong the averaged gradient must be to flip a weight (tau); a
            float or a ``LearningRateSchedule``.
        gamma: the adaptivity rate of the moving average, Bop's analogue of a
            learning rate; a float or a ``LearningRateSchedule`` (evaluated at
            ``iterations``, like Keras learning rates). Stored as the Keras
            ``learning_rate``, so schedules and logging treat it as one.
        name: the optimizer's name.
        **kwargs: further ``keras.optimizers.Optimizer`` arguments.
    """

    def __init__(self, threshold=1e-8, gamma=1e-4, name="Bop", **kwargs):
        kwargs.pop("learning_rate", None)  # gamma *is* the learning rate
        super().__init__(learning_rate=gamma, name=name, **kwargs)
        self.threshold = threshold

    is_binary_variable = staticmethod(is_binary_variable)

    @property
    def gamma(self):
        """The current gamma (the schedule's value at ``iterations`` if a schedule)."""
        return self.learning_rate

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._moving_averages = self.add_optimizer_variables(variables, "m")

    def _current(self, hyperparameter, dtype):
        """``hyperparameter`` (a float, or a schedule evaluated at ``iterations``, as
        Keras evaluates learning rates) as a tensor of ``dtype``."""
        if isinstance(hyperparameter, Schedule):
            hyperparameter = hyperparameter(self.iterations)
        return ops.cast(hyperparameter, dtype)

    def update_step(self, gradient, variable, learning_rate):
        gamma = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        threshold = self._current(self.threshold, variable.dtype)
        m = self._moving_averages[self._get_variable_index(variable)]
        self.assign_add(m, gamma * (gradient - m))
        self._flip(variable, variable * m - threshold)

    def _flip(self, variable, strength):
        """``variable <- binary_sign(-sign(strength) * variable)``: flip the weights
        whose ``strength`` (``w * m - threshold``) is above 0."""
        self.assign(variable, binary_sign(-ops.sign(strength) * variable))

    def get_config(self):
        config = super().get_config()
        config["gamma"] = config.pop("learning_rate")
        threshold = self.threshold
        if isinstance(threshold, Schedule):
            threshold = keras.optimizers.schedules.serialize(threshold)
        config["threshold"] = threshold
        return config

    #: The arguments that may be schedules (serialized as dicts in the config).
    _SCHEDULABLE = ("gamma", "threshold")

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in cls._SCHEDULABLE:
            if isinstance(config.get(key), dict):
                config[key] = keras.optimizers.schedules.deserialize(
                    config[key], custom_objects=custom_objects
                )
        return cls(**config)


@keras.saving.register_keras_serializable(package="bnno")
class Bop2ndOrder(Bop):
    r"""Second-order binary optimizer, Bop2ndOrder (Suarez-Ramirez et al., 2021, "A Bop
    and Beyond"): Bop with the moving average of the gradient normalized by that of its
    square before the comparison with the threshold, as Adam normalizes its step.

    For each binary weight w with gradient g, every step:

        m <- m + gamma * (g - m)                  (first raw moment)
        v <- v + sigma * (g^2 - v)                (second raw moment)
        r  = m / (sqrt(v) + epsilon)              (biased, the default)
        r  = (m / gamma) / (sqrt(v / sigma) + epsilon)   (bias_correction=True)
        w <- sign(-sign(w * r - threshold) * w)   (with sign(0) = +1)

    so w flips when the normalized average agrees in sign with w and exceeds
    ``threshold``. The bias correction is the paper's code's (``Bop2ndOrder_unbiased``
    in ``bnn_optimization/optimizers.py``): m and v divided by gamma and sigma at the
    current step, Adam's correction 1 - (1 - rate)^t taken at t = 1. Scheduled gamma
    and sigma are divided by their current values.

    Bop2ndOrder trains the same variables as Bop (``is_binary_variable``) and, like
    Bop, keeps its moving averages in the variables' dtype (float32 under mixed
    precision); ``isinstance(optimizer, Bop)`` holds, and ``gamma`` is the Keras
    ``learning_rate``.

    Args:
        threshold: how strong the normalized average must be to flip a weight (tau);
            a float or a ``LearningRateSchedule``.
        gamma: the adaptivity rate of the first moment; a float or a
            ``LearningRateSchedule``.
        sigma: the adaptivity rate of the second moment; a float or a
            ``LearningRateSchedule``.
        bias_correction: divide m by gamma and v by sigma before comparing.
        epsilon: added to the square root of v, so that a zero v does not divide by
            zero (the paper's code uses 1e-10).
        name: the optimizer's name.
        **kwargs: further ``keras.optimizers.Optimizer`` arguments.

    References:
        - Suarez-Ramirez, Gonzalez-Mendoza, Chang, Ochoa-Ruiz and Duran-Vega, "A Bop and
          Beyond: A Second Order Optimizer for Binarized Neural Networks", CVPR 2021
          workshops, https://arxiv.org/abs/2104.05124; code:
          https://github.com/CuauSuarez/Bop2ndOrder (branch ``conference``).
    """

    _SCHEDULABLE = ("gamma", "threshold", "sigma")

    def __init__(
        self,
        threshold=1e-6,
        gamma=1e-6,
        sigma=1e-2,
        bias_correction=False,
        epsilon=1e-10,
        name="Bop2ndOrder",
        **kwargs,
    ):
        super().__init__(threshold=threshold, gamma=gamma, name=name, **kwargs)
        self.sigma = sigma
        self.bias_correction = bool(bias_correction)
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._second_moments = self.add_optimizer_variables(variables, "v")

    @property
    def current_sigma(self):
        """The current sigma (the schedule's value at ``iterations`` if a schedule)."""
        return self._current(self.sigma, "float32")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        gamma = ops.cast(learning_rate, dtype)
        sigma = self._current(self.sigma, dtype)
        threshold = self._current(self.threshold, dtype)
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        m, v = self._moving_averages[index], self._second_moments[index]
        self.assign_add(m, gamma * (gradient - m))
        self.assign_add(v, sigma * (ops.square(gradient) - v))
        if self.bias_correction:
            normalized = (m / gamma) / (ops.sqrt(v / sigma) + self.epsilon)
        else:
            normalized = m / (ops.sqrt(v) + self.epsilon)
        self._flip(variable, variable * normalized - threshold)

    def get_config(self):
        config = super().get_config()
        sigma = self.sigma
        if isinstance(sigma, Schedule):
            sigma = keras.optimizers.schedules.serialize(sigma)
        config.update(sigma=sigma, bias_correction=self.bias_correction, epsilon=self.epsilon)
        return config


Predicate = Callable[[object], bool]

# Base-optimizer settings that belong to each held optimizer, not to CaseOptimizer.
_PER_OPTIMIZER_SETTINGS = ("weight_decay", "use_ema", "gradient_accumulation_steps")


def _variable_key(variable) -> str:
    # Paths ("quant_dense/kernel") are unique within a model and survive saving.
    return variable.path


@keras.saving.register_keras_serializable(package="bnno")
class CaseOptimizer(keras.optimizers.Optimizer):
    """Trains each variable with the one optimizer whose predicate claims it (larq
    ``CaseOptimizer``), e.g. Bop for binary kernels and Adam for everything else::

        CaseOptimizer(
            (Bop.is_binary_variable, Bop(threshold=1e-6, gamma=1e-3)),
            default_optimizer=keras.optimizers.Adam(0.01),
        )

    A variable claimed by no predicate is trained by ``default_optimizer``, or not at
    all when there is none. A variable claimed by two predicates is an error, and so
    is a predicate that claims no variable. Each optimizer keeps its own state and
    ``iterations`` (so each schedule advances with the steps that optimizer takes);
    ``learning_rate`` is the default optimizer's.

    The variable-to-optimizer assignment is computed once, in ``build``, and saved in
    the config by variable path, so a saved model reloads with the same assignment.

    Of the base ``keras.optimizers.Optimizer`` settings, CaseOptimizer applies
    ``clipnorm``, ``clipvalue`` and ``global_clipnorm`` itself, to every gradient
    before handing it to the optimizer that claims its variable (``global_clipnorm``
    scales all gradients by their joint norm, across optimizers), and divides by
    ``loss_scale_factor``; the optimizers it holds then apply their own settings too.
    Under a ``tf.distribute`` strategy the clipping sees each replica's gradients, as
    Keras's own optimizers do. ``weight_decay``, ``use_ema`` and
    ``gradient_accumulation_steps`` only make sense per optimizer (weight decay on
    Bop's binary weights is meaningless), so CaseOptimizer refuses them: give them to
    the optimizers it holds. Its config (larq's ``get_config``: the held optimizers'
    configs merged with the base settings) therefore holds exactly what it applies.
    """

    def __init__(
        self,
        *predicate_optimizer_pairs: Tuple[Predicate, keras.optimizers.Optimizer],
        default_optimizer: Optional[keras.optimizers.Optimizer] = None,
        name: str = "optimizer_case",
        **kwargs,
    ):
        for index, pair in enumerate(predicate_optimizer_pairs):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise TypeError(
                    f"CaseOptimizer argument {index} must be a (predicate, optimizer) "
                    f"pair, got {pair!r}."
                )
            predicate, optimizer = pair
            if not callable(predicate):
                raise TypeError(
                    f"The predicate of pair {index} must be callable, got {predicate!r}."
                )
            if not isinstance(optimizer, keras.optimizers.Optimizer):
                raise TypeError(
                    f"The optimizer of pair {index} must be a keras.optimizers.Optimizer, "
                    f"got {optimizer!r}."
                )
        if default_optimizer is not None and not isinstance(
            default_optimizer, keras.optimizers.Optimizer
        ):
            raise TypeError(
                "default_optimizer must be a keras.optimizers.Optimizer or None, "
                f"got {default_optimizer!r}."
            )
        for setting in _PER_OPTIMIZER_SETTINGS:
            if kwargs.get(setting):
                raise ValueError(
                    f"CaseOptimizer does not apply {setting}; give it to the optimizers it "
                    f"holds instead (e.g. keras.optimizers.Adam(..., {setting}=...))."
                )
        kwargs.pop("learning_rate", None)  # the default optimizer's (see learning_rate)
        super().__init__(learning_rate=0.0, name=name, **kwargs)
        self.predicates: List[Predicate] = [p for p, _ in predicate_optimizer_pairs]
        self.optimizers: List[keras.optimizers.Optimizer] = [
            o for _, o in predicate_optimizer_pairs
        ]
        self.default_optimizer = default_optimizer
        if default_optimizer is not None:
            self.optimizers.append(default_optimizer)
        # Variable path -> index into self.optimizers; filled by build().
        self.assignment: Optional[dict] = None

    # -- which optimizer trains which variable -------------------------------------

    def _assign(self, variables) -> dict:
        assignment = {}
        for variable in variables:
            claims = [i for i, predicate in enumerate(self.predicates) if predicate(variable)]
            if len(claims) > 1:
                names = ", ".join(self.optimizers[i].name for i in claims)
                raise ValueError(
                    f"Variable '{variable.path}' is claimed by several optimizers ({names}); "
                    "each variable must be claimed by at most one predicate."
                )
            if claims:
                assignment[_variable_key(variable)] = claims[0]
            elif self.default_optimizer is not None:
                assignment[_variable_key(variable)] = len(self.optimizers) - 1
            else:
                warnings.warn(
                    f"No optimizer claims variable '{variable.path}' and there is no "
                    "default_optimizer: it will not be trained."
                )
        for index in range(len(self.predicates)):
            if index not in assignment.values():
                raise ValueError(
                    f"Optimizer '{self.optimizers[index].name}' claims no variable; "
                    "check its predicate (e.g. are the binary kernels marked with a "
                    "kernel quantizer of precision 1?)."
                )
        return assignment

    def _split(self, grads, variables):
        """Per optimizer: the (gradients, variables) it trains."""
        groups = [([], []) for _ in self.optimizers]
        for grad, variable in zip(grads, variables):
            index = self.assignment.get(_variable_key(variable))
            if index is not None:
                groups[index][0].append(grad)
                groups[index][1].append(variable)
        return groups

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        if self.assignment is None:
            self.assignment = self._assign(variables)
        for optimizer, (_, group) in zip(self.optimizers, self._split(variables, variables)):
            optimizer.build(group)

    # -- applying gradients ----------------------------------------------------------

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        if not self.built:
            self.build(trainable_variables)
        grads = list(grads)
        if self.loss_scale_factor is not None:
            grads = [g if g is None else g / self.loss_scale_factor for g in grads]
        grads = self._clip_gradients(grads)
        for optimizer, (group_grads, group_variables) in zip(
            self.optimizers, self._split(grads, trainable_variables)
        ):
            if group_variables:
                optimizer.apply(group_grads, group_variables)
        self._iterations.assign_add(1)

    # -- state, shared with the sub-optimizers ------------------------------------------

    @property
    def variables(self):
        variables = list(self._variables)
        for optimizer in self.optimizers:
            variables.extend(optimizer.variables)
        return variables

    @property
    def learning_rate(self):
        """The default optimizer's learning rate (what Keras callbacks log and set)."""
        if self.default_optimizer is None:
            return self._get_current_learning_rate()
        return self.default_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if getattr(self, "optimizers", None) and self.default_optimizer is not None:
            self.default_optimizer.learning_rate = value
        else:  # during base-class construction, and with no default optimizer
            keras.optimizers.Optimizer.learning_rate.fset(self, value)

    def get_config(self):
        """The base settings (name, clipping, loss scale) merged with the held
        optimizers' configs and the variable assignment."""
        config = super().get_config()
        del config["learning_rate"]  # the default optimizer's, saved in its config
        config.update(
            optimizers=[keras.optimizers.serialize(o) for o in self.optimizers],
            has_default_optimizer=self.default_optimizer is not None,
            assignment=self.assignment,
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = copy.deepcopy(config)  # Keras's from_config rewrites nested configs in place
        optimizers = [
            keras.optimizers.deserialize(c, custom_objects=custom_objects)
            for c in config.pop("optimizers")
        ]
        default = optimizers.pop() if config.pop("has_default_optimizer") else None
        assignment = config.pop("assignment", None) or {}
        config.pop("learning_rate", None)
        # The predicates themselves are not serialized; the saved assignment is.
        pairs = [(_ClaimsPaths(assignment, i), o) for i, o in enumerate(optimizers)]
        case = cls(*pairs, default_optimizer=default, **config)
        case.assignment = assignment or None
        return case


class _ClaimsPaths:
    """A predicate reconstructed from a saved assignment: claims the variables whose
    paths were assigned to optimizer ``index``."""

    def __init__(self, assignment: dict, index: int):
        self.paths = {path for path, i in assignment.items() if i == index}

    def __call__(self, variable) -> bool:
        return _variable_key(variable) in self.paths

