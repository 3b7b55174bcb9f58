"""sisr side by side with PyTorch, each in its own process at its defaults (run by hand).

The parent process writes each case's inputs once (.npy), starts one worker process per
framework (`--worker torch` imports only torch, numpy and tests/torch_reference.py, a rebuild
of the official modules; `--worker sisr` imports sisr and TensorFlow), lets each build and
warm up, then asks them in turn for timed runs, A B / B A / A B ..., so that a slow spell of
the machine hits both alike; it reports medians, interquartile ranges and per-round ratios
(PyTorch time / sisr time, > 1: sisr faster).

Fairness rules: each framework uses its default threading; no OMP_*, KMP_*, MKL_* or other
variable is set for either unless given with `--env NAME=VALUE`, which then goes to both;
both get the same number of intra-op threads (`--threads`, default all CPUs). Both start from
the same NHWC float32 array on [0, 255] and end with uint8 NHWC pixels in a NumPy array
(sisr: `sisr.resolve`; PyTorch: NCHW conversion, forward under `torch.inference_mode()`,
clamp, round). bf16 inference: sisr's guarded mixed copy (`resolve(..., precision="bfloat16")`)
against PyTorch under `torch.autocast("cpu", torch.bfloat16)`. Training: one step is forward,
L1 loss, backward and Adam (sisr compiled as `sisr.training.trainer.train` does, bf16 as
mixed_bfloat16; PyTorch fp32 weights under autocast bf16, as the official code would).

    python benchmarks/vs_pytorch.py --torch-python /path/to/torch/venv/bin/python
    python benchmarks/vs_pytorch.py --cases large --rounds 5
    python benchmarks/vs_pytorch.py --cases edsr-x2-fp32 --env OMP_WAIT_POLICY=PASSIVE
    python benchmarks/vs_pytorch.py --cases official --rounds 5 --edsr EDSR-PyTorch/src/model \
        --basicsr BasicSR/basicsr/archs --realesrgan Real-ESRGAN/realesrgan/archs

`--cases default,large --rounds 5` takes about 20 minutes on 2 idle cores (the default group
about 5, the LR 512 and batch 4 cases the rest); `--cases official` (the paper-size networks,
below) an estimated 25-40 more. The output is a markdown table and the
environment record (versions, threads, load average, CPU flags, command line), ready to
paste into benchmarks/README.md; `--json` keeps every timing. `--same-process` runs both
frameworks in this one process instead: a diagnostic only (one framework's idle OpenMP
threads then spin or sleep beside the other's work, and torch with TensorFlow in one process
can crash), never for published figures.

The `official` group (RCAN, RDN, MDSR baseline, RRDBNet, SRVGGNetCompact) runs the
official modules themselves (benchmarks/official.py loads them from the projects' files,
given with --edsr, --basicsr and --realesrgan; none is copied here), fp32 and for RRDBNet
and SRVGGNetCompact guarded bf16 inference at LR 128. Their PyTorch worker saves the
module's weights (official init, seed 0) and the sisr worker ports them (`sisr.port`, which
also checks sisr's builder arguments against the checkpoint), so both run the same network
with the same weights; before timing, the parent compares their float32 outputs and
refuses the case if they differ by more than AGREE (a wrong configuration cannot pass).

A new network adds one entry to NETWORKS (a rebuild in tests/torch_reference.py) or OFFICIAL
(an official module loaded by benchmarks/official.py, and the sisr port format of its
weights).
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time

if __package__:
    from . import official
    from .common import format_table, median, spread
else:  # run as a script: python benchmarks/vs_pytorch.py (also how the workers start)
    import official
    from common import format_table, median, spread

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.abspath(__file__)
TESTS = os.path.join(HERE, "..", "tests")
SIDES = ("torch", "sisr")
NAMES = {"torch": "PyTorch", "sisr": "sisr"}
# Environment variables that steer threading or oneDNN: recorded, and never set by default.
THREAD_PREFIXES = ("OMP_", "KMP_", "MKL_", "GOMP_", "DNNL_", "ONEDNN_", "TF_NUM_",
                   "TF_ENABLE_ONEDNN", "OPENBLAS_", "TORCH_")
# Load average per CPU above which a run is marked as shared (the benchmark alone brings it
# to about 1 per CPU).
LOADED = 1.5
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
             "amx_int8")


@dataclasses.dataclass(frozen=True)
class Case:
    """One comparison: the same network in both frameworks, on the same inputs.

    sisr: (registered builder, arguments); torch: (factory in tests/torch_reference.py,
    arguments); mode "infer" or "train"; precision "float32" or "bfloat16"; batch and LR
    size of the input; weight_norm (PyTorch WDSR): "shipped" keeps the official module's
    weight norm, recomputed in every forward pass, "removed" folds it into the weights;
    profile: sisr's training profile (training cases: optimiser, loss); calls: inference
    calls or training steps per timed run. port: for the official modules (torch: a factory
    of benchmarks/official.py), the `sisr.port` format that copies their weights into sisr,
    so that both sides run the same weights and their outputs are compared.
    """

    sisr: tuple
    torch: tuple
    mode: str = "infer"
    precision: str = "float32"
    batch: int = 1
    size: int = 128
    weight_norm: str = "removed"
    profile: str = None
    calls: int = 3
    target: float = None
    group: str = "default"
    port: str = None

    @property
    def official(self):
        """The official module's project (benchmarks/official.py), None for a rebuild."""
        return official.FACTORIES[self.torch[0]][0] if self.port else None

    @property
    def scale(self):
        return self.sisr[1]["scale"]


# The networks compared: name -> (sisr builder and arguments, PyTorch factory in
# tests/torch_reference.py and arguments, both as functions of the scale; sisr's training
# profile). A network added here gets every case of `_cases`; a case of its own is one
# `Case(...)` entry added to CASES.
NETWORKS = {
    "edsr": (lambda scale: ("edsr", dict(scale=scale, num_filters=64, num_res_blocks=16)),
             lambda scale: ("edsr", dict(scale=scale, feats=64, blocks=16)),
             "edsr-16"),
    "wdsr-b": (lambda scale: ("wdsr_b", dict(scale=scale, num_filters=32, num_res_blocks=16,
                                             res_block_expansion=6)),
               lambda scale: ("wdsr", dict(variant="b", scale=scale, feats=32, blocks=16,
                                           expansion=6)),
               "wdsr-b-16"),
}
# The official modules (benchmarks/official.py, loaded from the projects' files): name ->
# (sisr builder and arguments, official factory and arguments, both as functions of the
# scale; sisr's port format; scales; precisions). Inference at LR 128, group "official".
OFFICIAL = {
    "rcan": (lambda scale: ("rcan", dict(scale=scale, num_groups=10, num_blocks=20,
                                         num_filters=64, reduction=16)),
             lambda scale: ("rcan", dict(scale=scale, n_resgroups=10, n_resblocks=20,
                                         n_feats=64, reduction=16)),
             "edsr-pytorch-rcan", (2, 4), ("float32",)),
    "rdn": (lambda scale: ("rdn", dict(scale=scale, num_blocks=16, num_layers=8,
                                       growth_rate=64, num_filters=64)),
            lambda scale: ("rdn", dict(scale=scale, config="B", G0=64)),
            "edsr-pytorch-rdn", (2, 4), ("float32",)),
    # one network with x2, x3 and x4 branches (as published); each case runs one path
    "mdsr": (lambda scale: ("mdsr", dict(scale=scale, num_filters=64, num_res_blocks=16)),
             lambda scale: ("mdsr", dict(scale=scale, n_feats=64, n_resblocks=16,
                                         scales=(2, 3, 4))),
             "mdsr-pytorch", (2, 4), ("float32",)),
    "rrdbnet": (lambda scale: ("rrdbnet", dict(scale=scale, num_feat=64, num_block=23,
                                               num_grow_ch=32)),
                lambda scale: ("rrdbnet", dict(scale=scale, num_feat=64, num_block=23,
                                               num_grow_ch=32)),
                "basicsr-rrdb", (4,), ("float32", "bfloat16")),
    "srvgg": (lambda scale: ("srvgg_compact", dict(scale=scale, num_feat=64, num_conv=32,
                                                   act="prelu")),
              lambda scale: ("srvgg", dict(scale=scale, num_feat=64, num_conv=32,
                                           act_type="prelu")),
              "realesrgan-srvgg", (4,), ("float32", "bfloat16")),
}
# The targets of issues 26, 20 and 21 (PyTorch time / sisr time).
TARGETS = {"edsr-x2-fp32": 1.3, "wdsr-b-x2-fp32": 2.0, "edsr-x2-bf16": 2.5,
           "edsr-train-bf16": 2.5, "wdsr-b-train-bf16": 2.5,
           **{f"{net}-x{scale}-fp32": 1.5 for net, (*_, scales, _) in OFFICIAL.items()
              for scale in scales}}
SHORT = {"float32": "fp32", "bfloat16": "bf16"}
# Largest |sisr - PyTorch| (0..255 scale) of the float32 outputs of an official module and
# its port: above it the two sides do not run the same network.
AGREE = 0.05


def _cases():
    cases = {}
    for net, (sisr, torch, profile) in NETWORKS.items():
        for precision, short in (("float32", "fp32"), ("bfloat16", "bf16")):
            cases[f"{net}-x2-{short}"] = Case(sisr(2), torch(2), precision=precision)
            if torch(2)[0] == "wdsr":  # the official module as shipped: weight norm every pass
                cases[f"{net}-x2-{short}-wn"] = Case(sisr(2), torch(2), precision=precision,
                                                     weight_norm="shipped")
            for scale in (2, 4):
                cases[f"{net}-x{scale}-512-{short}"] = Case(
                    sisr(scale), torch(scale), precision=precision, size=512, calls=1,
                    group="large")
            cases[f"{net}-x2-b4-{short}"] = Case(sisr(2), torch(2), precision=precision,
                                                 batch=4, calls=1, group="large")
        cases[f"{net}-train-bf16"] = Case(
            sisr(2), torch(2), mode="train", precision="bfloat16", batch=16, size=48,
            weight_norm="shipped", profile=profile, calls=2)
    for net, (sisr, torch, port, scales, precisions) in OFFICIAL.items():
        for scale in scales:
            for precision in precisions:
                cases[f"{net}-x{scale}-{SHORT[precision]}"] = Case(
                    sisr(scale), torch(scale), precision=precision, calls=1,
                    group="official", port=port)
    return {name: dataclasses.replace(case, target=TARGETS.get(name))
            for name, case in cases.items()}


CASES = _cases()
GROUPS = {"default": [n for n, c in CASES.items() if c.group == "default"],
          "large": [n for n, c in CASES.items() if c.group == "large"],
          "official": [n for n, c in CASES.items() if c.group == "official"],
          "all": list(CASES)}


# ------------------------------------------------------------------------ inputs


def input_paths(directory, name):
    return os.path.join(directory, f"{name}-lr.npy"), os.path.join(directory, f"{name}-hr.npy")


def write_inputs(directory, name, case):
    """The case's LR (and for training HR) batch, NHWC float32 on [0, 255], written once."""
    import numpy as np

    rng = np.random.default_rng(0)
    lr_path, hr_path = input_paths(directory, name)
    shape = (case.batch, case.size, case.size, 3)
    np.save(lr_path, rng.integers(0, 256, shape).astype(np.float32))
    paths = [lr_path]
    if case.mode == "train":
        hr = (case.batch, case.size * case.scale, case.size * case.scale, 3)
        np.save(hr_path, rng.integers(0, 256, hr).astype(np.float32))
        paths.append(hr_path)
    return paths


# ----------------------------------------------------------------------- the sides


def thread_env():
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(THREAD_PREFIXES)}


def torch_side(case, inputs, threads, channels_last, official_dir=None, state=None):
    """(call, info) for PyTorch: `call()` is one inference call or one training step.

    An official module (`case.port`) is loaded from `official_dir`; `state`, if given, is
    where its state_dict is saved (.npz) for the sisr side to port. `call.float_output()`
    is the float32 NHWC output of an inference case's input (no rounding, no autocast)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    factory, arguments = case.torch
    if case.port:
        net = official.build(factory, official_dir, **arguments)
        if state:
            np.savez(state, **official.state_dict(net))
    else:
        sys.path.insert(0, TESTS)
        import torch_reference

        net = getattr(torch_reference, factory)(**arguments)
    if case.weight_norm == "removed":
        for module in net.modules():
            if hasattr(module, "weight_g"):  # legacy weight norm, as the official code
                torch.nn.utils.remove_weight_norm(module)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    arrays = [np.load(path) for path in inputs]
    bf16 = case.precision == "bfloat16"

    def to_torch(array):
        return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous(memory_format=memory_format)

    if case.mode == "infer":
        net.eval()
        lr = arrays[0]

        def call():
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                sr = net(to_torch(lr)).float().clamp_(0, 255).round_()
                return sr.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

        def float_output():
            with torch.inference_mode():
                return net(to_torch(lr)).float().permute(0, 2, 3, 1).contiguous().numpy()

        call.float_output = float_output
    else:
        net.train()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
        x, y = to_torch(arrays[0]), to_torch(arrays[1])

        def call():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.l1_loss(net(x).float(), y)
            loss.backward()
            optimizer.step()
            return loss.item()

    config = torch.__config__.show()
    onednn = [line.split("MKL-DNN")[1].split("(")[0].strip()
              for line in config.splitlines() if "MKL-DNN" in line]
    info = {"versions": {"torch": torch.__version__, "numpy": np.__version__,
                         "python": platform.python_version(),
                         "oneDNN": onednn[0] if onednn else "?"},
            "threads": {"intra-op": torch.get_num_threads(),
                        "inter-op": torch.get_num_interop_threads(),
                        "backend": torch.__config__.parallel_info().splitlines()[-1]
                        .replace("ATen parallel backend:", "").strip()},
            "model": (f"official {factory}{arguments}" if case.port else
                      f"{factory}{arguments} weight norm {case.weight_norm}")
                     + f", {'channels_last' if channels_last else 'NCHW'}"}
    return call, info


def sisr_side(case, inputs, threads, state=None):
    """(call, info) for sisr, as `torch_side`; an official module's case ports the weights
    that the PyTorch side saved in `state` (`sisr.port`, the format `case.port`, checking
    the builder arguments against the checkpoint's), else builds with random weights."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np
    import tensorflow as tf

    import sisr

    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    keras.utils.set_random_seed(0)
    arrays = [np.load(path) for path in inputs]
    builder, arguments = case.sisr
    if case.mode == "infer":
        from sisr.model import build

        if case.port:
            from sisr.port import port

            with np.load(state) as z:
                model = port(dict(z), source=case.port, **arguments)
        else:
            model = build(builder, **arguments)
        lr = arrays[0]

        def call():
            return np.asarray(sisr.resolve(model, lr, precision=case.precision))

        def float_output():
            return np.asarray(model(lr, training=False), dtype=np.float32)

        call.float_output = float_output
    else:
        from sisr.training import config as sisr_config
        from sisr.training import trainer

        config = sisr_config.resolve(case.profile, {"scale": case.scale,
                                                    "batch_size": case.batch,
                                                    "lr_patch": case.size})
        policy = "mixed_bfloat16" if case.precision == "bfloat16" else "float32"
        with trainer.precision(policy):
            model = trainer.build_model(config)
            model.compile(optimizer=trainer.make_optimizer(config),
                          loss=keras.losses.MeanAbsoluteError())
        lr, hr = arrays

        def call():
            return model.train_on_batch(lr, hr)

    info = {"versions": {"sisr": sisr.__version__, "tensorflow": tf.__version__,
                         "keras": keras.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            "threads": {"intra-op": tf.config.threading.get_intra_op_parallelism_threads(),
                        "inter-op": tf.config.threading.get_inter_op_parallelism_threads()
                        or "default"},
            "model": f"{builder}{arguments}" + (f", ported ({case.port})" if case.port else "")}
    return call, info


def make_side(side, case, inputs, args):
    if side == "torch":
        return torch_side(case, inputs, args.threads, args.channels_last,
                          args.official, args.state)
    return sisr_side(case, inputs, args.threads, args.state)


def save_outputs(call, output, prefix, side):
    """Writes the uint8 output of `call` (`output`) and the float32 one for the parent's
    comparison; returns their paths."""
    import numpy as np

    paths = {"uint8": f"{prefix}-{side}-uint8.npy", "float32": f"{prefix}-{side}-float32.npy"}
    np.save(paths["uint8"], output)
    np.save(paths["float32"], call.float_output())
    return paths


def timed(call, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def worker(args):
    """A worker: builds one side of one case, warms up, answers "run" lines on stdin with
    one JSON line of timings on stdout (everything else the frameworks print goes to
    stderr), until "quit" or end of input."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints of the frameworks must not break the protocol
    case = CASES[args.case]
    start = time.perf_counter()
    call, info = make_side(args.worker, case, args.inputs, args)
    for _ in range(args.warmup):  # trace, compile, create primitives outside the timings
        call()
    if args.outputs:
        info["outputs"] = save_outputs(call, call(), args.outputs, args.worker)
    info.update(ready=True, side=args.worker, pid=os.getpid(), inputs=args.inputs,
                env=thread_env(), setup_s=round(time.perf_counter() - start, 1))
    out.write(json.dumps(info) + "\n")
    for line in sys.stdin:
        if line.strip() != "run":
            break
        out.write(json.dumps({"times": timed(call, args.calls)}) + "\n")
    return 0


# ------------------------------------------------------------------------- parent


class Worker:
    """A worker process of one side; `run()` returns its timings of one timed run."""

    def __init__(self, side, command, env, log):
        self.side, self.log = side, log
        with open(log, "w") as stderr:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=stderr, env=env,
                                            text=True, bufsize=1)
        self.info = self._reply()

    def _reply(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            with open(self.log) as f:
                tail = "".join(f.readlines()[-15:])
            hint = (f" (a module is missing: give an interpreter that has it with "
                    f"--{self.side}-python)" if "No module named" in tail else "")
            raise RuntimeError(f"the {NAMES[self.side]} worker exited with status "
                               f"{self.process.returncode}{hint}; its last lines:\n{tail}")
        return json.loads(line)

    def run(self):
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return self._reply()["times"]

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


class InProcess:
    """--same-process: a side run in this process (diagnostic only)."""

    def __init__(self, side, call, info, calls):
        self.side, self.call, self.calls = side, call, calls
        self.info = dict(info, side=side, pid=os.getpid(), env=thread_env())

    def run(self):
        return timed(self.call, self.calls)

    def close(self):
        pass


def cpu_record():
    flags, model = set(), "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "cpus": cpus,
            "flags": {flag: flag in flags for flag in CPU_FLAGS}}


def load():
    return round(os.getloadavg()[0], 2)


def worker_env(extra):
    env = dict(os.environ)  # the parent's environment, unchanged ...
    env.update(extra)  # ... but for the user's --env, given to both sides alike
    return env


def official_dir(case, args):
    """The folder of `case`'s official project (given on the command line), or None."""
    return getattr(args, case.official) if case.official else None


def agreement(case, infos):
    """How far apart the two sides' outputs are (an official module and its port run the
    same weights): RuntimeError if their shapes differ or, in float32, if they differ by
    more than AGREE, i.e. the two sides do not run the same network."""
    import numpy as np

    out = {side: {kind: np.load(path) for kind, path in infos[side]["outputs"].items()}
           for side in SIDES}
    shapes = {side: out[side]["uint8"].shape for side in SIDES}
    if len(set(shapes.values())) > 1 or \
            out["torch"]["float32"].shape != out["sisr"]["float32"].shape:
        raise RuntimeError(f"the outputs have different shapes: PyTorch {shapes['torch']}, "
                           f"sisr {shapes['sisr']}")
    diff = float(np.abs(out["torch"]["float32"] - out["sisr"]["float32"]).max())
    found = {"float32_max_diff": diff,
             "float32_std": float(out["torch"]["float32"].std()),
             "uint8_max_diff": int(np.abs(out["torch"]["uint8"].astype(np.int16)
                                          - out["sisr"]["uint8"]).max()),
             "shape": list(shapes["torch"])}
    if not diff <= AGREE:
        raise RuntimeError(f"the float32 outputs differ by up to {diff:.4g} (> {AGREE} on "
                           f"the 0..255 scale): the two sides do not run the same network")
    return found


def compare(name, case, args, directory):
    """Times one case; returns its record (infos of both sides, rounds)."""
    inputs = write_inputs(directory, name, case)
    calls = args.calls or case.calls
    workers = {}
    shared = {}  # an official module's case: its weights file and the outputs' prefix
    if case.port:
        shared = {"state": os.path.join(directory, f"{name}-state.npz"),
                  "outputs": os.path.join(directory, name)}
    try:
        for side in SIDES:  # one after the other: neither builds while the other warms up
            started = time.perf_counter()
            if args.same_process:
                side_args = argparse.Namespace(**{**vars(args), "official": official_dir(
                    case, args), "state": None, "outputs": None, **shared})
                try:
                    call, info = make_side(side, case, inputs, side_args)
                except ImportError as error:
                    raise RuntimeError(f"--same-process needs torch and sisr in this "
                                       f"interpreter: {error}") from error
                for _ in range(args.warmup):
                    call()
                if shared:
                    info["outputs"] = save_outputs(call, call(), shared["outputs"], side)
                workers[side] = InProcess(side, call, info, calls)
            else:
                python = args.torch_python if side == "torch" else args.sisr_python
                command = [python, SCRIPT, "--worker", side, "--case", name,
                           "--threads", str(args.threads), "--warmup", str(args.warmup),
                           "--calls", str(calls), "--inputs", *inputs]
                if args.channels_last:
                    command.append("--channels-last")
                if shared:
                    command += ["--state", shared["state"], "--outputs", shared["outputs"]]
                    if side == "torch":
                        command += ["--official", official_dir(case, args)]
                workers[side] = Worker(side, command, worker_env(args.env),
                                       os.path.join(directory, f"{name}-{side}.log"))
            print(f"{name}: {NAMES[side]} built and warmed up in "
                  f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        agree = agreement(case, {s: w.info for s, w in workers.items()}) if shared else None
        if agree:
            print(f"{name}: outputs agree: float32 max |diff| {agree['float32_max_diff']:.2g} "
                  f"(output std {agree['float32_std']:.1f}), {case.precision} max "
                  f"{agree['uint8_max_diff']} levels", file=sys.stderr, flush=True)
        rounds = []
        for r in range(args.rounds):
            order = SIDES if r % 2 == 0 else SIDES[::-1]
            entry = {"order": list(order), "load": load()}
            for side in order:
                time.sleep(args.pause)  # the other side's threads settle (spin, then sleep)
                entry[side] = workers[side].run()
            rounds.append(entry)
            print(f"{name}: round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    finally:
        for w in workers.values():
            w.close()
    return {"case": name, "mode": case.mode, "precision": case.precision,
            "batch": case.batch, "size": case.size, "scale": case.scale, "calls": calls,
            "weight_norm": case.weight_norm, "target": case.target, "agreement": agree,
            "workers": {side: w.info for side, w in workers.items()}, "rounds": rounds}


def summary(record):
    """Per-call (or per-step) medians and IQRs of both sides, and the ratio."""
    per = {side: [statistics.fmean(r[side]) for r in record["rounds"]] for side in SIDES}
    med = {side: median(per[side]) for side in SIDES}
    paired = [t / s for t, s in zip(per["torch"], per["sisr"])]
    return per, med, med["torch"] / med["sisr"], paired


def describe(record):
    c = record
    what = (f"x{c['scale']} LR {c['size']} batch {c['batch']} "
            f"{'fp32' if c['precision'] == 'float32' else 'bf16'} {c['mode']}")
    if c["case"].startswith("wdsr"):
        what += f", PyTorch weight norm {c['weight_norm']}"
    if c.get("agreement"):
        what += (f", official module, same weights (outputs {c['agreement']['uint8_max_diff']} "
                 f"levels apart)")
    return what


def report(records, args, started, load_start):
    """The markdown table and the environment record."""
    cpus = cpu_record()["cpus"]
    rows = []
    for record in records:
        per, med, ratio, paired = summary(record)
        target = record["target"]
        loaded = max(r["load"] for r in record["rounds"]) > LOADED * cpus
        rows.append([record["case"], describe(record),
                     f"{1e3 * med['torch']:.1f} ({100 * spread(per['torch']):.0f}%)",
                     f"{1e3 * med['sisr']:.1f} ({100 * spread(per['sisr']):.0f}%)",
                     f"{ratio:.2f}", f"{min(paired):.2f}-{max(paired):.2f}",
                     "-" if target is None else f">= {target}: " + (
                         "(loaded)" if loaded else "met" if ratio >= target else "NOT met"),
                     (f"{min(r['load'] for r in record['rounds']):.1f}-"
                     f"{max(r['load'] for r in record['rounds']):.1f}")])
    headers = ["case", "what", "PyTorch ms (IQR)", "sisr ms (IQR)", "PyTorch/sisr",
               "per round", "target", "load"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    first = records[0]["workers"] if records else {}
    cpu = cpu_record()
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu["flags"].items())
    env_lines = []
    for side in SIDES:
        info = first.get(side, {})
        env_lines.append(
            f"- {NAMES[side]}: " + ", ".join(f"{k} {v}" for k, v in
                                           info.get("versions", {}).items())
            + "; threads " + ", ".join(f"{k} {v}" for k, v in info.get("threads", {}).items())
            + "; threading variables "
            + (", ".join(f"{k}={v}" for k, v in info.get("env", {}).items()) or "none"))
    mode = "one process (--same-process: diagnostic)" if args.same_process else \
        "one process per framework"
    text = ["\n".join(lines), "",
            f"- date {started:%Y-%m-%d %H:%M} UTC; command `{args.command}`",
            (f"- {mode}; {args.rounds} rounds A B / B A; ms per call or training step, "
            f"median over rounds (IQR relative); ratio > 1: sisr faster"),
            f"- CPU {cpu['model']}, {cpu['cpus']} CPUs; {flags}",
            *env_lines,
            (f"- load average (1 min) at start {load_start:.2f}, during rounds "
            f"{min((r['load'] for rec in records for r in rec['rounds']), default=0):.2f}-"
            f"{max((r['load'] for rec in records for r in rec['rounds']), default=0):.2f}, "
            f"at end {load():.2f}"
            + (f"; above {LOADED} x the CPU count: the machine was shared, these figures "
               "do not measure either framework" if any(
                   r["load"] > LOADED * cpus for rec in records for r in rec["rounds"])
               else ""))]
    return "\n".join(text)


def plain_table(records):
    rows = []
    for record in records:
        _, med, ratio, _ = summary(record)
        rows.append([record["case"], f"{1e3 * med['torch']:.1f}", f"{1e3 * med['sisr']:.1f}",
                     f"{ratio:.2f}"])
    return format_table(["case", "PyTorch ms", "sisr ms", "PyTorch/sisr"], rows)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python benchmarks/vs_pytorch.py",
                                description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="default",
                   help="comma-separated case names or groups: default, large, official, all "
                        f"(default: default). Cases: {', '.join(CASES)}")
    p.add_argument("--rounds", "--repeats", type=int, default=5, dest="rounds",
                   help="interleaved timed rounds (default 5)")
    p.add_argument("--calls", type=int, default=None,
                   help="inference calls or training steps per timed run (default: the "
                        "case's, 1-3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="intra-op threads of both frameworks (default: all CPUs)")
    p.add_argument("--pause", type=float, default=0.5,
                   help="seconds of rest before each timed run (default 0.5), so that "
                        "the other side's idle threads have settled")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment variable for both workers (repeatable), e.g. "
                        "OMP_WAIT_POLICY=PASSIVE; none by default")
    p.add_argument("--torch-python", default=sys.executable,
                   help="Python interpreter of the PyTorch worker (default: this one)")
    p.add_argument("--sisr-python", default=sys.executable,
                   help="Python interpreter of the sisr worker (default: this one)")
    p.add_argument("--channels-last", action="store_true",
                   help="PyTorch in channels_last (default: NCHW, as the official code)")
    p.add_argument("--same-process", action="store_true",
                   help="diagnostic only: both frameworks in this process")
    p.add_argument("--json", default=None, help="also write every timing here")
    for project, (flag, what) in official.PROJECTS.items():
        p.add_argument(flag, dest=project, default=None, metavar="DIR",
                       help=f"{what}: the official modules of the `official` cases are "
                            "loaded from it (needed by those cases)")
    p.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--official", help=argparse.SUPPRESS)
    p.add_argument("--state", help=argparse.SUPPRESS)
    p.add_argument("--outputs", help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--inputs", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return args
    names = []
    for item in (c.strip() for c in args.cases.split(",")):
        if item == "all":  # as before the official group: those without their folder left out
            left = [n for n in GROUPS["all"] if CASES[n].official
                    and getattr(args, CASES[n].official) is None]
            if left:
                print(f"--cases all: leaving out {', '.join(left)} (their official "
                      "modules' folders are not given)", file=sys.stderr)
            names += [n for n in GROUPS["all"] if n not in left]
        elif item in GROUPS:
            names += GROUPS[item]
        elif item in CASES:
            names.append(item)
        elif item:
            p.error(f"--cases: unknown {item!r}; groups: {', '.join(GROUPS)}; cases: "
                    f"{', '.join(CASES)}")
    if not names:
        p.error("--cases: none given")
    args.cases = list(dict.fromkeys(names))
    for name in args.cases:
        case = CASES[name]
        if not case.official:
            continue
        flag, what = official.PROJECTS[case.official]
        directory = getattr(args, case.official)
        if directory is None:
            p.error(f"{flag}: case {name} runs the official module: give {what}")
        missing = official.missing_files(case.torch[0], directory)
        if missing:
            p.error(f"{flag}: {directory} has no {', '.join(missing)} ({what} expected)")
    for flag, value in (("--rounds", args.rounds), ("--calls", args.calls or 1),
                        ("--threads", args.threads)):
        if value < 1:
            p.error(f"{flag} must be at least 1, got {value}")
    if args.warmup < 0:
        p.error(f"--warmup must be at least 0, got {args.warmup}")
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--env: expected NAME=VALUE, got {item!r}")
        env[key] = value
    args.env = env
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    args.command = shlex.join(["python", "benchmarks/vs_pytorch.py",
                               *(sys.argv[1:] if argv is None else argv)])
    # stopped with SIGTERM: unwind, so that the workers are told to quit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    started, load_start = datetime.datetime.now(datetime.UTC), load()
    records = []
    with tempfile.TemporaryDirectory(prefix="sisr-vs-pytorch-") as directory:
        for name in args.cases:
            try:
                records.append(compare(name, CASES[name], args, directory))
            except RuntimeError as error:
                print(f"error: {name}: {error}", file=sys.stderr)
                return 1
            # each case's figures as it ends, should a long run be stopped
            print(plain_table(records[-1:]), file=sys.stderr, flush=True)
    print(plain_table(records), file=sys.stderr)
    print(report(records, args, started, load_start))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": args.command, "started": started.isoformat(),
                       "parent_pid": os.getpid(), "cpu": cpu_record(),
                       "env": args.env, "records": records}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
