"""Speed and peak memory of `sisr.upscale_image` on a 2040x1356 LR image (run by hand).

Each case runs in float32 and, with `--precisions float32,bfloat16`, in bfloat16 (the
guarded mixed copy of `sisr.precision`). The overlap overhead is given twice: as the LR
pixels the tiles' windows process (tile + receptive-field margin) per image pixel, and as
the measured time of the tiled run over that of the same tiles with no overlap
(`--overlap-zero` adds those runs: they have seams, and are timed only for this figure).

For EDSR baseline (64 filters, 16 blocks) and WDSR-B baseline (32 filters, 16 blocks,
expansion 6) at x2 and x4, tiled (default tile and receptive-field overlap of sisr.upscaling)
and untiled: megapixels per second (LR in and SR out) and peak resident memory. Each run is
a fresh subprocess, so its peak RSS (from wait4, like /usr/bin/time -v) is its own; runs are
interleaved round by round (A B C D, B C D A, ...) and medians reported, because this
machine's speed swings by up to 2x. Weights are random: speed does not depend on them.

Untiled cases whose estimated memory (largest layer input + output, x1.5, + 1 GB) exceeds
--max-gb are skipped rather than risking the machine (EDSR x4 untiled needs ~35 GB).

With --check-seams, one extra (untimed) run per tiled case also super-resolves, untiled, an
LR crop that straddles tile borders and reports the largest difference from the tiled output
inside it (away from the crop's own border, by the overlap): 0 or 1 grey level means no
seams. It runs in its own subprocess so that it does not inflate the peak memory figures.

    python benchmarks/upscale.py                     # all cases, 3 rounds
    python benchmarks/upscale.py --cases edsr-x4 --repeats 1 --check-seams
    python benchmarks/upscale.py --cases wdsr-b-x4,edsr-x4 --no-untiled --repeats 1 \
        --precisions float32,bfloat16 --overlap-zero
    python benchmarks/upscale.py --cases rrdbnet-x4 --no-untiled --lr-size 339x510 \
        --precisions float32,bfloat16 --repeats 3      # RRDBNet: a smaller image

Weights and outputs: `--weights CASE=FILE` ports the case's model from a checkpoint (e.g. an
official module's seeded weights written by `benchmarks/official.py`, run with torch)
instead of random weights; `--overlaps auto,32,16` times the tiled runs at several overlaps
("auto": the receptive-field radius, sisr's default and exact); `--compare` keeps each
run's SR image and compares it with the case's first run at the same tile (first
precision, first overlap): the largest difference in levels, the pixels more than 2 levels
off (the bf16 guard's bound) and the PSNR, i.e. the bf16 guard on the whole tiled image
and how far a smaller overlap is from exact:

    python benchmarks/official.py rrdbnet BasicSR/basicsr/archs --scale 4 -o rrdbnet.npz
    python benchmarks/upscale.py --cases rrdbnet-x4 --no-untiled --weights \
        rrdbnet-x4=rrdbnet.npz --precisions float32,bfloat16 --overlaps auto,32 --compare

A model that is not local (RCAN's channel attention) is not tiled unless `--approximate`
asks for its approximate tiles (`sisr.upscale --approximate-tiles`: each window's own
channel means), with `--overlaps` in LR pixels:

    python benchmarks/upscale.py --cases rcan-x4 --no-untiled --repeats 1 --approximate \
        --overlaps 10

The machine's load average is printed before and after the runs (other jobs share it).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

if __package__:
    from .common import format_table, median, model_cases, worker_result, spread
else:  # run as a script: python benchmarks/upscale.py
    from common import format_table, median, model_cases, worker_result, spread

LR_SHAPE = (1356, 2040)  # a DIV2K-sized LR image (height, width)
DEFAULT_CASES = ("edsr-x2", "edsr-x4", "wdsr-b-x2", "wdsr-b-x4", "srresnet-x4")
CASES = model_cases(*DEFAULT_CASES, "rcan-x4", "rdn-x4", "rrdbnet-x4", "srvgg-x4")
SEAM_CROP = (200, 700)  # LR rows/cols of the seam check: straddles the 256-pixel tile borders


def test_image(shape, seed=0):
    """A smooth random photograph-like uint8 RGB image (content does not affect speed)."""
    import numpy as np

    from sisr.imresize import imresize

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (shape[0] // 8, shape[1] // 8, 3), dtype=np.uint8)
    return imresize(small, output_shape=shape)


def activation_gb(model, shape):
    """Largest input + output size (GB, float32) of one layer for a (1, H, W, 3) input."""
    import keras
    import numpy as np

    specs = {id(model.inputs[0]): keras.KerasTensor((1, *shape, 3), dtype="float32")}
    largest = 0
    for op in model.operations:
        if isinstance(op, keras.layers.InputLayer):
            continue
        inputs = keras.tree.map_structure(lambda t: specs[id(t)], op.input)
        output = op.compute_output_spec(inputs)
        size = sum(int(np.prod(t.shape)) for t in keras.tree.flatten([inputs, output]))
        largest = max(largest, size)
        for ref, spec in zip(keras.tree.flatten(op.output), keras.tree.flatten(output)):
            specs[id(ref)] = spec
    return 4 * largest / 1e9


def estimate_gb(case, tile, lr_shape=LR_SHAPE, overlap=None):
    """Rough peak memory of a run: biggest layer at the processed size, x1.5, + 1 GB.
    `overlap`: the tiles' (None: the model's receptive-field radius)."""
    from sisr.model import build
    from sisr.upscaling import Upscaler

    builder, arguments = CASES[case]
    model = build(builder, **arguments)
    if tile:
        if overlap is None:
            overlap = Upscaler(model, scale=arguments["scale"]).overlap
        side = min(tile + 2 * overlap, max(lr_shape))
        shape = (min(side, lr_shape[0]), min(side, lr_shape[1]))
    else:
        shape = lr_shape
    return 1.5 * activation_gb(model, shape) + 1.0


def window_pixels(upscaler, shape):
    """LR pixels the tiles' windows (tile + overlap, cut at the image border) process."""
    h, w = shape
    m = upscaler.overlap or 0  # None for a model that is never tiled
    return sum((min(h, y1 + m) - max(0, y0 - m)) * (min(w, x1 + m) - max(0, x0 - m))
               for y0, y1, x0, x1 in upscaler.tiles(h, w))


def case_model(case, weights=None):
    """The case's model: random weights, or ported (`sisr.port`) from the checkpoint file
    `weights`, whose configuration must be the case's."""
    builder, arguments = CASES[case]
    if weights:
        from sisr.port import port

        return port(weights, model=builder, **arguments)
    from sisr.model import build

    return build(builder, **arguments)


def worker(case, tile, check_seams, precision="float32", overlap=None, lr_shape=LR_SHAPE,
           weights=None, save=None, approximate=False):
    """One measured run in this process; prints a JSON line with its figures. `save`: a
    .npy file for the SR image (written after the timing); `approximate`: tiles of a model
    that is not local (`Upscaler(..., approximate=True)`)."""
    import numpy as np

    from sisr.upscaling import Upscaler, upscale_image

    _, arguments = CASES[case]
    model = case_model(case, weights)
    upscaler = Upscaler(model, scale=arguments["scale"], tile=tile or None, overlap=overlap,
                        precision=precision, approximate=approximate)
    image = test_image(lr_shape)
    upscale_image(upscaler, image[:64, :64])  # trace the forward pass outside the timing
    start = time.perf_counter()
    sr = upscale_image(upscaler, image)
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "tiles": len(upscaler.tiles(*lr_shape)),
              "overlap": upscaler.overlap,
              "window_ratio": window_pixels(upscaler, lr_shape) / (lr_shape[0] * lr_shape[1])}
    if save:
        np.save(save, sr)
    if check_seams:
        a, b = SEAM_CROP
        s, m = upscaler.scale, upscaler.overlap
        crop = Upscaler(model, scale=s, overlap=m, precision=precision)(
            image[a:b, a:b])  # untiled
        inner = slice(m * s, (b - a - m) * s)
        tiled = sr[a * s:b * s, a * s:b * s]
        diff = np.abs(tiled[inner, inner].astype(int) - crop[inner, inner].astype(int))
        borders = [y0 for y0, _, _, _ in upscaler.tiles(*lr_shape) if a < y0 < b]
        result.update(seam_max_diff=int(diff.max()), seam_pixels_off=int((diff > 0).sum()),
                      seam_borders_checked=sorted(set(borders)))
    print("RESULT " + json.dumps(result), flush=True)


def run_case(case, tile, check_seams, precision="float32", overlap=None, lr_shape=LR_SHAPE,
             weights=None, save=None, approximate=False):
    """Runs `worker` in a fresh subprocess; returns its figures plus peak RSS in GB."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", case,
               "--tile", str(tile), "--precisions", precision,
               "--lr-size", f"{lr_shape[0]}x{lr_shape[1]}"] + (
        ["--check-seams"] if check_seams else []) + (
        ["--worker-overlap", str(overlap)] if overlap is not None else []) + (
        ["--weights", f"{case}={weights}"] if weights else []) + (
        ["--worker-save", save] if save else []) + (
        ["--approximate"] if approximate else [])
    return worker_result(command, f"{case} tile={tile} {precision}")


def difference(path, reference):
    """(largest level difference, pixels more than 2 levels off, PSNR in dB) of the SR
    image saved at `path` against the one at `reference`."""
    import numpy as np

    a, b = np.load(path).astype(np.int16), np.load(reference).astype(np.int16)
    diff = np.abs(a - b)
    mse = float(np.mean(np.square(diff, dtype=np.float64)))
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
    return int(diff.max()), int((diff > 2).any(axis=-1).sum()), psnr


def parse_overlaps(text):
    """`--overlaps`: "auto" (None: the receptive-field radius) or LR pixels, in order."""
    found = []
    for item in (x.strip() for x in text.split(",")):
        if item == "auto":
            found.append(None)
        elif item.isdigit():
            found.append(int(item))
        else:
            raise ValueError(item)
    return list(dict.fromkeys(found))


def main(argv=None):
    from sisr.upscale import DEFAULT_TILE

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma-separated: " +
                   ", ".join(CASES))
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile of the tiled runs")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    p.add_argument("--max-gb", type=float, default=8.0,
                   help="skip untiled cases estimated above this many GB")
    p.add_argument("--no-untiled", action="store_true", help="tiled runs only")
    p.add_argument("--check-seams", action="store_true",
                   help="compare tiled output with an untiled crop across tile borders")
    p.add_argument("--precisions", default="float32",
                   help="comma-separated: float32, bfloat16 (default float32)")
    p.add_argument("--overlap-zero", action="store_true",
                   help="also time each tiled case with no overlap (the overlap's cost)")
    p.add_argument("--overlaps", default="auto", metavar="LIST",
                   help="overlaps of the tiled runs, comma-separated: auto (the model's "
                        "receptive-field radius, sisr's default) or LR pixels (default auto)")
    p.add_argument("--weights", action="append", default=[], metavar="CASE=FILE",
                   help="port the case's weights from FILE (any checkpoint sisr.port "
                        "reads, e.g. the seeded official weights that `benchmarks/"
                        "official.py` writes) instead of random weights (repeatable)")
    p.add_argument("--compare", action="store_true",
                   help="compare each run's SR image with the case's first run (the first "
                        "precision and overlap at the same tile): largest difference in "
                        "levels, pixels more than 2 levels off, PSNR")
    p.add_argument("--lr-size", default=f"{LR_SHAPE[0]}x{LR_SHAPE[1]}", metavar="HxW",
                   help="LR image height x width (default %(default)s, DIV2K-sized)")
    p.add_argument("--approximate", action="store_true",
                   help="tile the cases that are not local (rcan-x4) anyway, as `upscale "
                        "--approximate-tiles` does; needs --overlaps in LR pixels")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-overlap", type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker-save", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    weights = {}
    for item in args.weights:
        case, sep, path = item.partition("=")
        if not sep or case not in CASES:
            p.error(f"--weights: expected CASE=FILE with CASE one of {', '.join(CASES)}, "
                    f"got {item!r}")
        if not os.path.isfile(path):
            p.error(f"--weights: no file {path!r}")
        weights[case] = path
    try:
        overlaps = parse_overlaps(args.overlaps)
    except ValueError as error:
        p.error(f"--overlaps: expected auto or LR pixels (integers), got {error}")
    if args.overlap_zero and 0 not in overlaps:
        overlaps.append(0)
    if args.approximate and None in overlaps and not args.worker:
        p.error("--approximate: give --overlaps in LR pixels (a model that is not local "
                "has no receptive-field radius)")
    try:
        lr_shape = tuple(int(n) for n in args.lr_size.lower().split("x"))
    except ValueError:
        lr_shape = ()
    if len(lr_shape) != 2 or min(lr_shape) < 1:
        p.error(f"--lr-size: expected HxW, e.g. 1356x2040, got {args.lr_size!r}")
    if args.worker:
        worker(args.worker, args.tile, args.check_seams, args.precisions,
               args.worker_overlap, lr_shape, weights.get(args.worker), args.worker_save,
               args.approximate)
        return 0
    precisions = [x.strip() for x in args.precisions.split(",") if x.strip()]
    if not precisions or set(precisions) - {"float32", "bfloat16"}:
        p.error(f"--precisions: float32 and/or bfloat16, got {args.precisions!r}")

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    from sisr.model import get_spec

    local = {case: get_spec(CASES[case][0]).local for case in cases}
    runs, skipped, untileable = [], [], []
    for case in cases:
        for tile in ([args.tile] if args.no_untiled else [args.tile, 0]):
            if tile and not local[case] and not args.approximate:
                untileable.append(case)  # global pooling or attention: tiles are refused
                continue
            for overlap in (overlaps if tile else [None]):
                estimate = estimate_gb(case, tile, lr_shape, overlap)
                if tile == 0 and estimate > args.max_gb:
                    skipped.append((case, estimate))
                    continue
                for precision in precisions:
                    runs.append((case, tile, precision, overlap, estimate))
    results = {run[:4]: [] for run in runs}
    saved = tempfile.mkdtemp(prefix="sisr-upscale-") if args.compare else None
    outputs = {run[:4]: os.path.join(saved, f"run{i}.npy") if saved else None
               for i, run in enumerate(runs)}
    # per run, the run it is compared with: the case's first run at the same tile
    references = {}
    for run in runs:
        references.setdefault(run[:2], run[:4])
    print(f"LR image {lr_shape[1]}x{lr_shape[0]}, {len(runs)} cases x {args.repeats} "
          f"interleaved rounds (one subprocess each)", file=sys.stderr)
    load_before = os.getloadavg()
    for r in range(args.repeats if runs else 0):  # nothing to run: only the notes below
        shift = r % len(runs)
        for case, tile, precision, overlap, _ in runs[shift:] + runs[:shift]:
            key = (case, tile, precision, overlap)
            result = run_case(case, tile, False, precision, overlap, lr_shape,
                              weights.get(case), outputs[key] if r == 0 else None,
                              args.approximate and not local[case])
            results[key].append(result)
            print(f"  round {r + 1}: {case} tile={tile or 'none'} {precision}"
                  f"{'' if overlap is None else f' overlap {overlap}'}: "
                  f"{result['seconds']:.1f} s, {result['peak_gb']:.2f} GB", file=sys.stderr)
    seams = {}
    if args.check_seams:
        for case, tile, precision, overlap, _ in runs:
            if tile and overlap is None:
                seams[(case, precision)] = found = run_case(case, tile, True, precision,
                                                            lr_shape=lr_shape,
                                                            weights=weights.get(case))
                print(f"  seam check: {case} {precision}: max diff {found['seam_max_diff']}",
                      file=sys.stderr)

    load_after = os.getloadavg()
    print(f"LR image {lr_shape[1]}x{lr_shape[0]}; load average (1, 5, 15 min) before "
          f"{', '.join(f'{x:.1f}' for x in load_before)}, after "
          f"{', '.join(f'{x:.1f}' for x in load_after)}")
    lr_mpx = lr_shape[0] * lr_shape[1] / 1e6
    rows = []
    for case, tile, precision, overlap, estimate in runs:
        found = results[(case, tile, precision, overlap)]
        seconds = [f["seconds"] for f in found]
        scale = CASES[case][1]["scale"]
        t = median(seconds)
        seam = seams.get((case, precision)) if tile and overlap is None else None
        if tile and overlap != 0 and (case, tile, precision, 0) in results:
            bare = median([f["seconds"] for f in results[(case, tile, precision, 0)]])
            cost = f"x{found[0]['window_ratio']:.2f} px, x{t / bare:.2f} time"
        elif tile and overlap != 0:
            cost = f"x{found[0]['window_ratio']:.2f} px"
        else:
            cost = "-"
        reference = references[(case, tile)]
        if saved and reference != (case, tile, precision, overlap):
            most, off, psnr = difference(outputs[(case, tile, precision, overlap)],
                                         outputs[reference])
            ref_overlap = results[reference][0]["overlap"]
            compared = (f"{most} levels, {off} px > 2, {psnr:.1f} dB vs {reference[2]}"
                        + (f" overlap {ref_overlap}" if tile else ""))
        else:
            compared = "(reference)" if saved else "-"
        rows.append([
            case, precision, (f"{tile} (+{found[0]['overlap']})" + (
                "" if local[case] else " approx.")) if tile else "none",
            found[0]["tiles"], f"{t:.1f}", f"{spread(seconds):.2f}",
            f"{lr_mpx / t:.3f}", f"{lr_mpx * scale * scale / t:.2f}",
            f"{median([f['peak_gb'] for f in found]):.2f}", f"{estimate:.1f}",
            "-" if seam is None else f"{seam['seam_max_diff']} ({seam['seam_pixels_off']} px)",
            cost, compared,
        ])
    if saved:
        shutil.rmtree(saved, ignore_errors=True)
    if weights:
        print("weights ported from: " + "; ".join(f"{c} {w}" for c, w in weights.items()))
    print(format_table(
        ["case", "precision", "tile (+overlap)", "tiles", "seconds", "IQR/med", "LR Mpx/s",
         "SR Mpx/s", "peak RSS GB", "est. GB", "seam max diff", "overlap cost",
         "vs first run"], rows))
    for case, estimate in skipped:
        print(f"{case} untiled: skipped, estimated {estimate:.1f} GB > --max-gb {args.max_gb}")
    for case in untileable:
        print(f"{case} tiled: not run, the model is not tileable (local=False)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
