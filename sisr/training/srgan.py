"""SRGAN fine-tuning as a Keras model: `fit` trains generator and discriminator together.

    gan = SRGAN(generator, discriminator, vgg_feature_extractor("VGG54"))
    gan.compile(g_optimizer=keras.optimizers.Adam(1e-4), d_optimizer=keras.optimizers.Adam(1e-4))
    gan.fit(dataset_of_lr_hr_batches, epochs=..., validation_data=...)

The train step is written for the TensorFlow backend (GradientTape). Losses are computed
in float32; under `mixed_float16` both optimizers are wrapped in a LossScaleOptimizer;
under tf.distribute each replica's loss is its share of the global batch mean
(`tf.nn.compute_average_loss`), so that the optimizers' all-reduced (summed) gradients
are those of the global batch.

Another GAN is a subclass overriding the loss hooks (`content_loss`, `adversarial_loss`,
`discriminator_loss`, `discriminator_accuracy`, `pixel_loss`, `loss_targets`), as
`LogitsGAN` (Real-ESRGAN's vanilla GAN on logits) and `RelativisticGAN` (ESRGAN's
relativistic average GAN) do. `compile` also adds a pixel loss term, USM-sharpened targets
for chosen losses and an exponential moving average (EMA) of the generator's weights,
updated after every generator step; `export_weights` gives the generator's weights with
the EMA in place of its trainable ones (BasicSR's `params_ema`).

Back up a run with `save_backup` (generator, discriminator and both optimizers' state, in
one `.weights.h5`, written atomically) and restore it with `load_backup`; save the
generator alone with `sisr.save_model` for inference.
"""

import logging
import os

import keras
import numpy as np
import tensorflow as tf

from keras import ops

from sisr import losses
from sisr.fileio import atomic_output
from sisr.metrics import PSNR

log = logging.getLogger(__name__)

TRACKED = ("loss", "content_loss", "adversarial_loss", "discriminator_loss",
           "discriminator_accuracy")
# The losses whose HR target may be the USM-sharpened one (`compile(usm_targets=...)`).
USM_TARGETS = ("pixel", "content", "adversarial")


class _Held:
    """Holds a loss callable out of Keras' sight: a model holding it neither trains nor
    saves the weights of a Keras layer inside it (such as a frozen VGG)."""

    def __init__(self, loss):
        self.loss = loss

    def __call__(self, hr, sr):
        return self.loss(hr, sr)


def usm_sharpen_batch(images):
    """Real-ESRGAN's USM sharpening (`sisr.data.degradations.ops.usm_sharpen`) of a
    float32 batch on [0, 255]."""
    from sisr.data.degradations.ops import usm_sharpen

    scaled = tf.cast(images, tf.float32) / 255.0
    sharp = tf.map_fn(usm_sharpen, scaled, fn_output_signature=tf.float32)
    return sharp * 255.0


class SRGAN(keras.Model):
    """Generator + discriminator + frozen feature extractor, trained adversarially.

    Args:
        generator: maps LR RGB on [0, 255] to SR RGB on [0, 255].
        discriminator: maps HR-sized RGB on [0, 255] to the probability of being real.
        feature_extractor: frozen model mapping RGB on [0, 255] to features, e.g.
            `sisr.losses.vgg_feature_extractor("VGG54")`: the content loss is SRGAN's
            (`sisr.losses.ContentLoss`). It is not trained and not saved with the model's
            weights.
        content_loss: instead of `feature_extractor`, any callable `(hr, sr) -> per-image
            loss [batch]` on [0, 255] images, e.g. `sisr.perceptual.PerceptualLoss`
            (neither trained nor saved either).

    Logged while training: `loss` (the generator's perceptual loss: content weight x
    content + adversarial weight x adversarial; named `loss` as Keras callbacks expect),
    `content_loss`, `adversarial_loss`, `discriminator_loss` and `discriminator_accuracy`
    (of each batch before D learns from it), and `pixel_loss` when it has a weight.
    `evaluate` / `validation_data` report the generator's `psnr`. `model(lr)` runs the
    generator (the trained weights, not their EMA).
    """

    def __init__(self, generator, discriminator, feature_extractor=None, name="srgan",
                 content_loss=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if (feature_extractor is None) == (content_loss is None):
            raise ValueError("SRGAN: give either a feature_extractor or a content_loss")
        self.generator = generator
        self.discriminator = discriminator
        # Held by a plain object (`self.content.feature_extractor`, deliberately no
        # attribute or property of the model): Keras neither trains nor saves it.
        self.content = (losses.ContentLoss(feature_extractor) if content_loss is None
                        else _Held(content_loss))
        self._trackers = [keras.metrics.Mean(name=n) for n in TRACKED]
        self._pixel_tracker = keras.metrics.Mean(name="pixel_loss")
        self.pixel_weight = 0.0
        self.pixel_loss_name = "l1"
        self.usm_targets = ()
        self.ema_decay = 0.0
        self.ema_variables = []
        self.psnr = PSNR(shave=0)
        self.d_optimizer = None
        # Both sub-models are built Functional models: nothing to build symbolically.
        self.built = True

    @property
    def metrics(self):
        return [*self._all_trackers(), self.psnr]

    def _all_trackers(self):
        return self._trackers + ([self._pixel_tracker] if self.pixel_weight else [])

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def compile(self, g_optimizer, d_optimizer, content_weight=1.0, adversarial_weight=1e-3,
                label_smoothing=0.0, label_noise=0.0, psnr_shave=0, noise_seed=0,
                pixel_weight=0.0, pixel_loss="l1", usm_targets=(), ema_decay=0.0,
                jit_compile="auto", **kwargs):
        """Sets the optimizers and loss weights, and builds the optimizers' state.

        Args:
            g_optimizer, d_optimizer: two distinct Keras optimizers.
            content_weight, adversarial_weight: generator loss = content_weight x content
                + adversarial_weight x BCE(1, D(SR)) (SRGAN: 1 and 1e-3)
                [+ pixel_weight x pixel].
            pixel_weight, pixel_loss: weight and kind ("l1" or "mse",
                `sisr.losses.PIXEL_LOSSES`, valued on BasicSR's [0, 1] scale) of a pixel
                loss term of the generator (0: none, as SRGAN).
            usm_targets: the losses among "pixel", "content" and "adversarial" whose HR
                target is USM-sharpened in the step (Real-ESRGAN: pixel and content;
                the discriminator then sees the HR images as they are).
            ema_decay: with a decay in (0, 1), an EMA of the generator's trainable weights
                (starting from their values here) follows every generator step,
                ema = decay x ema + (1 - decay) x weights; it is in the backup
                (`save_backup`) and in `export_weights`. 0: none.
            label_smoothing: real targets for D are 1 - label_smoothing.
            label_noise: D's targets are drawn per image, real from
                U(1 - label_noise, 1) and fake from U(0, label_noise), on top of the
                smoothing; 0 disables it.
            psnr_shave: border shave of the validation PSNR.
            noise_seed: seed of the label noise (drawn statelessly from it and the step).
        """
        if g_optimizer is d_optimizer:
            raise ValueError("SRGAN.compile: g_optimizer and d_optimizer must be two "
                             "distinct optimizer objects")
        for key, value, low, high in (("label_smoothing", label_smoothing, 0.0, 0.5),
                                      ("label_noise", label_noise, 0.0, 0.5)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not low <= value < high:
                raise ValueError(f"SRGAN.compile: `{key}` must be in [{low}, {high}), "
                                 f"got {value!r}")
        for key, value in (("content_weight", content_weight),
                           ("adversarial_weight", adversarial_weight),
                           ("pixel_weight", pixel_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"SRGAN.compile: `{key}` must be a number >= 0, "
                                 f"got {value!r}")
        if pixel_loss not in losses.PIXEL_LOSSES:
            raise ValueError(f"SRGAN.compile: `pixel_loss` must be one of "
                             f"{', '.join(losses.PIXEL_LOSSES)}, got {pixel_loss!r}")
        unknown = sorted(set(usm_targets) - set(USM_TARGETS))
        if unknown or isinstance(usm_targets, str):
            raise ValueError(f"SRGAN.compile: `usm_targets` must be a list of "
                             f"{', '.join(USM_TARGETS)}, got {usm_targets!r}")
        if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float)) \
                or not 0 <= ema_decay < 1:
            raise ValueError(f"SRGAN.compile: `ema_decay` must be in [0, 1), got "
                             f"{ema_decay!r}")
        if "mixed_float16" in (self.generator.dtype_policy.name,
                               self.discriminator.dtype_policy.name):
            # float16 gradients underflow without loss scaling.
            g_optimizer, d_optimizer = (
                opt if isinstance(opt, keras.optimizers.LossScaleOptimizer)
                else keras.optimizers.LossScaleOptimizer(opt)
                for opt in (g_optimizer, d_optimizer))
        super().compile(optimizer=g_optimizer, jit_compile=jit_compile, **kwargs)
        self.d_optimizer = d_optimizer
        self.content_weight = float(content_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.label_smoothing = float(label_smoothing)
        self.label_noise = float(label_noise)
        self.noise_seed = int(noise_seed)
        self.psnr = PSNR(shave=psnr_shave)
        self.pixel_weight = float(pixel_weight)
        self.pixel_loss_name = pixel_loss
        self.usm_targets = tuple(t for t in USM_TARGETS if t in usm_targets)
        self.ema_decay = float(ema_decay)
        if self.ema_decay and not self.ema_variables:
            # Variables of this model (saved by `save_weights`, so in the backup); under
            # tf.distribute every replica computes the same update: the first one's is kept.
            self.ema_variables = [
                keras.Variable(ops.convert_to_tensor(v), trainable=False, name=f"ema_{i}",
                               aggregation="only_first_replica")
                for i, v in enumerate(self.generator.trainable_variables)]
        # Each optimizer gets slots for its own network only (Keras would otherwise build
        # the first one on all trainable variables), which also fixes the backup layout.
        self.optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    # -- losses: the hooks a subclass overrides for another GAN ---------------------------
    # Each takes and returns float32 tensors; `real` and `fake` are the discriminator's
    # outputs on the HR and SR batches, and each loss is per image (shape [batch]).
    def content_loss(self, hr, sr):
        """The generator's content loss (VGG features, `sisr.losses.ContentLoss`)."""
        return self.content(hr, sr)

    def adversarial_loss(self, real, fake):
        """The generator's adversarial loss: BCE(1, D(SR)) (`real` is unused here)."""
        return losses.generator_adversarial_loss(fake)

    def discriminator_loss(self, real, fake, real_target, fake_target):
        """BCE(real_target, D(HR)) + BCE(fake_target, D(SR)); the targets are scalars or
        per-image [batch, 1] tensors (label smoothing and noise)."""
        return losses.discriminator_loss(real, fake, real_target, fake_target)

    def discriminator_accuracy(self, real, fake):
        """Share of HR images scored > 0.5 and SR images scored < 0.5."""
        return losses.discriminator_accuracy(real, fake)

    def pixel_loss(self, hr, sr):
        """The generator's pixel loss term (`compile(pixel_loss=...)`), per image."""
        return losses.PIXEL_LOSSES[self.pixel_loss_name](hr, sr)

    def loss_targets(self, hr):
        """The HR batch each loss compares with: `{"pixel", "content", "adversarial"}`
        -> float32 [0, 255] images; those of `usm_targets` USM-sharpened (once)."""
        sharp = usm_sharpen_batch(hr) if self.usm_targets else None
        return {t: sharp if t in self.usm_targets else hr for t in USM_TARGETS}

    # -- the EMA of the generator ------------------------------------------------------
    def update_ema(self):
        """ema = decay x ema + (1 - decay) x weights, for every trainable weight."""
        decay = self.ema_decay
        for average, variable in zip(self.ema_variables, self.generator.trainable_variables):
            average.assign(decay * average + (1.0 - decay) * ops.cast(variable, "float32"))

    def export_weights(self):
        """The generator's weights (as `generator.get_weights()`), with the EMA in place
        of the trainable ones when there is one: the model to save and validate."""
        if not self.ema_variables:
            return self.generator.get_weights()
        ema = {id(v): np.asarray(a) for v, a in zip(self.generator.trainable_variables,
                                                    self.ema_variables)}
        return [ema[id(v)] if id(v) in ema else np.asarray(v)
                for v in self.generator.weights]

    # -- training ----------------------------------------------------------------------
    def _targets(self, batch):
        real = 1.0 - self.label_smoothing
        if not self.label_noise:
            return real, 0.0
        replica = tf.distribute.get_replica_context()
        replica_id = replica.replica_id_in_sync_group if replica is not None else 0
        step = tf.cast(self.optimizer.iterations, tf.int64)
        seed = tf.stack([tf.cast(self.noise_seed * 1009 + replica_id, tf.int64), step])
        noise = tf.random.stateless_uniform([2, batch, 1], seed=seed,
                                            maxval=self.label_noise)
        return real - noise[0], noise[1]

    def train_step(self, data):
        lr, hr = data[0], data[1]
        lr, hr = tf.cast(lr, tf.float32), tf.cast(hr, tf.float32)
        real_target, fake_target = self._targets(tf.shape(hr)[0])
        targets = self.loss_targets(hr)
        g_vars = self.generator.trainable_variables
        d_vars = self.discriminator.trainable_variables

        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            sr = tf.cast(self.generator(lr, training=True), tf.float32)
            real = self.discriminator(targets["adversarial"], training=True)
            fake = self.discriminator(sr, training=True)
            content = self.content_loss(targets["content"], sr)
            adversarial = self.adversarial_loss(real, fake)
            perceptual = self.content_weight * content + self.adversarial_weight * adversarial
            if self.pixel_weight:
                pixel = self.pixel_loss(targets["pixel"], sr)
                perceptual = perceptual + self.pixel_weight * pixel
            d_loss = self.discriminator_loss(real, fake, real_target, fake_target)
            # Each replica's share of the global batch mean; scaled for float16 if needed.
            g_scaled = self.optimizer.scale_loss(tf.nn.compute_average_loss(perceptual))
            d_scaled = self.d_optimizer.scale_loss(tf.nn.compute_average_loss(d_loss))

        if g_vars:
            self.optimizer.apply_gradients(zip(g_tape.gradient(g_scaled, g_vars), g_vars))
        else:  # e.g. a fixed upsampler as generator: only D learns
            self.optimizer.iterations.assign_add(1)
        if self.ema_variables:
            self.update_ema()
        self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_scaled, d_vars), d_vars))

        values = {"loss": perceptual, "content_loss": content, "adversarial_loss": adversarial,
                  "discriminator_loss": d_loss,
                  "discriminator_accuracy": self.discriminator_accuracy(real, fake)}
        if self.pixel_weight:
            values["pixel_loss"] = pixel
        trackers = self._all_trackers()
        for tracker in trackers:
            tracker.update_state(values[tracker.name])
        return {t.name: t.result() for t in trackers}

    def test_step(self, data):
        lr, hr = data[0], data[1]
        sr = self.generator(tf.cast(lr, tf.float32), training=False)
        self.psnr.update_state(tf.cast(hr, tf.float32), sr)
        return {"psnr": self.psnr.result()}

    def get_config(self):
        raise NotImplementedError(
            "SRGAN is not saved as a whole: save the generator with sisr.save_model and "
            "back up a run with sisr.training.srgan.save_backup")


class LogitsGAN(SRGAN):
    """The vanilla GAN of BasicSR's `GANLoss("vanilla")` (Real-ESRGAN): BCE with logits
    of a discriminator that outputs logits, per image or per pixel (the U-Net
    discriminator), averaged over each image's outputs."""

    def adversarial_loss(self, real, fake):
        """BCE(1, D(SR)) of logits (`real` is unused)."""
        return losses.vanilla_generator_loss(fake)

    def discriminator_loss(self, real, fake, real_target, fake_target):
        """BCE(real_target, D(HR)) + BCE(fake_target, D(SR)) of logits."""
        return losses.vanilla_discriminator_loss(real, fake, real_target, fake_target)

    def discriminator_accuracy(self, real, fake):
        """Share of HR outputs > 0 and SR outputs < 0."""
        return losses.logits_accuracy(real, fake)


class RelativisticGAN(SRGAN):
    """ESRGAN's relativistic average GAN (Wang et al. 2018) as BasicSR's `ESRGANModel`
    computes it, on a discriminator C that outputs logits: the generator's loss
    (BCE(0, C(x_r) - mean C(x_f)) + BCE(1, C(x_f) - mean C(x_r))) / 2, the
    discriminator's (BCE(1, C(x_r) - mean C(x_f)) + BCE(0, C(x_f) - mean C(x_r))) / 2
    with the other side's mean a constant in each term (`sisr.losses.relativistic_*`); the
    means are over the global batch, so that any number of replicas trains alike."""

    def adversarial_loss(self, real, fake):
        return losses.relativistic_generator_loss(real, fake)

    def discriminator_loss(self, real, fake, real_target, fake_target):
        return losses.relativistic_discriminator_loss(real, fake, real_target, fake_target)

    def discriminator_accuracy(self, real, fake):
        return losses.relativistic_accuracy(real, fake)


def save_backup(model, path):
    """Atomically saves generator, discriminator and both optimizers' state (and the
    generator's EMA, if any) to `path` (a `.weights.h5` file)."""
    path = os.fspath(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"save_backup: path must end with .weights.h5, got {path!r}")
    with atomic_output(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)


def load_backup(model, path, iterations=None):
    """Restores a `save_backup` file into a compiled SRGAN of the same configuration.

    With `iterations`, checks that the optimizer state was restored (Keras only warns
    when an optimizer's variables do not match the file).
    """
    model.load_weights(os.fspath(path))
    restored = int(model.optimizer.iterations.numpy())
    if iterations is not None and restored != int(iterations):
        raise ValueError(
            f"{path}: the optimizer state was not restored (step {restored}, expected "
            f"{iterations}); was the run saved with another precision or optimizer?")
    return restored
