"""PSNR and SSIM as the super-resolution papers compute them (docs/reference.md §7).

Two flavours of the same math:

- `psnr`, `ssim`: exact float64 NumPy versions on uint8 images, for evaluation. They
  reproduce BasicSR's `calculate_psnr` / `calculate_ssim` and EDSR's `calc_psnr`.
- `psnr_tf`, `ssim_tf` and the Keras metrics `PSNR`, `SSIM`: float32 tensor versions for
  validation during training; predictions are clipped and rounded to the uint8 grid first.

Conventions:
- `shave` pixels are cropped from every border before scoring. Benchmarks (Set5, Set14,
  B100, Urban100) use Y and shave = scale; DIV2K validation uses RGB and, in sisr, shave =
  scale + 6 as in the EDSR code (`div2k_shave`; the EDSR README says scale + 2).
- `y_only` scores the Y channel of MATLAB's `rgb2ycbcr` (BT.601 studio swing), not
  OpenCV's full-range YCrCb, which reads ~1.3 dB lower.
- SSIM: 11x11 Gaussian window (sigma 1.5), C1 = (0.01*255)^2, C2 = (0.03*255)^2, valid
  region only, mean over channels (Wang et al. 2004, original MATLAB code).
- Identical images have infinite PSNR.
"""

import math

import keras
import numpy as np
from keras import ops

# MATLAB rgb2ycbcr, Y row, for R, G, B on the [0, 255] scale: Y = 16 + (w . rgb) / 255.
Y_WEIGHTS = (65.481, 128.553, 24.966)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255.0) ** 2
SSIM_C2 = (0.03 * 255.0) ** 2


def div2k_shave(scale):
    """sisr's default border shave for DIV2K RGB scores: scale + 6 (the EDSR code)."""
    return scale + 6


def benchmark_shave(scale):
    """Border shave for Y-channel benchmark scores (Set5, Set14, B100, Urban100): scale."""
    return scale


# ----------------------------------------------------------------------------- NumPy


def _as_uint8(image, argument):
    if hasattr(image, "numpy"):  # tf.Tensor / Keras tensor
        image = image.numpy()
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(
            f"{argument} must be a uint8 image (clip to [0, 255] and round first, as "
            f"sisr.resolve does), got dtype {array.dtype}"
        )
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"{argument} must be HxW or HxWxC, got shape {array.shape}")
    return array


def _prepare(a, b, shave, y_only, min_size):
    """Validates a pair, crops the border; returns uint8 HxWxC, or float64 HxWx1 Y."""
    a = _as_uint8(a, "first image")
    b = _as_uint8(b, "second image")
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if isinstance(shave, bool) or not isinstance(shave, (int, np.integer)) or shave < 0:
        raise ValueError(f"shave must be a non-negative integer, got {shave!r}")
    height, width = a.shape[:2]
    if min(height, width) - 2 * shave < min_size:
        raise ValueError(
            f"images of {height}x{width} are too small for shave={shave}: "
            f"at least {min_size} pixels must remain on each side"
        )
    if shave:
        a = a[shave:-shave, shave:-shave]
        b = b[shave:-shave, shave:-shave]
    if y_only:
        return rgb_to_y(a)[..., None], rgb_to_y(b)[..., None]
    return a, b


def rgb_to_y(image):
    """Y of MATLAB's rgb2ycbcr (BT.601, studio swing 16..235) as float64, unrounded.

    `image` is RGB (not BGR) on the [0, 255] scale, shape HxWx3.
    """
    rgb = np.asarray(image, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"Y needs an RGB image of shape HxWx3, got shape {rgb.shape}")
    return 16.0 + rgb @ np.asarray(Y_WEIGHTS, dtype=np.float64) / 255.0


def psnr(a, b, shave=0, y_only=False):
    """PSNR in dB of two uint8 images (float64, peak 255); `inf` if they are identical."""
    a, b = _prepare(a, b, shave, y_only, min_size=1)
    if y_only:
        mse = np.mean((a - b) ** 2)
    else:  # exact integer sum of squared differences
        diff = a.astype(np.int32) - b.astype(np.int32)
        mse = np.sum(diff * diff, dtype=np.int64) / diff.size
    if mse == 0:
        return math.inf
    return float(10.0 * np.log10(255.0**2 / mse))


def _gaussian_window(size=SSIM_WINDOW, sigma=SSIM_SIGMA):
    """1-D Gaussian of `size` taps summing to 1 (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _ssim_sum(x, y, taps, band=8):
    """Sum of the valid-region SSIM map of two float64 HxW images.

    The five Gaussian-filtered maps (separable, shift-and-add) are computed for `band`
    output rows at a time, so that they stay in cache on DIV2K-sized images; the results
    are those of whole-image passes (float64).
    """
    k = len(taps)
    out_h, out_w = x.shape[0] - k + 1, x.shape[1] - k + 1
    total = 0.0
    for top in range(0, out_h, band):
        n = min(band, out_h - top)
        xs, ys = x[top:top + n + k - 1], y[top:top + n + k - 1]
        stack = np.stack([xs, ys, xs * xs, ys * ys, xs * ys])
        rows = taps[0] * stack[:, 0:n]
        for i in range(1, k):
            rows += taps[i] * stack[:, i:i + n]
        maps = taps[0] * rows[:, :, 0:out_w]
        for j in range(1, k):
            maps += taps[j] * rows[:, :, j:j + out_w]
        mu_x, mu_y, xx, yy, xy = maps
        mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
        num = (2.0 * mu_xy + SSIM_C1) * (2.0 * (xy - mu_xy) + SSIM_C2)
        den = (mu_xx + mu_yy + SSIM_C1) * ((xx - mu_xx) + (yy - mu_yy) + SSIM_C2)
        total += float(np.sum(num / den))
    return total, out_h * out_w


def ssim(a, b, shave=0, y_only=False):
    """SSIM of two uint8 images: mean over channels of the mean valid-region SSIM map."""
    a, b = _prepare(a, b, shave, y_only, min_size=SSIM_WINDOW)
    taps = _gaussian_window()
    means = []
    for c in range(a.shape[-1]):
        total, count = _ssim_sum(a[..., c].astype(np.float64), b[..., c].astype(np.float64),
                                 taps)
        means.append(total / count)
    return float(np.mean(means))


# ------------------------------------------------------------------------ tensors


def _crop(images, shave):
    if shave:
        return images[:, shave:-shave, shave:-shave, :]
    return images


def _quantize_pair(hr, sr, shave, y_only):
    """float32 batches: HR as given, SR clipped + rounded (what a saved uint8 SR would be)."""
    hr = ops.cast(hr, "float32")
    sr = ops.round(ops.clip(ops.cast(sr, "float32"), 0.0, 255.0))
    hr, sr = _crop(hr, shave), _crop(sr, shave)
    if y_only:
        weights = ops.convert_to_tensor(np.asarray(Y_WEIGHTS, np.float32) / 255.0)
        hr = 16.0 + ops.sum(hr * weights, axis=-1, keepdims=True)
        sr = 16.0 + ops.sum(sr * weights, axis=-1, keepdims=True)
    return hr, sr


def psnr_tf(hr, sr, shave=0, y_only=False):
    """Per-image PSNR (float32, shape [batch]) of batches on the [0, 255] scale.

    `sr` is clipped to [0, 255] and rounded before scoring; `hr` is taken as is.
    """
    hr, sr = _quantize_pair(hr, sr, shave, y_only)
    mse = ops.mean(ops.square(hr - sr), axis=(1, 2, 3))
    return 10.0 * ops.log10(255.0**2 / mse)


def ssim_tf(hr, sr, shave=0, y_only=False):
    """Per-image SSIM (float32, shape [batch]); same conventions as `psnr_tf`."""
    hr, sr = _quantize_pair(hr, sr, shave, y_only)
    channels = hr.shape[-1]
    taps = _gaussian_window().astype(np.float32)
    window = np.outer(taps, taps)[:, :, None, None] * np.ones((1, 1, channels, 1), np.float32)
    window = ops.convert_to_tensor(window)

    def blur(x):
        return ops.depthwise_conv(x, window, strides=1, padding="valid")

    mu_x, mu_y = blur(hr), blur(sr)
    var_x = blur(hr * hr) - mu_x**2
    var_y = blur(sr * sr) - mu_y**2
    cov = blur(hr * sr) - mu_x * mu_y
    num = (2.0 * mu_x * mu_y + SSIM_C1) * (2.0 * cov + SSIM_C2)
    den = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return ops.mean(num / den, axis=(1, 2, 3))


class _ImageMetric(keras.metrics.Mean):
    """Mean over images of a per-image score; higher is better."""

    _score = None

    def __init__(self, shave=0, y_only=False, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(shave, bool) or not isinstance(shave, int) or shave < 0:
            raise ValueError(f"{type(self).__name__}: shave must be an int >= 0, got {shave!r}")
        self.shave = shave
        self.y_only = bool(y_only)
        # Lets ModelCheckpoint / EarlyStopping with mode="auto" maximise this metric.
        self._direction = "up"

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = type(self)._score(y_true, y_pred, shave=self.shave, y_only=self.y_only)
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "shave": self.shave,
                "y_only": self.y_only}


@keras.saving.register_keras_serializable(package="sisr")
class PSNR(_ImageMetric):
    """Keras metric: mean per-image PSNR (dB) of clipped + rounded predictions.

    `model.compile(..., metrics=[sisr.metrics.PSNR(shave=2)])`; y_true and y_pred are
    batches of RGB images on the [0, 255] scale.
    """

    _score = staticmethod(psnr_tf)

    def __init__(self, shave=0, y_only=False, name="psnr", dtype=None):
        super().__init__(shave=shave, y_only=y_only, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="sisr")
class SSIM(_ImageMetric):
    """Keras metric: mean per-image SSIM of clipped + rounded predictions."""

    _score = staticmethod(ssim_tf)

    def __init__(self, shave=0, y_only=False, name="ssim", dtype=None):
        super().__init__(shave=shave, y_only=y_only, name=name, dtype=dtype)
