"""Where the time of a model goes, by oneDNN primitive (run by hand).

Runs one inference (`sisr.resolve`, LR 128x128 batch 1) or one training step (batch 16,
LR 48, as `sisr.training.trainer.train` compiles it) in a subprocess with
ONEDNN_VERBOSE=1, after two untimed runs (primitive creation), and sums the execution
times oneDNN reports per primitive kind, implementation, propagation kind and shape: which
convolutions dominate, which kernels oneDNN chose (brgemm, jit, ref) and how much goes
into reorders (layout conversions). `--optimizer` also times the optimiser's
`apply_gradients` alone (WeightNormAdam against Adam, interleaved): its share of a step.

    python benchmarks/profile_onednn.py --model wdsr_b --mode infer
    python benchmarks/profile_onednn.py --model wdsr_b --mode train --precision mixed_bfloat16
    python benchmarks/profile_onednn.py --model wdsr_b --optimizer

`--torch CASE` profiles the PyTorch side of a `vs_pytorch.py` case instead (its own process,
under `--torch-python`, imports no sisr): the same oneDNN table, and with `--torch-profiler`
torch.profiler's time per operator (what runs outside the convolutions).

    python benchmarks/profile_onednn.py --torch edsr-x2-fp32 --torch-python VENV/bin/python
    python benchmarks/profile_onednn.py --torch rcan-x2-fp32 --torch-profiler \
        --official EDSR-PyTorch/src/model --torch-python VENV/bin/python
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

if __package__:
    from .common import format_table, interleave, median  # noqa: E402
else:
    from common import format_table, interleave, median  # noqa: E402

PROFILES = {"edsr": "edsr-16", "wdsr_b": "wdsr-b-16", "wdsr_a": "wdsr-a-16"}
# Inference only, at their builders' defaults (the papers' sizes; SRVGGNetCompact 32 convs).
INFER_ONLY = {"rcan": {}, "rdn": {}, "mdsr": {}, "rrdbnet": {},
              "srvgg_compact": {"num_conv": 32}}
MARK = "=== PROFILED RUN"


def build_training(model_name, policy, optimizer=None):
    import keras

    from sisr.training import config as sisr_config
    from sisr.training import trainer

    config = sisr_config.resolve(PROFILES[model_name], {"scale": 2, "batch_size": 16,
                                                        "lr_patch": 48})
    with trainer.precision(policy):
        model = trainer.build_model(config)
        model.compile(optimizer=optimizer or trainer.make_optimizer(config),
                      loss=keras.losses.MeanAbsoluteError())
    return model, config


def run_worker(model_name, mode, precision, runs, scale=2):
    """Runs the case twice untimed, then `runs` times after MARK lines."""
    import numpy as np

    import sisr

    rng = np.random.default_rng(0)
    if mode == "infer":
        from sisr.model import build

        arguments = {"wdsr_b": dict(res_block_expansion=6), "wdsr_a": dict(
            res_block_expansion=4)}.get(model_name, {})
        if model_name.startswith("wdsr"):
            arguments.update(num_filters=32, num_res_blocks=16)
        arguments.update(INFER_ONLY.get(model_name, {}))
        model = build(model_name, scale=scale, **arguments)
        lr = rng.integers(0, 256, (1, 128, 128, 3)).astype(np.uint8)
        run = lambda: sisr.resolve(model, lr, precision=precision)  # noqa: E731
    else:
        policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"
        model, _ = build_training(model_name, policy)
        lr = rng.integers(0, 256, (16, 48, 48, 3)).astype(np.float32)
        hr = rng.integers(0, 256, (16, 96, 96, 3)).astype(np.float32)
        run = lambda: model.train_on_batch(lr, hr)  # noqa: E731
    run(), run()
    for _ in range(runs):
        print(MARK, flush=True)
        start = time.perf_counter()
        run()
        print(f"=== WALL {1e3 * (time.perf_counter() - start):.1f}", flush=True)


def conv_flops(descriptor):
    """2 x multiply-accumulates of a convolution descriptor (mb..ic..oc..ih..oh..kh..), else 0."""
    m = re.match(r"mb(\d+)_ic(\d+)oc(\d+)_ih\d+oh(\d+)kh(\d+).*_iw\d+ow(\d+)kw(\d+)",
                 descriptor)
    if not m:
        return 0.0
    mb, ic, oc, oh, kh, ow, kw = map(int, m.groups())
    return 2.0 * mb * ic * oc * oh * ow * kh * kw


def summarise(text):
    """Rows (ms, calls, primitive, flops) and total and wall ms: per primitive, the least
    time over the profiled runs (this machine's load only ever adds time)."""
    sections = [summarise_run(part) for part in text.split(MARK)[1:]]
    keys = set().union(*(rows for rows, _ in sections))
    best = {key: min((rows[key] for rows, _ in sections if key in rows),
                     key=lambda v: v[0]) for key in keys}
    total = sum(ms for ms, _, _ in best.values())
    rows = sorted(((ms, n, key, flops) for key, (ms, n, flops) in best.items()),
                  reverse=True)
    return rows, total, min(wall for _, wall in sections)


def summarise_run(text):
    """{primitive: [ms, calls, flops]} and the wall ms of one profiled run."""
    wall = float(re.search(r"=== WALL ([\d.]+)", text).group(1))
    groups = collections.defaultdict(lambda: [0.0, 0, 0.0])
    for line in text.splitlines():
        if not line.startswith("onednn_verbose") or ",exec," not in line:
            continue
        f = line.split(",")
        kind, impl, prop = f[5], f[6].split(":")[0], f[7]
        shape = re.sub(r"ih\d+oh\d+|iw\d+ow\d+|[sdp][hw]\d+", "", f[-2]).replace("__", "_")
        dtype = f[8].split()[0].split(":")[1] if ":" in f[8] else "?"
        post = "".join(p for p in ("+relu", "+sum") if
                       (p == "+relu" and "eltwise_relu" in line) or
                       (p == "+sum" and "post-ops:sum" in line))
        key = f"{kind} {impl} {prop} {shape} {dtype}{' ' + post if post else ''}"
        groups[key][0] += float(f[-1])
        groups[key][1] += 1
        groups[key][2] += conv_flops(f[-2])
    return dict(groups), wall


def run_torch_worker(case_name, runs, profiler, official_dir=None):
    """As `run_worker`, for the PyTorch side of a vs_pytorch.py case."""
    import tempfile

    if __package__:
        from .vs_pytorch import CASES, torch_side, write_inputs
    else:
        from vs_pytorch import CASES, torch_side, write_inputs

    case = CASES[case_name]
    with tempfile.TemporaryDirectory() as directory:
        run, _ = torch_side(case, write_inputs(directory, case_name, case),
                            len(os.sched_getaffinity(0)), channels_last=False,
                            official_dir=official_dir)
    run(), run()
    if profiler:
        import torch

        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                run()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
        return
    for _ in range(runs):
        print(MARK, flush=True)
        start = time.perf_counter()
        run()
        print(f"=== WALL {1e3 * (time.perf_counter() - start):.1f}", flush=True)


def apply_function(optimizer, variables, grads):
    """A compiled `apply_gradients` of fixed gradients (closed over, not arguments: a
    tf.function would turn arguments into tensors)."""
    import tensorflow as tf

    @tf.function
    def apply():
        optimizer.apply_gradients(zip(grads, variables))

    return apply


def optimizer_share(model_name, repeats):
    import keras
    import tensorflow as tf

    cases = {}
    for name in ("WeightNormAdam", "Adam"):
        optimizer = None if name == "WeightNormAdam" else keras.optimizers.Adam(1e-4)
        model, _ = build_training(model_name, "mixed_bfloat16", optimizer)
        opt = model.optimizer
        variables = model.trainable_variables
        opt.build(variables)
        grads = [tf.random.normal(v.shape) * 1e-3 for v in variables]
        apply = apply_function(opt, variables, grads)
        cases[name] = (lambda apply=apply, v=variables: [apply() for _ in range(10)]
                       and v[0].numpy())
    times = interleave(cases, repeats, warmup=1)
    print(f"{model_name}: optimiser apply_gradients alone ({len(variables)} variables), "
          f"medians of {repeats} interleaved rounds of 10 calls")
    print(format_table(["optimizer", "ms/step", "min ms"],
                       [[k, f"{100 * median(v):.1f}", f"{100 * min(v):.1f}"]
                        for k, v in times.items()]))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python benchmarks/profile_onednn.py",
                                description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(PROFILES) + sorted(INFER_ONLY), default="wdsr_b",
                   help="a network at its baseline (training: edsr, wdsr_a, wdsr_b) or its "
                        "paper's size (inference only: rcan, rdn, mdsr, rrdbnet, srvgg_compact)")
    p.add_argument("--scale", type=int, default=2, help="inference scale (default 2)")
    p.add_argument("--mode", choices=["infer", "train"], default="infer")
    p.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--runs", type=int, default=5,
                   help="profiled runs; per primitive the fastest is kept (default 5)")
    p.add_argument("--top", type=int, default=15, help="rows shown (default 15)")
    p.add_argument("--optimizer", action="store_true",
                   help="time the optimiser step alone instead (WeightNormAdam vs Adam)")
    p.add_argument("--repeats", type=int, default=7, help="rounds for --optimizer")
    p.add_argument("--torch", metavar="CASE", default=None,
                   help="profile the PyTorch side of this vs_pytorch.py case instead")
    p.add_argument("--torch-python", default=sys.executable,
                   help="the interpreter with torch (default: this one)")
    p.add_argument("--torch-profiler", action="store_true",
                   help="with --torch: torch.profiler's table per operator instead")
    p.add_argument("--official", metavar="DIR", default=None,
                   help="with --torch and a case of vs_pytorch.py's `official` group: the "
                        "official project's folder (as vs_pytorch.py's --edsr, --basicsr, "
                        "--realesrgan)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        if args.torch:
            run_torch_worker(args.torch, args.runs, args.torch_profiler, args.official)
        else:
            run_worker(args.model, args.mode, args.precision, args.runs, args.scale)
        return 0
    if args.optimizer:
        optimizer_share(args.model, args.repeats)
        return 0
    if args.mode == "train" and args.model in INFER_ONLY:
        p.error(f"--model {args.model}: inference only (--mode infer)")
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--model", args.model,
               "--mode", args.mode, "--precision", args.precision, "--runs", str(args.runs),
               "--scale", str(args.scale)]
    if args.torch:
        command = [args.torch_python, *command[1:], "--torch", args.torch]
        if args.official:
            command += ["--official", args.official]
        if args.torch_profiler:
            done = subprocess.run(command + ["--torch-profiler"], capture_output=True,
                                  text=True)
            print(done.stdout if done.returncode == 0 else done.stderr[-3000:])
            return done.returncode
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0 or MARK not in done.stdout:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    rows, total, wall = summarise(done.stdout)
    what = f"PyTorch {args.torch}" if args.torch else f"{args.model} {args.mode} {args.precision}"
    print(f"{what}: fastest wall {wall:.0f} ms of "
          f"{args.runs} runs (with verbose output); per primitive its fastest run, "
          f"{total:.0f} ms in all")
    print(format_table(
        ["ms", "share", "calls", "GFLOP/s", "primitive implementation prop shape dtype"],
        [[f"{ms:.1f}", f"{100 * ms / total:.0f}%", n,
          f"{flops / ms / 1e6:.0f}" if flops else "-", key]
         for ms, n, key, flops in rows[:args.top]], align=["<", ">", ">", ">", "<"]))
    reorders = sum(ms for ms, _, key, _ in rows if key.startswith("reorder"))
    print(f"reorders (layout conversions): {reorders:.1f} ms ({100 * reorders / total:.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
