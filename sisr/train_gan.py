"""python -m sisr.train_gan: GAN fine-tuning of a pixel-loss x4 generator.

    python -m sisr.train_gan --generator sr-resnet --pretrained-model RUN/best.keras \\
        --dataset DIV2K_BIN
    python -m sisr.train_gan --generator realesrgan-x4 --pretrained-model REALESRNET/best.keras
    python -m sisr.train_gan --resume runs/20261121-120000-srgan-sr-resnet

`--generator` is a pixel profile (SRGAN's losses and schedule, `GAN_DEFAULTS` and
`GAN_SCHEDULE`) or a GAN recipe, a profile carrying `gan_*` keys (`realesrgan-x4`,
`esrgan-x4`), whose keys and schedule are used as they are. See `sisr.training.gan` for
the recipes and the run directory. The GAN flags set the configuration's `gan_*` keys
(`--label-noise` sets `gan_label_noise`, ...), saved in the run directory's `config.json`.
"""

import os
import sys

from sisr import cli
from sisr.pretrained import resolve_model
from sisr.train import (
    add_run_arguments, origins, parse_set, resume_changes, start_cluster, train_run,
)
from sisr.training import config as cfg
from sisr.training.config import GAN_SCALE as SCALE
from sisr.training.config import GAN_SCHEDULE as SCHEDULE

FLAG_KEYS = ("dataset", "scale", "degradation", "epochs", "steps_per_epoch", "batch_size",
             "learning_rate", "pretrained_model", "seed", "precision", "strategy")
# Flags that set the `gan_<flag>` configuration keys.
GAN_FLAGS = ("content_loss", "vgg_weights", "content_weight", "adversarial_weight",
             "pixel_weight", "ema_decay", "label_noise", "label_smoothing",
             "discriminator_filters")


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
    name, profile = cfg.load_profile(args.generator)
    # A GAN recipe brings its own schedule; a pixel profile gets SRGAN's.
    recipe = any(key.startswith("gan_") for key in profile)
    overrides = {k: v for k, v in SCHEDULE.items() if not (recipe and k in profile)}
    overrides.update({k: getattr(args, k) for k in FLAG_KEYS if getattr(args, k) is not None})
    overrides.update({f"gan_{k}": getattr(args, k) for k in GAN_FLAGS})
    overrides.update(parse_set(args.set))
    overrides["gan_generator"] = name
    where = origins(args, FLAG_KEYS)
    where.update((f"gan_{k}", f"--{k.replace('_', '-')} {getattr(args, k)}") for k in GAN_FLAGS)
    where.update((k, f"`{k}` recorded in --pretrained-model {args.pretrained_model}")
                 for k in kwargs)
    return cfg.resolve(args.generator, {**overrides, **kwargs}, origins=where)


def resume_config(args):
    """The saved configuration of `--resume RUN_DIR`, with the allowed changes; the VGG
    weights may be given anew (the same file, found elsewhere). Runs saved with a nested
    `gan` section by older versions resume too."""
    if args.set:
        raise cfg.ConfigError("--resume takes the configuration from the run directory; "
                              "--set cannot be given with it")
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
        description="Fine-tune a pixel-loss x4 generator with GAN losses: SRGAN's (a "
                    "pixel profile as --generator) or a GAN recipe's (--generator "
                    "realesrgan-x4 from a realesrnet-x4 result, esrgan-x4 from an "
                    "rrdbnet-psnr-x4 result: Real-ESRGAN and ESRGAN as BasicSR trains them).",
    )
    # The GAN generators are named after parsing (an error lists them): the registry that
    # knows them loads Keras, which --help does without.
    parser.add_argument("--generator", metavar="PROFILE",
                        help="the generator's profile (name or .json path); its model must "
                        "be a GAN generator (python -m sisr.train --help lists the profiles)."
                        " A profile with gan_* keys is a GAN recipe: realesrgan-x4, "
                        "esrgan-x4")
    parser.add_argument("--pretrained-model", metavar="MODEL",
                        help=f"the pixel-loss x{SCALE} generator to start from: a .keras "
                        "file or a pretrained name (python -m sisr.pretrained list)")
    parser.add_argument("--scale", type=int, help=f"must be {SCALE} (the default)")
    parser.add_argument("--learning-rate", type=float, help="initial learning rate of both "
                        "networks (default 1e-4, x0.1 after 100k steps; a recipe's own)")
    parser.add_argument("--degradation", metavar="NAME|FILE.json",
                        help="LR made on the fly from HR patches by a degradation preset "
                        "(simple, bsrgan, realesrgan or a .json file; realesrgan-x4: "
                        "realesrgan); its USM-sharpened target is replaced by the "
                        "per-loss choice of gan_usm_targets")
    parser.add_argument("--content-loss", metavar="LAYERS",
                        help="the content loss: SRGAN's VGG19 features VGG22 or VGG54, or "
                        "perceptual (BasicSR's L1 of pre-activation VGG19 features of the "
                        "layers and weights of gan_perceptual_layers) (key "
                        f"gan_content_loss; default {_default('content_loss')})")
    parser.add_argument("--content-weight", type=float, help="weight of the content loss "
                        f"(key gan_content_weight; default {_default('content_weight')})")
    parser.add_argument("--pixel-weight", type=float, help="weight of the pixel loss "
                        "(gan_pixel_loss, l1 or mse on the [0, 1] scale) in the generator's "
                        f"loss (key gan_pixel_weight; default {_default('pixel_weight')}; "
                        "realesrgan-x4 1, esrgan-x4 0.01)")
    parser.add_argument("--ema-decay", type=float, help="decay of the exponential moving "
                        "average of the generator's weights, which is then the saved and "
                        f"validated model (key gan_ema_decay; default {_default('ema_decay')}"
                        ": none; the recipes 0.999)")
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
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override any configuration key, e.g. --set lr_patch=32 or "
                        "--set gan_adversarial_loss=vanilla; the GAN keys: "
                        f"{', '.join(cfg.GAN_DEFAULTS)}; gan_adversarial_loss is one of "
                        f"{', '.join(cfg.GAN_ADVERSARIAL_LOSSES)}, gan_discriminator one of "
                        f"{', '.join(cfg.GAN_DISCRIMINATORS)}, gan_usm_targets a list of "
                        f"{', '.join(cfg.GAN_USM_TARGETS)}")
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
