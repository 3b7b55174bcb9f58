"""Training throughput of `--strategy multi-worker` with 1 vs 2 local worker processes
(run by hand, not in CI).

Every case starts real worker processes on 127.0.0.1 with their TF_CONFIG, as the
README's recipe does, training the same profile with the same global batch; the chief
times its training steps (from the start of each epoch to its last step: no tracing in
epoch 1, no validation or saving) and the table gives the medians over interleaved rounds
of steps/s and samples/s (global batch x steps/s). On one host the workers share its
cores, so 2 workers cannot be faster than 1 here: the figures show the cost of the
collectives, not a speed-up (which needs a core or GPU per worker).

    python benchmarks/multiworker.py                       # tiny WDSR-B, 3 rounds
    python benchmarks/multiworker.py --profile wdsr-b-8 --batch-size 16 --steps 20
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import format_table, median  # noqa: E402

TINY = {"model": "wdsr_b", "num_filters": 8, "num_res_blocks": 2, "res_block_expansion": 2,
        "optimizer": "weight_norm_adam", "learning_rate": 1e-3, "lr_patch": 24,
        "valid_crop": 24, "scale": 2, "scales": [2, 3, 4]}
RESULT = "multiworker-benchmark:"


def worker(args):
    """One worker: trains like `python -m sisr.train` and the chief prints its timings."""
    import keras

    from sisr.training import config as cfg
    from sisr.training.distributed import is_chief, multi_worker_strategy
    from sisr.training.trainer import Trainer, new_run_dir

    multi_worker_strategy()  # before any TensorFlow op
    config = cfg.resolve(args.profile, {
        "dataset": "demo", "epochs": args.epochs, "steps_per_epoch": args.steps,
        "batch_size": args.batch_size, "seed": 1, "strategy": "multi-worker"})
    epochs = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 == args.steps:
                epochs.append(time.perf_counter() - self.start)

    class TimedTrainer(Trainer):
        def callbacks(self, *more):
            guard, run_cb, callbacks = super().callbacks(*more)
            return guard, run_cb, [*callbacks, Timer()]

    trainer = TimedTrainer(config)
    trainer.prepare()
    run_dir = new_run_dir(args.outdir, "bench", trainer.strategy)
    trainer.run(run_dir, verbose=0)
    if is_chief(trainer.strategy):
        steady = epochs[1:]  # the first epoch traces the step functions
        print(RESULT, json.dumps({"steps": args.steps * len(steady),
                                  "seconds": sum(steady)}), flush=True)


def run_case(args, workers, outdir):
    """Starts `workers` processes; returns the chief's steps/s."""
    from sisr.training.distributed import local_tf_configs

    command = [sys.executable, os.path.abspath(__file__), "--worker", "--outdir", outdir,
               "--profile", args.profile, "--epochs", str(args.epochs),
               "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    procs = []
    for tf_config in local_tf_configs(workers):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                   TF_NUM_INTEROP_THREADS=str(args.threads),
                   TF_NUM_INTRAOP_THREADS=str(args.threads), TF_CONFIG=tf_config)
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = [proc.communicate() for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
        if proc.returncode != 0:
            raise SystemExit(f"a worker failed ({proc.returncode}):\n{err[-3000:]}")
    line = next(line for line in outputs[0][0].splitlines() if line.startswith(RESULT))
    timing = json.loads(line[len(RESULT):])
    return timing["steps"] / timing["seconds"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", help="profile name or .json (default: a tiny WDSR-B)")
    parser.add_argument("--batch-size", type=int, default=8, help="global batch size")
    parser.add_argument("--steps", type=int, default=30, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="the first is not timed")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1,
                        help="TensorFlow inter- and intra-op threads per worker")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--outdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    reproduce = " ".join(shlex.quote(a) for a in ["python", "benchmarks/multiworker.py",
                                                   *(argv if argv is not None
                                                     else sys.argv[1:])])
    with tempfile.TemporaryDirectory() as folder:
        if args.profile is None:
            args.profile = os.path.join(folder, "tiny.json")
            with open(args.profile, "w") as f:
                json.dump(TINY, f)
        cases = {1: [], 2: []}
        for r in range(args.repeats):
            order = [1, 2] if r % 2 == 0 else [2, 1]
            for workers in order:
                cases[workers].append(run_case(args, workers,
                                               os.path.join(folder, f"runs-{r}-{workers}")))
            print(f"round {r + 1}/{args.repeats}: " + ", ".join(
                f"{w} worker(s) {cases[w][-1]:.2f} steps/s" for w in (1, 2)), file=sys.stderr)
    rows = []
    for workers, rates in cases.items():
        rate = median(rates)
        rows.append([workers, f"{rate:.2f}", f"{rate * args.batch_size:.1f}",
                     f"{min(rates):.2f}-{max(rates):.2f}"])
    print(f"profile {os.path.basename(args.profile)}, global batch {args.batch_size}, "
          f"{args.steps} steps x {args.epochs - 1} timed epochs, {args.threads} thread(s) "
          f"per worker, {os.cpu_count()} CPU(s), medians of {args.repeats} rounds")
    print(format_table(["workers", "steps/s", "samples/s", "steps/s range"], rows))
    print(f"reproduce: {reproduce}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
