"""python -m sisr.train_gan: SRGAN fine-tuning of a pixel-loss x4 generator.

    python -m sisr.train_gan --generator sr-resnet --pretrained-model RUN/best.keras \\
        --dataset DIV2K_BIN
    python -m sisr.train_gan --resume runs/20261121-120000-srgan-sr-resnet

Schedule by default as in the SRGAN paper (SPEC section 6): Adam 1e-4, 1e-5 after 100k of
200k steps (200 epochs x 1000), HR crops of 96 (LR 24), batch 16, content loss VGG54.
The run directory is laid out as for `python -m sisr.train`, except that the generator of
every epoch is kept (`models/epoch-EEE-psnr-PP.PP.keras`) and `last.keras` is the newest:
GAN training trades PSNR for texture, so the highest-PSNR epoch is not the best one.
"""

import argparse
import json
import logging
import math
import os
import re
import sys

import keras

from sisr import losses, metrics
from sisr.training import config as cfg
from sisr.training.callbacks import (
    BACKUP_DIR, NonFiniteLoss, RunDirectory, StopOnNonFiniteLoss, Validation,
    read_state,
)
from sisr.fileio import atomic_copy, atomic_write_json
from sisr.model import discriminator
from sisr.pretrained import resolve_model
from sisr.saving import load_model, save_model
from sisr.training.srgan import SRGAN, load_backup, save_backup
from sisr.training.trainer import (
    PretrainedMismatch, build_model, copy_pretrained, make_optimizer,
    make_pipelines, make_strategy, new_run_dir, open_datasets, precision, write_result,
)

log = logging.getLogger("sisr.train_gan")

# --generator choice -> the model that the profile of that name builds.
GENERATORS = {"sr-resnet": "srresnet", "edsr-gen": "edsr"}
SCALE = 4
# The SRGAN schedule; the generator's profile supplies everything else. Validation uses LR
# centre crops of 48 (HR 192): enough to follow PSNR, and the demo images are large enough.
SCHEDULE = {"scale": SCALE, "epochs": 200, "steps_per_epoch": 1000, "batch_size": 16,
            "learning_rate": 1e-4, "lr_decay_steps": [100000], "lr_decay_factor": 0.1,
            "lr_patch": 24, "valid_crop": 48}
GAN_DEFAULTS = {"generator": None, "content_loss": "VGG54", "vgg_weights": None,
                "adversarial_weight": 1e-3, "label_noise": 0.0, "label_smoothing": 0.0,
                "discriminator_filters": 64}
FLAG_KEYS = ("dataset", "scale", "epochs", "steps_per_epoch", "batch_size", "learning_rate",
             "pretrained_model", "seed", "precision", "strategy")
GAN_FLAGS = ("content_loss", "vgg_weights", "adversarial_weight", "label_noise",
             "label_smoothing", "discriminator_filters")
# What a resumed run may change; `vgg_weights` only names where the same file now is.
RESUME_KEYS = ("epochs", "precision", "strategy")
LAST_MODEL = "last.keras"


# -- configuration ---------------------------------------------------------------------
def inspect_generator(path, generator):
    """Loads `path`; returns it and the builder arguments of its architecture.

    Raises ConfigError unless it is an x4 model of the kind `generator` names.
    """
    expected = GENERATORS[generator]
    try:
        model = load_model(path)
    except (OSError, ValueError) as err:
        raise cfg.ConfigError(f"--pretrained-model {path}: {err}") from None
    if model.name != expected:
        raise cfg.ConfigError(
            f"--pretrained-model {path}: model {model.name!r} is not a {generator} generator "
            f"(expected a model named {expected!r}, as python -m sisr.train --profile "
            f"{generator} saves)")
    names = [layer.name for layer in model.layers]
    scales = sorted({int(m.group(1)) for n in names if (m := re.match(r"upsample_x(\d+)_", n))})
    if scales != [SCALE]:
        raise cfg.ConfigError(
            f"--pretrained-model {path}: an x{'/'.join(map(str, scales)) or '?'} "
            f"{expected} model; SRGAN fine-tuning needs an x{SCALE} generator")
    blocks = sum(bool(re.fullmatch(r"block\d+_conv1", n)) for n in names)
    if "head_conv" not in names or not blocks:
        raise cfg.ConfigError(f"--pretrained-model {path}: no `head_conv` layer or residual "
                              f"blocks (`block1_conv1`, ...): not a sisr {expected} generator")
    kwargs = {"num_filters": model.get_layer("head_conv").filters, "num_res_blocks": blocks}
    if expected == "edsr":
        scaled = [layer for layer in model.layers if layer.name.endswith("_scale")]
        kwargs["res_block_scaling"] = scaled[0].scaling if scaled else None
    return model, kwargs


def _check_gan(gan):
    if gan["content_loss"] not in ("VGG22", "VGG54"):
        raise cfg.ConfigError(f"--content-loss must be VGG22 or VGG54, got "
                              f"{gan['content_loss']!r}")
    for key in ("label_noise", "label_smoothing"):
        if not 0 <= gan[key] < 0.5:
            raise cfg.ConfigError(f"--{key.replace('_', '-')} must be in [0, 0.5), "
                                  f"got {gan[key]}")
    if not gan["adversarial_weight"] >= 0:
        raise cfg.ConfigError(f"--adversarial-weight must be >= 0, got "
                              f"{gan['adversarial_weight']}")
    if gan["discriminator_filters"] < 1:
        raise cfg.ConfigError(f"--discriminator-filters must be >= 1, got "
                              f"{gan['discriminator_filters']}")


def new_config(args):
    """The configuration of a new run from the command line (validated)."""
    if not args.generator or not args.pretrained_model:
        raise cfg.ConfigError("--generator and --pretrained-model are required "
                              "(or --resume RUN_DIR)")
    if args.scale is not None and args.scale != SCALE:
        raise cfg.ConfigError(f"--scale {args.scale}: SRGAN fine-tuning is x{SCALE} only")
    args.pretrained_model = resolve_model(args.pretrained_model)  # a path or a registry name
    if not os.path.isfile(args.pretrained_model):
        raise cfg.ConfigError(f"--pretrained-model {args.pretrained_model}: no such file")
    overrides = dict(SCHEDULE)
    overrides.update({k: getattr(args, k) for k in FLAG_KEYS if getattr(args, k) is not None})
    pretrained, kwargs = inspect_generator(args.pretrained_model, args.generator)
    config = cfg.resolve(args.generator, {**overrides, **kwargs})
    try:  # every layer must fit the generator that will be trained
        with precision("float32"):
            copy_pretrained(build_model(config), pretrained, SCALE)
    except PretrainedMismatch as err:
        raise cfg.ConfigError(f"--pretrained-model {args.pretrained_model}: {err}") from None
    gan = dict(GAN_DEFAULTS, generator=args.generator)
    gan.update({k: getattr(args, k) for k in GAN_FLAGS if getattr(args, k) is not None})
    _check_gan(gan)
    config["gan"] = gan
    return config


def resume_config(args):
    """The saved configuration of `--resume RUN_DIR`, with the allowed changes."""
    run_dir = args.resume
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise cfg.ConfigError(f"--resume {run_dir}: not a run directory (no config.json)")
    changed = [k for k in FLAG_KEYS + GAN_FLAGS + ("generator",)
               if k not in RESUME_KEYS + ("vgg_weights",) and getattr(args, k) is not None]
    if changed:
        raise cfg.ConfigError(
            "--resume takes the configuration from the run directory; only --epochs, "
            "--precision, --strategy and --vgg-weights may be given with it, not --"
            + ", --".join(k.replace("_", "-") for k in changed))
    with open(path) as f:
        saved = json.load(f)
    gan = saved.pop("gan", None)
    if not isinstance(gan, dict):
        raise cfg.ConfigError(f"--resume {run_dir}: not an SRGAN run (no `gan` section in "
                              f"{path}); resume it with python -m sisr.train")
    if args.precision is not None and \
            (args.precision == "mixed_float16") != (saved["precision"] == "mixed_float16"):
        # Loss scaling adds optimizer state: the backup would not restore exactly.
        raise cfg.ConfigError(f"--precision {args.precision}: the run was saved with "
                              f"{saved['precision']}; mixed_float16 cannot be switched on "
                              "or off when resuming")
    overrides = {k: getattr(args, k) for k in RESUME_KEYS if getattr(args, k) is not None}
    config = cfg.resolve(None, {**saved, **overrides})
    if args.vgg_weights is not None:
        gan["vgg_weights"] = args.vgg_weights
    config["gan"] = gan
    return config


def resolve_vgg_weights(gan):
    """Finds (or downloads) and checks the VGG19 weights before anything else starts."""
    path = losses.vgg19_weights_path(gan["vgg_weights"])
    losses.check_vgg19_weights(path)
    return path


# -- run directory ---------------------------------------------------------------------
class StopOnNonFiniteLosses(StopOnNonFiniteLoss):
    """Stops at the first batch where any logged loss or metric is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        for key, value in (logs or {}).items():
            if not math.isfinite(float(value)):
                self.failure = (self._epoch, batch, f"{key} = {float(value)}")
                self.model.stop_training = True
                return


class GeneratorValidation(Validation):
    """`Validation` of an SRGAN model's generator: val_psnr, and val_loss = its content
    loss (the discriminator only takes HR-patch-sized images)."""

    def set_model(self, model):
        super().set_model(model.generator)


class GANRunDirectory(RunDirectory):
    """`RunDirectory` for an SRGAN model: after every epoch with finite logs, the
    generator goes to `models/epoch-EEE-psnr-PP.PP.keras` and `last.keras`, and the whole
    SRGAN (both networks and both optimizers) to `backup/epoch-EEE.weights.h5`.
    """

    backup_suffix = ".weights.h5"

    def export_weights(self):
        return self.model.generator.get_weights()

    def save_backup(self, path):
        save_backup(self.model, path)

    def save_models(self, epoch, score):
        # Every epoch's generator is kept: the highest PSNR is the least GAN-like model.
        name = f"epoch-{epoch + 1:03d}" + ("" if score is None else f"-psnr-{score:.2f}")
        path = os.path.join(self.run_dir, "models", name + ".keras")
        save_model(self.export_model, path)
        atomic_copy(path, os.path.join(self.run_dir, LAST_MODEL))
        self.best_model = os.path.join("models", name + ".keras")


# -- training --------------------------------------------------------------------------
def train(config, run_dir, datasets, vgg_weights, resume=False, verbose=1):
    """Fine-tunes as `config` says, keeping `run_dir` up to date; returns a result dict.

    Args:
        datasets: (train, valid) `sisr.data` datasets, opened by the caller so that a bad
            `--dataset` fails before the run directory exists.
        vgg_weights: the checked VGG19 weights file (`resolve_vgg_weights`).
        resume: continue from the run directory's backup (same optimizer states and
            schedule position, from the first epoch that had not completed).
    """
    gan_cfg = config["gan"]
    state = read_state(run_dir) if resume else None
    if resume and state is None:
        raise ValueError(f"{run_dir} has no completed epoch to resume from")
    initial_epoch = state["epoch"] if state else 0
    atomic_write_json(os.path.join(run_dir, "config.json"), config)

    valid_data = datasets[1]
    shave = metrics.div2k_shave(SCALE)
    seed = config["seed"]
    if seed is not None:
        keras.utils.set_random_seed(seed)

    with precision("float32"):
        export_model = build_model(config)

    strategy = make_strategy(config["strategy"])
    with precision(config["precision"]), strategy.scope():
        generator = build_model(config)
        if not resume:
            names = copy_pretrained(generator, load_model(config["pretrained_model"]), SCALE)
            log.info("copied %d layers from %s", len(names), config["pretrained_model"])
        critic = discriminator(hr_size=config["lr_patch"] * SCALE,
                               num_filters=gan_cfg["discriminator_filters"])
        features = losses.vgg_feature_extractor(gan_cfg["content_loss"], weights=vgg_weights)
        model = SRGAN(generator, critic, features)
        model.compile(g_optimizer=make_optimizer(config), d_optimizer=make_optimizer(config),
                      adversarial_weight=gan_cfg["adversarial_weight"],
                      label_noise=gan_cfg["label_noise"],
                      label_smoothing=gan_cfg["label_smoothing"],
                      psnr_shave=shave, noise_seed=seed or 0)
        if resume:
            load_backup(model, os.path.join(run_dir, BACKUP_DIR, state["backup"]),
                        iterations=state["iterations"])
            log.info("resuming %s after epoch %d (step %d)", run_dir, initial_epoch,
                     state["iterations"])

        train_ds, valid_ds = make_pipelines(config, datasets, initial_epoch)
        guard = StopOnNonFiniteLosses()
        run_cb = GANRunDirectory(run_dir, export_model, monitor="val_psnr", state=state)
        callbacks = [
            guard,
            # Before RunDirectory and TensorBoard, which read the val_* logs it adds.
            GeneratorValidation(valid_ds, export_model, model.content.mean, shave),
            run_cb,
            keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"), write_graph=False),
        ]
        model.fit(train_ds, epochs=config["epochs"], steps_per_epoch=config["steps_per_epoch"],
                  initial_epoch=initial_epoch, callbacks=callbacks, shuffle=False,
                  verbose=verbose)

    if guard.failure:
        epoch, batch, what = guard.failure
        kept = run_cb.best_model or "no model (no epoch completed)"
        raise NonFiniteLoss(f"training stopped: {what} at epoch {epoch + 1}, batch "
                            f"{batch + 1}; kept the last good generator: {kept}")

    last = os.path.join(run_dir, LAST_MODEL)
    final = load_model(last) if os.path.isfile(last) else export_model
    return write_result(run_dir, config, model, final, valid_data, shave,
                        last_model=run_cb.best_model)


# -- command line ----------------------------------------------------------------------
def make_parser():
    parser = argparse.ArgumentParser(
        prog="python -m sisr.train_gan",
        description="Fine-tune a pixel-loss x4 generator with the SRGAN perceptual + "
                    "adversarial losses.",
    )
    parser.add_argument("--generator", choices=sorted(GENERATORS),
                        help="the generator's profile (sr-resnet: SRResNet, edsr-gen: EDSR)")
    parser.add_argument("--pretrained-model", help="the pixel-loss x4 generator (.keras) "
                        "to start from")
    parser.add_argument("--dataset", help="'demo', a DIV2K root (numpy cache or PNG tree) "
                        "or an image folder")
    parser.add_argument("--scale", type=int, help=f"must be {SCALE} (the default)")
    parser.add_argument("--outdir", default="runs", help="parent of the run directory")
    parser.add_argument("--epochs", type=int, help="default 200")
    parser.add_argument("--steps-per-epoch", type=int, help="default 1000")
    parser.add_argument("--batch-size", type=int, help="global batch size, default 16")
    parser.add_argument("--learning-rate", type=float, help="initial learning rate of both "
                        "networks (default 1e-4, x0.1 after 100k steps)")
    parser.add_argument("--content-loss", choices=("VGG22", "VGG54"),
                        help="VGG19 features of the content loss (default VGG54)")
    parser.add_argument("--vgg-weights", metavar="PATH", help="VGG19 ImageNet weights "
                        "(.h5 / .weights.h5); default: the Keras cache, downloaded if needed")
    parser.add_argument("--adversarial-weight", type=float, help="default 1e-3")
    parser.add_argument("--label-noise", type=float, help="discriminator targets drawn from "
                        "U(1-n, 1) and U(0, n); default 0")
    parser.add_argument("--label-smoothing", type=float, help="real target 1 - s; default 0")
    parser.add_argument("--discriminator-filters", type=int, help="default 64")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--precision", choices=cfg.PRECISIONS)
    parser.add_argument("--strategy", choices=cfg.STRATEGIES)
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="Keras fit verbosity (1: progress bar)")
    return parser


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = make_parser().parse_args(argv)
    try:
        config = resume_config(args) if args.resume else new_config(args)
        vgg_weights = resolve_vgg_weights(config["gan"])
        datasets = open_datasets(config)
        make_pipelines(config, datasets)  # patch and crop sizes fit the images
    except (cfg.ConfigError, losses.VGGWeightsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    try:
        if args.resume:
            run_dir = args.resume
        else:
            run_dir = new_run_dir(args.outdir, f"srgan-{config['gan']['generator']}")
        log.info("run directory: %s", run_dir)
        result = train(config, run_dir, datasets, vgg_weights, resume=bool(args.resume),
                       verbose=args.verbose)
    except (PretrainedMismatch, NonFiniteLoss, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    gain = result["psnr"] - result["bicubic_psnr"]
    print(f"validation PSNR ({result['valid_images']} images, x{SCALE}, RGB, shave "
          f"{result['shave']}): generator {result['psnr']:.2f} dB, bicubic "
          f"{result['bicubic_psnr']:.2f} dB ({gain:+.2f} dB)")
    print(f"generator: {os.path.join(run_dir, LAST_MODEL)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
