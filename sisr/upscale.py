"""Super-resolve image files and folders in tiles: `python -m sisr.upscale`.

    python -m sisr.upscale -i photos/ -o out/ --model wdsr-b-x4.keras --tile 256 --compare

The work is `sisr.upscaling` (seamless tiles, channel layouts, self-ensemble); this module
reads and writes the files (videos: `sisr.video`, frame by frame, audio and timestamps
kept). EXIF orientation is applied. By default a model is run in
tiles of `DEFAULT_TILE` LR pixels if it is tileable (every layer local), else on whole
images (logged); an explicit `--tile N` with a model that is not tileable is refused.
"""

import logging
import os
import sys

import numpy as np

from sisr import cli, imageio, video
from sisr.cli_precision import CLI_PRECISIONS, choose_precision
from sisr.errors import UsageError
from sisr.fileio import atomic_output, check_writable_dir
from sisr.upscaling import (
    NotTileableError,
    Upscaler,
    bicubic_upscale,
    load_sr_model,
    locality,
    upscale_image,
)

log = logging.getLogger(__name__)

DEFAULT_TILE = 256  # LR pixels; bounds the peak memory (benchmarks/README.md)


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
    p.add_argument("--model", required=True, help=".keras model file")
    p.add_argument("--scale", type=int, help="expected scale; an error if the model's differs")
    p.add_argument("--tile", type=int,
                   help=f"tile size in LR pixels, 0 = whole images (default {DEFAULT_TILE} "
                        "if the model is tileable, else whole images); a model with a "
                        "layer that is not local (global pooling, attention) refuses tiles")
    p.add_argument("--overlap", type=int,
                   help="LR context pixels around each tile (default: the model's "
                        "receptive-field radius, which makes tiles seamless)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the 8 flips/rotations (8x slower)")
    p.add_argument("--precision", choices=CLI_PRECISIONS, default="auto",
                   help="bfloat16: a mixed copy that keeps the precision-critical layers "
                        "float32, faster on CPUs with bfloat16 instructions; auto "
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
    if not 1 <= args.quality <= 100:
        p.error(f"--quality must be in 1..100, got {args.quality}")
    if args.scale is not None and args.scale < 1:
        p.error(f"--scale must be a positive integer, got {args.scale}")
    if args.hr is not None and not os.path.exists(args.hr):
        p.error(f"--hr {args.hr}: no such file or folder")


def _upscale_file(upscaler, source, target, fmt, args, hr_path, progress):
    if not args.force and os.path.exists(target):  # fail before the expensive part
        raise FileExistsError(f"{target} exists; not overwriting it (use --force)")
    loaded = imageio.read_image(source, first_frame=args.first_frame)
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
                        overwrite=args.force, on_frames=progress.update)


def _video_output(sources, kinds, args):
    """The output file named by -o for one video input (-o clip_x4.mp4), else None."""
    if kinds == ["video"] and video.is_video_file(args.output) \
            and not os.path.isdir(args.output):
        return args.output
    return None


def _target(source, outdir, fmt, scale, kind="image"):
    if kind == "video":  # same container; videos known by content only become .mkv
        stem, ext = os.path.splitext(os.path.basename(source))
        ext = ext if video.is_video_file(ext) else ".mkv"
        return os.path.join(outdir, f"{stem}_x{scale}{ext}"), None
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


def _upscaler(model, scale, precision, args):
    """The `Upscaler` of the run: tiles as asked; by default, tiles if the model allows."""
    tile = args.tile
    if tile is None:
        radius, reason = locality(model)
        tile = DEFAULT_TILE if radius is not None else 0
        if not tile:
            log.info("whole images: model %r cannot be upscaled in tiles: %s", model.name,
                     reason)
    try:
        return Upscaler(model, scale=scale, tile=tile, overlap=args.overlap,
                        self_ensemble=args.self_ensemble, precision=precision)
    except NotTileableError as err:
        raise UsageError(f"--tile {tile}: {err}; use --tile 0 (whole images)") from err


def main(argv=None):
    """Upscales the inputs; returns 0, 1 if some images failed, 2 on a usage error."""
    return cli.main(make_parser(), _main, argv, check=_check_args)


def _main(args):
    from tqdm import tqdm

    from sisr.pretrained import resolve_model

    with cli.checking():
        sources = expand_inputs(args.input)
        kinds = [video.media_kind(source) or "image" for source in sources]
        if "video" in kinds:
            video.require_av()
            if args.codec:
                video.check_codec(args.codec)
        named = _video_output(sources, kinds, args)
        check_writable_dir(os.path.dirname(os.path.abspath(named)) if named else args.output)
        model, scale = load_sr_model(resolve_model(args.model), args.scale)
        precision, reason = choose_precision(args.precision, args.model)
        log.info("precision %s (%s)", precision, reason)
        upscaler = _upscaler(model, scale, precision, args)
        targets = [(named, None)] if named else [
            _target(source, args.output, args.format, scale, kind)
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
    print(f"upscaled {len(written)} of {len(sources)} {noun} x{scale} into {args.output}"
          + (f"; {len(failures)} failed: " + ", ".join(failures) if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
