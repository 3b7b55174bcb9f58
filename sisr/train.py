"""python -m sisr.train: train a model of the papers from a named profile.

    python -m sisr.train --profile wdsr-b-8 --dataset demo --scale 2 --epochs 10
    python -m sisr.train --resume runs/20261121-120000-wdsr-b-8
"""

import argparse
import logging
import os
import sys

from sisr.pretrained import PretrainedError, resolve_model
from sisr.training import config as cfg

log = logging.getLogger("sisr.train")

# Flags that map one-to-one onto configuration keys.
FLAG_KEYS = ("dataset", "scale", "downgrade", "epochs", "steps_per_epoch", "batch_size",
             "learning_rate", "pretrained_model", "seed", "precision", "strategy")
# What a resumed run may change: everything else comes from RUN_DIR/config.json.
RESUME_KEYS = ("epochs", "precision", "strategy")


def parse_set(items):
    """`--set key=value` pairs; values are parsed as JSON when they can be."""
    import json

    values = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise cfg.ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            values[key.replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.replace("-", "_")] = raw
    return values


def make_parser():
    profiles = ", ".join(cfg.list_profiles()) or "(none found)"
    parser = argparse.ArgumentParser(
        prog="python -m sisr.train",
        description="Train an SR model with a pixel loss from a named profile.",
        epilog=f"profiles: {profiles}. A profile may also be a path to a .json file.",
    )
    parser.add_argument("--profile", help="profile name or .json path")
    parser.add_argument("--dataset", help="'demo', a DIV2K root (numpy cache or PNG tree) "
                        "or an image folder")
    parser.add_argument("--scale", type=int)
    parser.add_argument("--downgrade", help="bicubic, unknown, mild, difficult, wild, "
                        "bicubic_jpeg_90, ...")
    parser.add_argument("--outdir", default="runs", help="parent of the run directory")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--learning-rate", type=float, help="initial learning rate; the "
                        "profile's decay steps still apply")
    parser.add_argument("--pretrained-model", help="a .keras model whose same-named layers "
                        "seed this one (e.g. an x2 model for x4)")
    parser.add_argument("--benchmark", action="store_true", default=None,
                        help="validate on full images instead of centre crops")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--precision", choices=cfg.PRECISIONS)
    parser.add_argument("--strategy", choices=cfg.STRATEGIES)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override any profile key, e.g. --set num_res_blocks=16")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="Keras fit verbosity (1: progress bar)")
    return parser


def resume_config(args):
    run_dir = args.resume
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise cfg.ConfigError(f"--resume {run_dir}: not a run directory (no config.json)")
    changed = [k for k in FLAG_KEYS if k not in RESUME_KEYS and getattr(args, k) is not None]
    if args.profile or args.set or args.benchmark or changed:
        raise cfg.ConfigError(
            "--resume takes the configuration from the run directory; only --epochs, "
            "--precision and --strategy may be given with it"
        )
    import json

    with open(path) as f:
        saved = json.load(f)
    overrides = {k: getattr(args, k) for k in RESUME_KEYS}
    return cfg.resolve(None, {**saved, **{k: v for k, v in overrides.items() if v is not None}})


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = make_parser().parse_args(argv)
    try:
        if args.resume:
            config = resume_config(args)
        else:
            overrides = {k: getattr(args, k) for k in FLAG_KEYS}
            overrides["pretrained_model"] = resolve_model(args.pretrained_model)
            overrides["benchmark"] = args.benchmark
            overrides.update(parse_set(args.set))
            config = cfg.resolve(args.profile, overrides)
            if config["pretrained_model"] and not os.path.isfile(config["pretrained_model"]):
                raise cfg.ConfigError(
                    f"--pretrained-model {config['pretrained_model']}: no such file")
    except (cfg.ConfigError, PretrainedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from sisr.training import trainer
    from sisr.training.callbacks import NonFiniteLoss

    try:
        if args.resume:
            run_dir = args.resume
            # Record the (possibly extended) configuration before continuing.
            from sisr.fileio import atomic_write_json

            atomic_write_json(os.path.join(run_dir, "config.json"), config)
        else:
            run_dir = trainer.new_run_dir(args.outdir, config["profile"] or config["model"])
        log.info("run directory: %s", run_dir)
        result = trainer.train(config, run_dir, resume=bool(args.resume), verbose=args.verbose)
    except (trainer.PretrainedMismatch, NonFiniteLoss, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    gain = result["psnr"] - result["bicubic_psnr"]
    print(
        f"validation PSNR ({result['valid_images']} images, x{config['scale']}, RGB, "
        f"shave {result['shave']}): model {result['psnr']:.2f} dB, bicubic "
        f"{result['bicubic_psnr']:.2f} dB ({gain:+.2f} dB)"
    )
    print(f"best model: {os.path.join(run_dir, 'best.keras')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
