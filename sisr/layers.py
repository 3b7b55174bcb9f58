"""Registered, serialisable layers used by the sisr models.

Normalisation uses `keras.layers.Rescaling` (see `normalize` / `denormalize`); the
layers here cover what Keras has no built-in for. Every layer is registered under the
"sisr" package so that `.keras` files load with the default `safe_mode=True`.
"""

import keras
from keras import ops

# DIV2K RGB mean on the [0, 255] scale (EDSR-PyTorch / WDSR: (0.4488, 0.4371, 0.4040) x 255).
DIV2K_RGB_MEAN = (0.4488 * 255.0, 0.4371 * 255.0, 0.4040 * 255.0)


@keras.saving.register_keras_serializable(package="sisr")
class PixelShuffle(keras.layers.Layer):
    """Sub-pixel convolution upsampling: rearranges channels into space.

    Channels-last `depth_to_space`: output pixel `(h*r + i, w*r + j, c)` reads input
    channel `(i*r + j)*C + c`. (PyTorch's `PixelShuffle` reads `c*r*r + i*r + j`; see
    `sisr.port` for the permutation between the two.)

    Reference: Shi et al., "Real-Time Single Image and Video Super-Resolution Using an
    Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016.

    Args:
        scale: int, the upsampling factor `r`; the input must have `C * r * r` channels.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise ValueError(f"PixelShuffle: `scale` must be a positive int, got {scale!r}")
        self.scale = scale

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % (self.scale * self.scale):
            raise ValueError(
                f"PixelShuffle(scale={self.scale}): input channels ({channels}) must be a "
                f"multiple of scale**2 = {self.scale * self.scale}"
            )

    def call(self, inputs):
        return ops.depth_to_space(inputs, self.scale, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        r = self.scale
        return (
            n,
            None if h is None else h * r,
            None if w is None else w * r,
            None if c is None else c // (r * r),
        )

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config


@keras.saving.register_keras_serializable(package="sisr")
class PixelUnshuffle(keras.layers.Layer):
    """The inverse of `PixelShuffle`: rearranges `r x r` blocks of pixels into channels.

    Channels-last `space_to_depth`: output channel `(i*r + j)*C + c` at `(h, w)` holds
    input pixel `(h*r + i, w*r + j, c)` (PyTorch's `pixel_unshuffle` puts it at channel
    `c*r*r + i*r + j`; `sisr.port` permutes the next conv's inputs). An input whose height
    or width is not a multiple of `r` is first padded at the bottom and right by reflection
    (edge repetition for a 1-pixel side), as Real-ESRGAN's inference pads it; `CropToScale`
    removes what the padding adds to the output.

    Args:
        scale: int, the block size `r`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise ValueError(f"PixelUnshuffle: `scale` must be a positive int, got {scale!r}")
        self.scale = scale

    def _pad(self, x, axis):
        # Rows n-2, n-3, ... after the last one (reflection), clipped to the image.
        n = ops.shape(x)[axis]
        extra = (self.scale - n % self.scale) % self.scale
        index = ops.concatenate([ops.arange(n), n - 2 - ops.arange(extra)])
        return ops.take(x, ops.clip(index, 0, n - 1), axis=axis)

    def call(self, inputs):
        x = self._pad(self._pad(inputs, 1), 2)
        return ops.space_to_depth(x, self.scale, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        r = self.scale
        return (n, None if h is None else -(-h // r), None if w is None else -(-w // r),
                None if c is None else c * r * r)

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config


@keras.saving.register_keras_serializable(package="sisr")
class CropToScale(keras.layers.Layer):
    """Crops an image to `scale` times the height and width of a reference image.

    Called on `[image, reference]`; takes the top-left part, removing what a
    `PixelUnshuffle`'s padding added to the output.

    Args:
        scale: int, the output size over the reference's size.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise ValueError(f"CropToScale: `scale` must be a positive int, got {scale!r}")
        self.scale = scale

    def call(self, inputs):
        image, reference = inputs
        shape = ops.shape(reference)
        return image[:, :shape[1] * self.scale, :shape[2] * self.scale, :]

    def compute_output_shape(self, input_shape):
        image, reference = input_shape
        s = self.scale
        return (image[0], None if reference[1] is None else reference[1] * s,
                None if reference[2] is None else reference[2] * s, image[3])

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config


@keras.saving.register_keras_serializable(package="sisr")
class ResidualScaling(keras.layers.Layer):
    """Multiplies a residual branch by a constant before it is added to the skip path.

    Stabilises training of wide/deep residual networks (EDSR uses 0.1 for its 256-filter,
    32-block model).

    Reference: Lim et al., "Enhanced Deep Residual Networks for Single Image
    Super-Resolution", CVPRW 2017, section 3.2; Szegedy et al., Inception-v4, 2017.

    Args:
        scaling: float, the constant factor.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, scaling, **kwargs):
        super().__init__(**kwargs)
        self.scaling = float(scaling)

    def call(self, inputs):
        return inputs * ops.cast(self.scaling, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"scaling": self.scaling})
        return config


@keras.saving.register_keras_serializable(package="sisr")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`BatchNormalization` whose inference is one fused TensorFlow op.

    In inference (`training` false, or the layer frozen) on the TensorFlow backend, NHWC
    inputs of any float dtype are normalised by `FusedBatchNormV3` with the float32 moving
    statistics, gamma and beta: one pass over the activations, the shift applied at float32
    precision, the result rounded once to the input's dtype. Under `mixed_bfloat16` Keras'
    layer instead casts to float32 and back around five unfused elementwise ops, while
    folding the statistics into the conv before it would round each channel's shift to
    bfloat16, a systematic error (benchmarks/README.md has the measurements). Training and
    other backends run Keras' layer unchanged. `sisr.precision.mixed_copy` uses it in place
    of `BatchNormalization`.

    Args:
        **kwargs: as for `keras.layers.BatchNormalization`.
    """

    def call(self, inputs, training=None, mask=None):
        fused = (keras.backend.backend() == "tensorflow" and len(inputs.shape) == 4
                 and self.axis in (-1, 3) and not (training and self.trainable))
        if not fused:
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        statistics = [tf.cast(v, "float32") for v in (self.moving_mean, self.moving_variance)]
        channels = statistics[0].shape
        scale = tf.cast(self.gamma, "float32") if self.scale else tf.ones(channels)
        offset = tf.cast(self.beta, "float32") if self.center else tf.zeros(channels)
        outputs, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=scale, offset=offset, mean=statistics[0], variance=statistics[1],
            epsilon=self.epsilon, data_format="NHWC", is_training=False)
        return outputs


def normalize(mean=DIV2K_RGB_MEAN, name="normalize"):
    """`(x - mean) / 127.5` as a `Rescaling` layer (EDSR/WDSR input normalisation)."""
    return keras.layers.Rescaling(
        scale=1.0 / 127.5, offset=[-m / 127.5 for m in mean], name=name
    )


def denormalize(mean=DIV2K_RGB_MEAN, name="denormalize"):
    """`x * 127.5 + mean` as a `Rescaling` layer, kept in float32 under mixed precision."""
    return keras.layers.Rescaling(
        scale=127.5, offset=list(mean), name=name, dtype="float32"
    )


def bicubic_phase_weights(scale):
    """(5, scale) weights of MATLAB's bicubic `imresize` upscaling by an integer `scale`.

    Output pixel `scale * i + p` (0-based) of one axis is `sum_k w[k, p] * x[i - 2 + k]`,
    with `x` mirrored at the borders as MATLAB does (`... x1 x0 | x0 x1 ...`). MATLAB samples
    the input at `u = (scale * i + p + 0.5) / scale - 0.5`, within half a pixel of `i`, so
    the Keys cubic kernel (a = -0.5, support 2) reads inputs `i - 2 .. i + 2` at most.
    """
    import numpy as np

    from sisr.imresize import _cubic

    phases = (np.arange(scale) + 0.5) / scale - 0.5           # u - i for each phase p
    weights = _cubic(phases[None, :] - np.arange(-2, 3)[:, None])
    return weights / weights.sum(axis=0, keepdims=True)


class _PhaseUpsample(keras.layers.Layer):
    """Integer-factor upsampling by fixed (5, scale) phase weights, rows then columns:
    output pixel `scale * i + p` of an axis is `sum_k w[k, p] * x[border(i - 2 + k)]`.
    Subclasses set `scale` and `_phase_weights` and define `_border_index` (how indices
    -2 .. n + 1 map into 0 .. n - 1). No weights; local (reads at most 2 input pixels away).
    """

    def _border_index(self, n):
        raise NotImplementedError

    def _upsample_axis(self, x, axis):
        shape = ops.shape(x)
        n = shape[axis]
        padded = ops.take(x, self._border_index(n), axis=axis)
        taps = [_take_range(padded, axis, k, n) for k in range(5)]
        weights = self._phase_weights
        phases = [sum(ops.cast(weights[k][p], x.dtype) * taps[k]
                      for k in range(5) if weights[k][p] != 0) for p in range(self.scale)]
        y = ops.stack(phases, axis=axis + 1)
        new_shape = [shape[i] for i in range(len(shape))]
        new_shape[axis] = n * self.scale
        return ops.reshape(y, new_shape)

    def call(self, inputs):
        if self.scale == 1:
            return inputs
        return self._upsample_axis(self._upsample_axis(inputs, 1), 2)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        r = self.scale
        return (n, None if h is None else h * r, None if w is None else w * r, c)


def _take_range(x, axis, start, length):
    """`x[..., start:start + length, ...]` along `axis` (dynamic length)."""
    return ops.take(x, ops.arange(start, start + length), axis=axis)


@keras.saving.register_keras_serializable(package="sisr")
class BicubicUpsample(_PhaseUpsample):
    """Upscales by an integer factor exactly as MATLAB's `imresize(x, scale, 'bicubic')`.

    The same computation as `sisr.imresize.imresize` (Keys cubic kernel a = -0.5, symmetric
    mirroring at the borders, rows then columns), without rounding or clipping, as a
    layer: VDSR and SRCNN, whose papers feed the network a bicubic-upscaled image, take the
    LR image and upscale inside. Each output pixel reads the input pixels at most 2 away
    (in input pixels), so the layer is local (`sisr.receptive_field`). No weights.

    Args:
        scale: int, the upscaling factor.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise ValueError(f"BicubicUpsample: `scale` must be a positive int, got {scale!r}")
        self.scale = scale
        self._phase_weights = tuple(map(tuple, bicubic_phase_weights(scale).tolist()))

    def _border_index(self, n):
        # MATLAB's mirror of indices -2 .. n + 1 into 0 .. n - 1; twice for n = 1. (No
        # modulo of negative numbers, which ONNX converters get wrong.)
        index = ops.arange(-2, n + 2)
        for _ in range(2):
            index = ops.where(index < 0, -1 - index, index)
            index = ops.where(index >= n, 2 * n - 1 - index, index)
        return index

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config


@keras.saving.register_keras_serializable(package="sisr")
class ColorMatrix(keras.layers.Layer):
    """A fixed linear colour transform of every pixel: output channel `o` is
    `sum_i matrix[o][i] * input[..., i]` (no weights; per pixel, so local).

    The OpenCV dnn_superres models (`sisr.model.opencv_sr`) convert RGB to OpenCV's YCrCb
    and back with it.

    Args:
        matrix: a list of output rows, each with one coefficient per input channel.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, matrix, **kwargs):
        super().__init__(**kwargs)
        rows = [[float(v) for v in row] for row in matrix]
        if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
            raise ValueError(f"ColorMatrix: `matrix` must be a non-empty list of rows of "
                             f"equal length, got {matrix!r}")
        self.matrix = rows

    def call(self, inputs):
        channels = [inputs[..., i:i + 1] for i in range(len(self.matrix[0]))]
        rows = [sum(ops.cast(w, inputs.dtype) * c for w, c in zip(row, channels))
                for row in self.matrix]
        return ops.concatenate(rows, axis=-1) if len(rows) > 1 else rows[0]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.matrix))

    def get_config(self):
        config = super().get_config()
        config.update({"matrix": [list(row) for row in self.matrix]})
        return config


# OpenCV's cubic kernel parameter (imgproc/src/resize.cpp, interpolateCubic).
OPENCV_CUBIC_A = -0.75
OPENCV_INTERPOLATIONS = ("linear", "cubic")


def opencv_phase_weights(scale, interpolation="linear"):
    """(5, scale) weights of `cv2.resize(x, None, fx=scale, fy=scale)` upscaling by an
    integer `scale` with INTER_LINEAR or INTER_CUBIC: output pixel `scale * i + p` of one
    axis is `sum_k w[k, p] * x[clamp(i - 2 + k)]`. OpenCV samples the input at
    `u = (scale * i + p + 0.5) / scale - 0.5` (half-pixel centres), within half a pixel of
    `i`, and clamps indices at the borders (BORDER_REPLICATE)."""
    import numpy as np

    weights = np.zeros((5, scale))
    for p in range(scale):
        u = (p + 0.5) / scale - 0.5            # relative to i, in (-0.5, 0.5)
        start = int(np.floor(u))               # -1 or 0
        t = u - start
        if interpolation == "linear":
            taps = [1 - t, t]
        else:
            a = OPENCV_CUBIC_A
            c0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
            c1 = ((a + 2) * t - (a + 3)) * t * t + 1
            c2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
            taps, start = [c0, c1, c2, 1 - c0 - c1 - c2], start - 1
        for k, w in enumerate(taps):
            weights[start + k + 2, p] += w
    return weights


@keras.saving.register_keras_serializable(package="sisr")
class OpenCVUpsample(_PhaseUpsample):
    """Upscales by an integer factor as OpenCV's `cv2.resize` (`cv::resize`) does with
    INTER_LINEAR (its default) or INTER_CUBIC (a = -0.75): half-pixel centres, borders
    clamped, rows then columns, on float values (no rounding). OpenCV's dnn_superres
    upscales the chroma of its luma networks so (`sisr.model.opencv_sr`). Each output
    pixel reads the input pixels at most 1 (linear) or 2 (cubic) away: local. No weights.

    Args:
        scale: int, the upscaling factor.
        interpolation: "linear" or "cubic".
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, scale, interpolation="linear", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise ValueError(f"OpenCVUpsample: `scale` must be a positive int, got {scale!r}")
        if interpolation not in OPENCV_INTERPOLATIONS:
            raise ValueError(f"OpenCVUpsample: `interpolation` must be one of "
                             f"{OPENCV_INTERPOLATIONS}, got {interpolation!r}")
        self.scale = scale
        self.interpolation = interpolation
        weights = opencv_phase_weights(scale, interpolation)
        self._phase_weights = tuple(map(tuple, weights.tolist()))

    def _border_index(self, n):
        return ops.clip(ops.arange(-2, n + 2), 0, n - 1)  # BORDER_REPLICATE

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "interpolation": self.interpolation})
        return config
