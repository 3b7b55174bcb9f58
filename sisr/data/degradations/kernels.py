"""Blur kernels of the blind-SR degradation models, as TensorFlow ops on parameters.

Every kernel is drawn on a fixed `size` x `size` grid (`size` odd, the largest kernel
of a preset) and is zero outside its own odd `k` x `k` support, centred: the same as
a `k` x `k` kernel normalised to sum 1 and zero-padded to `size`, which lets one
graph serve every kernel size (no retracing per size).

Definitions follow Real-ESRGAN (Wang et al., ICCVW 2021) and BSRGAN (Zhang et al.,
ICCV 2021): Gaussian `exp(-q / 2)`, generalised Gaussian `exp(-q^beta / 2)` and
plateau `1 / (1 + q^beta)` with `q = x^T Sigma^-1 x`, `Sigma = R diag(sx^2, sy^2) R^T`
rotated by `theta`; sinc is the circular low-pass `wc J1(wc r) / (2 pi r)`.
"""

import math

import tensorflow as tf

GAUSSIAN, GENERALIZED, PLATEAU, SINC = 0, 1, 2, 3
SHAPES = {"gaussian": GAUSSIAN, "generalized": GENERALIZED, "plateau": PLATEAU,
          "sinc": SINC}


def grid(size):
    """(x, y) coordinates of a size x size kernel, centred: x along columns."""
    half = size // 2
    axis = tf.range(-half, half + 1, dtype=tf.float32)
    return tf.meshgrid(axis, axis)


def _support(size, k):
    """1 inside the centred k x k window of a size x size grid, 0 outside."""
    x, y = grid(size)
    half = tf.cast(k // 2, tf.float32)
    return tf.cast((tf.abs(x) <= half) & (tf.abs(y) <= half), tf.float32)


def quadratic_form(size, sigma_x, sigma_y, theta):
    """q = [x y] Sigma^-1 [x y]^T of the rotated covariance, on the grid."""
    x, y = grid(size)
    cos, sin = tf.cos(theta), tf.sin(theta)
    # Coordinates in the rotated frame: Sigma^-1 = R diag(1/sx^2, 1/sy^2) R^T.
    u = cos * x + sin * y
    v = -sin * x + cos * y
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def sinc_kernel(size, k, cutoff):
    """The circular low-pass (2-D sinc) kernel of cutoff `cutoff` (radians) and support k."""
    x, y = grid(size)
    r = tf.sqrt(x * x + y * y)
    safe = tf.where(r > 0, r, tf.ones_like(r))
    values = cutoff * tf.math.special.bessel_j1(cutoff * safe) / (2.0 * math.pi * safe)
    values = tf.where(r > 0, values, cutoff ** 2 / (4.0 * math.pi) * tf.ones_like(r))
    return _normalise(values * _support(size, k))


def _normalise(kernel):
    return kernel / tf.reduce_sum(kernel)


def kernel(size, shape, k, sigma_x, sigma_y, theta, beta, cutoff):
    """One kernel [size, size] float32 from scalar tensors.

    Args:
        size: the grid side (python int, odd).
        shape: GAUSSIAN, GENERALIZED, PLATEAU or SINC (int32 scalar tensor).
        k: the kernel's own odd support (int32 scalar tensor, <= size).
        sigma_x, sigma_y, theta: the covariance (an isotropic kernel has sx = sy).
        beta: the shape parameter of generalised Gaussian and plateau kernels.
        cutoff: the sinc kernel's cutoff frequency in radians.
    """
    def gaussian_like():
        q = quadratic_form(size, sigma_x, sigma_y, theta)
        values = tf.switch_case(tf.minimum(shape, PLATEAU), [
            lambda: tf.exp(-0.5 * q),
            lambda: tf.exp(-0.5 * tf.pow(q, beta)),
            lambda: 1.0 / (tf.pow(q, beta) + 1.0),
        ])
        return _normalise(values * _support(size, k))

    return tf.cond(tf.equal(shape, SINC), lambda: sinc_kernel(size, k, cutoff), gaussian_like)


def shifted_gaussian(size, sigma, shift):
    """BSRGAN's blur before nearest downsampling, as a kernel for `ops.filter2d`: MATLAB's
    `fspecial('gaussian', size, sigma)` moved `shift` pixels down and right by linear
    interpolation, positions past the grid's edge clamped to it, then normalised (BSRGAN's
    `shift_pixel`). A shift of (s - 1) / 2 puts every kept pixel of a nearest
    downsampling by s at the centre of its s x s block."""
    half = size // 2
    line = tf.exp(-tf.square(tf.range(size, dtype=tf.float32) - half) / (2.0 * sigma * sigma))
    # The Gaussian is even, so sampling it at i - shift equals BSRGAN's kernel sampled at
    # i + shift and flipped (it convolves, filter2d correlates).
    position = tf.maximum(tf.range(size, dtype=tf.float32) - shift, 0.0)
    low = tf.floor(position)
    frac = position - low
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, size - 1)
    moved = (1.0 - frac) * tf.gather(line, low) + frac * tf.gather(line, high)
    return _normalise(moved[:, None] * moved[None, :])
