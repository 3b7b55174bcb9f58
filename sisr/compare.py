"""Comparison images: full-resolution crops of LR, bicubic and SR (and HR) side by side.

Whole images shrunk to fit side by side show no detail; crops at full resolution do. A crop
is given, or chosen where the model matters most (`choose_crop`): with an HR image, the
window in which the model reduces the squared error against HR most compared with bicubic
(as notebooks/evaluation.ipynb picks its zoomed crops); without one, the window in which the
model's output differs most from bicubic.

    crop = choose_crop(lr, sr, scale, hr=hr)           # or parse_crop("120,80,64,64")
    image, boxes = comparison_image(lr, sr, scale, crop, hr=hr)
    image.save("compare.png")

Crops are in LR (input) pixels; the SR, bicubic and HR panels show the `scale` times larger
area, pixel for pixel, and the LR panel shows the input crop enlarged by pixel repetition.
"""

import dataclasses

import numpy as np

from sisr.errors import UsageError

DEFAULT_CROP = 64  # LR pixels a side: 256 x 256 output pixels per panel at x4
GAP = 6  # pixels between panels
LABEL_SIZE = 14  # the default font's size, in pixels
OVERVIEW_COLOUR = (255, 0, 0)


@dataclasses.dataclass(frozen=True)
class Crop:
    """A window of the LR image: top-left corner (x, y) and size, in LR pixels."""

    x: int
    y: int
    width: int
    height: int

    def lr_slice(self):
        return np.s_[self.y:self.y + self.height, self.x:self.x + self.width]

    def sr_slice(self, scale):
        """The same area in an image `scale` times larger."""
        return np.s_[self.y * scale:(self.y + self.height) * scale,
                     self.x * scale:(self.x + self.width) * scale]

    def check(self, height, width, what="the image"):
        """Raises UsageError unless the crop is non-empty and inside `height` x `width`."""
        if self.width < 1 or self.height < 1 or self.x < 0 or self.y < 0:
            raise UsageError(f"crop {self}: needs x, y >= 0 and width, height >= 1")
        if self.x + self.width > width or self.y + self.height > height:
            raise UsageError(f"crop {self.x},{self.y},{self.width},{self.height} reaches "
                             f"outside {what} ({width}x{height})")


def parse_crop(text):
    """`Crop` from "X,Y,W,H" (LR pixels); UsageError for anything else."""
    parts = text.split(",")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != 4 or len(parts) != 4:
        raise UsageError(f"crop {text!r} must be X,Y,WIDTH,HEIGHT in input pixels, "
                         "e.g. 120,80,64,64")
    return Crop(*values)


def best_window(score, height, width=None, align=1):
    """(top, left) of the `height` x `width` window of the 2-D `score` with the largest sum,
    among windows whose corner is a multiple of `align` (an integral image: one pass)."""
    width = height if width is None else width
    score = np.asarray(score, np.float64)
    if not (1 <= height <= score.shape[0] and 1 <= width <= score.shape[1]):
        raise UsageError(f"window {width}x{height} does not fit a "
                         f"{score.shape[1]}x{score.shape[0]} image")
    integral = np.pad(score.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (integral[height:, width:] - integral[:-height, width:]
            - integral[height:, :-width] + integral[:-height, :-width])
    aligned = sums[::align, ::align]
    top, left = np.unravel_index(np.argmax(aligned), aligned.shape)
    return int(top) * align, int(left) * align


def _rgb(image):
    """uint8 HxWx3 of an HxW, HxWx1, HxWx2, HxWx3 or HxWx4 image (alpha dropped)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (2, 4):
        image = image[..., :-1]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return image


def gain_map(sr, bicubic, hr=None):
    """Per-pixel score of the model's output against bicubic's (float64 HxW).

    With `hr`: how much the model reduces the squared error against HR (the per-pixel
    error being the mean absolute error over the channels); without: the squared
    difference between the model's output and bicubic.
    """
    sr, bicubic = (_rgb(a).astype(np.float64) for a in (sr, bicubic))
    if hr is None:
        return ((sr - bicubic) ** 2).mean(-1)
    hr = _rgb(hr).astype(np.float64)
    err_sr = np.abs(sr - hr).mean(-1)
    err_bic = np.abs(bicubic - hr).mean(-1)
    return err_bic ** 2 - err_sr ** 2


def _bicubic(lr, scale):
    from sisr.upscaling import bicubic_upscale

    return bicubic_upscale(_rgb(lr), scale)


def _check_shapes(lr, sr, scale, hr):
    lr, sr = _rgb(lr), _rgb(sr)
    if sr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
        raise UsageError(f"SR image {sr.shape[1]}x{sr.shape[0]} is not x{scale} of the LR "
                         f"image {lr.shape[1]}x{lr.shape[0]}")
    if hr is not None and _rgb(hr).shape[:2] != sr.shape[:2]:
        hr = _rgb(hr)
        raise UsageError(f"HR image {hr.shape[1]}x{hr.shape[0]} differs in size from the SR "
                         f"image {sr.shape[1]}x{sr.shape[0]}")


def choose_crop(lr, sr, scale, hr=None, size=DEFAULT_CROP):
    """The `Crop` (at most `size` LR pixels a side) where the model gains most over bicubic:
    against `hr` if given, else where it differs most from bicubic (`gain_map`)."""
    _check_shapes(lr, sr, scale, hr)
    height, width = np.asarray(lr).shape[:2]
    crop_h, crop_w = min(size, height), min(size, width)
    top, left = best_window(gain_map(sr, _bicubic(lr, scale), hr), crop_h * scale,
                            crop_w * scale, align=scale)
    return Crop(left // scale, top // scale, crop_w, crop_h)


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=LABEL_SIZE)
    except TypeError:  # Pillow < 10.1: the bitmap font, one size
        return ImageFont.load_default()


def comparison_image(lr, sr, scale, crop, hr=None, name=None):
    """The comparison of `crop`: the input with the crop outlined, then the LR crop (pixels
    repeated), bicubic, SR (labelled `name`, default "SR xS") and HR crops, each under its
    label.

    Returns:
        (PIL RGB image, {panel: (left, top, right, bottom) of its pixels}) with panels
        "input", "lr", "bicubic", "sr" and, with `hr`, "hr"; each label is drawn in the
        rows above its panel's top.

    Raises:
        UsageError: the crop reaches outside the LR image, or the images' sizes disagree.
    """
    from PIL import Image, ImageDraw

    from sisr import metrics

    _check_shapes(lr, sr, scale, hr)
    lr, sr = _rgb(lr), _rgb(sr)
    crop.check(*lr.shape[:2], what="the input image")
    hr = None if hr is None else _rgb(hr)
    area = crop.sr_slice(scale)
    bicubic = _bicubic(lr, scale)[area]
    lr_crop = np.repeat(np.repeat(lr[crop.lr_slice()], scale, 0), scale, 1)
    panel_h = crop.height * scale

    overview = Image.fromarray(lr)
    shrink = panel_h / lr.shape[0]
    overview = overview.resize((max(1, round(lr.shape[1] * shrink)), panel_h),
                               Image.Resampling.BICUBIC if shrink < 1 else
                               Image.Resampling.NEAREST)
    box = [round(v * shrink) for v in (crop.x, crop.y, crop.x + crop.width,
                                       crop.y + crop.height)]
    ImageDraw.Draw(overview).rectangle([box[0], box[1], max(box[0], box[2] - 1),
                                        max(box[1], box[3] - 1)], outline=OVERVIEW_COLOUR)

    def scored(label, image):
        if hr is None:
            return label
        return f"{label}  {metrics.psnr(image, hr[area]):.2f} dB"

    panels = [("input", f"input (crop {crop.x},{crop.y},{crop.width},{crop.height})",
               np.asarray(overview)),
              ("lr", f"LR x{scale} (pixels repeated)", lr_crop),
              ("bicubic", scored(f"bicubic x{scale}", bicubic), bicubic),
              ("sr", scored(name or f"SR x{scale}", sr[area]), sr[area])]
    if hr is not None:
        panels.append(("hr", "HR", hr[area]))

    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_boxes = [probe.textbbox((0, 0), label, font=font) for _, label, _ in panels]
    label_h = max(b[3] for b in text_boxes) + 4
    widths = [max(image.shape[1], b[2] + 2) for (_, _, image), b in zip(panels, text_boxes)]
    canvas = Image.new("RGB", (sum(widths) + GAP * (len(panels) - 1), label_h + panel_h),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    where, left = {}, 0
    for (key, label, image), column in zip(panels, widths):
        draw.text((left, 1), label, fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(np.ascontiguousarray(image)), (left, label_h))
        where[key] = (left, label_h, left + image.shape[1], label_h + image.shape[0])
        left += column + GAP
    return canvas, where
