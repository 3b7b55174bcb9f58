"""The CLIs' `--precision` policy: when "auto" runs the bfloat16 copy (`sisr.precision`).

The mechanism (the copies) is `sisr.precision`; this module decides, for a command line,
whether it is used: from the pretrained registry's fidelity record and this machine's CPU.
"""

import os

from sisr.precision import PRECISIONS, check_precision

# The CLIs' choice: "auto" = bfloat16 where `choose_precision` finds it safe and fast.
CLI_PRECISIONS = ("auto", *PRECISIONS)
# /proc/cpuinfo flags of x86 CPUs with native bfloat16 dot products (AVX512-BF16, AMX).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def bfloat16_cpu(cpuinfo="/proc/cpuinfo"):
    """True if the CPU has native bfloat16 dot products (Linux x86: AVX512-BF16 or AMX);
    without them TensorFlow emulates bfloat16 and the copy runs slower than float32."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            flags = {word for line in f if line.startswith("flags") for word in line.split()}
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def choose_precision(requested, model, registry=None, gpu=None):
    """(precision, reason) for a CLI's `--precision` (`CLI_PRECISIONS`) and `--model`.

    "auto" is bfloat16 only for a pretrained name whose registry entry records that the
    bfloat16 copy keeps the fidelity guard (`Entry.bfloat16`), on a CPU with native
    bfloat16 (`bfloat16_cpu`) and no GPU (the guard was measured on the CPU); float32
    otherwise, and for every model file (its guard is unknown).
    """
    if requested != "auto":
        return check_precision(requested), "as requested"
    from sisr.pretrained.registry import load_registry

    entry = None if model is None or os.path.exists(model) else \
        load_registry(registry).get(model)
    if entry is None or not entry.bfloat16_guard_holds:
        why = "not a pretrained model whose bfloat16 guard was measured" if entry is None \
            else "its bfloat16 copy breaks the fidelity guard"
        return "float32", f"auto: {why}"
    if gpu is None:
        import tensorflow as tf

        gpu = bool(tf.config.list_physical_devices("GPU"))
    if gpu or not bfloat16_cpu():
        return "float32", ("auto: the bfloat16 guard was measured on CPUs" if gpu
                           else "auto: this CPU has no native bfloat16")
    info = entry.bfloat16
    return "bfloat16", (f"auto: the bfloat16 copy of {model} kept the fidelity guard where "
                        f"it was measured ({info['measured']}: at most {info['max_db']} dB "
                        f"and {info['max_levels']} levels from float32; other images may "
                        "differ more); --precision float32 for the exact model")
