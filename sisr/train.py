"""python -m sisr.train: train a model of the papers from a named profile.

    python -m sisr.train --profile wdsr-b-8 --dataset demo --scale 2 --epochs 10
    python -m sisr.train --resume runs/20261121-120000-wdsr-b-8
"""

import argparse
import contextlib
import logging
import os
import sys

from sisr import cli
from sisr.fileio import check_creatable_dir
from sisr.pretrained import resolve_model
from sisr.training import config as cfg

log = logging.getLogger("sisr.train")

# Flags that map one-to-one onto configuration keys.
FLAG_KEYS = ("dataset", "scale", "downgrade", "degradation", "epochs", "steps_per_epoch",
             "batch_size",
             "learning_rate", "pretrained_model", "seed", "precision", "strategy")


def parse_set(items):
    """`--set key=value` pairs; values are parsed as JSON when they can be."""
    return cli.parse_set(items, error=cfg.ConfigError)


def parse_scales(text):
    """`--scale`: "3" -> 3, "2+3+4" -> [2, 3, 4]."""
    try:
        scales = [int(part) for part in str(text).split("+")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a scale or scales joined by + (2+3+4), got {text!r}") from None
    return scales[0] if len(scales) == 1 else scales


def add_run_arguments(parser):
    """The flags that pixel and GAN training share."""
    parser.add_argument("--dataset", help="'demo', a DIV2K root (numpy cache or PNG tree) "
                        "or an image folder")
    parser.add_argument("--outdir", default="runs", help="parent of the run directory")
    parser.add_argument("--epochs", type=int, help="epochs to train (default: the "
                        f"profile's, else {cfg.TRAINER_DEFAULTS['epochs']}); with --resume, "
                        "the new total")
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    parser.add_argument("--seed", type=int, help="seeds the initial weights and the "
                        "batches (a seeded run resumes with the batches it would have had); "
                        "default: unseeded")
    parser.add_argument("--precision", choices=cfg.PRECISIONS,
                        help="training precision (default: the profile's, else "
                        f"{cfg.TRAINER_DEFAULTS['precision']}); mixed_bfloat16 for CPUs with "
                        "bfloat16 instructions, mixed_float16 for GPUs")
    parser.add_argument("--strategy", choices=cfg.STRATEGIES)
    parser.add_argument("--cluster-timeout", type=float, metavar="SECONDS",
                        help="multi-worker: how long a worker waits for the others to start "
                             "before giving up, naming them (default 600)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, nargs="?",
                        const=2, help="progress on stderr: 0 none; 1 (default) a progress bar "
                        "on a terminal, else one line per epoch; 2 (or --verbose alone) one "
                        "line per epoch, and TensorFlow's start-up log lines and whole error "
                        "messages")


def make_parser():
    profiles = ", ".join(cfg.list_profiles()) or "(none found)"
    parser = cli.parser(
        "sisr.train", verbose=False,
        description="Train an SR model with a pixel loss from a named profile.",
        epilog=f"profiles: {profiles}. A profile may also be a path to a .json file.",
    )
    parser.add_argument("--profile", help="profile name or .json path")
    parser.add_argument("--scale", type=parse_scales, help="upscaling factor (default: the "
                        f"profile's, else {cfg.TRAINER_DEFAULTS['scale']}); several joined by "
                        "+ (2+3+4) train a multi-scale model (mdsr) with a random scale per "
                        "batch")
    parser.add_argument("--downgrade", help="bicubic, unknown, mild, difficult, wild, "
                        "bicubic_jpeg_90, ...")
    parser.add_argument("--degradation", metavar="NAME|FILE.json",
                        help="make LR patches from HR on the fly: simple, bsrgan, realesrgan "
                             "or a preset .json file (see README, Degradations)")
    parser.add_argument("--learning-rate", type=float, help="initial learning rate; the "
                        "profile's decay steps still apply")
    parser.add_argument("--pretrained-model", metavar="MODEL",
                        help="a .keras model or a pretrained name (python -m sisr.pretrained "
                        "list) whose same-named layers seed this one (e.g. an x2 model for "
                        "x4)")
    parser.add_argument("--benchmark", action="store_true", default=None,
                        help="validate on full images instead of centre crops")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override any profile key, e.g. --set num_res_blocks=16")
    add_run_arguments(parser)
    return parser


def resume_changes(args, flags):
    """The `--resume` flags given on the command line, as configuration changes."""
    return {key: getattr(args, key) for key in flags}


def train_run(trainer, args):
    """Checks the inputs, then trains into a new (or the resumed) run directory and prints
    the result; the part of the command that pixel and GAN training share."""
    from sisr.training.trainer import new_run_dir, validation_images

    with cli.checking():  # bad input fails before any run directory exists
        if args.resume:
            trainer.resume_state(args.resume)  # a damaged backup: an earlier one, or refused
        else:
            check_creatable_dir(args.outdir)
        trainer.prepare(resume=bool(args.resume))
    run_dir = args.resume or new_run_dir(args.outdir, trainer.run_name(), trainer.strategy)
    log.info("run directory: %s", run_dir)
    log.info("validation after each epoch (val_psnr): %s of the validation images; the "
             "final score printed at the end is on the full images",
             validation_images(trainer.config))
    # Progress is not a result: Keras writes it to stdout, so it goes to stderr, as one
    # line per epoch where no terminal shows the bar (a bar in a file is escape codes).
    verbose = args.verbose if sys.stderr.isatty() else min(args.verbose * 2, 2)
    with contextlib.redirect_stdout(sys.stderr):
        result = trainer.run(run_dir, resume=bool(args.resume), verbose=verbose)
    if result is None:  # a multi-worker run's other workers: the chief reports
        print(f"worker done; the chief writes the results to {run_dir}")
        return 0
    for scale, scored in result.get("per_scale", {}).items():
        gain = scored["psnr"] - scored["bicubic_psnr"]
        print(f"validation PSNR ({scored['valid_images']} images, {scale}, RGB, shave "
              f"{scored['shave']}): {trainer.trained} {scored['psnr']:.2f} dB, bicubic "
              f"{scored['bicubic_psnr']:.2f} dB ({gain:+.2f} dB)")
    if "per_scale" in result:
        print(f"{trainer.trained}: {os.path.join(run_dir, trainer.final_model)}")
        return 0
    gain = result["psnr"] - result["bicubic_psnr"]
    print(f"validation PSNR ({result['valid_images']} images, x{trainer.config['scale']}, "
          f"RGB, shave {result['shave']}): {trainer.trained} {result['psnr']:.2f} dB, "
          f"bicubic {result['bicubic_psnr']:.2f} dB ({gain:+.2f} dB)")
    print(f"{trainer.trained}: {os.path.join(run_dir, trainer.final_model)}")
    return 0


def origins(args, flags=FLAG_KEYS):
    """Where each configuration key given on the command line came from, for messages."""
    found = {key: f"--{key.replace('_', '-')} {getattr(args, key)}" for key in flags}
    if "scale" in found and isinstance(getattr(args, "scale", None), list):
        found["scale"] = found["train_scales"] = f"--scale {'+'.join(map(str, args.scale))}"
    for item in getattr(args, "set", None) or []:
        found[item.partition("=")[0].replace("-", "_")] = f"--set {item}"
    return found


def new_config(args):
    """The configuration of a run from the command line (validated)."""
    if args.resume:
        if args.profile or args.set or args.benchmark:
            raise cfg.ConfigError("--resume takes the configuration from the run directory; "
                                  "--profile, --set and --benchmark cannot be given with it")
        config = cfg.resume_config(args.resume, resume_changes(args, FLAG_KEYS))
        if config.get("gan_generator"):
            raise cfg.ConfigError(f"--resume {args.resume}: an SRGAN run; resume it with "
                                  "python -m sisr.train_gan")
    else:
        overrides = {k: getattr(args, k) for k in FLAG_KEYS}
        if args.scale is not None:  # one scale: single-scale training, also of a profile
            scales = args.scale if isinstance(args.scale, list) else [args.scale]
            overrides["scale"], overrides["train_scales"] = scales[0], scales
        # A registry name is fetched into the cache if needed.
        overrides["pretrained_model"] = resolve_model(args.pretrained_model)
        overrides["benchmark"] = args.benchmark
        overrides.update(parse_set(args.set))
        config = cfg.resolve(args.profile, overrides, origins=origins(args))
        if config["pretrained_model"] and not os.path.isfile(config["pretrained_model"]):
            raise cfg.ConfigError(
                f"--pretrained-model {config['pretrained_model']}: no such file")
    return config


def start_cluster(args, strategy, config=None):
    """Joins the multi-worker cluster first, if `strategy` is multi-worker (the strategy
    must exist before TensorFlow runs any op), after the strategy's checks of `config`."""
    if strategy == "multi-worker":
        from sisr.training import distributed, recipe

        if config is not None:
            with cli.checking():
                recipe.STRATEGIES[strategy].check(config)
        distributed.multi_worker_strategy(args.cluster_timeout or distributed.CLUSTER_TIMEOUT)


def _main(args):
    from sisr.training.multiscale import trainer_class

    with cli.checking():
        config = new_config(args)
        trainer = trainer_class(config)(config)
        trainer.check_memory()  # before any work: no TensorFlow op runs
    # Usage errors, or exit 1 on a timeout.
    start_cluster(args, trainer.config["strategy"], trainer.config)
    return train_run(trainer, args)


def main(argv=None):
    return cli.main(make_parser(), _main, argv)


if __name__ == "__main__":
    sys.exit(main())
