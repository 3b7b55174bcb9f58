"""Helpers shared by the benchmarks: interleaved timing, medians and a plain-text table.

This machine's speed swings by up to 2x (shared cores), so compared cases are never timed
one after the other in blocks: `interleave` runs them in rounds (A B C, B C A, C A B, ...)
and the benchmarks report medians over the rounds.

    times = interleave({"a": run_a, "b": run_b}, repeats=7)
    print(format_table(["case", "ms"], [[k, f"{1e3 * median(v):.1f}"] for k, v in times.items()]))
"""

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time


# Benchmark model cases: name -> (registered builder, arguments), each family at its
# baseline size (edsr-full: the paper's 256-filter, 32-block EDSR).
MODELS = {
    "edsr-x2": ("edsr", dict(scale=2, num_filters=64, num_res_blocks=16)),
    "edsr-x4": ("edsr", dict(scale=4, num_filters=64, num_res_blocks=16)),
    "wdsr-a-x2": ("wdsr_a", dict(scale=2, num_filters=32, num_res_blocks=16,
                                 res_block_expansion=4)),
    "wdsr-b-x2": ("wdsr_b", dict(scale=2, num_filters=32, num_res_blocks=16,
                                 res_block_expansion=6)),
    "wdsr-b-x4": ("wdsr_b", dict(scale=4, num_filters=32, num_res_blocks=16,
                                 res_block_expansion=6)),
    "srresnet-x4": ("srresnet", dict(scale=4, num_filters=64, num_res_blocks=16)),
    "rcan-x4": ("rcan", dict(scale=4)),  # the paper's RCAN (10 groups of 20 blocks)
    "rdn-x4": ("rdn", dict(scale=4)),  # the paper's RDN, configuration B
    "edsr-full-x2": ("edsr", dict(scale=2, num_filters=256, num_res_blocks=32,
                                  res_block_scaling=0.1)),
    # ESRGAN / Real-ESRGAN x4plus (23 RRDBs) and Real-ESRGAN's realesr-general-x4v3.
    "rrdbnet-x4": ("rrdbnet", dict(scale=4, num_feat=64, num_block=23, num_grow_ch=32)),
    "srvgg-x4": ("srvgg_compact", dict(scale=4, num_feat=64, num_conv=32)),
}


def model_cases(*names):
    """The `MODELS` entries called `names`, in that order."""
    return {name: MODELS[name] for name in names}


def time_call(fn):
    """Wall-clock seconds of one call of `fn()`; `fn` must block until its result is ready."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleave(cases, repeats, warmup=1, rotate=True, on_round=None):
    """Times every case of `cases` (name -> zero-argument callable) `repeats` times.

    Each round calls every case once, so a slow spell of the machine hits all cases alike.
    With `rotate`, round r starts at case r (mod the number of cases) so that no case always
    runs right after the same neighbour. `warmup` untimed rounds come first (tracing, caches).
    `on_round(r)`, if given, is called after each timed round (for progress output).

    Returns a dict name -> list of `repeats` durations in seconds, in round order.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats!r}")
    if warmup < 0:
        raise ValueError(f"warmup must be at least 0, got {warmup!r}")
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names) if rotate and names else 0
        for name in names[shift:] + names[:shift]:
            times[name].append(time_call(cases[name]))
        if on_round is not None:
            on_round(r)
    return times


def median(values):
    """Median of a non-empty sequence of numbers."""
    return statistics.median(values)


def spread(values):
    """Relative interquartile range (q3 - q1) / median: how noisy a set of timings is."""
    values = sorted(values)
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q3 - q1) / statistics.median(values)


def format_table(headers, rows, align=None):
    """A plain-text table; `align` holds "<" or ">" per column (default: the first column
    left-aligned, the others right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells, expected {len(headers)}")
    if align is None:
        align = ["<"] + [">"] * (len(headers) - 1)
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, align, widths)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def file_parser(doc, images=20):
    """The argument parser of a benchmark that generates image files: `--images` and
    `--dir` (keep the generated files there instead of a temporary folder)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--images", type=int, default=images)
    parser.add_argument("--dir", default=None, help="keep the generated files here")
    return parser


@contextlib.contextmanager
def work_dir(keep, prefix):
    """`keep` if given (left in place), else a temporary folder removed afterwards."""
    work = keep or tempfile.mkdtemp(prefix=prefix)
    try:
        yield work
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)



def run_child(command):
    """(exit code, stdout, stderr, peak RSS in GB) of the child process `command`.

    Its output is read while it runs (a full pipe would block it); os.wait4 gives this
    child's own rusage (RUSAGE_CHILDREN would mix every child of the benchmark)."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        texts = {}
        readers = [threading.Thread(target=lambda k, f: texts.__setitem__(k, f.read()),
                                    args=(key, stream))
                   for key, stream in (("out", process.stdout), ("err", process.stderr))]
        for reader in readers:
            reader.start()
        _, status, usage = os.wait4(process.pid, 0)
        for reader in readers:
            reader.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, texts["out"], texts["err"], usage.ru_maxrss * 1024 / 1e9


def worker_result(command, what):
    """The JSON of the last `RESULT ` line that the worker `command` prints, with its peak
    RSS as `peak_gb`; RuntimeError naming `what` (and the worker's stderr) if it fails."""
    code, out, err, peak_gb = run_child(command)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if code != 0 or not lines:
        raise RuntimeError(f"{what} failed (exit {code}):\n{err}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["peak_gb"] = peak_gb
    return result
