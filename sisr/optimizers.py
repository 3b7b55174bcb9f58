"""Weight normalisation as an optimiser: Adam in the (g, V) space of W = g * V / ||V||.

The model keeps ordinary kernels `W`, so it saves, loads and runs like any Keras model;
only training differs. Per step and per weight-normalised kernel (docs/reference.md §4):

1. a persistent per-output-channel scale `s` (initially 1) stands for `g / ||V||`:
   `V = W / s`, `n = ||V||`, `g = s * n`;
2. `dg = sum(dW * V) / n`, `dV = s * (dW - (dg / n) * V)`;
3. Adam on `g` (own moments, shape `[out]`) and Adam on `V` (moments shaped like `W`);
4. `s' = g' / ||V'||`, `W <- s' * V'`, `s <- s'`.

Norms are per output channel (the last kernel axis in Keras, HWIO) over all other axes.
This trains exactly like a model with explicit `(g, V)` variables updated by Adam, started
from `V = W`, `g = ||W||`.

Reference: Salimans & Kingma, "Weight Normalization: A Simple Reparameterization to
Accelerate Training of Deep Neural Networks", NIPS 2016.
"""

import logging
import re

import keras
from keras import ops

logger = logging.getLogger(__name__)

# Default selection: every variable named exactly `kernel` (Conv*D and Dense kernels).
# Rank-1 variables (biases, BatchNorm) are never weight-normalised.
DEFAULT_WEIGHT_NORM = (r"(^|/)kernel$",)

# Guards divisions for channels whose norm or gain is exactly zero (e.g. zero-initialised
# kernels): such a channel stays at zero instead of turning into NaN.
_TINY = 1e-30

# docs/reference.md §4: s = sqrt(var + 1e-10) in the data-dependent initialisation.
_DDI_EPSILON = 1e-10


def _compile_patterns(weight_norm, caller):
    """Validates a `weight_norm` selector; returns (config value, compiled regexes)."""
    if weight_norm is None:
        return None, [re.compile(p) for p in DEFAULT_WEIGHT_NORM]
    if isinstance(weight_norm, str):
        weight_norm = [weight_norm]
    if not isinstance(weight_norm, (list, tuple)) or \
            not all(isinstance(p, str) for p in weight_norm):
        raise ValueError(
            f"{caller}: `weight_norm` must be None (conv/dense kernels) or a list of "
            f"regular expressions matched against variable paths, got {weight_norm!r}"
        )
    compiled = []
    for pattern in weight_norm:
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise ValueError(
                f"{caller}: `weight_norm` pattern {pattern!r} is not a valid regular "
                f"expression: {err}"
            ) from err
    return list(weight_norm), compiled


def _variable_path(variable):
    path = getattr(variable, "path", None) or getattr(variable, "name", "")
    # Raw tf.Variables are named like "conv/kernel:0".
    return re.sub(r":\d+$", "", path)


def _selected(variable, patterns):
    """Whether `variable` is weight-normalised: rank >= 2 and its path matches a pattern."""
    if len(variable.shape) < 2:
        return False
    path = _variable_path(variable)
    return any(p.search(path) for p in patterns)


def _channel_norm(x, axes):
    return ops.sqrt(ops.sum(ops.square(x), axis=axes))


@keras.saving.register_keras_serializable(package="sisr")
class WeightNormAdam(keras.optimizers.Optimizer):
    """Adam with weight normalisation applied in the optimiser (docs/reference.md §4).

    Weight-normalised variables are stepped in the `(g, V)` space (see the module
    docstring); all others (biases, rank-1 variables, unselected kernels) get exactly
    `keras.optimizers.Adam`'s update. The optimiser state (Adam moments of `V` and `g`,
    and the per-channel scale `s`) lives in optimiser variables, so it is saved with a
    compiled model and in checkpoints.

    Args:
        learning_rate: float, `LearningRateSchedule` or callable, as for `Adam`.
        beta_1, beta_2, epsilon: Adam's hyperparameters (`epsilon` is Keras' "epsilon
            hat", added to `sqrt(v)`), used for both `g` and `V`.
        weight_norm: which variables are weight-normalised. None (default) selects every
            variable of rank >= 2 named exactly `kernel` (the last component of its
            `path`): `Conv*D` and `Dense` kernels, not `depthwise_kernel`. Otherwise a
            regular expression or a list of them, searched (`re.search`) in each
            variable's `path` (e.g. `"head_conv/kernel"`); an empty list turns weight
            normalisation off. Rank-1 variables are never weight-normalised. The norm
            always runs over all axes but the last (the output channels of `Conv*D` and
            `Dense` kernels; the input channels of `Conv*DTranspose` kernels).
        **kwargs: the base optimiser's keyword arguments (`name`, `clipnorm`,
            `global_clipnorm`, `use_ema`, `loss_scale_factor`, ...).
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        weight_norm=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.weight_norm, self._patterns = _compile_patterns(weight_norm, "WeightNormAdam")

    def is_weight_normalized(self, variable):
        """Whether this optimiser steps `variable` in the `(g, V)` space."""
        return _selected(variable, self._patterns)

    def build(self, var_list):
        """Creates the slots: Adam moments for every variable; for weight-normalised
        ones also the gain moments and the scale `s` (all shape `[out]`)."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )
        # Lists aligned with `var_list`; None for variables that get plain Adam.
        self._gain_momentums = []
        self._gain_velocities = []
        self._scales = []
        for variable in var_list:
            if self._overwrite_variable_with_gradient(variable) or \
                    not self.is_weight_normalized(variable):
                self._gain_momentums.append(None)
                self._gain_velocities.append(None)
                self._scales.append(None)
                continue
            self._gain_momentums.append(self._add_channel_variable(variable, "gain_momentum"))
            self._gain_velocities.append(self._add_channel_variable(variable, "gain_velocity"))
            self._scales.append(self._add_channel_variable(variable, "wn_scale", "ones"))

    def _add_channel_variable(self, reference, name, initializer="zeros"):
        """An optimiser variable of shape `[out]` for kernel `reference`."""
        name = f"{_variable_path(reference).replace('/', '_').replace(':', '_')}_{name}"
        shape = (reference.shape[-1],)
        strategy = getattr(self, "_distribution_strategy", None)
        if strategy is None:
            return self.add_variable(shape, initializer, dtype=reference.dtype, name=name)
        # Like `add_variable_from_reference` on TensorFlow: keep the slot on the device
        # of its kernel (matters for parameter-server strategies).
        colocate = reference.value if isinstance(reference, keras.Variable) else reference
        with strategy.extended.colocate_vars_with(colocate):
            return self.add_variable(shape, initializer, dtype=reference.dtype, name=name)

    def _adam_delta(self, gradient, m, v, alpha):
        """Updates the moments `m`, `v` in place; returns Adam's step (to subtract)."""
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(
            v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2)
        )
        return ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon))

    def update_step(self, gradient, variable, learning_rate):
        """Update step given gradient and the associated model variable."""
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        local_step = ops.cast(self.iterations + 1, dtype)
        beta_1_power = ops.power(ops.cast(self.beta_1, dtype), local_step)
        beta_2_power = ops.power(ops.cast(self.beta_2, dtype), local_step)
        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)

        index = self._get_variable_index(variable)
        m = self._momentums[index]
        v = self._velocities[index]
        scale_var = self._scales[index]
        if scale_var is None:
            self.assign_sub(variable, self._adam_delta(gradient, m, v, alpha))
            return

        axes = tuple(range(len(variable.shape) - 1))
        scale = ops.convert_to_tensor(scale_var)
        # 1. V = W / s, n = ||V||, g = s * n.
        vee = ops.divide(variable, ops.where(ops.equal(scale, 0), 1, scale))
        norm = ops.maximum(_channel_norm(vee, axes), _TINY)
        gain = ops.multiply(scale, norm)
        # 2. Gradients in the (g, V) space.
        grad_gain = ops.divide(ops.sum(ops.multiply(gradient, vee), axis=axes), norm)
        grad_vee = ops.multiply(
            scale, ops.subtract(gradient, ops.multiply(ops.divide(grad_gain, norm), vee))
        )
        # 3. Adam on V and on g.
        vee = ops.subtract(vee, self._adam_delta(grad_vee, m, v, alpha))
        gain = ops.subtract(
            gain,
            self._adam_delta(
                grad_gain, self._gain_momentums[index], self._gain_velocities[index], alpha
            ),
        )
        # 4. Back to W with the new scale.
        scale = ops.divide(gain, ops.maximum(_channel_norm(vee, axes), _TINY))
        self.assign(variable, ops.multiply(scale, vee))
        self.assign(scale_var, scale)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "weight_norm": self.weight_norm,
            }
        )
        return config


_DDI_LAYERS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
               keras.layers.Dense)


def _pre_activation(layer, inputs):
    """`layer`'s output before its activation, in float32."""
    inputs = ops.cast(inputs, "float32")
    kernel = ops.cast(layer.kernel, "float32")
    if isinstance(layer, keras.layers.Dense):
        outputs = ops.matmul(inputs, kernel)
    else:
        outputs = layer.convolution_op(inputs, kernel)
    if layer.bias is not None:
        bias = ops.cast(layer.bias, "float32")
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            bias = ops.reshape(bias, (1, -1) + (1,) * (len(outputs.shape) - 2))
        outputs = outputs + bias
    return outputs


def _symbolic_inputs(model):
    """The model's symbolic input(s), in the structure the model is called with."""
    try:
        return model.input  # functional models
    except (AttributeError, ValueError):
        pass
    inputs = getattr(model, "inputs", None)  # Sequential models have only this
    if not inputs:
        return None
    return inputs[0] if len(inputs) == 1 else inputs


def data_dependent_init(model, batch, weight_norm=None):
    """Data-dependent initialisation of the weight-normalised layers (docs/reference.md §4).

    In forward order, for every top-level `Conv1D/2D/3D` or `Dense` layer of `model`
    (layers inside nested models are not visited) whose kernel is selected by
    `weight_norm` (same meaning as in `WeightNormAdam`), computes the layer's
    pre-activation output on `batch` (with all earlier layers already initialised), its
    per-channel mean and `s = sqrt(var + 1e-10)`, and sets `W <- W / s`,
    `b <- (b - mean) / s`, so that this output has zero mean and unit variance on
    `batch` (a layer without bias only gets unit variance). Call it once before
    training; nothing calls it by default.

    Args:
        model: a built functional or Sequential `keras.Model`.
        batch: input(s) accepted by `model`, e.g. a float32 array of LR images.
        weight_norm: None or a list of regular expressions, as in `WeightNormAdam`.

    Returns:
        The names of the initialised layers, in the order they were initialised.
    """
    _, patterns = _compile_patterns(weight_norm, "data_dependent_init")
    model_inputs = _symbolic_inputs(model)
    if model_inputs is None:
        raise ValueError(
            f"data_dependent_init: model {model.name!r} has no symbolic inputs; it must be "
            "a built functional or Sequential model"
        )
    initialised = []
    for layer in model.layers:  # topologically sorted for functional models
        if not isinstance(layer, _DDI_LAYERS) or not layer.built \
                or not _selected(layer.kernel, patterns):
            continue
        # Recomputed per layer: its input depends on the layers initialised before it.
        features = keras.Model(model_inputs, layer.input)(batch, training=False)
        outputs = _pre_activation(layer, features)
        channel_axis = 1 if getattr(layer, "data_format", None) == "channels_first" else -1
        channel_axis %= len(outputs.shape)
        axes = tuple(a for a in range(len(outputs.shape)) if a != channel_axis)
        mean = ops.mean(outputs, axis=axes)
        scale = ops.sqrt(ops.var(outputs, axis=axes) + _DDI_EPSILON)
        layer.kernel.assign(ops.cast(ops.cast(layer.kernel, "float32") / scale,
                                     layer.kernel.dtype))
        if layer.bias is not None:
            bias = (ops.cast(layer.bias, "float32") - mean) / scale
            layer.bias.assign(ops.cast(bias, layer.bias.dtype))
        initialised.append(layer.name)
        logger.debug("data-dependent init of layer %s", layer.name)
    return initialised


@keras.saving.register_keras_serializable(package="sisr")
class TorchAdam(keras.optimizers.Adam):
    """Adam as `torch.optim.Adam` computes it: one step count per weight, and epsilon
    added to the bias-corrected sqrt(v) (Keras' Adam counts one step for all weights and
    adds epsilon to sqrt(v)).

    A weight that a step leaves out (no gradient: `apply` on a subset of the variables,
    such as the branches of other scales in multi-scale training) is not updated and its
    count does not advance, as PyTorch skips a parameter whose gradient is None.
    """

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._steps = [self.add_variable(shape=(), initializer="zeros", dtype="float32",
                                         name=f"step_{i}") for i in range(len(var_list))]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        step = self._steps[index]
        count = step + 1.0
        self.assign(step, count)
        t = ops.cast(count, variable.dtype)
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        bias_1 = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), t)
        bias_2 = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), t)
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias_1), denominator))
