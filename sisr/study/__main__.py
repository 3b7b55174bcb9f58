"""python -m sisr.study: a small training study from a JSON specification.

    python -m sisr.study docs/study-example.json --outdir runs/study-example

The specification is a JSON object: `cells` (profile names or objects of a `profile` and
`--set` keys, optionally a `label`), and optionally `dataset` ("demo"), `steps` (100),
`epochs` (1), `seeds` ([0]) and `overrides` (keys for every cell). Each cell's runs and
results are kept in the output directory, so running the command again resumes an
interrupted study; the table goes to `study.csv` and a figure to `study.png` there.
"""

import json
import os
import sys

from sisr import cli
from sisr.fileio import atomic_output, atomic_write_text, check_creatable_dir
from sisr.study.runner import StudyError

SPEC_KEYS = {"cells": None, "dataset": "demo", "steps": 100, "epochs": 1, "seeds": [0],
             "overrides": None}
CSV_NAME, PLOT_NAME = "study.csv", "study.png"


def make_parser():
    p = cli.parser("sisr.study", description="Train several configurations the same short "
                   "way and tabulate parameters, FLOPs, PSNR/SSIM and time per step.")
    p.add_argument("spec", help="the study's JSON file: {\"cells\": [...], \"steps\": ..., "
                   "\"seeds\": [...], \"dataset\": ..., \"epochs\": ..., \"overrides\": {...}}")
    p.add_argument("--outdir", help="where the runs, study.csv and study.png go (default: "
                   "runs/<the spec's name>); a study run again there resumes")
    p.add_argument("--force", action="store_true",
                   help=f"replace an existing {CSV_NAME} and {PLOT_NAME}")
    return p


def read_spec(path):
    """The specification in `path`, with defaults; StudyError naming the file and key."""
    try:
        with open(path) as f:
            spec = json.load(f)
    except OSError as err:
        raise StudyError(f"{path}: cannot read the study: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StudyError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(spec, dict):
        raise StudyError(f"{path}: a study is a JSON object with `cells`, got "
                         f"{type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise StudyError(f"{path}: unknown key `{unknown[0]}`; allowed: "
                         f"{', '.join(SPEC_KEYS)}")
    if "cells" not in spec:
        raise StudyError(f"{path}: missing key `cells` (a list of profile names or objects)")
    return {**SPEC_KEYS, **spec}


def format_rows(rows):
    header = (f"{'cell':<40} {'seed':>4} {'params':>10} {'FLOPs/px':>10} {'PSNR':>7} "
              f"{'SSIM':>6} {'s/step':>7}")
    lines = [header]
    for row in rows:
        lines.append(f"{row['cell'][:40]:<40} {row['seed']:>4} {row['parameters']:>10,} "
                     f"{row['flops_per_lr_pixel']:>10,.0f} {row['psnr']:>7.2f} "
                     f"{row['ssim']:>6.4f} {row['time_per_step']:>7.3f}")
    return "\n".join(lines)


def _main(args):
    from sisr.study import runner

    with cli.checking():
        spec = read_spec(args.spec)
        outdir = args.outdir or os.path.join(
            "runs", os.path.splitext(os.path.basename(args.spec))[0])
        check_creatable_dir(outdir)
        csv_path, plot_path = os.path.join(outdir, CSV_NAME), os.path.join(outdir, PLOT_NAME)
        for path in (csv_path, plot_path):
            if os.path.lexists(path) and not args.force:
                raise FileExistsError(f"{path} exists; not overwriting it (use --force)")
        if not isinstance(spec["seeds"], list):
            raise StudyError(f"{args.spec}: `seeds` must be a list of ints, got "
                             f"{spec['seeds']!r}")
        try:
            runner.resolve_cells(spec["cells"], spec["dataset"], spec["steps"],
                                 spec["epochs"], spec["overrides"])
        except StudyError as err:
            raise StudyError(f"{args.spec}: {err}") from None
    os.makedirs(outdir, exist_ok=True)
    result = runner.run(spec["cells"], dataset=spec["dataset"], steps=spec["steps"],
                        seeds=spec["seeds"], out_dir=outdir, epochs=spec["epochs"],
                        overrides=spec["overrides"])
    rows = runner.rows_of(result)
    atomic_write_text(csv_path, runner.csv_text(rows), overwrite=args.force)
    print(format_rows(rows))
    print(f"table: {csv_path}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("no plot: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return 0
    with atomic_output(plot_path, overwrite=args.force) as tmp:
        runner.plot(rows, tmp)
    print(f"plot: {plot_path}")
    return 0


def main(argv=None):
    return cli.main(make_parser(), _main, argv)


if __name__ == "__main__":
    sys.exit(main())
