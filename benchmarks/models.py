"""Speed of the sisr model families at their baseline sizes (run by hand, not in CI).

For each model: parameters, analytic GFLOPs for one LR image (2 x the multiply-accumulates
of every Conv2D/Dense; bias adds, activations, adds and the pixel shuffle are not counted),
the forward latency of `sisr.resolve` on a batch of one uint8 image, and the achieved
GFLOP/s as a fraction of this machine's dense float matmul GFLOP/s measured in the same
run. The matmul and the models are timed interleaved, round by round, and medians reported.

    python benchmarks/models.py                       # fp32, 256x256 LR, default models
    python benchmarks/models.py --models edsr-x2,wdsr-b-x2 --repeats 11
    python benchmarks/models.py --precision bfloat16  # mixed_bfloat16 vs a bfloat16 matmul
    python benchmarks/models.py --full-edsr           # adds full EDSR x2 (slow)
"""

import argparse
import os
import sys

# Before TensorFlow is imported, so that its C++ logging stays quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import sisr  # noqa: E402
from sisr.model import build  # noqa: E402

if __package__:
    from .common import format_table, interleave, median, model_cases, spread  # noqa: E402
else:  # run as a script: python benchmarks/models.py
    from common import format_table, interleave, median, model_cases, spread  # noqa: E402

CASES = model_cases("edsr-x2", "edsr-x4", "wdsr-a-x2", "wdsr-b-x2", "srresnet-x4",
                    "edsr-full-x2")
DEFAULT_CASES = ("edsr-x2", "edsr-x4", "wdsr-a-x2", "wdsr-b-x2", "srresnet-x4")
PRECISIONS = {"float32": ("float32", tf.float32), "bfloat16": ("mixed_bfloat16", tf.bfloat16)}


def layer_macs(layer, output_shape):
    """Multiply-accumulates of one Conv2D/Dense call that produced `output_shape`, else 0.

    Conv: H_out * W_out * (kh * kw * C_in / groups) * C_out, i.e. output pixels times the
    kernel size; Dense: every output row times the kernel size.
    """
    if isinstance(layer, keras.layers.Conv2D):
        if layer.data_format == "channels_first":
            positions = int(np.prod(output_shape[2:]))
        else:
            positions = int(np.prod(output_shape[1:-1]))
    elif isinstance(layer, keras.layers.Dense):
        positions = int(np.prod(output_shape[1:-1]))
    else:
        return 0
    return int(output_shape[0]) * positions * int(np.prod(layer.kernel.shape))


def count_macs(model, input_shape):
    """Multiply-accumulates of a forward pass of a functional `model` on `input_shape`.

    Walks `model.operations` (topologically sorted), propagating concrete shapes from the
    input through each operation's `compute_output_spec`, so that models built for any
    height and width get counted at the given one. Flat graphs only: a nested model or a
    layer called more than once raises ValueError rather than being miscounted.
    """
    if len(model.inputs) != 1:
        raise ValueError(f"{model.name}: count_macs needs a single-input model")
    specs = {id(model.inputs[0]): keras.KerasTensor(input_shape, dtype="float32")}
    total = 0
    for op in model.operations:
        if isinstance(op, keras.layers.InputLayer):
            continue
        # `op.input` / `op.output` belong to the layer's first call (a tensor, or a list of
        # them as for Add); for a nested model they are its own inputs and outputs.
        refs = keras.tree.flatten(op.input)
        if isinstance(op, keras.Model) or any(id(t) not in specs for t in refs):
            raise ValueError(
                f"{model.name}: cannot count layer {op.name!r}: nested models and shared "
                f"layers are not supported"
            )
        inputs = keras.tree.map_structure(lambda t: specs[id(t)], op.input)
        output = op.compute_output_spec(inputs)
        total += layer_macs(op, output.shape)
        for ref, spec in zip(keras.tree.flatten(op.output), keras.tree.flatten(output)):
            specs[id(ref)] = spec
    return total


def check_mac_counter(size):
    """Compares `count_macs` with closed forms for EDSR baseline x2 and WDSR-B baseline x2."""
    pixels = size * size
    f = 64
    # head 3->F, 16 blocks x 2 + body conv F->F, upsampler F->4F (3x3, LR); output 3x3 F->3 (HR)
    edsr_closed = pixels * 9 * (3 * f + 33 * f * f + f * 4 * f) + 4 * pixels * 9 * f * 3
    f, wide, low = 32, 32 * 6, int(32 * 0.8)
    # head 3x3 3->F; 16 x (1x1 F->6F, 1x1 6F->25, 3x3 25->F); main 3x3 F->12; skip 5x5 3->12
    wdsr_closed = pixels * (9 * 3 * f + 16 * (f * wide + wide * low + 9 * low * f)
                            + 9 * f * 12 + 25 * 3 * 12)
    for name, closed in (("edsr-x2", edsr_closed), ("wdsr-b-x2", wdsr_closed)):
        builder, arguments = CASES[name]
        counted = count_macs(build(builder, **arguments), (1, size, size, 3))
        if counted != closed:
            raise AssertionError(f"{name}: counted {counted} MACs, closed form gives {closed}")


def matmul_case(n, dtype):
    """A zero-argument callable running one compiled n x n matmul, and its FLOPs."""
    a = tf.random.normal([n, n], dtype=tf.float32, seed=1)
    b = tf.random.normal([n, n], dtype=tf.float32, seed=2)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    matmul = tf.function(tf.linalg.matmul)

    def run():
        # CPU kernels run synchronously, so the call returns once the product exists; only
        # a scalar is fetched to keep a 64 MB copy out of the timing.
        return matmul(a, b)[0, 0].numpy()

    return run, 2 * n ** 3


def model_case(model, size):
    """A zero-argument callable running `sisr.resolve` on one random uint8 LR image."""
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(1, size, size, 3), dtype=np.uint8)

    def run():
        return sisr.resolve(model, batch)

    return run


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/models.py",
        description="Parameters, GFLOPs, resolve latency and matmul-relative throughput "
                    "of the sisr model families (interleaved runs, medians).",
    )
    parser.add_argument("--models", default=",".join(DEFAULT_CASES),
                        help=f"comma-separated cases out of {', '.join(CASES)} "
                             f"(default: %(default)s)")
    parser.add_argument("--full-edsr", action="store_true",
                        help="also run full EDSR x2 (256 filters, 32 blocks; slow)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed rounds; each runs every case once (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256,
                        help="height and width of the LR input (default: %(default)s)")
    parser.add_argument("--matmul-size", type=int, default=4096,
                        help="n of the n x n reference matmul (default: %(default)s)")
    parser.add_argument("--precision", choices=sorted(PRECISIONS), default="float32",
                        help="float32, or mixed_bfloat16 models against a bfloat16 matmul")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra-op threads (default 0: TensorFlow decides)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown or not names:
        parser.error(f"--models: unknown case(s) {', '.join(unknown) or '(none given)'}; "
                     f"known: {', '.join(CASES)}")
    if args.full_edsr and "edsr-full-x2" not in names:
        names.append("edsr-full-x2")
    args.names = list(dict.fromkeys(names))
    for flag, value, low in (("--repeats", args.repeats, 1), ("--size", args.size, 8),
                             ("--matmul-size", args.matmul_size, 64),
                             ("--threads", args.threads, 0)):
        if value < low:
            parser.error(f"{flag} must be at least {low}, got {value}")
    return args


def main(argv=None):
    args = parse_args(argv)
    # resolve() compiles one tf.function per model, which TensorFlow's retracing detector
    # reports as a warning once five models have been traced; nothing is retraced here.
    tf.get_logger().setLevel("ERROR")
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    check_mac_counter(args.size)

    policy, matmul_dtype = PRECISIONS[args.precision]
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        models = {name: build(CASES[name][0], **CASES[name][1]) for name in args.names}
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    matmul_name = f"matmul {args.matmul_size}"
    matmul_run, matmul_flops = matmul_case(args.matmul_size, matmul_dtype)
    cases = {matmul_name: matmul_run}
    flops = {matmul_name: matmul_flops}
    params = {matmul_name: ""}
    for name, model in models.items():
        cases[name] = model_case(model, args.size)
        flops[name] = 2 * count_macs(model, (1, args.size, args.size, 3))
        params[name] = f"{model.count_params():,}"

    def progress(r):
        print(f"round {r + 1}/{args.repeats}", file=sys.stderr, flush=True)

    times = interleave(cases, args.repeats, warmup=1, on_round=progress)

    reference = matmul_flops / median(times[matmul_name])
    rows = []
    for name, samples in times.items():
        rate = flops[name] / median(samples)
        rows.append([
            name, params[name], f"{flops[name] / 1e9:.1f}", f"{1e3 * median(samples):.1f}",
            f"{1e3 * min(samples):.1f}", f"{100 * spread(samples):.0f}%",
            f"{rate / 1e9:.1f}", f"{100 * rate / reference:.0f}%",
        ])
    print(f"sisr {sisr.__version__}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs, intra-op threads "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}; "
          f"{args.precision}; LR {args.size}x{args.size}, batch 1; "
          f"medians of {args.repeats} interleaved rounds")
    print(format_table(
        ["case", "params", "GFLOPs", "ms", "min ms", "IQR", "GFLOP/s", "of matmul"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
