"""Evaluate SR models on full images: `python -m sisr.evaluate`.

    python -m sisr.evaluate --model runs/ --dataset demo -o eval.json
    python -m sisr.evaluate --model edsr-x4.keras --dataset /data/Set5 --scale 4 --y-channel

Scores every model (one .keras file, or every .keras file in a folder) and a bicubic
baseline on each image of the dataset: PSNR and SSIM after clip + round (sisr.metrics).
Default border shave: `scale` for `--y-channel` (benchmark convention), otherwise
`scale + 6` (EDSR code's DIV2K convention; its README says scale + 2). Writes per-image
and mean scores to JSON, prints a table and the best model.
"""

import itertools
import logging
import math
import os
import sys
import time

import numpy as np

from sisr import cli
from sisr.errors import UsageError
from sisr.fileio import atomic_write_json
from sisr.precision import PRECISIONS

log = logging.getLogger(__name__)


def default_shave(scale, y_channel):
    """Border shave: scale for Y (benchmarks), scale + 6 for RGB (DIV2K, EDSR code)."""
    from sisr import metrics

    return metrics.benchmark_shave(scale) if y_channel else metrics.div2k_shave(scale)


def model_files(path):
    """The .keras files to evaluate: `path` itself, or the sorted .keras files in it."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(os.path.join(path, name) for name in os.listdir(path)
                       if name.endswith(".keras") and not name.startswith("."))
        if not files:
            raise FileNotFoundError(f"{path}: folder contains no .keras model files")
        return files
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such model file or folder")
    return [path]


def _crop_hr(hr, sr, name):
    """HR cut to the SR size (HR sides that are not multiples of the scale)."""
    if hr.shape == sr.shape:
        return hr
    if hr.shape[0] < sr.shape[0] or hr.shape[1] < sr.shape[1] or hr.shape[2:] != sr.shape[2:]:
        raise ValueError(f"{name}: HR shape {hr.shape} is smaller than the SR shape "
                         f"{sr.shape}")
    return hr[:sr.shape[0], :sr.shape[1]]


def iter_pairs(dataset):
    """Yields (name, lr, hr, error) for each image of a `sisr.data` dataset.

    A corrupt image gives (name, None, None, error) and the iteration goes on. The
    public `pairs()` generator cannot continue past a failed image, so when the dataset
    exposes its pair list (PairedDataset) the images are loaded one by one here.
    """
    items = getattr(dataset, "_pairs", None)
    if items is None:
        for name, lr, hr in dataset.pairs():
            yield name, lr, hr, None
        return
    for pair in items:
        try:
            lr, hr = pair.lr.load(), pair.hr.load()
        except (OSError, ValueError) as err:
            yield pair.name, None, None, err
            continue
        yield pair.name, lr, hr, None


class _Row:
    """Scores of one method (a model or bicubic) over the images."""

    def __init__(self, name, path=None, upscaler=None):
        self.name, self.path, self.upscaler = name, path, upscaler
        self.images, self.seconds = [], 0.0

    def summary(self):
        psnrs = [item["psnr"] for item in self.images]
        ssims = [item["ssim"] for item in self.images]
        return {
            "name": self.name,
            "path": self.path,
            "psnr": float(np.mean(psnrs)) if psnrs else None,
            "ssim": float(np.mean(ssims)) if ssims else None,
            "seconds_per_image": self.seconds / len(self.images) if self.images else None,
            "images": self.images,
        }


def _score_image(rows, name, lr, hr, scale, shave, y_only):
    """SR + scores of every row for one image; all rows or none (comparable means)."""
    from sisr import metrics
    from sisr.imresize import imresize

    results = []
    for row in rows:
        start = time.perf_counter()
        sr = imresize(lr, scale=scale) if row.upscaler is None else row.upscaler(lr)
        seconds = time.perf_counter() - start
        ref = _crop_hr(hr, sr, name)
        try:
            scores = {"psnr": metrics.psnr(sr, ref, shave, y_only),
                      "ssim": metrics.ssim(sr, ref, shave, y_only)}
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from err
        results.append((row, seconds, {"name": name, **scores}))
    for row, seconds, item in results:
        row.seconds += seconds
        row.images.append(item)


def format_images(summaries):
    """A plain-text table of the scores of every image, a column per method."""
    names = [item["name"] for item in summaries[0]["images"]]
    header = ("image", *(s["name"] for s in summaries))
    lines = [header]
    for i, name in enumerate(names):
        lines.append((name, *(f"{s['images'][i]['psnr']:.4f} dB / {s['images'][i]['ssim']:.5f}"
                              for s in summaries)))
    return _layout(lines)


def _layout(lines):
    """Rows of cells as aligned text: the first column left, the others right."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(line, widths))).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_table(summaries):
    """A plain-text table of mean scores, one line per method."""
    header = ("model", "PSNR dB", "SSIM", "images", "s/image")
    lines = [header]
    for s in summaries:
        lines.append((
            s["name"],
            "-" if s["psnr"] is None else f"{s['psnr']:.4f}",
            "-" if s["ssim"] is None else f"{s['ssim']:.5f}",
            str(len(s["images"])),
            "-" if s["seconds_per_image"] is None else f"{s['seconds_per_image']:.3f}",
        ))
    return _layout(lines)


def make_parser():
    p = cli.parser(
        "sisr.evaluate",
        description="PSNR/SSIM of sisr models and a bicubic baseline on full images.")
    p.add_argument("--model", required=True, nargs="+", metavar="MODEL",
                   help="one or more of: a .keras model, a folder (every .keras file in it), "
                        "a pretrained name (python -m sisr.pretrained list; fetched into the "
                        "cache on first use); all in one table")
    p.add_argument("--dataset", required=True,
                   help='"demo", a DIV2K root (PNG or numpy cache) or a folder of HR images')
    p.add_argument("--subset", default="valid",
                   help="train or valid (default valid) of a dataset that has both (demo, "
                        "DIV2K, a folder with train/ and valid/)")
    p.add_argument("--scale", type=int,
                   help="scale to evaluate (default: the models'); other-scale models fail")
    p.add_argument("--downgrade", default="bicubic",
                   help="DIV2K LR track: bicubic, unknown, mild, difficult, wild")
    p.add_argument("--y-channel", action="store_true",
                   help="score the Y of MATLAB rgb2ycbcr (benchmark convention)")
    p.add_argument("--shave", type=int,
                   help="border pixels cropped before scoring (default: scale with "
                        "--y-channel, scale + 6 for RGB as in the EDSR code)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the 8 flips/rotations in float (EDSR+), 8x slower")
    p.add_argument("--tile", type=int, default=0,
                   help="LR tile size to bound memory on big images (default 0: whole "
                        "images; tiles are seamless, see sisr.upscaling; refused for a "
                        "model that is not tileable)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="run the models in float32 or bfloat16 (see sisr.precision)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--per-image", action="store_true",
                   help="also print the PSNR / SSIM of every image")
    p.add_argument("-o", "--output", metavar="JSON", help="write the results here")
    p.add_argument("--force", action="store_true", help="overwrite an existing --output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def _check_args(p, args):
    for name in ("scale", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be a positive integer, got {value}")
    for name in ("shave", "tile"):
        value = getattr(args, name)
        if value is not None and value < 0:
            p.error(f"--{name} must be >= 0, got {value}")


def _load_models(paths, scale, tile, self_ensemble, errors, precision="float32"):
    """Upscalers of the usable models; failures are appended to `errors`."""
    from sisr.saving import ModelError
    from sisr.upscaling import NotTileableError, Upscaler, load_sr_model

    rows, asked = [], scale is not None
    for path in paths:
        try:
            model, found = load_sr_model(path)
            if scale is not None and found != scale:
                raise ModelError(
                    f"{path} is a x{found} model, but " + (
                        f"--scale {scale} was asked" if asked
                        else f"the first model is x{scale} (choose one with --scale)"))
            upscaler = Upscaler(model, scale=found, tile=tile, self_ensemble=self_ensemble,
                                precision=precision)
        except NotTileableError as err:
            message = f"{path}: --tile {tile}: {err}; use --tile 0 (whole images)"
            log.error("%s", message)
            errors.append({"item": path, "error": message})
            continue
        except ModelError as err:
            log.error("%s", err)
            errors.append({"item": path, "error": str(err)})
            continue
        scale = found  # the first model fixes the scale when --scale is not given
        upscaler(np.zeros((8, 8, 3), np.uint8))  # trace now: keep it out of the timings
        name = os.path.splitext(os.path.basename(path))[0]
        rows.append(_Row(name, os.path.abspath(path), upscaler))
    names = [row.name for row in rows]
    for row in rows:  # models of the same file name (runs/a/best, runs/b/best): their paths
        if names.count(row.name) > 1:
            row.name = os.path.splitext(os.path.relpath(row.path))[0]
    return rows, scale


def evaluate(args):
    """Runs the evaluation described by parsed `args`; returns (results dict, exit code)."""
    from tqdm import tqdm

    from sisr.data import open_dataset
    from sisr.data.spec import has_subsets
    from sisr.pretrained import resolve_model
    from sisr.saving import ModelError

    errors = []

    with cli.checking():  # no usable model or no dataset: nothing to do
        paths = [path for model in args.model for path in model_files(resolve_model(model))]
        rows, scale = _load_models(paths, args.scale, args.tile or None, args.self_ensemble,
                                   errors, args.precision)
        if not rows:
            raise ModelError("no usable model: " + "; ".join(e["error"] for e in errors))
        dataset = open_dataset(args.dataset, args.subset, scale, downgrade=args.downgrade)
    shave = args.shave if args.shave is not None else default_shave(scale, args.y_channel)
    total = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    rows.insert(0, _Row("bicubic"))

    with tqdm(total=total, unit="image", disable=args.quiet or None,
              file=sys.stderr) as progress:
        for name, lr, hr, error in itertools.islice(iter_pairs(dataset), total):
            name = str(name)
            progress.set_postfix_str(name)
            try:
                if error is not None:
                    raise error
                _score_image(rows, name, np.asarray(lr), np.asarray(hr), scale, shave,
                             args.y_channel)
            except (OSError, ValueError) as err:  # a corrupt or too small image: go on
                log.error("%s: %s", name, err)
                errors.append({"item": name, "error": str(err)})
            progress.update(1)

    summaries = [row.summary() for row in rows]
    scored = [s for s in summaries[1:] if s["psnr"] is not None]
    best = max(scored, key=lambda s: s["psnr"])["name"] if scored else None
    results = {
        "dataset": args.dataset,
        "subset": args.subset if has_subsets(args.dataset) else None,
        "scale": scale,
        "downgrade": args.downgrade,
        "channel": "y" if args.y_channel else "rgb",
        "shave": shave,
        "self_ensemble": bool(args.self_ensemble),
        "tile": args.tile,
        "precision": args.precision,
        "results": summaries,
        "best": best,
        "errors": errors,
    }
    failed = bool(errors) or not summaries[0]["images"]
    return results, 1 if failed else 0


def main(argv=None):
    """Evaluates; returns 0, 1 if some model or image failed, 2 on unusable arguments."""
    return cli.main(make_parser(), _main, argv, check=_check_args)


def _main(args):
    if args.output:
        if os.path.exists(args.output) and not args.force:
            raise FileExistsError(f"{args.output} exists; not overwriting it (use --force)")
        directory = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            raise UsageError(f"cannot write {args.output}: folder {directory} is missing or "
                             "not writable")
    results, code = evaluate(args)
    if args.output:
        atomic_write_json(args.output, results, overwrite=args.force)
    channel = "Y" if args.y_channel else "RGB"
    subset = f" ({results['subset']})" if results["subset"] else ""
    sys.stderr.flush()  # the log's warnings (e.g. converted images) come before the table
    print(f"{results['dataset']}{subset} x{results['scale']}, {channel}, "
          f"shave {results['shave']}" + (", self-ensemble" if args.self_ensemble else ""))
    if args.per_image and results["results"][0]["images"]:
        print(format_images(results["results"]))
        print()
    print(format_table(results["results"]))
    if results["best"] is not None:
        best = next(s for s in results["results"] if s["name"] == results["best"])
        gain = best["psnr"] - results["results"][0]["psnr"]
        if math.isfinite(gain):
            print(f"best: {best['name']}  {best['psnr']:.4f} dB ({gain:+.4f} dB over bicubic)")
        else:
            print(f"best: {best['name']}")
    if results["errors"]:
        print(f"{len(results['errors'])} error(s): see the log above"
              + (f" and {args.output}" if args.output else ""), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
