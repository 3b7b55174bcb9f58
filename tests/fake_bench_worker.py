"""A stand-in for a framework worker of benchmarks/vs_pytorch.py (tests only).

Started by the harness as `<interpreter> benchmarks/vs_pytorch.py --worker SIDE ...` where the
test's interpreter is a wrapper running this file instead: it speaks the worker protocol
(one JSON line when ready, one JSON line of timings per "run" line on stdin) without torch
or TensorFlow, and appends what it saw (pid, parent, environment, inputs, arguments, each
run) to the file named by FAKE_WORKER_LOG. Given `--outputs PREFIX` (an official module's
case), it writes float32 and uint8 outputs of the case's size, as the real workers do: equal
on both sides, or off by FAKE_WORKER_OFFSET on the PyTorch side.
"""

import json
import os
import sys

import numpy as np


def main(argv):
    side = argv[argv.index("--worker") + 1]
    after = argv[argv.index("--inputs") + 1:]
    inputs = after[:next((i for i, a in enumerate(after) if a.startswith("--")), len(after))]
    log = os.environ["FAKE_WORKER_LOG"]

    def note(entry):
        with open(log, "a") as f:
            f.write(json.dumps(dict(entry, side=side, pid=os.getpid())) + "\n")

    shapes = [list(np.load(path).shape) for path in inputs]
    flags = {flag: argv[argv.index(flag) + 1] for flag in ("--case", "--official", "--state",
                                                            "--outputs") if flag in argv}
    note({"event": "start", "ppid": os.getppid(), "script": argv[0], "inputs": inputs,
          "shapes": shapes, "flags": flags, "env": {k: v for k, v in os.environ.items()
                                                    if k.startswith(("OMP_", "KMP_", "MKL_"))}})
    ready = {"ready": True, "side": side, "pid": os.getpid(), "inputs": inputs, "env": {},
             "versions": {"fake": "0"}, "threads": {}}
    if "--outputs" in flags:
        n, h, w, c = shapes[0]
        scale = int(flags["--case"].split("-x")[1].split("-")[0])
        offset = float(os.environ.get("FAKE_WORKER_OFFSET", 0)) if side == "torch" else 0.0
        out = np.full((n, h * scale, w * scale, c), 100.0 + offset, np.float32)
        prefix = f"{flags['--outputs']}-{side}"
        np.save(f"{prefix}-float32.npy", out)
        np.save(f"{prefix}-uint8.npy", out.round().astype(np.uint8))
        ready["outputs"] = {"float32": f"{prefix}-float32.npy", "uint8": f"{prefix}-uint8.npy"}
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        note({"event": "run"})
        print(json.dumps({"times": [0.01 if side == "sisr" else 0.02]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
