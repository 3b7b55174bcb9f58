"""Training speed in float32 vs mixed_bfloat16, and PSNR parity (run by hand, not in CI).

Speed: for each family at its baseline profile (WDSR-B `wdsr-b-16`, WDSR-A `wdsr-a-16`,
EDSR `edsr-16`; x2, batch 16, LR patch 48) and each precision, the model is built and
compiled as `sisr.training.trainer.train` does (same builder, optimiser, loss and PSNR metric, under
the same dtype policy) and `--steps` training steps are timed with `train_on_batch` on
batches generated beforehand and kept in memory: the data pipeline is not measured. Every
case gets a couple of untimed warm-up steps (tracing, oneDNN primitive creation); then the
cases are timed in interleaved rounds (this machine's speed swings 2x) and the table gives
medians over the rounds. The speed-up is the ratio of the medians; "per round" is the
median (and range) of the float32/bf16 ratios within each round. CPU s/step is the process
CPU time per step, less sensitive to other processes than wall time.

Parity: `sisr.training.trainer.train` runs `--parity-profile` (default wdsr-b-8) on the demo set
for `--parity-steps` steps in float32, then in mixed_bfloat16, with the same seed (same
initial weights, same batches); each run's float32 model is scored on the full demo
validation images (`sisr.metrics.psnr`, RGB, shave `div2k_shave(scale)`). Their wall times
(tracing, data pipeline, validation and saving included; not interleaved) are a rough
end-to-end figure only.

    python benchmarks/train.py                            # everything (9-13 min here)
    python benchmarks/train.py --families wdsr-b --steps 5 --repeats 7 --skip-parity
    python benchmarks/train.py --families wdsr-b --repeats 1 --parity-steps 500
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

# Before TensorFlow is imported, so that its C++ logging stays quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import sisr  # noqa: E402
from sisr.training import config as sisr_config  # noqa: E402
from sisr import metrics  # noqa: E402
from sisr.training import trainer  # noqa: E402
from sisr.data import open_dataset  # noqa: E402

if __package__:
    from .common import format_table, interleave, median, spread  # noqa: E402
else:  # run as a script: python benchmarks/train.py
    from common import format_table, interleave, median, spread  # noqa: E402

FAMILIES = {"wdsr-b": "wdsr-b-16", "wdsr-a": "wdsr-a-16", "edsr": "edsr-16"}
PRECISIONS = ("float32", "mixed_bfloat16")
SCALE, BATCH_SIZE, LR_PATCH = 2, 16, 48
# Distinct in-memory batches cycled through by the timed steps.
BATCHES = 4
# The acceptance figures of the training issue.
TARGET_SPEEDUP, TARGET_PSNR_DB = 1.8, 0.1


def make_batches(count, seed):
    """`count` float32 (lr, hr) training batches of the demo set, as the trainer feeds them."""
    data = open_dataset("demo", "train", SCALE).train(
        batch_size=BATCH_SIZE, lr_patch=LR_PATCH, seed=seed)
    return [(tf.cast(lr, tf.float32), tf.cast(hr, tf.float32)) for lr, hr in data.take(count)]


def compiled_model(config, policy, seed):
    """The model of `config` built and compiled like `sisr.training.trainer.train` does."""
    keras.utils.set_random_seed(seed)
    with trainer.precision(policy):
        model = trainer.build_model(config)
        model.compile(optimizer=trainer.make_optimizer(config), loss=trainer.make_loss(config),
                      metrics=[metrics.PSNR(shave=metrics.div2k_shave(config["scale"]))])
    return model


def step_case(model, batches, steps, cpu_times):
    """A zero-argument callable running `steps` training steps; appends its CPU time."""
    position = [0]

    def run():
        start = time.process_time()
        for _ in range(steps):
            lr, hr = batches[position[0] % len(batches)]
            position[0] += 1
            # Returns the logs as Python floats, so the step has finished when it returns.
            model.train_on_batch(lr, hr)
        cpu_times.append(time.process_time() - start)

    return run


def speed(args, batches):
    """Times every (family, precision); returns the table rows and the speed-ups."""
    models = {}
    for family in args.families:
        config = sisr_config.resolve(FAMILIES[family], {"scale": SCALE, "batch_size": BATCH_SIZE,
                                                        "lr_patch": LR_PATCH, "seed": args.seed})
        for policy in PRECISIONS:
            models[(family, policy)] = compiled_model(config, policy, args.seed)
    # Warm up only once every model exists: seeding (tf.random.set_seed) clears TensorFlow's
    # kernel caches, so a model warmed up before the next one was built would pay for
    # instantiating its train function again (seconds) in its first timed run.
    cases, cpu = {}, {}
    for (family, policy), model in models.items():
        start = time.perf_counter()
        step_case(model, batches, args.warmup_steps, [])()
        print(f"{family} {policy}: traced and warmed up in {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
        cpu[(family, policy)] = []
        cases[(family, policy)] = step_case(model, batches, args.steps, cpu[(family, policy)])

    def progress(r):
        print(f"round {r + 1}/{args.repeats}", file=sys.stderr, flush=True)

    # A family's float32 and bf16 runs are neighbours in most rounds, and round r starting
    # at case r keeps any case from always following the same one.
    times = interleave(cases, args.repeats, warmup=0, on_round=progress)

    rows, speedups = [], {}
    for family in args.families:
        per_step = {p: median(times[(family, p)]) / args.steps for p in PRECISIONS}
        speedups[family] = per_step["float32"] / per_step["mixed_bfloat16"]
        # The same-round ratios show how much the speed-up itself swings with the load.
        paired = [f / b for f, b in zip(times[(family, "float32")],
                                        times[(family, "mixed_bfloat16")])]
        for policy in PRECISIONS:
            samples = times[(family, policy)]
            rows.append([
                family, policy, f"{1 / per_step[policy]:.3f}",
                f"{BATCH_SIZE / per_step[policy]:.1f}", f"{1e3 * per_step[policy]:.0f}",
                f"{100 * spread(samples):.0f}%",
                f"{median(cpu[(family, policy)]) / args.steps:.2f}",
                f"{speedups[family]:.2f}x" if policy != "float32" else "",
                f"{median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f})"
                if policy != "float32" else "",
            ])
    return rows, speedups


def parity(args, work):
    """Trains `--parity-profile` in both precisions; returns {policy: result dict}."""
    results = {}
    for policy in PRECISIONS:
        config = sisr_config.resolve(args.parity_profile, {
            "scale": SCALE, "dataset": "demo", "seed": args.seed, "precision": policy,
            "epochs": 1, "steps_per_epoch": args.parity_steps,
            "batch_size": BATCH_SIZE, "lr_patch": LR_PATCH,
        })
        run_dir = os.path.join(work, policy)
        os.makedirs(run_dir)
        start = time.perf_counter()
        results[policy] = trainer.train(config, run_dir, verbose=0)
        results[policy]["seconds"] = time.perf_counter() - start
        print(f"parity {policy}: {args.parity_steps} steps trained and validated in "
              f"{results[policy]['seconds']:.0f} s", file=sys.stderr, flush=True)
    return results


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/train.py",
        description="Training steps/s in float32 vs mixed_bfloat16 (interleaved rounds, "
                    "medians) and validation PSNR after the same number of steps.",
    )
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"comma-separated, out of {', '.join(FAMILIES)} "
                             f"(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=4,
                        help="training steps per timed run (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed rounds; each runs every case once (default: %(default)s)")
    parser.add_argument("--warmup-steps", type=int, default=2,
                        help="untimed steps per case before the rounds (default: %(default)s)")
    parser.add_argument("--parity-profile", default="wdsr-b-8",
                        help="profile trained for the PSNR parity (default: %(default)s)")
    parser.add_argument("--parity-steps", type=int, default=300,
                        help="training steps of each parity run (default: %(default)s)")
    parser.add_argument("--skip-parity", action="store_true", help="only measure speed")
    parser.add_argument("--skip-speed", action="store_true", help="only check PSNR parity")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the weights and batches (default: %(default)s)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        parser.error(f"--families: unknown family {', '.join(unknown) or '(none given)'}; "
                     f"known: {', '.join(FAMILIES)}")
    args.families = list(dict.fromkeys(names))
    for flag, value, low in (("--steps", args.steps, 1), ("--repeats", args.repeats, 1),
                             ("--warmup-steps", args.warmup_steps, 1),
                             ("--parity-steps", args.parity_steps, 1)):
        if value < low:
            parser.error(f"{flag} must be at least {low}, got {value}")
    if args.skip_parity and args.skip_speed:
        parser.error("--skip-parity and --skip-speed leave nothing to do")
    if not args.skip_parity:
        try:
            sisr_config.resolve(args.parity_profile, {"scale": SCALE})
        except sisr_config.ConfigError as err:
            parser.error(f"--parity-profile: {err}")
    return args


def main(argv=None):
    args = parse_args(argv)
    # Each compiled model traces its own train function; TensorFlow's retracing detector
    # would warn about that once several models exist, though nothing is retraced.
    tf.get_logger().setLevel("ERROR")
    print(f"sisr {sisr.__version__}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; x{SCALE}, "
          f"batch {BATCH_SIZE}, LR patch {LR_PATCH}")

    if not args.skip_speed:
        rows, speedups = speed(args, make_batches(BATCHES, args.seed))
        print(f"\ntraining steps (train_on_batch on in-memory batches: no data pipeline), "
              f"{args.steps} steps per run, medians of {args.repeats} interleaved rounds")
        print(format_table(["family", "precision", "steps/s", "patches/s", "ms/step", "IQR",
                            "CPU s/step", "bf16 speed-up", "per round (range)"], rows))
        verdicts = ", ".join(f"{f} {'yes' if s >= TARGET_SPEEDUP else 'NO'}"
                             for f, s in speedups.items())
        print(f"mixed_bfloat16 >= {TARGET_SPEEDUP}x float32: {verdicts}")

    if not args.skip_parity:
        work = tempfile.mkdtemp(prefix="sisr-bench-train-")
        try:
            results = parity(args, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        shave = results["float32"]["shave"]
        print(f"\nPSNR parity: {args.parity_profile} x{SCALE}, {args.parity_steps} steps, "
              f"seed {args.seed}; float32 model on the {results['float32']['valid_images']} "
              f"full demo validation images, RGB, shave {shave} "
              f"(bicubic {results['float32']['bicubic_psnr']:.3f} dB)")
        rows = [[policy, str(r["iterations"]), f"{r['psnr']:.3f}", f"{r['seconds']:.0f}"]
                for policy, r in results.items()]
        print(format_table(["precision", "steps", "PSNR dB", "wall s"], rows))
        difference = results["mixed_bfloat16"]["psnr"] - results["float32"]["psnr"]
        verdict = "yes" if abs(difference) <= TARGET_PSNR_DB else "NO"
        print(f"bf16 - float32: {difference:+.3f} dB; within {TARGET_PSNR_DB} dB: {verdict}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
