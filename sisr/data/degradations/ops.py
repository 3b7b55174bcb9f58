"""Image operations of the degradation models, on one float32 image [h, w, 3] in [0, 1].

Random draws come from stateless ops seeded by an int32 [2] `seed`, so an image's
degradation depends only on its seed.
"""

import numpy as np
import tensorflow as tf

RESIZE_MODES = ("area", "bilinear", "bicubic")


def filter2d(image, kernel):
    """Correlates every channel with `kernel` [k, k] (k odd), reflect padding: the output
    has the input's size (as cv2.filter2D and BasicSR's filter2D)."""
    k = kernel.shape[0]
    padded = reflect_pad(image, k // 2)[None]
    weights = tf.tile(tf.cast(kernel, image.dtype)[:, :, None, None], [1, 1, 3, 1])
    return tf.nn.depthwise_conv2d(padded, weights, [1, 1, 1, 1], "VALID")[0]


def filter2d_separable(image, line):
    """filter2d with the separable kernel `line[:, None] * line[None, :]` (two 1-D passes:
    a 51 x 51 blur costs 102 multiply-adds per pixel instead of 2601)."""
    k = line.shape[0]
    padded = reflect_pad(image, k // 2)[None]
    line = tf.cast(line, image.dtype)
    rows = tf.tile(line[:, None, None, None], [1, 1, 3, 1])
    cols = tf.tile(line[None, :, None, None], [1, 1, 3, 1])
    out = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(out, cols, [1, 1, 1, 1], "VALID")[0]


def _reflect_indices(n, pad):
    """Indices of a reflect padding by `pad` of a length-n axis (any pad: the reflection
    repeats, where tf.pad's REFLECT needs pad < n)."""
    index = tf.range(-pad, n + pad)
    period = tf.maximum(2 * (n - 1), 1)
    index = tf.math.floormod(index, period)
    return tf.where(index >= n, period - index, index)


def reflect_pad(image, pad):
    """`image` [h, w, c] reflect-padded by `pad` on both sides of both axes."""
    shape = tf.shape(image)
    image = tf.gather(image, _reflect_indices(shape[0], pad), axis=0)
    return tf.gather(image, _reflect_indices(shape[1], pad), axis=1)


def matlab_downscale(image, scale):
    """MATLAB's imresize(image, 1/scale) (bicubic, antialiased) of an image of static
    size, as two matrix products."""
    height, width = image.shape[0], image.shape[1]
    rows = tf.constant(_matlab_matrix(height, scale), tf.float32)
    cols = tf.constant(_matlab_matrix(width, scale), tf.float32)
    out = tf.einsum("ih,hwc->iwc", rows, image)
    return tf.einsum("jw,iwc->ijc", cols, out)


def _matlab_matrix(in_len, scale):
    from sisr.imresize import _contributions

    out_len = in_len // scale
    weights, indices = _contributions(in_len, out_len, 1.0 / scale, True)
    matrix = np.zeros([out_len, in_len])
    for tap in range(weights.shape[1]):
        np.add.at(matrix, (np.arange(out_len), indices[:, tap]), weights[:, tap])
    return matrix


def resize(image, height, width, mode):
    """Resizes to (height, width) by `mode` (an int32 index into RESIZE_MODES): area,
    bilinear or bicubic, half-pixel centres, no antialiasing, as OpenCV's `cv2.resize`
    (INTER_AREA, INTER_LINEAR, INTER_CUBIC) and torch's `interpolate`."""
    size = tf.stack([height, width])
    return tf.switch_case(mode, [
        lambda: tf.image.resize(image, size, method="area"),
        lambda: tf.image.resize(image, size, method="bilinear"),
        lambda: cubic_resize(image, height, width),
    ])


def _cubic_axis(image, out_len, axis):
    """One axis of `cubic_resize`: 4 taps gathered per output position."""
    in_len = tf.shape(image)[axis]
    scale = tf.cast(in_len, tf.float32) / tf.cast(out_len, tf.float32)
    source = (tf.range(out_len, dtype=tf.float32) + 0.5) * scale - 0.5
    start = tf.floor(source)
    t = source - start
    start = tf.cast(start, tf.int32)
    a = -0.75
    # Keys' cubic with a = -0.75 at the distances t + 1, t, 1 - t, 2 - t.
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    w3 = 1.0 - w0 - w1 - w2
    out = 0.0
    shape = [-1, 1, 1] if axis == 0 else [1, -1, 1]
    for tap, weight in enumerate((w0, w1, w2, w3)):
        # Taps outside the image repeat its edge (OpenCV's and torch's border).
        index = tf.clip_by_value(start + tap - 1, 0, in_len - 1)
        out += tf.reshape(weight, shape) * tf.gather(image, index, axis=axis)
    return out


def cubic_resize(image, height, width):
    """Bicubic resize as OpenCV's INTER_CUBIC and torch's `interpolate(mode="bicubic",
    align_corners=False)`: Keys' kernel with a = -0.75 (TensorFlow's bicubic uses -0.5),
    half-pixel centres, edge pixels repeated, no antialiasing."""
    return _cubic_axis(_cubic_axis(image, height, 0), width, 1)


def gaussian_noise(image, seed, sigma, gray):
    """Additive Gaussian noise of standard deviation `sigma` (on the 0..255 scale): one
    draw per pixel and channel, or one per pixel for all channels if `gray`."""
    shape = tf.shape(image)
    colour = tf.random.stateless_normal(shape, seed)
    mono = tf.random.stateless_normal(shape[:2], seed + 1)[:, :, None] * tf.ones([1, 1, 3])
    noise = tf.where(gray, mono, colour)
    return image + noise * sigma / 255.0


def gray(image):
    """ITU-R 601 luma, [h, w, 1] (OpenCV's and torchvision's RGB-to-grey weights)."""
    return tf.reduce_sum(image * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)


def poisson_noise(image, seed, scale, gray_noise):
    """Poisson (shot) noise scaled by `scale`, as Real-ESRGAN: the image rounded to 8 bits,
    photon counts `2^ceil(log2(number of distinct values))`, on the grey image if
    `gray_noise` (the same noise in all channels)."""
    source = tf.cond(gray_noise, lambda: tf.tile(gray(image), [1, 1, 3]), lambda: image)
    source = tf.clip_by_value(tf.round(source * 255.0), 0.0, 255.0) / 255.0
    distinct = tf.size(tf.unique(tf.reshape(source, [-1]))[0])
    vals = tf.pow(2.0, tf.math.ceil(tf.math.log(tf.cast(distinct, tf.float32)) / tf.math.log(2.0)))
    counts = tf.random.stateless_poisson(tf.shape(source), seed, source * vals, tf.float32)
    noise = counts / vals - source
    return image + noise * scale


def jpeg(image, quality):
    """Real JPEG (libjpeg, 4:2:0) at integer `quality`, clamped to [0, 1] first."""
    pixels = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)
    coded = tf.image.adjust_jpeg_quality(pixels, tf.cast(quality, tf.int32))
    return tf.cast(coded, tf.float32) / 255.0


def gaussian_kernel_1d(size, sigma):
    """OpenCV's getGaussianKernel: sigma 0 means 0.3 ((size - 1) / 2 - 1) + 0.8."""
    if sigma <= 0:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = tf.range(size, dtype=tf.float32) - (size - 1) / 2
    values = tf.exp(-x * x / (2.0 * sigma * sigma))
    return values / tf.reduce_sum(values)


def usm_sharpen(image, weight=0.5, radius=50, threshold=10):
    """Unsharp masking as Real-ESRGAN sharpens its ground truth: `image + weight *
    (image - blur)`, clipped, blended in by the blurred mask of |residual| * 255 >
    threshold (blur: Gaussian of side `radius` (made odd), OpenCV's default sigma)."""
    if radius % 2 == 0:
        radius += 1
    line = gaussian_kernel_1d(radius, 0)
    blur = filter2d_separable(image, line)
    residual = image - blur
    mask = tf.cast(tf.abs(residual) * 255.0 > threshold, tf.float32)
    soft = filter2d_separable(mask, line)
    sharp = tf.clip_by_value(image + weight * residual, 0.0, 1.0)
    return soft * sharp + (1.0 - soft) * image
