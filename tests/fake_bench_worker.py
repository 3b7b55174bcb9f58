"""A stand-in for a framework worker of benchmarks/vs_pytorch.py (tests only).

Started by the harness as `<interpreter> benchmarks/vs_pytorch.py --worker SIDE ...` where the
test's interpreter is a wrapper running this file instead: it speaks the worker protocol
(one JSON line when ready, one JSON line of timings per "run" line on stdin) without torch
or TensorFlow, and appends what it saw (pid, parent, environment, inputs, each run) to the
file named by FAKE_WORKER_LOG.
"""

import json
import os
import sys

import numpy as np


def main(argv):
    side = argv[argv.index("--worker") + 1]
    inputs = argv[argv.index("--inputs") + 1:]
    log = os.environ["FAKE_WORKER_LOG"]

    def note(entry):
        with open(log, "a") as f:
            f.write(json.dumps(dict(entry, side=side, pid=os.getpid())) + "\n")

    shapes = [list(np.load(path).shape) for path in inputs]
    note({"event": "start", "ppid": os.getppid(), "script": argv[0], "inputs": inputs,
          "shapes": shapes, "env": {k: v for k, v in os.environ.items()
                                    if k.startswith(("OMP_", "KMP_", "MKL_"))}})
    print(json.dumps({"ready": True, "side": side, "pid": os.getpid(), "inputs": inputs,
                      "env": {}, "versions": {"fake": "0"}, "threads": {}}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        note({"event": "run"})
        print(json.dumps({"times": [0.01 if side == "sisr" else 0.02]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
