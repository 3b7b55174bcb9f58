"""A spectrally normalised 2-D convolution that computes what PyTorch's computes.

`torch.nn.utils.spectral_norm(conv)` (Miyato et al., "Spectral Normalization for Generative
Adversarial Networks", ICLR 2018), as BasicSR's `UNetDiscriminatorSN` uses it:

* the weight (out, in, kh, kw) is read as the matrix W = weight.reshape(out, -1), its
  columns in (in, kh, kw) order;
* persistent unit vectors u (out) and v (in * kh * kw) are buffers, not parameters;
* each training forward first does one power iteration without gradient,
  v = normalize(W^T u), u = normalize(W v), normalize(x) = x / max(||x||, 1e-12), and
  stores u and v;
* the forward uses weight / sigma, sigma = u . (W v), with gradients through W in sigma
  (u and v are constants);
* an inference forward uses the stored u and v without iterating.

`keras.layers.SpectralNormalization` differs: it keeps only u, stores W / sigma in the
kernel itself in training (the raw weight is lost) and normalises nothing at inference,
so it cannot read or reproduce a PyTorch checkpoint's `weight_orig`, `weight_u` and
`weight_v`.
"""

import keras
from keras import ops

EPS = 1e-12


def _normalize(x):
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x))), EPS)


@keras.saving.register_keras_serializable(package="sisr")
class SpectralConv2D(keras.layers.Layer):
    """Conv2D ("same" padding) whose kernel is divided by its spectral norm, PyTorch-style.

    The kernel and bias are float32 variables whatever the dtype policy: the power
    iteration and sigma are computed in float32 and only W / sigma is cast to the compute
    dtype for the convolution. `u` and `v` are non-trainable float32 variables (PyTorch's
    `weight_u`, `weight_v`); `v` is in PyTorch's (in, kh, kw) column order so that a
    checkpoint's vectors are copied unchanged.

    Args:
        filters: output channels.
        kernel_size: int, square kernel.
        strides: int.
        use_bias: whether to add a bias (BasicSR's SN convs have none).
        power_iterations: power iterations per training forward (PyTorch's default 1).
        kernel_initializer, bias_initializer: initialisers of the raw weight and bias.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, filters, kernel_size, strides=1, use_bias=True, power_iterations=1,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.use_bias = bool(use_bias)
        if isinstance(power_iterations, bool) or not isinstance(power_iterations, int) \
                or power_iterations < 0:
            raise ValueError(f"SpectralConv2D: `power_iterations` must be an int >= 0, "
                             f"got {power_iterations!r}")
        self.power_iterations = power_iterations
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, channels, self.filters),
            initializer=self.kernel_initializer, dtype="float32", autocast=False)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=self.bias_initializer,
                dtype="float32", autocast=False)
        # PyTorch starts from normalised standard-normal draws; any unit vectors will do.
        self.u = self.add_weight(
            name="u", shape=(self.filters,), initializer=_UnitNormal(), dtype="float32",
            trainable=False, autocast=False, aggregation="only_first_replica")
        self.v = self.add_weight(
            name="v", shape=(channels * k * k,), initializer=_UnitNormal(), dtype="float32",
            trainable=False, autocast=False, aggregation="only_first_replica")

    def weight_matrix(self):
        """The kernel as PyTorch's (out, in * kh * kw) matrix, float32."""
        kernel = ops.convert_to_tensor(self.kernel, dtype="float32")
        return ops.reshape(ops.transpose(kernel, (3, 2, 0, 1)), (self.filters, -1))

    def normalized_kernel(self, training=False):
        """kernel / sigma (float32); with `training`, after the power iteration that
        updates `u` and `v`."""
        matrix = self.weight_matrix()
        u = ops.convert_to_tensor(self.u, dtype="float32")
        v = ops.convert_to_tensor(self.v, dtype="float32")
        if training and self.power_iterations:
            frozen = ops.stop_gradient(matrix)
            for _ in range(self.power_iterations):
                v = _normalize(ops.matmul(u, frozen))
                u = _normalize(ops.matmul(frozen, v))
            u, v = ops.stop_gradient(u), ops.stop_gradient(v)
            self.u.assign(u)
            self.v.assign(v)
        sigma = ops.sum(u * ops.matmul(matrix, v))
        return ops.convert_to_tensor(self.kernel, dtype="float32") / sigma

    def call(self, inputs, training=False):
        kernel = ops.cast(self.normalized_kernel(training), self.compute_dtype)
        outputs = ops.conv(inputs, kernel, strides=self.strides, padding="same")
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, self.compute_dtype)
        return outputs

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        s = self.strides
        return (n, None if h is None else -(-h // s), None if w is None else -(-w // s),
                self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "use_bias": self.use_bias,
            "power_iterations": self.power_iterations,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config


@keras.saving.register_keras_serializable(package="sisr")
class _UnitNormal(keras.initializers.Initializer):
    """A standard-normal draw scaled to unit length (PyTorch's start for u and v)."""

    def __call__(self, shape, dtype=None):
        return _normalize(keras.random.normal(shape, dtype=dtype or "float32"))
