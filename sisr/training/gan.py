"""GAN fine-tuning of a pixel-loss x4 generator: `GANTrainer` extends the pixel `Trainer`.

The schedule is by default the SRGAN paper's (Ledig et al., CVPR 2017): Adam 1e-4, then
1e-5 after 100k of 200k steps (200 epochs x 1000), HR crops of 96 (LR 24), batch 16,
content loss on VGG54 features. The run directory is laid out as for pixel training,
except that the generator of every epoch is kept (`models/epoch-EEE-psnr-PP.PP.keras`) and
`last.keras` is the newest: GAN training trades PSNR for texture, so the highest-PSNR epoch
is not the best one.

The generator is any profile whose model's registry entry is a GAN generator
(`ModelSpec.gan_generator`); the GAN settings are the configuration's flat `gan_*` keys
(`sisr.training.config.GAN_DEFAULTS`). A profile carrying `gan_*` keys is a GAN recipe
whose keys and schedule replace SRGAN's:

- `realesrgan-x4` (Real-ESRGAN, Wang et al. 2021; BasicSR `RealESRGANModel` with
  `options/train_realesrgan_x4plus.yml`): RRDBNet from a `realesrnet-x4` result on the
  `realesrgan` degradations; L1 (1) and perceptual (1; pre-activation VGG19 conv1_2 ...
  conv5_4 weighted 0.1, 0.1, 1, 1, 1) on the USM-sharpened HR, vanilla GAN (0.1) of the
  U-Net discriminator with spectral normalisation on the HR as it is; Adam 1e-4 (betas
  0.9, 0.99) for both; the EMA (0.999) of the generator is the saved model.
- `esrgan-x4` (ESRGAN, Wang et al. 2018; BasicSR `ESRGANModel` with
  `options/train/ESRGAN/train_ESRGAN_x4.yml`): RRDBNet from an `rrdbnet-psnr-x4` result on
  bicubic LR; L1 (1e-2), perceptual (1; conv5_4 before ReLU), relativistic average GAN
  (5e-3) of the VGG-style discriminator at HR 128; Adam 1e-4 (0.9, 0.99); EMA 0.999.

The GAN of a configuration is an `SRGAN` (or subclass) chosen by `gan_adversarial_loss`
(`MODEL_CLASSES`); another GAN is a subclass overriding its loss hooks, trained by a
`GANTrainer` subclass that sets `model_class` (and overrides `build_discriminator` if
needed).
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
from sisr.training.srgan import SRGAN, LogitsGAN, RelativisticGAN, load_backup, save_backup
from sisr.training.trainer import Trainer, build_model, make_optimizer, make_pipelines

log = logging.getLogger(__name__)

LAST_MODEL = "last.keras"
# The GAN model of each `gan_adversarial_loss`.
MODEL_CLASSES = {"bce": SRGAN, "vanilla": LogitsGAN, "ragan": RelativisticGAN}


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


class _Exported:
    """What `Validation` reads of the model it validates: the GAN's exported generator
    weights (the EMA's, if any)."""

    def __init__(self, gan):
        self.gan = gan

    def get_weights(self):
        return self.gan.export_weights()


class GeneratorValidation(Validation):
    """`Validation` of an SRGAN model's generator (its EMA, if any): val_psnr, and
    val_loss = its content loss (the discriminator only takes HR-patch-sized images)."""

    def set_model(self, model):
        super().set_model(_Exported(model))


class GANRunDirectory(RunDirectory):
    """`RunDirectory` for an SRGAN model: after every epoch with finite logs, the
    generator (its EMA, if any) goes to `models/epoch-EEE-psnr-PP.PP.keras` and
    `last.keras`, and the whole SRGAN (both networks, both optimizers, the EMA) to
    `backup/epoch-EEE.weights.h5`.
    """

    backup_suffix = ".weights.h5"
    final_model = LAST_MODEL

    def export_weights(self):
        return self.model.export_weights()

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
    """GAN fine-tuning: the pixel `Trainer`'s skeleton with a generator, a discriminator
    and a frozen VGG19 loss (the `gan_*` keys of the configuration).

    Hooks for other GANs: `model_class` (an `SRGAN` subclass with other losses; by default
    `MODEL_CLASSES[gan_adversarial_loss]`), `build_discriminator`,
    `build_feature_extractor` / `build_content_loss` and `compile_arguments`.

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
    #: The Keras model that trains generator and discriminator together (None: the one
    #: of `gan_adversarial_loss`).
    model_class = None

    def __init__(self, config, vgg_weights=None):
        super().__init__(config)
        self.vgg_weights = vgg_weights

    def run_name(self):
        # A GAN recipe (its own losses) is named by its profile; SRGAN's fine-tuning of a
        # pixel profile by that profile.
        if self.config["gan_adversarial_loss"] == "bce":
            return f"srgan-{self.config['gan_generator']}"
        return self.config["gan_generator"]

    def prepare(self, resume=False):
        self.start()  # a multi-worker strategy must precede any TF op
        if self.vgg_weights is None:
            self.vgg_weights = losses.vgg19_weights_path(self.config["gan_vgg_weights"])
            losses.check_vgg19_weights(self.vgg_weights)
        return super().prepare(resume)

    def discriminator_arguments(self):
        """`(builder kwargs, config key of each)` of the discriminator `gan_discriminator`
        names, for HR patches of `lr_patch` x 4."""
        config = self.config
        name = config["gan_discriminator"]
        hr_size, filters = config["lr_patch"] * SCALE, config["gan_discriminator_filters"]
        if name == "discriminator":
            return ({"hr_size": hr_size, "num_filters": filters},
                    {"hr_size": "lr_patch", "num_filters": "gan_discriminator_filters"})
        if name == "vgg-discriminator":
            return ({"hr_size": hr_size, "num_feat": filters},
                    {"hr_size": "lr_patch", "num_feat": "gan_discriminator_filters"})
        # The U-Net discriminator takes any size that its three halvings divide.
        return ({"num_in_ch": 3, "num_feat": filters, "skip_connection": True},
                {"num_feat": "gan_discriminator_filters"})

    def networks(self):
        """The generator's and the discriminator's."""
        kwargs, keys = self.discriminator_arguments()
        return super().networks() + [(get_spec(self.config["gan_discriminator"]), kwargs,
                                      keys)]

    # -- hooks ---------------------------------------------------------------------------
    def build_discriminator(self):
        """The discriminator of HR patches (`lr_patch` x 4) that `gan_discriminator`
        names."""
        if self.config["gan_discriminator"] == "discriminator":
            return discriminator(hr_size=self.config["lr_patch"] * SCALE,
                                 num_filters=self.config["gan_discriminator_filters"])
        kwargs, _ = self.discriminator_arguments()
        return get_spec(self.config["gan_discriminator"]).builder(**kwargs)

    def build_feature_extractor(self):
        """The frozen network of SRGAN's content loss (VGG19 features)."""
        return losses.vgg_feature_extractor(self.config["gan_content_loss"],
                                            weights=self.vgg_weights)

    def build_content_loss(self):
        """The content loss as `SRGAN`'s keyword arguments: a `feature_extractor` (SRGAN's
        VGG22 / VGG54) or a `content_loss` (BasicSR's pre-activation perceptual loss)."""
        if self.config["gan_content_loss"] != "perceptual":
            return {"feature_extractor": self.build_feature_extractor()}
        from sisr.perceptual import PerceptualLoss

        return {"content_loss": PerceptualLoss(
            layer_weights=dict(self.config["gan_perceptual_layers"]),
            vgg_weights=self.vgg_weights, use_input_norm=True, range_norm=False,
            criterion="l1", perceptual_weight=1.0)}

    def compile_arguments(self):
        """The keyword arguments of `model_class.compile` besides the optimizers."""
        config = self.config
        return {"content_weight": config["gan_content_weight"],
                "adversarial_weight": config["gan_adversarial_weight"],
                "pixel_weight": config["gan_pixel_weight"],
                "pixel_loss": config["gan_pixel_loss"],
                "usm_targets": list(config["gan_usm_targets"]),
                "ema_decay": config["gan_ema_decay"],
                "label_noise": config["gan_label_noise"],
                "label_smoothing": config["gan_label_smoothing"],
                "psnr_shave": self.shave, "noise_seed": config["seed"] or 0}

    def pipelines(self, datasets, initial_epoch=0):
        """As the pixel trainer's, except that a degradation's target is the HR patch as it
        is: the GAN model sharpens the targets of the losses of `gan_usm_targets` itself
        (the discriminator may need the unsharpened HR)."""
        config = self.config
        if config.get("degradation") is not None:
            from sisr.data.degradations import load_preset

            preset = load_preset(config["degradation"])
            if "gt_usm" in preset:
                preset["gt_usm"] = False
            config = {**config, "degradation": preset}
        return make_pipelines(config, datasets, initial_epoch)

    def build(self, resume):
        config = self.config
        generator = build_model(config)
        if not resume:
            self.seed_from_pretrained(generator)
        model_class = self.model_class or MODEL_CLASSES[config["gan_adversarial_loss"]]
        model = model_class(generator, self.build_discriminator(), **self.build_content_loss())
        model.compile(g_optimizer=make_optimizer(config), d_optimizer=make_optimizer(config),
                      **self.compile_arguments())
        return model

    def restore(self, model, backup_path):
        load_backup(model, backup_path)

    def validation_loss(self, model):
        """The generator's content loss (`model.content_loss`), a batch mean."""
        return lambda hr, sr: ops.mean(model.content_loss(hr, sr))
