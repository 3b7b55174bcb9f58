"""Super-resolve images of any size in tiles: `upscale_image` and `python -m sisr.upscale`.

Tiling keeps memory bounded without seams: every tile is run with a margin of LR context
around it (by default the model's receptive-field radius, read from its layers) and only
the tile's own area of the SR output is kept, so a tiled result equals the untiled one up
to float rounding (at most 1 grey level, on rare pixels).

    python -m sisr.upscale -i photos/ -o out/ --model wdsr-b-x4.keras --tile 256 --compare

Grayscale images go through the model as RGB and come back grayscale (ITU-R 601 luma);
an alpha channel is upscaled with MATLAB-style bicubic; EXIF orientation is applied.
Fully convolutional models accept any image size down to 1x1, so no image is too small.
"""

import logging
import math
import os
import sys

import numpy as np

from sisr import cli, imageio
from sisr.errors import UsageError
from sisr.fileio import atomic_output, check_writable_dir
from sisr.graph import keras_histories
from sisr.precision import CLI_PRECISIONS, choose_precision
from sisr.saving import ModelError

log = logging.getLogger(__name__)

DEFAULT_TILE = 256  # LR pixels; EDSR baseline x4 peaks well under 3 GB with it
FALLBACK_OVERLAP = 32  # used when a model's receptive field cannot be read from its config
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as Pillow's "L" mode
_CONV_LAYERS = {"Conv2D", "DepthwiseConv2D", "SeparableConv2D"}


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


def receptive_radius(model):
    """Radius in LR pixels of the model's receptive field (an upper bound), or None.

    Walks the functional graph of the model's config: each stride-1 convolution adds
    dilation * (kernel - 1) / 2 pixels at the resolution it runs at, pixel shuffles and
    upsampling layers raise that resolution. Returns None for graphs it cannot read
    (subclassed models, nested models, strided or pooling layers).
    """
    try:
        config = model.get_config()
        layers = config["layers"]
    except (NotImplementedError, KeyError, TypeError, AttributeError):
        return None
    state = {}  # layer name -> (radius in LR pixels, upscaling so far)
    previous = None
    for layer in layers:
        cls, cfg = layer.get("class_name"), layer.get("config") or {}
        name = layer.get("name") or cfg.get("name")
        if "inbound_nodes" in layer:
            parents = [h[0] for h in keras_histories(layer["inbound_nodes"])]
        else:  # Sequential: a chain
            parents = [previous] if previous else []
        known = [state[p] for p in parents if p in state]
        if len(known) != len(parents):
            return None
        radius = max((r for r, _ in known), default=0.0)
        scale = max((s for _, s in known), default=1.0)
        if cls in _CONV_LAYERS:
            if any(s != 1 for s in _pair(cfg.get("strides", 1))):
                return None
            kernel, dilation = _pair(cfg["kernel_size"]), _pair(cfg.get("dilation_rate", 1))
            radius += max(d * (k - 1) / 2 for k, d in zip(kernel, dilation)) / scale
        elif cls == "PixelShuffle":
            scale *= cfg["scale"]
        elif cls == "UpSampling2D":
            radius += 1.0 / scale  # bilinear reads one neighbour; nearest is covered too
            scale *= max(_pair(cfg.get("size", 2)))
        elif any(key in cfg for key in ("kernel_size", "pool_size", "strides", "layers")):
            return None  # pooling, transposed conv, nested model...
        state[name] = (radius, scale)
        previous = name
    outputs = config.get("output_layers", [[previous]])
    if outputs and isinstance(outputs[0], str):  # one output: [name, node, index]
        outputs = [outputs]
    outputs = [item[0] for item in outputs]
    if not outputs or any(name not in state for name in outputs):
        return None
    return math.ceil(max(state[name][0] for name in outputs) - 1e-9)


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def load_sr_model(path, scale=None):
    """Loads a `.keras` SR model in safe mode and checks its scale; returns (model, scale).

    Raises `ModelError` naming the file if it is not a usable sisr/Keras model or was
    made for another scale than `scale`.
    """
    from sisr.saving import load_model

    path = os.fspath(path)
    model = load_model(path)
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
    """A model ready to super-resolve RGB images tile by tile (reuse it for many images:
    its compiled forward pass is traced once).

    Args:
        model: a Keras SR model mapping [0, 255] RGB to [0, 255] RGB, `scale` times larger.
        scale: its scale, if known (found by a tiny test run otherwise).
        tile: LR size of the tiles' own area; None or 0 processes whole images.
        overlap: LR pixels of context around each tile; None = the model's receptive-field
            radius (exact up to float rounding), or 32 if that cannot be read.
        self_ensemble: average the outputs of the 8 flips/rotations (EDSR+), in float.
        precision: "float32" or "bfloat16" (a mixed copy of the model, see `sisr.precision`).
    """

    def __init__(self, model, scale=None, tile=None, overlap=None, self_ensemble=False,
                 precision="float32"):
        import tensorflow as tf

        from sisr.precision import inference_copy

        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int)
                                 or tile < 0):
            raise ValueError(f"tile must be None or an int >= 0, got {tile!r}")
        if overlap is not None and (isinstance(overlap, bool) or not isinstance(overlap, int)
                                    or overlap < 0):
            raise ValueError(f"overlap must be None or an int >= 0, got {overlap!r}")
        self.model = model
        self.scale = scale if scale is not None else model_scale(model)
        self.tile = tile or None
        if overlap is None:
            overlap = receptive_radius(model)
            if overlap is None:
                overlap = FALLBACK_OVERLAP
                log.warning("cannot read the receptive field of model %r; using a tile "
                            "overlap of %d LR pixels", model.name, overlap)
        self.overlap = overlap
        self.self_ensemble = bool(self_ensemble)
        self.precision = precision
        runner = inference_copy(model, precision)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def forward(lr):
            return tf.cast(runner(lr, training=False), tf.float32)

        self._forward = forward

    def tiles(self, height, width):
        """The (y0, y1, x0, x1) LR areas that the tiles own."""
        return [(y0, y1, x0, x1) for y0, y1 in _splits(height, self.tile)
                for x0, x1 in _splits(width, self.tile)]

    def _sr_float(self, lr):
        """Unrounded SR of one HxWx3 window, float32."""
        if not self.self_ensemble:
            return self._forward(lr[None].astype(np.float32))[0].numpy()
        total = None
        for flip in (False, True):
            for k in range(4):
                x = lr[:, ::-1] if flip else lr
                x = np.ascontiguousarray(np.rot90(x, k))[None].astype(np.float32)
                y = np.rot90(self._forward(x)[0].numpy(), -k)
                y = y[:, ::-1] if flip else y
                total = y if total is None else total + y
        return total / 8.0

    def __call__(self, rgb, gray=False, on_tile=None):
        """Super-resolves an HxWx3 uint8 image; with `gray`, returns the luma (HxW) only.

        `on_tile()`, if given, is called after each tile (for progress bars).
        """
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.size == 0:
            raise ValueError(f"expected a non-empty HxWx3 uint8 image, got "
                             f"{rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        s, m = self.scale, self.overlap
        out = np.empty((h * s, w * s) if gray else (h * s, w * s, 3), np.uint8)
        for y0, y1, x0, x1 in self.tiles(h, w):
            wy0, wx0 = max(0, y0 - m), max(0, x0 - m)
            window = rgb[wy0:min(h, y1 + m), wx0:min(w, x1 + m)]
            sr = self._sr_float(window)
            core = sr[(y0 - wy0) * s:(y1 - wy0) * s, (x0 - wx0) * s:(x1 - wx0) * s]
            # Same quantisation as sisr.resolve: clip, round half to even, uint8; gray
            # output is the luma of the clipped RGB, rounded once.
            core = np.clip(core, 0.0, 255.0)
            if gray:
                core = core @ LUMA
            out[y0 * s:y1 * s, x0 * s:x1 * s] = np.round(core)
            if on_tile is not None:
                on_tile()
        return out


def bicubic_upscale(image, scale):
    """MATLAB-compatible bicubic upscaling of a uint8 HxW or HxWxC image."""
    from sisr.imresize import imresize

    return imresize(np.asarray(image), scale=scale)


def upscale_image(model, image, tile=None, overlap=None, self_ensemble=False, on_tile=None,
                  precision="float32"):
    """Super-resolves a uint8 image of any size and channel layout (NumPy in, NumPy out).

    Args:
        model: a Keras SR model or an `Upscaler` (reuse one for many images).
        image: uint8 HxW or HxWx1 (grayscale), HxWx2 (grayscale + alpha), HxWx3 (RGB) or
            HxWx4 (RGBA). Grayscale goes through the model as RGB and comes back as luma;
            alpha is upscaled with bicubic.
        tile, overlap, self_ensemble, precision: see `Upscaler` (ignored if `model` is an
            Upscaler).
        on_tile: optional callable, called after each tile (progress bars).

    Returns:
        uint8 array of the same layout, `scale` times larger.
    """
    upscaler = model if isinstance(model, Upscaler) else Upscaler(
        model, tile=tile, overlap=overlap, self_ensemble=self_ensemble, precision=precision)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array, squeeze = array[..., None], True
    else:
        squeeze = False
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or array.size == 0:
        raise ValueError(f"image must be HxW, HxWx1, HxWx2, HxWx3 or HxWx4, got {array.shape}")
    channels = array.shape[-1]
    if channels <= 2:  # grayscale (+ alpha)
        sr = upscaler(np.repeat(array[..., :1], 3, axis=-1), gray=True, on_tile=on_tile)
        sr = sr[..., None]
    else:
        sr = upscaler(np.ascontiguousarray(array[..., :3]), on_tile=on_tile)
    if channels in (2, 4):
        alpha = bicubic_upscale(array[..., -1], upscaler.scale)[..., None]
        sr = np.concatenate([sr, alpha], axis=-1)
    return sr[..., 0] if squeeze else sr


# --------------------------------------------------------------------------- CLI


def save_comparison(path, lr, sr, scale, hr=None, overwrite=False):
    """Writes a PNG figure LR | bicubic | SR [| HR] (alpha dropped), atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from sisr import metrics

    def visible(a):
        a = np.asarray(a)
        if a.ndim == 3 and a.shape[-1] in (2, 4):
            a = a[..., :-1]
        return a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a

    lr, sr = visible(lr), visible(sr)
    panels = [("LR", lr), (f"bicubic x{scale}", bicubic_upscale(lr, scale)),
              (f"SR x{scale}", sr)]
    if hr is not None:
        hr = visible(hr)
        if hr.shape == sr.shape and min(hr.shape[:2]) > 2 * scale:
            y_only = hr.ndim == 3
            for i in (1, 2):
                title, image = panels[i]
                value = metrics.psnr(image, hr, shave=scale, y_only=y_only)
                panels[i] = (f"{title}  {value:.2f} dB" + (" (Y)" if y_only else ""), image)
        panels.append(("HR", hr))
    height, width = sr.shape[:2]
    panel_w = 5.0
    fig = Figure(figsize=(panel_w * len(panels), panel_w * height / width + 0.6))
    FigureCanvasAgg(fig)
    for i, (title, image) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=max(100, min(200, width / panel_w)))


def expand_inputs(inputs):
    """Image files and the images of folders (not recursive, sorted), in order given.

    Raises `ImageError` for a path that does not exist or a folder without images.
    """
    paths = []
    for item in map(os.fspath, inputs):
        if os.path.isdir(item):
            found = imageio.list_images(item)
            if not found:
                raise imageio.ImageError(f"{item}: folder contains no images "
                                         f"({', '.join(imageio.IMAGE_EXTENSIONS)})")
            paths.extend(found)
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise imageio.ImageError(f"{item}: no such file or folder")
    return paths


def _find_hr(hr, source, many):
    """The HR file for input `source`: `hr` itself (one input) or a same-stem file in it."""
    if hr is None:
        return None
    if os.path.isfile(hr):
        return hr if not many else None
    stem = os.path.splitext(os.path.basename(source))[0]
    for name in sorted(os.listdir(hr)):
        if os.path.splitext(name)[0] == stem:
            return os.path.join(hr, name)
    return None


def make_parser():
    p = cli.parser(
        "sisr.upscale",
        description="Super-resolve image files or folders with a sisr model, in tiles.")
    p.add_argument("-i", "--input", nargs="+", required=True, metavar="PATH",
                   help="image files and/or folders (PNG, JPEG, WebP)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="output folder (created if needed); files are named STEM_xS.EXT")
    p.add_argument("--model", required=True, help=".keras model file")
    p.add_argument("--scale", type=int, help="expected scale; an error if the model's differs")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help=f"tile size in LR pixels, 0 = whole image (default {DEFAULT_TILE})")
    p.add_argument("--overlap", type=int,
                   help="LR context pixels around each tile (default: the model's "
                        "receptive-field radius, which makes tiles seamless)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the 8 flips/rotations (8x slower)")
    p.add_argument("--precision", choices=CLI_PRECISIONS, default="auto",
                   help="bfloat16: a mixed copy that keeps the precision-critical layers "
                        "float32, ~1.7x faster on CPUs with bfloat16 instructions; auto "
                        "(default): bfloat16 for pretrained models whose copy was measured "
                        "to stay within 2 levels of float32, on such CPUs; else float32")
    p.add_argument("--format", choices=["keep", *imageio.FORMATS], default="keep",
                   help="output format (default: that of the input; PNG for other formats)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    p.add_argument("--compare", action="store_true",
                   help="also write STEM_xS_compare.png: LR | bicubic | SR [| HR]")
    p.add_argument("--hr", metavar="PATH",
                   help="HR image (one input) or folder of same-stem HR images for --compare")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def _check_args(p, args):
    if args.tile < 0:
        p.error(f"--tile must be >= 0, got {args.tile}")
    if args.overlap is not None and args.overlap < 0:
        p.error(f"--overlap must be >= 0, got {args.overlap}")
    if not 1 <= args.quality <= 100:
        p.error(f"--quality must be in 1..100, got {args.quality}")
    if args.scale is not None and args.scale < 1:
        p.error(f"--scale must be a positive integer, got {args.scale}")
    if args.hr is not None and not os.path.exists(args.hr):
        p.error(f"--hr {args.hr}: no such file or folder")


def _upscale_file(upscaler, source, target, fmt, args, hr_path, progress):
    if not args.force and os.path.exists(target):  # fail before the expensive part
        raise FileExistsError(f"{target} exists; not overwriting it (use --force)")
    loaded = imageio.read_image(source)
    if loaded.note:
        log.warning("%s: %s", source, loaded.note)
    progress.reset(total=len(upscaler.tiles(*loaded.array.shape[:2])))
    progress.set_description(os.path.basename(source))
    sr = upscale_image(upscaler, loaded.array, on_tile=lambda: progress.update(1))
    imageio.write_image(target, sr, fmt, quality=args.quality,
                        icc_profile=loaded.icc_profile, overwrite=args.force)
    if args.compare:
        hr = imageio.read_image(hr_path).array if hr_path else None
        stem = os.path.splitext(target)[0]
        save_comparison(f"{stem}_compare.png", loaded.array, sr, upscaler.scale, hr=hr,
                        overwrite=args.force)


def _check_outputs_are_not_inputs(sources, targets, args):
    """Raises UsageError if an output of this run would be one of its inputs (or --hr
    images): it would be overwritten and read back as an input."""
    inputs = {os.path.realpath(path): path for path in sources}
    if args.hr is not None:
        hr = [args.hr] if os.path.isfile(args.hr) else imageio.list_images(args.hr)
        inputs.update((os.path.realpath(path), path) for path in hr)
    outputs = list(targets)
    if args.compare:
        outputs += [f"{os.path.splitext(target)[0]}_compare.png" for target in targets]
    clashes = sorted({inputs[os.path.realpath(t)] for t in outputs if os.path.realpath(t) in inputs})
    if clashes:
        raise UsageError(f"output {args.output} would overwrite input(s) of this run: "
                         f"{', '.join(clashes[:5])}{' ...' if len(clashes) > 5 else ''}; "
                         "write the outputs to another folder")


def _target(source, outdir, fmt, scale):
    """Output path STEM_xS.EXT and format; "keep" follows the input's extension."""
    stem, ext = os.path.splitext(os.path.basename(source))
    if fmt == "keep":
        fmt = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(
            ext.lower(), "png")
        if fmt == "png" and ext.lower() != ".png":
            ext = ".png"
    else:
        ext = imageio.FORMATS[fmt][1]
    return os.path.join(outdir, f"{stem}_x{scale}{ext}"), fmt


def main(argv=None):
    """Upscales the inputs; returns 0, 1 if some images failed, 2 on a usage error."""
    return cli.main(make_parser(), _main, argv, check=_check_args)


def _main(args):
    from tqdm import tqdm

    from sisr.pretrained import resolve_model

    with cli.checking():
        sources = expand_inputs(args.input)
        check_writable_dir(args.output)
        model, scale = load_sr_model(resolve_model(args.model), args.scale)
        precision, reason = choose_precision(args.precision, args.model)
        log.info("precision %s (%s)", precision, reason)
        upscaler = Upscaler(model, scale=scale, tile=args.tile, overlap=args.overlap,
                            self_ensemble=args.self_ensemble, precision=precision)
        targets = [_target(source, args.output, args.format, scale) for source in sources]
        _check_outputs_are_not_inputs(sources, [target for target, _ in targets], args)

    failures, written, planned = [], [], set()
    many = len(sources) > 1
    with tqdm(total=0, unit="tile", disable=args.quiet or None, file=sys.stderr) as progress:
        for source, (target, fmt) in zip(sources, targets):
            try:
                if target in planned:
                    raise FileExistsError(f"{target} is also the output of another input")
                planned.add(target)
                _upscale_file(upscaler, source, target, fmt, args,
                              _find_hr(args.hr, source, many), progress)
                written.append(target)
            except (imageio.ImageError, OSError, ValueError) as err:
                log.error("%s: %s", source, err)
                failures.append(source)
    print(f"upscaled {len(written)} of {len(sources)} image(s) x{scale} into {args.output}"
          + (f"; {len(failures)} failed: " + ", ".join(failures) if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
