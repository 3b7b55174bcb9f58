"""sisr side by side with PyTorch on the same architectures and inputs (run by hand).

The PyTorch side builds the official module structures (EDSR-PyTorch's EDSR, the WDSR
authors' WDSR-B with weight norm; as in tests/test_port.py) at the baseline sizes; sisr
builds its own. Both get the same random inputs and the same number of threads; every case
is timed in interleaved rounds (this machine's speed swings 2x) and the ratios are
PyTorch median / sisr median (> 1: sisr is faster).

- inference fp32: x2, LR 128x128, batch 1; sisr through `sisr.resolve`, PyTorch under
  `torch.inference_mode()` (WDSR-B with weight norm folded: the faster PyTorch variant);
- training bf16: x2, batch 16, LR 48, L1 loss, Adam; sisr compiled as
  `sisr.training.trainer.train` does under mixed_bfloat16 (WDSR-B with WeightNormAdam),
  PyTorch fp32 weights under `torch.autocast("cpu", torch.bfloat16)` (WDSR-B with
  `torch.nn.utils.parametrizations.weight_norm`, as the official code trains).

    python benchmarks/vs_pytorch.py                        # all cases, 5 rounds
    python benchmarks/vs_pytorch.py --cases edsr-infer,wdsr-b-infer --repeats 9
    python benchmarks/vs_pytorch.py --channels-last        # PyTorch in channels_last
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# PyTorch's OpenMP threads spin at barriers by default; on a machine whose cores are shared
# with other processes a descheduled peer makes that spin cost seconds (EDSR 128x128 took
# 6 s instead of 0.35 s here). PASSIVE makes them sleep, giving PyTorch its fair speed;
# set OMP_WAIT_POLICY=ACTIVE to measure PyTorch's default on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

if __package__:
    from .common import MODELS, format_table, interleave, median, spread  # noqa: E402
else:  # run as a script: python benchmarks/vs_pytorch.py
    from common import MODELS, format_table, interleave, median, spread  # noqa: E402
# EDSR and WDSR in PyTorch: tests/torch_reference.py, a rebuild of the official modules
# (checked against the official code's fixtures by tests/test_torch_reference.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import torch_reference  # noqa: E402

SCALE = 2
INFER_SIZE, TRAIN_BATCH, TRAIN_PATCH = 128, 16, 48
# case -> (family, mode); targets of the performance issue (PyTorch time / sisr time).
CASES = {
    "edsr-infer": ("edsr", "infer"),
    "wdsr-b-infer": ("wdsr_b", "infer"),
    "edsr-train": ("edsr", "train"),
    "wdsr-b-train": ("wdsr_b", "train"),
}
TARGETS = {"edsr-infer": 1.5, "wdsr-b-infer": 2.0, "wdsr-b-train": 3.0}
ARGUMENTS = {"edsr": MODELS[f"edsr-x{SCALE}"][1], "wdsr_b": MODELS[f"wdsr-b-x{SCALE}"][1]}
PROFILES = {"edsr": "edsr-16", "wdsr_b": "wdsr-b-16"}


# ----------------------------------------------------------------- PyTorch modules


def fold_weight_norm(torch, model):
    """Removes the (legacy, as in the official code) weight norm, keeping the weights."""
    for module in model.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
    return model


# ------------------------------------------------------------------------- cases


def to_torch(torch, array, channels_last):
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
    return tensor.contiguous(memory_format=torch.channels_last) if channels_last else tensor


def torch_model(torch, family, channels_last):
    if family == "edsr":  # the baselines: 64 filters, 16 blocks; 32 filters, expansion 6
        model = torch_reference.edsr(SCALE, feats=64, blocks=16)
    else:
        model = torch_reference.wdsr("b", SCALE, feats=32, blocks=16, expansion=6)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def infer_cases(torch, family, lr, channels_last):
    import sisr
    from sisr.model import build

    model = build(family, **ARGUMENTS[family])
    net = torch_model(torch, family, channels_last).eval()
    if family == "wdsr_b":
        fold_weight_norm(torch, net)
    x = to_torch(torch, lr, channels_last)

    def run_torch():
        with torch.inference_mode():
            return net(x).clamp_(0, 255).round_()

    def run_sisr():
        return sisr.resolve(model, lr)

    return run_torch, run_sisr


def train_cases(torch, family, lr, hr, channels_last, steps):
    import keras

    from sisr.training import config as sisr_config
    from sisr.training import trainer

    config = sisr_config.resolve(PROFILES[family], {"scale": SCALE,
                                                    "batch_size": TRAIN_BATCH,
                                                    "lr_patch": TRAIN_PATCH})
    with trainer.precision("mixed_bfloat16"):
        model = trainer.build_model(config)
        model.compile(optimizer=trainer.make_optimizer(config),
                      loss=keras.losses.MeanAbsoluteError())
    net = torch_model(torch, family, channels_last).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999))
    x, y = to_torch(torch, lr, channels_last), to_torch(torch, hr, channels_last)

    def run_torch():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = torch.nn.functional.l1_loss(net(x).float(), y)
            loss.backward()
            optimizer.step()
        return loss.item()

    def run_sisr():
        for _ in range(steps):
            loss = model.train_on_batch(lr, hr)
        return loss

    return run_torch, run_sisr


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python benchmarks/vs_pytorch.py",
                                description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES),
                   help=f"comma-separated, out of {', '.join(CASES)} (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds")
    p.add_argument("--infer-calls", type=int, default=5,
                   help="inference calls per timed run (default 5)")
    p.add_argument("--train-steps", type=int, default=2,
                   help="training steps per timed run (default 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="intra-op threads of both frameworks (default: all CPUs)")
    p.add_argument("--channels-last", action="store_true",
                   help="run PyTorch in channels_last memory format (default: NCHW, as the "
                        "official code)")
    args = p.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown or not args.cases:
        p.error(f"--cases: unknown {', '.join(unknown) or '(none)'}; known: {', '.join(CASES)}")
    for flag, value in (("--repeats", args.repeats), ("--infer-calls", args.infer_calls),
                        ("--train-steps", args.train_steps), ("--threads", args.threads)):
        if value < 1:
            p.error(f"{flag} must be at least 1, got {value}")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: nothing to compare (pip install torch)")
        return 0
    import keras
    import tensorflow as tf

    import sisr

    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    lr_infer = rng.integers(0, 256, (1, INFER_SIZE, INFER_SIZE, 3)).astype(np.float32)
    lr_train = rng.integers(0, 256, (TRAIN_BATCH, TRAIN_PATCH, TRAIN_PATCH, 3)).astype(np.float32)
    hr_train = rng.integers(0, 256, (TRAIN_BATCH, TRAIN_PATCH * SCALE, TRAIN_PATCH * SCALE, 3)
                            ).astype(np.float32)

    cases, units = {}, {}
    for case in args.cases:
        family, mode = CASES[case]
        if mode == "infer":
            run_torch, run_sisr = infer_cases(torch, family, lr_infer, args.channels_last)
            calls = args.infer_calls
        else:
            run_torch, run_sisr = train_cases(torch, family, lr_train, hr_train,
                                              args.channels_last, args.train_steps)
            calls = 1
        for side, run in (("pytorch", run_torch), ("sisr", run_sisr)):
            if mode == "infer":  # bind `calls` now: the loop rebinds it for later cases
                cases[(case, side)] = (lambda run=run, calls=calls: [run() for _ in range(calls)])
            else:
                cases[(case, side)] = run
            units[(case, side)] = calls if mode == "infer" else args.train_steps
        start = time.perf_counter()
        run_torch(), run_sisr()  # trace, compile, create primitives outside the timings
        print(f"{case}: built and warmed up in {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)

    def progress(r):
        print(f"round {r + 1}/{args.repeats}", file=sys.stderr, flush=True)

    times = interleave(cases, args.repeats, warmup=0, on_round=progress)

    rows = []
    for case in args.cases:
        per = {side: median(times[(case, side)]) / units[(case, side)]
               for side in ("pytorch", "sisr")}
        ratio = per["pytorch"] / per["sisr"]
        paired = [t / s for t, s in zip(times[(case, "pytorch")], times[(case, "sisr")])]
        target = TARGETS.get(case)
        rows.append([case, f"{1e3 * per['pytorch']:.1f}", f"{1e3 * per['sisr']:.1f}",
                     (f"{100 * spread(times[(case, 'pytorch')]):.0f}%/"
                      f"{100 * spread(times[(case, 'sisr')]):.0f}%"),
                     f"{ratio:.2f}", f"{min(paired):.2f}-{max(paired):.2f}",
                     "-" if target is None else f">= {target}: "
                     + ("met" if ratio >= target else "NOT met")])
    mode = "channels_last" if args.channels_last else "NCHW"
    print(f"sisr {sisr.__version__} (TensorFlow {tf.__version__}, Keras {keras.__version__}) vs "
          f"PyTorch {torch.__version__} ({mode}, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}); {args.threads} threads each; x{SCALE}; "
          f"inference LR {INFER_SIZE}x{INFER_SIZE} batch 1 fp32, training batch "
          f"{TRAIN_BATCH} LR {TRAIN_PATCH} bf16; medians of {args.repeats} interleaved rounds")
    print(format_table(["case", "PyTorch ms", "sisr ms", "IQR pt/sisr", "PyTorch/sisr",
                        "per round", "target"], rows))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
