"""SRGAN fine-tuning of a pixel-loss x4 generator: `GANTrainer` extends the pixel `Trainer`.

The schedule is by default the SRGAN paper's (Ledig et al., CVPR 2017): Adam 1e-4, then
1e-5 after 100k of 200k steps (200 epochs x 1000), HR crops of 96 (LR 24), batch 16,
content loss on VGG54 features. The run directory is laid out as for pixel training,
except that the generator of every epoch is kept (`models/epoch-EEE-psnr-PP.PP.keras`) and
`last.keras` is the newest: GAN training trades PSNR for texture, so the highest-PSNR epoch
is not the best one.

The generator is any profile whose model's registry entry is a GAN generator
(`ModelSpec.gan_generator`); the GAN settings are the configuration's flat `gan_*` keys
(`sisr.training.config.GAN_DEFAULTS`). Another GAN (ESRGAN's relativistic one, say) is a
subclass of `SRGAN` overriding its loss hooks, trained by a `GANTrainer` subclass that
sets `model_class` (and overrides `build_discriminator` if needed).
"""

import logging
import os

from keras import ops

from sisr import losses
from sisr.fileio import atomic_copy
from sisr.model import discriminator
from sisr.model.registry import get_spec
from sisr.model.srmodel import model_info
from sisr.saving import load_model, save_model
from sisr.training.callbacks import RunDirectory, Validation
from sisr.training.config import GAN_SCALE as SCALE
from sisr.training.config import GAN_SCHEDULE as SCHEDULE  # noqa: F401  (re-exported)
from sisr.training.config import ConfigError, gan_generator_model
from sisr.training.srgan import SRGAN, load_backup, save_backup
from sisr.training.trainer import Trainer, build_model, make_optimizer

log = logging.getLogger(__name__)

LAST_MODEL = "last.keras"


def inspect_generator(path, generator):
    """The builder arguments of the generator in `path` (sisr's record of them).

    Raises ConfigError unless it is a sisr x4 model of the kind the profile `generator`
    builds, and that kind is a GAN generator.
    """
    expected = gan_generator_model(generator)
    try:
        model = load_model(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--pretrained-model {path}: {err}") from None
    info = model_info(model)
    if info is None or info["builder"] != expected:
        found = "a model without sisr's builder record" if info is None else \
            f"model {info['builder']!r}"
        raise ConfigError(f"--pretrained-model {path}: {found} is not a {generator} generator "
                          f"({expected}, as python -m sisr.train --profile {generator} saves)")
    if info["scale"] != SCALE:
        raise ConfigError(f"--pretrained-model {path}: an x{info['scale']} {expected} model; "
                          f"SRGAN fine-tuning needs an x{SCALE} generator")
    return {k: v for k, v in info["arguments"].items() if k != "scale"}


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
    final_model = LAST_MODEL

    def export_weights(self):
        return self.model.generator.get_weights()

    def save_backup(self, path):
        save_backup(self.model, path)

    def save_models(self, epoch, score):
        # Every epoch's generator is kept: the highest PSNR is the least GAN-like model.
        name = f"epoch-{epoch + 1:03d}" + ("" if score is None else f"-psnr-{score:.2f}")
        path = os.path.join(self.run_dir, "models", name + ".keras")
        save_model(self.export_model, path)
        atomic_copy(path, os.path.join(self.run_dir, self.final_model))
        self.best_model = os.path.join("models", name + ".keras")


class GANTrainer(Trainer):
    """SRGAN fine-tuning: the pixel `Trainer`'s skeleton with a generator, a discriminator
    and a frozen VGG19 feature extractor (the `gan_*` keys of the configuration).

    Hooks for other GANs: `model_class` (an `SRGAN` subclass with other losses),
    `build_discriminator`, `build_feature_extractor` and `compile_arguments`.

    Args:
        config: a resolved configuration with a `gan_generator` (see
            `sisr.training.config.GAN_DEFAULTS`).
        vgg_weights: the VGG19 weights file; by default found (or downloaded) and checked
            by `prepare`, before any run directory exists.
    """

    result_key = "last_model"
    trained = "generator"
    run_directory = GANRunDirectory
    validation = GeneratorValidation
    #: The Keras model that trains generator and discriminator together.
    model_class = SRGAN

    def __init__(self, config, vgg_weights=None):
        super().__init__(config)
        self.vgg_weights = vgg_weights

    def run_name(self):
        return f"srgan-{self.config['gan_generator']}"

    def prepare(self, resume=False):
        self.start()  # a multi-worker strategy must precede any TF op
        if self.vgg_weights is None:
            self.vgg_weights = losses.vgg19_weights_path(self.config["gan_vgg_weights"])
            losses.check_vgg19_weights(self.vgg_weights)
        return super().prepare(resume)

    def networks(self):
        """The generator's and the discriminator's."""
        config = self.config
        kwargs = {"hr_size": config["lr_patch"] * SCALE,
                  "num_filters": config["gan_discriminator_filters"]}
        keys = {"hr_size": "lr_patch", "num_filters": "gan_discriminator_filters"}
        return super().networks() + [(get_spec("discriminator"), kwargs, keys)]

    # -- hooks ---------------------------------------------------------------------------
    def build_discriminator(self):
        """The discriminator of HR patches (`lr_patch` x 4)."""
        return discriminator(hr_size=self.config["lr_patch"] * SCALE,
                             num_filters=self.config["gan_discriminator_filters"])

    def build_feature_extractor(self):
        """The frozen network of the content loss (VGG19 features)."""
        return losses.vgg_feature_extractor(self.config["gan_content_loss"],
                                            weights=self.vgg_weights)

    def compile_arguments(self):
        """The keyword arguments of `model_class.compile` besides the optimizers."""
        config = self.config
        return {"adversarial_weight": config["gan_adversarial_weight"],
                "label_noise": config["gan_label_noise"],
                "label_smoothing": config["gan_label_smoothing"],
                "psnr_shave": self.shave, "noise_seed": config["seed"] or 0}

    def build(self, resume):
        config = self.config
        generator = build_model(config)
        if not resume:
            self.seed_from_pretrained(generator)
        model = self.model_class(generator, self.build_discriminator(),
                                 self.build_feature_extractor())
        model.compile(g_optimizer=make_optimizer(config), d_optimizer=make_optimizer(config),
                      **self.compile_arguments())
        return model

    def restore(self, model, backup_path):
        load_backup(model, backup_path)

    def validation_loss(self, model):
        """The generator's content loss (`model.content_loss`), a batch mean."""
        return lambda hr, sr: ops.mean(model.content_loss(hr, sr))
