"""Super-resolve image files and folders in tiles: `python -m sisr.upscale`.

    python -m sisr.upscale -i photos/ -o out/ --model wdsr-b-x4.keras --tile 256 --compare
    python -m sisr.upscale -i photo.png -o out/ --model srresnet-x4 --compare crops.png \\
        --compare-crop 120,80,64,64

The work is `sisr.upscaling` (seamless tiles, channel layouts, self-ensemble); this module
reads and writes the files (videos: `sisr.video`, frame by frame, audio and timestamps
kept). EXIF orientation is applied. By default a model is run in
tiles of `DEFAULT_TILE` LR pixels if it is tileable (every layer local), else on whole
images (logged); an explicit `--tile N` with a model that is not tileable is refused,
unless `--approximate-tiles` (with `--overlap`) accepts tiles that differ from the
untiled result.
"""

import logging
import os
import sys

import numpy as np

from sisr import cli, compare, imageio, video
from sisr.cli_precision import CLI_PRECISIONS, choose_precision
from sisr.errors import UsageError
from sisr.fileio import atomic_output, check_writable_dir

log = logging.getLogger(__name__)

DEFAULT_TILE = 256  # LR pixels; bounds the peak memory (benchmarks/README.md)


def save_comparison(path, lr, sr, scale, hr=None, crop=None, name=None, overwrite=False):
    """Writes a PNG of full-resolution crops, input | LR | bicubic | SR [| HR] (alpha
    dropped), atomically; `crop` (a `sisr.compare.Crop`) or the one `choose_crop` picks.
    Returns the crop."""
    if crop is None:
        crop = compare.choose_crop(lr, sr, scale, hr=hr)
    image, _ = compare.comparison_image(lr, sr, scale, crop, hr=hr,
                                        name=name or f"SR x{scale}")
    with atomic_output(path, overwrite) as tmp:
        image.save(tmp, format="PNG")
    return crop


def expand_inputs(inputs):
    """Image and video files and the images and videos of folders (not recursive, sorted),
    in order given.

    Raises `ImageError` for a path that does not exist or a folder without images.
    """
    paths = []
    for item in map(os.fspath, inputs):
        if os.path.isdir(item):
            found = sorted(imageio.list_images(item) + video.list_videos(item))
            if not found:
                raise imageio.ImageError(f"{item}: folder contains no images "
                                         f"({', '.join(imageio.IMAGE_EXTENSIONS)}) or videos")
            paths.extend(found)
        elif os.path.isfile(item):
            paths.append(item)
        elif os.path.exists(item):
            raise imageio.ImageError(f"{item}: not a regular file or a folder")
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
                   help="image files, video files and/or folders (PNG, JPEG, WebP; MP4, MKV, "
                        "... with the `video` extra)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="output folder (created if needed); files are named STEM_xS.EXT; "
                        "for one video, may name the output video (-o clip_x4.mp4)")
    p.add_argument("--model", required=True,
                   help="a .keras model file or a pretrained name (python -m sisr.pretrained "
                        "list; fetched into the cache on first use)")
    p.add_argument("--scale", type=int, help="expected scale; an error if the model's differs")
    p.add_argument("--outscale", type=float, metavar="S",
                   help="scale of the output files, any number (default: the model's): "
                        "the model's output resized with Lanczos, as Real-ESRGAN's "
                        "--outscale; files are named STEM_xS")
    p.add_argument("--alpha", choices=imageio.ALPHA_MODES, default="bicubic",
                   help="how an alpha channel is upscaled: bicubic (default), or with the "
                        "model (the alpha as a grey image; as Real-ESRGAN)")
    p.add_argument("--denoise", type=float, metavar="STRENGTH",
                   help="denoise strength 0..1 of a pretrained model with a weak-denoising "
                        "partner (realesr-general-x4v3): its weights blended with the "
                        "partner's, 1 = the model, 0 = the partner (Real-ESRGAN's -dn)")
    p.add_argument("--tile", type=int,
                   help=f"tile size in LR pixels, 0 = whole images (default {DEFAULT_TILE} "
                        "if the model is tileable, else whole images); a model with a "
                        "layer that is not local (global pooling, attention) refuses tiles")
    p.add_argument("--overlap", type=int,
                   help="LR context pixels around each tile (default: the model's "
                        "receptive-field radius, which makes tiles seamless)")
    p.add_argument("--approximate-tiles", action="store_true",
                   help="tile a model that is not local (RCAN's channel attention) anyway, "
                        "as EDSR-PyTorch's --chop does, for images too large to run whole: "
                        "each tile's window stands in for the image in the global "
                        "statistics, so the result differs from the untiled one; needs "
                        "--overlap (e.g. 10, --chop's)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the 8 flips/rotations (8x slower)")
    p.add_argument("--precision", choices=CLI_PRECISIONS, default="auto",
                   help="bfloat16: a mixed copy that keeps the precision-critical layers "
                        "float32, faster on CPUs with bfloat16 instructions; auto "
                        "(default): bfloat16 for pretrained models whose copy kept the "
                        "fidelity guard where it was measured (at most 0.02 dB and 2 levels "
                        "from float32 on those images; other images may differ more), on "
                        "such CPUs; else float32")
    p.add_argument("--keep-depth", action="store_true",
                   help="keep 16-bit PNG/TIFF inputs 16-bit: written as 16-bit PNG, the "
                        "model run on the unrounded 16-bit values (needs the depth extra, "
                        "pypng and tifffile); default: 16-bit inputs are read as 8-bit")
    p.add_argument("--format", choices=["keep", *imageio.FORMATS], default="keep",
                   help="output format (default: that of the input; PNG for other formats)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    p.add_argument("--compare", nargs="?", const=True, metavar="FILE",
                   help="also write full-resolution crops side by side, input | LR | "
                        "bicubic | SR [| HR], labelled, to FILE (one input) or "
                        "STEM_xS_compare.png")
    p.add_argument("--compare-crop", default="auto", metavar="X,Y,W,H",
                   help="the --compare crop in input pixels; auto (default): the "
                        f"{compare.DEFAULT_CROP}x{compare.DEFAULT_CROP} window where the "
                        "model gains most over bicubic against --hr, or without --hr "
                        "differs most from bicubic")
    p.add_argument("--hr", metavar="PATH",
                   help="HR image (one input) or folder of same-stem HR images for --compare")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--first-frame", action="store_true",
                   help="upscale the first frame of animated images (refused otherwise)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    # --- video (sisr.video; needs the `video` extra) ---
    p.add_argument("--codec", help="video encoder (default libx264 yuv420p; VP9 for .webm)")
    p.add_argument("--crf", type=int, help="video constant rate factor (libx264: 0..51, "
                                            "lower is better; default: the codec's)")
    return p


def _check_args(p, args):
    if args.tile is not None and args.tile < 0:
        p.error(f"--tile must be >= 0, got {args.tile}")
    if args.overlap is not None and args.overlap < 0:
        p.error(f"--overlap must be >= 0, got {args.overlap}")
    if args.approximate_tiles and (args.overlap is None or args.tile == 0):
        p.error("--approximate-tiles needs --overlap (LR context pixels around each tile) "
                "and tiles (--tile > 0)")
    if not 1 <= args.quality <= 100:
        p.error(f"--quality must be in 1..100, got {args.quality}")
    if args.scale is not None and args.scale < 1:
        p.error(f"--scale must be a positive integer, got {args.scale}")
    if args.outscale is not None and not args.outscale > 0:
        p.error(f"--outscale must be a positive number, got {args.outscale}")
    if args.denoise is not None and not 0.0 <= args.denoise <= 1.0:
        p.error(f"--denoise must be in 0..1, got {args.denoise}")
    if args.hr is not None and not os.path.exists(args.hr):
        p.error(f"--hr {args.hr}: no such file or folder")
    if isinstance(args.compare, str) and len(args.input) > 1:
        p.error("--compare FILE takes one input; with several, leave out FILE "
                "(each comparison goes to STEM_xS_compare.png)")
    if args.compare_crop != "auto":
        try:
            args.compare_crop = compare.parse_crop(args.compare_crop)
        except UsageError as err:
            p.error(f"--compare-crop: {err}")


def _upscale_file(upscaler, source, target, fmt, args, hr_path, progress):
    from sisr.upscaling import outscale_size, resize_output, upscale_image

    for path in [target] + ([_compare_path(args, target)] if args.compare else []):
        if not args.force and os.path.exists(path):  # fail before the expensive part
            raise FileExistsError(f"{path} exists; not overwriting it (use --force)")
    loaded = imageio.read_image(source, first_frame=args.first_frame,
                                keep_depth=args.keep_depth)
    if loaded.depth == 16 and fmt != "png":
        raise imageio.ImageError(f"{source}: --keep-depth writes 16-bit images as PNG, "
                                 f"not {fmt.upper()}; leave out --format or use png")
    if loaded.note:
        log.warning("%s: %s", source, loaded.note)
    crop = None if not args.compare or args.compare_crop == "auto" else args.compare_crop
    if crop is not None:
        crop.check(*loaded.array.shape[:2], what=source)
    tiles = len(upscaler.tiles(*loaded.array.shape[:2]))
    alpha = loaded.array.ndim == 3 and loaded.array.shape[-1] in (2, 4)
    progress.reset(total=tiles * (2 if alpha and args.alpha == "model" else 1))
    progress.set_description(os.path.basename(source))
    sr = upscale_image(upscaler, loaded.array, on_tile=lambda: progress.update(1),
                       alpha=args.alpha)
    out = sr
    if args.outscale is not None:
        out = resize_output(sr, *outscale_size(*loaded.array.shape[:2], args.outscale))
    imageio.write_image(target, out, fmt, quality=args.quality,
                        icc_profile=loaded.icc_profile, overwrite=args.force)
    if args.compare:
        hr = imageio.read_image(hr_path).array if hr_path else None
        if hr is not None and hr.shape[:2] != sr.shape[:2]:
            log.warning("%s: HR image %dx%d is not the size of the output %dx%d; compared "
                        "without it", hr_path, hr.shape[1], hr.shape[0], sr.shape[1],
                        sr.shape[0])
            hr = None
        model = os.path.splitext(os.path.basename(args.model))[0]
        crop = save_comparison(_compare_path(args, target), _eight_bit(loaded.array),
                               _eight_bit(sr), upscaler.scale,
                               hr=hr, crop=crop, name=f"SR x{upscaler.scale}: {model}",
                               overwrite=args.force)
        log.info("%s: compared crop %d,%d,%d,%d", source, crop.x, crop.y, crop.width,
                 crop.height)


def _eight_bit(array):
    """A uint16 image as uint8 (rounded value / 257), for figures; uint8 as it is."""
    if array.dtype != np.uint16:
        return array
    return np.round(array / imageio.DEPTH_16).astype(np.uint8)


def _compare_path(args, target):
    if isinstance(args.compare, str):
        return args.compare
    return f"{os.path.splitext(target)[0]}_compare.png"


def _check_outputs_are_not_inputs(sources, targets, args):
    """Raises UsageError if an output of this run would be one of its inputs (or --hr
    images): it would be overwritten and read back as an input."""
    inputs = {os.path.realpath(path): path for path in sources}
    if args.hr is not None:
        hr = [args.hr] if os.path.isfile(args.hr) else imageio.list_images(args.hr)
        inputs.update((os.path.realpath(path), path) for path in hr)
    outputs = list(targets)
    if args.compare:
        outputs += [_compare_path(args, target) for target in targets]
    clashes = sorted({inputs[os.path.realpath(t)] for t in outputs
                      if os.path.realpath(t) in inputs})
    if clashes:
        raise UsageError(f"output {args.output} would overwrite input(s) of this run: "
                         f"{', '.join(clashes[:5])}{' ...' if len(clashes) > 5 else ''}; "
                         "write the outputs to another folder")


def _upscale_video(upscaler, source, target, args, progress):
    """One video file (sisr.video), with a progress bar in frames."""
    if args.compare:
        log.warning("%s: --compare is for images; no comparison for a video", source)
    progress.reset(total=video.count_frames(source) or None)
    progress.set_description(os.path.basename(source))
    video.upscale_video(upscaler, source, target, codec=args.codec, crf=args.crf,
                        outscale=args.outscale, overwrite=args.force,
                        on_frames=progress.update)


def _video_output(sources, kinds, args):
    """The output file named by -o for one video input (-o clip_x4.mp4), else None."""
    if kinds == ["video"] and video.is_video_file(args.output) \
            and not os.path.isdir(args.output):
        return args.output
    return None


def _target(source, outdir, fmt, scale, kind="image"):
    """Output path STEM_xS.EXT and format; "keep" follows the input's extension. A video
    keeps its container (one known by content only becomes .mkv)."""
    if kind == "video":
        stem, ext = os.path.splitext(os.path.basename(source))
        ext = ext if video.is_video_file(ext) else ".mkv"
        return os.path.join(outdir, f"{stem}_x{scale}{ext}"), None
    stem, ext = os.path.splitext(os.path.basename(source))
    if fmt == "keep":
        fmt = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(
            ext.lower(), "png")
        if fmt == "png" and ext.lower() != ".png":
            ext = ".png"
    else:
        ext = imageio.FORMATS[fmt][1]
    return os.path.join(outdir, f"{stem}_x{scale}{ext}"), fmt


def _upscaler(model, scale, precision, args):
    """The `Upscaler` of the run: tiles as asked; by default, tiles if the model allows."""
    from sisr.upscaling import NotTileableError, Upscaler, locality

    tile = args.tile
    if tile is None:
        radius, reason = locality(model)
        tile = DEFAULT_TILE if radius is not None or args.approximate_tiles else 0
        if not tile:
            log.info("whole images: model %r cannot be upscaled in tiles: %s", model.name,
                     reason)
    try:
        upscaler = Upscaler(model, scale=scale, tile=tile, overlap=args.overlap,
                            self_ensemble=args.self_ensemble, precision=precision,
                            approximate=args.approximate_tiles)
    except NotTileableError as err:
        raise UsageError(f"--tile {tile}: {err}; use --tile 0 (whole images) or "
                         "--approximate-tiles with --overlap") from err
    if upscaler.approximation:
        log.warning("approximate tiles of %d + %d LR pixels: model %r is not local (%s), "
                    "so each tile's window stands in for the whole image", tile,
                    args.overlap, model.name, upscaler.approximation)
    return upscaler


def _denoise_model(args):
    """(model, scale) of --model blended at --denoise with its weak-denoising partner."""
    from sisr.pretrained import denoise_model, load_registry
    from sisr.upscaling import model_scale

    if args.model not in load_registry():
        raise UsageError(f"--denoise needs a pretrained model name as --model (e.g. "
                         f"realesr-general-x4v3), got {args.model!r}")
    model = denoise_model(args.model, args.denoise)
    scale = model_scale(model)
    if args.scale is not None and scale != args.scale:
        raise UsageError(f"--model {args.model} is a x{scale} model, but --scale "
                         f"{args.scale} was asked")
    log.info("%s at denoise strength %g", args.model, args.denoise)
    return model, scale


def main(argv=None):
    """Upscales the inputs; returns 0, 1 if some images failed, 2 on a usage error."""
    return cli.main(make_parser(), _main, argv, check=_check_args)


def _main(args):
    from tqdm import tqdm

    from sisr.pretrained import resolve_model
    from sisr.upscaling import load_sr_model

    with cli.checking():
        sources = expand_inputs(args.input)
        kinds = [video.media_kind(source) or "image" for source in sources]
        if "video" in kinds:
            video.require_av()
            if args.codec:
                video.check_codec(args.codec)
        named = _video_output(sources, kinds, args)
        check_writable_dir(os.path.dirname(os.path.abspath(named)) if named else args.output)
        if args.denoise is not None:
            model, scale = _denoise_model(args)
        else:
            model, scale = load_sr_model(resolve_model(args.model), args.scale)
        precision, reason = choose_precision(args.precision, args.model)
        log.info("precision %s (%s)", precision, reason)
        upscaler = _upscaler(model, scale, precision, args)
        label = scale if args.outscale is None else f"{args.outscale:g}"
        targets = [(named, None)] if named else [
            _target(source, args.output, args.format, label, kind)
            for source, kind in zip(sources, kinds)]
        _check_outputs_are_not_inputs(sources, [target for target, _ in targets], args)

    failures, written, planned = [], [], set()
    many = len(sources) > 1
    with tqdm(total=0, unit="tile", disable=args.quiet or None, file=sys.stderr) as progress:
        for source, (target, fmt), kind in zip(sources, targets, kinds):
            try:
                if target in planned:
                    raise FileExistsError(f"{target} is also the output of another input")
                planned.add(target)
                progress.unit = "frame" if kind == "video" else "tile"
                if kind == "video":
                    _upscale_video(upscaler, source, target, args, progress)
                else:
                    _upscale_file(upscaler, source, target, fmt, args,
                                  _find_hr(args.hr, source, many), progress)
                written.append(target)
            except (imageio.ImageError, OSError, ValueError) as err:
                # Messages that name the file already are not prefixed again.
                message = str(err)
                log.error("%s", message if source in message else f"{source}: {message}")
                failures.append(source)
    noun = "file(s)" if "video" in kinds else "image(s)"
    print(f"upscaled {len(written)} of {len(sources)} {noun} x{label} into {args.output}"
          + (f"; {len(failures)} failed: " + ", ".join(failures) if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
