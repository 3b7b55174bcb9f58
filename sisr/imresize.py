"""MATLAB-compatible bicubic image resizing (`imresize(..., 'bicubic')`).

PIL, OpenCV and `tf.image.resize` all differ from MATLAB, and super-resolution benchmarks
are defined on MATLAB-made LR images (see docs/reference.md §7), so this module reimplements the
MATLAB algorithm: the Keys cubic kernel with a = -0.5, widened by 1/scale when
downscaling (antialiasing), sample positions `u = x / scale + 0.5 * (1 - 1 / scale)`,
symmetric (mirror) padding at the borders, and one separable pass per dimension, the
dimension with the smallest scale factor first.
"""

import math

import numpy as np

__all__ = ["imresize", "output_size"]

# Scales closer than this to a whole number of pixels are treated as exact, so that
# e.g. 99 * (1/3) gives 33 output pixels and not ceil(33.000000000000004) = 34.
_SIZE_EPS = 1e-9


def _cubic(x):
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's `cubic`)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0))
    return near + far


def _contributions(in_len, out_len, scale, antialias):
    """Weights (out_len, taps) and 0-based source indices (out_len, taps) for one axis."""
    kernel_width = 4.0
    shrink = scale < 1.0 and antialias
    if shrink:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    # Output pixel x (1-based) maps to input coordinate u (1-based, pixel centres).
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(scale * distance) if shrink else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # Mirror out-of-range indices: ... 2 1 | 1 2 ... n | n n-1 ...
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    used = np.any(weights != 0.0, axis=0)
    return weights[:, used], indices[:, used]


def _resize_axis(array, axis, out_len, scale, antialias):
    weights, indices = _contributions(array.shape[axis], out_len, scale, antialias)
    moved = np.moveaxis(array, axis, 0)
    out = np.zeros((out_len,) + moved.shape[1:], dtype=np.float64)
    broadcast = (out_len,) + (1,) * (moved.ndim - 1)
    # One gather + multiply-add per kernel tap keeps memory at two output-sized buffers.
    for k in range(weights.shape[1]):
        out += weights[:, k].reshape(broadcast) * moved[indices[:, k]]
    return np.moveaxis(out, 0, axis)


def output_size(shape, scale):
    """MATLAB's output size `ceil(scale * shape)` for a scale factor (tolerating rounding)."""
    return tuple(max(1, int(math.ceil(n * scale - _SIZE_EPS))) for n in shape)


def imresize(image, scale=None, output_shape=None, antialias=True):
    """Resizes an image with MATLAB's bicubic `imresize`.

    Args:
        image: numpy array, HxW or HxWxC, uint8 or floating point.
        scale: resize factor (MATLAB convention: 0.5 halves, 2 doubles each side); the
            output is `ceil(scale * size)` pixels.
        output_shape: (height, width) of the output instead of `scale`; the factor of
            each dimension is then `output / input`, as in MATLAB.
        antialias: widen the kernel when downscaling (MATLAB's default, True).

    Returns:
        uint8 input: uint8 output, rounded and clipped to [0, 255] like MATLAB.
        Float input: float64 output (no clipping), on the input's scale.
    """
    array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise ValueError(f"imresize: image must be HxW or HxWxC, got shape {array.shape}")
    if min(array.shape[:2]) < 1:
        raise ValueError(f"imresize: image is empty, shape {array.shape}")
    is_uint8 = array.dtype == np.uint8
    if not (is_uint8 or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"imresize: expected a uint8 or float image, got dtype {array.dtype}")
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize: give exactly one of `scale` and `output_shape`")
    in_shape = array.shape[:2]
    if output_shape is not None:
        out_shape = tuple(int(n) for n in output_shape)
        if len(out_shape) != 2 or min(out_shape) < 1:
            raise ValueError(f"imresize: output_shape must be (height, width) >= 1, "
                             f"got {output_shape!r}")
        scales = tuple(o / i for o, i in zip(out_shape, in_shape))
    else:
        scale = float(scale)
        if not scale > 0 or not math.isfinite(scale):
            raise ValueError(f"imresize: scale must be a positive number, got {scale!r}")
        out_shape = output_size(in_shape, scale)
        scales = (scale, scale)

    result = array.astype(np.float64)
    # MATLAB resizes the dimension with the smallest scale first (rows first on ties).
    for axis in sorted((0, 1), key=lambda a: scales[a]):
        if out_shape[axis] == in_shape[axis] and scales[axis] == 1.0:
            continue
        result = _resize_axis(result, axis, out_shape[axis], scales[axis], antialias)
    if is_uint8:
        return np.floor(np.clip(result, 0.0, 255.0) + 0.5).astype(np.uint8)
    return result
