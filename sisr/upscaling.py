"""Super-resolving images of any size in tiles: `Upscaler`, `upscale_image`, and the
checks and loading they need (the library behind `python -m sisr.upscale` and
`python -m sisr.evaluate`).

Tiling keeps memory bounded without seams: every tile is run with a margin of LR context
around it (by default the model's receptive-field radius, read from its layers by
`sisr.receptive_field`) and only the tile's own area of the SR output is kept, so a tiled
result equals the untiled one up to float rounding (at most 1 grey level, on rare pixels).
A model with a layer not known to be local (global pooling, attention, ...) or whose
registered architecture is declared `local=False` is never tiled: asking for tiles raises
`NotTileableError`, and whole images are always available (`tile=None`). Unless asked
explicitly (`approximate=True` with an `overlap`, as EDSR-PyTorch's `--chop` runs RCAN):
then each tile's window stands in for the whole image in the global statistics.

    sr = upscale_image(model, image, tile=256)   # uint8 in any channel layout, uint8 out
                                                 # (uint16 in, uint16 out)

Grayscale images go through the model as RGB and come back grayscale (ITU-R 601 luma);
an alpha channel is upscaled with MATLAB-style bicubic, or with the model (`alpha="model"`).
`resize_output` brings an SR image to any other scale (Lanczos, as Real-ESRGAN's
`--outscale`). Fully convolutional models accept
any image size down to 1x1, so no image is too small.
"""

import math
import os

import numpy as np

from sisr.errors import UsageError
from sisr.imageio import ALPHA_MODES, DEPTH_16
from sisr.receptive_field import alignment, locality, receptive_radius
from sisr.saving import ModelError

__all__ = ["ALPHA_MODES", "LUMA", "ModelError", "NotTileableError", "Upscaler",
           "bicubic_upscale", "load_sr_model", "locality", "model_scale", "outscale_size",
           "receptive_radius", "resize_output", "upscale_image"]

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's "L" mode


class NotTileableError(ModelError):
    """Tiles were asked of a model whose output pixels do not read a bounded
    neighbourhood (`reason` says which layer or spec)."""

    def __init__(self, model_name, reason):
        super().__init__(f"model {model_name!r} cannot be upscaled in tiles: {reason}")
        self.reason = reason


# ------------------------------------------------------------------- model checks


def model_scale(model):
    """The upscaling factor of an SR model: recorded in sisr's models, found by running
    other Keras models on an 8x8 input.

    Raises `ModelError` if the model does not map any-size RGB to an integer multiple.
    """
    import tensorflow as tf

    from sisr.model import model_info

    info = model_info(model)
    if info is not None:
        if info["scale"] is None and "branch_scales" in info["arguments"]:
            raise ModelError(f"a multi-scale {info['builder']} model (scales "
                             f"{info['arguments']['branch_scales']}): give a scale")
        if info["scale"] is None:
            raise ModelError(f"a {info['builder']} model, not a super-resolution model")
        return info["scale"]

    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[-1] != 3:
        shapes = [tuple(x.shape) for x in inputs]
        raise ModelError(f"model takes inputs {shapes}, not one batch of RGB images")
    if any(d is not None for d in inputs[0].shape[1:3]):
        raise ModelError(
            f"model accepts only {inputs[0].shape[1]}x{inputs[0].shape[2]} inputs; "
            "super-resolution needs a fully convolutional model (input shape None x None)"
        )
    out = model(tf.zeros((1, 8, 8, 3)), training=False)
    shape = tuple(out.shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] % 8 or shape[1] != shape[2]:
        raise ModelError(
            f"model maps an 8x8 RGB input to shape {shape}, not to an upscaled RGB image"
        )
    return shape[1] // 8


def load_sr_model(path, scale=None):
    """Loads a `.keras` SR model in safe mode and checks its scale; returns (model, scale).

    Raises `ModelError` naming the file if it is not a usable sisr/Keras model or was
    made for another scale than `scale`.
    """
    from sisr.model.registry import is_multi_scale, single_scale
    from sisr.saving import load_model

    path = os.fspath(path)
    model = load_model(path)
    if is_multi_scale(model) and scale is not None:  # the branch of `scale`
        try:
            model = single_scale(model, scale)
        except ValueError as err:
            raise ModelError(f"{path}: {err}") from None
    try:
        found = model_scale(model)
    except ModelError as err:
        raise ModelError(f"{path}: {err}") from err
    if scale is not None and found != scale:
        raise ModelError(f"{path} is a x{found} model, but scale x{scale} was asked")
    return model, found


# --------------------------------------------------------------------- upscaling


def _splits(length, tile):
    """Near-equal [start, stop) pieces of at most `tile` covering range(length)."""
    if not tile or length <= tile:
        return [(0, length)]
    count = math.ceil(length / tile)
    edges = [round(i * length / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


class Upscaler:
    """A model ready to super-resolve RGB images tile by tile (reuse it for many images).
    Its forward pass is `sisr.inference.compiled_forward`, the one `sisr.resolve` runs:
    traced once per model for every image size.

    Args:
        model: a Keras SR model mapping [0, 255] RGB to [0, 255] RGB, `scale` times larger.
        scale: its scale, if known (found by a tiny test run otherwise).
        tile: LR size of the tiles' own area; None or 0 processes whole images.
        overlap: LR pixels of context around each tile; None = the model's receptive-field
            radius (exact up to float rounding).
        self_ensemble: average the outputs of the 8 flips/rotations (EDSR+), in float.
        precision: "float32" or "bfloat16" (a mixed copy of the model, see `sisr.precision`).
        approximate: tile a model that is not tileable anyway, with `overlap` pixels of
            context: its global statistics (channel attention's means) are each window's,
            not the image's, so the result is not the untiled one. For images too large
            to run whole; ignored for tileable models.

    Raises:
        NotTileableError: `tile` is set, and the model is not tileable (`locality`), unless
            `approximate` (which then needs `overlap`).
    """

    def __init__(self, model, scale=None, tile=None, overlap=None, self_ensemble=False,
                 precision="float32", approximate=False):
        from sisr.inference import compiled_forward
        from sisr.precision import inference_copy

        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int)
                                 or tile < 0):
            raise UsageError(f"tile must be None or an int >= 0, got {tile!r}")
        if overlap is not None and (isinstance(overlap, bool) or not isinstance(overlap, int)
                                    or overlap < 0):
            raise UsageError(f"overlap must be None or an int >= 0, got {overlap!r}")
        self.model = model
        self.scale = scale if scale is not None else model_scale(model)
        self.tile = tile or None
        radius, reason = locality(model)
        # Why the tiles are not the untiled result (None: they are, up to rounding).
        self.approximation = None
        if self.tile and radius is None:
            if not approximate:
                raise NotTileableError(model.name, reason)
            if overlap is None:
                raise UsageError(f"approximate tiles of model {model.name!r} need an overlap "
                                 f"(it has no receptive-field radius: {reason})")
            self.approximation = reason
        # None for a model that is not tileable: whole images need no margin.
        self.overlap = radius if overlap is None else overlap
        # Windows start on (and, inside the image, end on) this grid: a pixel unshuffle
        # groups pixels in blocks counted from the image's corner.
        self.alignment = alignment(model)
        self.self_ensemble = bool(self_ensemble)
        self.precision = precision
        self._forward = compiled_forward(inference_copy(model, precision))

    def _padded(self, height, width):
        a = self.alignment
        return -(-height // a) * a, -(-width // a) * a

    def tiles(self, height, width):
        """The (y0, y1, x0, x1) LR areas that the tiles own (of the image padded to the
        pixel-unshuffle grid, see `__call__`)."""
        height, width = self._padded(height, width)
        return [(y0, y1, x0, x1) for y0, y1 in _splits(height, self.tile)
                for x0, x1 in _splits(width, self.tile)]

    def _sr_float(self, lr):
        """Unrounded SR of one HxWx3 window (or NxHxWx3 windows), float32."""
        if lr.ndim == 3:
            return self._sr_float(lr[None])[0]
        if not self.self_ensemble:
            return self._forward(lr.astype(np.float32)).numpy()
        total = None
        for flip in (False, True):
            for k in range(4):
                x = lr[:, :, ::-1] if flip else lr
                x = np.ascontiguousarray(np.rot90(x, k, axes=(1, 2))).astype(np.float32)
                y = np.rot90(self._forward(x).numpy(), -k, axes=(1, 2))
                y = y[:, :, ::-1] if flip else y
                total = y if total is None else total + y
        return total / 8.0

    def __call__(self, rgb, gray=False, on_tile=None):
        """Super-resolves an HxWx3 uint8 or uint16 image (the same type out); with `gray`,
        returns the luma (HxW) only. 16-bit samples go through the model as value / 257
        (0..255, unrounded) and come back x 257, so that a smooth model keeps the bits
        beyond 8.

        `on_tile()`, if given, is called after each tile (for progress bars).
        """
        rgb = np.asarray(rgb)
        if rgb.dtype not in (np.uint8, np.uint16) or rgb.ndim != 3 or rgb.shape[-1] != 3 \
                or rgb.size == 0:
            raise UsageError(f"expected a non-empty HxWx3 uint8 or uint16 image, got "
                             f"{rgb.dtype} {rgb.shape}")
        dtype = rgb.dtype
        if dtype == np.uint16:
            rgb = rgb.astype(np.float32) / np.float32(DEPTH_16)
        height, width = rgb.shape[:2]
        h, w = self._padded(height, width)
        if (h, w) != (height, width):
            # As a pixel-unshuffling model pads itself (sisr.layers.PixelUnshuffle): the
            # same pixels, but every window, flipped ones too, then groups on one grid.
            rgb = rgb[_reflected(height, h)][:, _reflected(width, w)]
        s, m, a = self.scale, self.overlap or 0, self.alignment
        out = np.empty((h * s, w * s) if gray else (h * s, w * s, 3), dtype)
        for y0, y1, x0, x1 in self.tiles(h, w):
            wy0, wx0 = max(0, y0 - m) // a * a, max(0, x0 - m) // a * a
            window = rgb[wy0:min(h, -(-(y1 + m) // a) * a), wx0:min(w, -(-(x1 + m) // a) * a)]
            sr = self._sr_float(window)
            core = sr[(y0 - wy0) * s:(y1 - wy0) * s, (x0 - wx0) * s:(x1 - wx0) * s]
            # Same quantisation as sisr.resolve: clip, round half to even, uint8; gray
            # output is the luma of the clipped RGB, rounded once.
            core = np.clip(core, 0.0, 255.0)
            if gray:
                core = core @ LUMA
            if dtype == np.uint16:
                core = np.clip(core * DEPTH_16, 0.0, 65535.0)
            out[y0 * s:y1 * s, x0 * s:x1 * s] = np.round(core)
            if on_tile is not None:
                on_tile()
        if (h, w) != (height, width):
            out = np.ascontiguousarray(out[:height * s, :width * s])
        return out

    def batch(self, frames):
        """Super-resolves NxHxWx3 uint8 frames of one size, each tile position of all
        frames in one forward call (video); returns Nx(H*s)x(W*s)x3 uint8, each frame as
        `__call__` makes it up to float rounding."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 \
                or frames.size == 0:
            raise UsageError(f"expected non-empty NxHxWx3 uint8 frames, got "
                             f"{frames.dtype} {frames.shape}")
        n, h, w = frames.shape[:3]
        s, m = self.scale, self.overlap or 0
        out = np.empty((n, h * s, w * s, 3), np.uint8)
        for y0, y1, x0, x1 in self.tiles(h, w):
            wy0, wx0 = max(0, y0 - m), max(0, x0 - m)
            sr = self._sr_float(frames[:, wy0:min(h, y1 + m), wx0:min(w, x1 + m)])
            core = sr[:, (y0 - wy0) * s:(y1 - wy0) * s, (x0 - wx0) * s:(x1 - wx0) * s]
            out[:, y0 * s:y1 * s, x0 * s:x1 * s] = np.round(np.clip(core, 0.0, 255.0))
        return out


def _reflected(n, total):
    """Indices of `n` pixels padded to `total` by reflection (edge repeat for n = 1)."""
    return np.concatenate([np.arange(n), np.clip(n - 2 - np.arange(total - n), 0, n - 1)])


def bicubic_upscale(image, scale):
    """MATLAB-compatible bicubic upscaling of a uint8 or uint16 HxW or HxWxC image."""
    from sisr.imresize import imresize

    image = np.asarray(image)
    if image.dtype == np.uint16:
        upscaled = imresize(image.astype(np.float64), scale=scale)
        return np.round(np.clip(upscaled, 0, 65535)).astype(np.uint16)
    return imresize(image, scale=scale)


# How `upscale_image` upscales an alpha channel: MATLAB-style bicubic, or with the model
# (the alpha as a grey image, its output's luma; Real-ESRGAN's --alpha_upsampler realesrgan).


def outscale_size(height, width, outscale):
    """(height, width) of an image `outscale` times larger, truncated as Real-ESRGAN's
    --outscale does."""
    if isinstance(outscale, bool) or not isinstance(outscale, (int, float)) \
            or not outscale > 0:
        raise UsageError(f"outscale must be a positive number, got {outscale!r}")
    return max(1, int(height * outscale)), max(1, int(width * outscale))


def resize_output(sr, height, width):
    """A uint8 or uint16 SR image (HxW or HxWxC, C 1-4) resized to `height` x `width` with
    Lanczos (Pillow), as Real-ESRGAN resizes its output to any --outscale."""
    from PIL import Image

    array = np.asarray(sr)
    if array.shape[:2] == (height, width):
        return array
    if array.dtype == np.uint16:  # Pillow resizes 16-bit samples one float plane at a time
        planes = array.reshape(array.shape[:2] + (-1,)).astype(np.float32)
        resized = np.stack([np.asarray(Image.fromarray(planes[..., c]).resize(
            (width, height), Image.Resampling.LANCZOS)) for c in range(planes.shape[-1])],
            axis=-1)
        resized = np.round(np.clip(resized, 0, 65535)).astype(np.uint16)
        return resized.reshape((height, width) + array.shape[2:])
    squeeze = array.ndim == 3 and array.shape[-1] == 1
    planes = array[..., 0] if squeeze else array
    resized = np.asarray(Image.fromarray(planes).resize(  # L, LA, RGB or RGBA
        (width, height), Image.Resampling.LANCZOS))
    return resized[..., None] if squeeze else resized


def upscale_image(model, image, tile=None, overlap=None, self_ensemble=False, on_tile=None,
                  precision="float32", alpha="bicubic", approximate=False):
    """Super-resolves a uint8 or uint16 image of any size and channel layout (NumPy in,
    NumPy out, of the same type; see `Upscaler` for 16 bits).

    Args:
        model: a Keras SR model or an `Upscaler` (reuse one for many images).
        image: uint8 HxW or HxWx1 (grayscale), HxWx2 (grayscale + alpha), HxWx3 (RGB) or
            HxWx4 (RGBA). Grayscale goes through the model as RGB and comes back as luma;
            alpha is upscaled with bicubic.
        tile, overlap, self_ensemble, precision, approximate: see `Upscaler` (ignored if
            `model` is an Upscaler).
        on_tile: optional callable, called after each tile (progress bars); with
            `alpha="model"`, the alpha channel's tiles are counted too.
        alpha: how an alpha channel is upscaled, "bicubic" or "model" (`ALPHA_MODES`).

    Returns:
        array of the same type and layout, `scale` times larger.
    """
    if alpha not in ALPHA_MODES:
        raise UsageError(f"alpha must be one of {ALPHA_MODES}, got {alpha!r}")
    upscaler = model if isinstance(model, Upscaler) else Upscaler(
        model, tile=tile, overlap=overlap, self_ensemble=self_ensemble, precision=precision,
        approximate=approximate)
    array = np.asarray(image)
    if array.dtype not in (np.uint8, np.uint16):
        raise UsageError(f"image must be uint8 or uint16, got {array.dtype}")
    if array.ndim == 2:
        array, squeeze = array[..., None], True
    else:
        squeeze = False
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or array.size == 0:
        raise UsageError(f"image must be HxW, HxWx1, HxWx2, HxWx3 or HxWx4, got {array.shape}")
    channels = array.shape[-1]
    if channels <= 2:  # grayscale (+ alpha)
        sr = upscaler(np.repeat(array[..., :1], 3, axis=-1), gray=True, on_tile=on_tile)
        sr = sr[..., None]
    else:
        sr = upscaler(np.ascontiguousarray(array[..., :3]), on_tile=on_tile)
    if channels in (2, 4):
        if alpha == "model":
            grey = np.repeat(array[..., -1:], 3, axis=-1)
            upscaled = upscaler(grey, gray=True, on_tile=on_tile)[..., None]
        else:
            upscaled = bicubic_upscale(array[..., -1], upscaler.scale)[..., None]
        sr = np.concatenate([sr, upscaled], axis=-1)
    return sr[..., 0] if squeeze else sr


