"""python -m sisr.train_gan: SRGAN fine-tuning of a pixel-loss x4 generator.

    python -m sisr.train_gan --generator sr-resnet --pretrained-model RUN/best.keras \\
        --dataset DIV2K_BIN
    python -m sisr.train_gan --resume runs/20261121-120000-srgan-sr-resnet

See `sisr.training.gan` for the schedule and the run directory. The GAN flags set the
configuration's `gan_*` keys (`--label-noise` sets `gan_label_noise`, ...), saved in the run
directory's `config.json`.
"""

import os
import sys

from sisr import cli
from sisr.pretrained import resolve_model
from sisr.train import add_run_arguments, origins, resume_changes, start_cluster, train_run
from sisr.training import config as cfg
from sisr.training.config import GAN_SCALE as SCALE
from sisr.training.config import GAN_SCHEDULE as SCHEDULE

FLAG_KEYS = ("dataset", "scale", "epochs", "steps_per_epoch", "batch_size", "learning_rate",
             "pretrained_model", "seed", "precision", "strategy")
# Flags that set the `gan_<flag>` configuration keys.
GAN_FLAGS = ("content_loss", "vgg_weights", "adversarial_weight", "label_noise",
             "label_smoothing", "discriminator_filters")


def new_config(args):
    """The configuration of a new run from the command line (validated)."""
    from sisr.training.gan import inspect_generator

    if not args.generator or not args.pretrained_model:
        raise cfg.ConfigError("--generator and --pretrained-model are required (or --resume "
                              "RUN_DIR); profiles of GAN generators: "
                              f"{', '.join(cfg.gan_generator_profiles()) or '(none)'}")
    if args.scale is not None and args.scale != SCALE:
        raise cfg.ConfigError(f"--scale {args.scale}: SRGAN fine-tuning is x{SCALE} only")
    args.pretrained_model = resolve_model(args.pretrained_model)  # a path or a registry name
    if not os.path.isfile(args.pretrained_model):
        raise cfg.ConfigError(f"--pretrained-model {args.pretrained_model}: no such file")
    kwargs = inspect_generator(args.pretrained_model, args.generator)
    overrides = dict(SCHEDULE)
    overrides.update({k: getattr(args, k) for k in FLAG_KEYS if getattr(args, k) is not None})
    overrides.update({f"gan_{k}": getattr(args, k) for k in GAN_FLAGS})
    overrides["gan_generator"] = cfg.load_profile(args.generator)[0]
    where = origins(args, FLAG_KEYS)
    where.update((f"gan_{k}", f"--{k.replace('_', '-')} {getattr(args, k)}") for k in GAN_FLAGS)
    where.update((k, f"`{k}` recorded in --pretrained-model {args.pretrained_model}")
                 for k in kwargs)
    return cfg.resolve(args.generator, {**overrides, **kwargs}, origins=where)


def resume_config(args):
    """The saved configuration of `--resume RUN_DIR`, with the allowed changes; the VGG
    weights may be given anew (the same file, found elsewhere). Runs saved with a nested
    `gan` section by older versions resume too."""
    changes = resume_changes(args, FLAG_KEYS + tuple(k for k in GAN_FLAGS if k != "vgg_weights")
                             + ("generator",))
    config = cfg.resume_config(args.resume, changes, also_allowed=("vgg_weights",))
    if not config.get("gan_generator"):
        raise cfg.ConfigError(f"--resume {args.resume}: not an SRGAN run (no `gan_generator` "
                              "in its config.json); resume it with python -m sisr.train")
    if args.vgg_weights is not None:
        config["gan_vgg_weights"] = args.vgg_weights
    return config


def _default(flag):
    return cfg.GAN_DEFAULTS[f"gan_{flag}"]


def make_parser():
    parser = cli.parser(
        "sisr.train_gan", verbose=False,
        description="Fine-tune a pixel-loss x4 generator with the SRGAN perceptual + "
                    "adversarial losses.",
    )
    # The GAN generators are named after parsing (an error lists them): the registry that
    # knows them loads Keras, which --help does without.
    parser.add_argument("--generator", metavar="PROFILE",
                        help="the generator's profile (name or .json path); its model must "
                        "be a GAN generator (python -m sisr.train --help lists the profiles)")
    parser.add_argument("--pretrained-model", metavar="MODEL",
                        help=f"the pixel-loss x{SCALE} generator to start from: a .keras "
                        "file or a pretrained name (python -m sisr.pretrained list)")
    parser.add_argument("--scale", type=int, help=f"must be {SCALE} (the default)")
    parser.add_argument("--learning-rate", type=float, help="initial learning rate of both "
                        "networks (default 1e-4, x0.1 after 100k steps)")
    parser.add_argument("--content-loss", metavar="LAYERS",
                        help="VGG19 features of the content loss, VGG22 or VGG54 (key "
                        f"gan_content_loss; default {_default('content_loss')})")
    parser.add_argument("--vgg-weights", metavar="PATH", help="VGG19 ImageNet weights "
                        "(.h5 / .weights.h5; key gan_vgg_weights); default: the Keras cache, "
                        "downloaded if needed")
    parser.add_argument("--adversarial-weight", type=float, help="weight of the adversarial "
                        "loss in the generator's loss (key gan_adversarial_weight; default "
                        f"{_default('adversarial_weight')})")
    parser.add_argument("--label-noise", type=float, help="discriminator targets drawn from "
                        "U(1-n, 1) and U(0, n) (key gan_label_noise; default "
                        f"{_default('label_noise')})")
    parser.add_argument("--label-smoothing", type=float, help="real target 1 - s (key "
                        f"gan_label_smoothing; default {_default('label_smoothing')})")
    parser.add_argument("--discriminator-filters", type=int, help="filters of the "
                        "discriminator's first block (key gan_discriminator_filters; default "
                        f"{_default('discriminator_filters')})")
    add_run_arguments(parser)
    return parser


def _main(args):
    from sisr.training.gan import GANTrainer

    with cli.checking():
        # Before the generator is inspected: the strategy must precede any TF op.
        start_cluster(args, args.strategy)
        config = resume_config(args) if args.resume else new_config(args)
        trainer = GANTrainer(config)
        trainer.check_memory()  # before any work: no TensorFlow op runs
    start_cluster(args, config["strategy"], config)  # a resumed run's (created once)
    return train_run(trainer, args)


def main(argv=None):
    return cli.main(make_parser(), _main, argv)


if __name__ == "__main__":
    sys.exit(main())
