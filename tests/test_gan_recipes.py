"""ESRGAN / Real-ESRGAN fine-tuning: the logits and relativistic GAN losses, the pixel loss
term, USM-sharpened targets, the EMA of the generator, and the `realesrgan-x4` /
`esrgan-x4` recipes of python -m sisr.train_gan.

Tiny networks and a VGG19 with random weights (the tests never fetch ImageNet weights).
"""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from sisr import losses
from sisr.data.degradations import ops as degradation_ops
from sisr.model import edsr
from sisr.training.srgan import (
    SRGAN, LogitsGAN, RelativisticGAN, load_backup, save_backup, usm_sharpen_batch,
)

HR = 32  # HR patch side; LR 8 at x4


def toy_batches(batch, seed=0):
    """(lr, hr) float32 batches: HR smooth noise, LR its 4x4 block means."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (batch, HR // 4, HR // 4, 3)).astype("float32")
    hr = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
    hr = np.clip(hr + rng.normal(0, 20, hr.shape), 0, 255).astype("float32")
    lr = hr.reshape(batch, HR // 4, 4, HR // 4, 4, 3).mean(axis=(2, 4))
    return lr, hr


def pixel_discriminator():
    """A tiny discriminator of per-pixel logits [B, H, W, 1], as the U-Net's."""
    x_in = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(x_in)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(1, 3, padding="same", dtype="float32")(x)
    return keras.Model(x_in, x, name="pixel_critic")


def image_discriminator():
    """A tiny discriminator of per-image logits [B, 1] with batch norm, as the VGG one."""
    x_in = keras.Input((HR, HR, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x_in)
    x = keras.layers.Conv2D(4, 3, strides=4)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.Dense(1, dtype="float32")(keras.layers.Flatten()(x))
    return keras.Model(x_in, x, name="image_critic")


def softplus(x):
    return np.logaddexp(0.0, x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# -- the losses, by hand -------------------------------------------------------------------
def test_vanilla_losses_average_every_pixel_of_each_image():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(0, 2, (2, 3, 5, 1)), rng.normal(0, 2, (2, 3, 5, 1))
    # BCE(t, x) = softplus(x) - t x, averaged per image
    np.testing.assert_allclose(losses.vanilla_generator_loss(fake.astype("float32")),
                               softplus(-fake).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(
        losses.vanilla_discriminator_loss(real.astype("float32"), fake.astype("float32")),
        softplus(-real).mean(axis=(1, 2, 3)) + softplus(fake).mean(axis=(1, 2, 3)),
        rtol=1e-5)
    # Per-image targets (label noise) and extreme logits stay exact and finite.
    targets = np.array([[0.9], [0.8]], "float32")
    logits = np.array([[80.0, -80.0], [0.5, -0.25]], "float32")
    expected = np.mean(softplus(logits.astype("float64")) - targets * logits, axis=1)
    np.testing.assert_allclose(losses.bce_with_logits(targets, logits), expected, rtol=1e-6)
    np.testing.assert_allclose(losses.logits_accuracy(real, fake),
                               0.5 * ((real > 0).mean(axis=(1, 2, 3))
                                      + (fake < 0).mean(axis=(1, 2, 3))))


def test_relativistic_losses_and_their_gradients_are_esrgan_models():
    """Values and gradients of BasicSR's ESRGANModel losses, written out by hand: the
    generator's gradient flows through the batch mean of C(x_f), the discriminator's
    only through each term's own side (the `.detach()`s)."""
    rng = np.random.default_rng(1)
    real, fake = rng.normal(0, 1.5, (4, 1)), rng.normal(0, 1.5, (4, 1))
    r, f = real[:, 0], fake[:, 0]
    n = len(r)
    g_terms = softplus(r - f.mean()) + softplus(-(f - r.mean()))  # BCE(0, .) + BCE(1, .)
    d_terms = softplus(-(r - f.mean())) + softplus(f - r.mean())
    real_t, fake_t = (tf.constant(x, tf.float32) for x in (real, fake))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([real_t, fake_t])
        g_loss = tf.reduce_mean(losses.relativistic_generator_loss(real_t, fake_t))
        d_loss = tf.reduce_mean(losses.relativistic_discriminator_loss(real_t, fake_t))
    np.testing.assert_allclose(float(g_loss), 0.5 * g_terms.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(d_loss), 0.5 * d_terms.mean(), rtol=1e-5)
    # d/df_j of mean_i [softplus(r_i - mean f) + softplus(-(f_i - mean r))] / 2
    g_grad = 0.5 / n * (-sigmoid(r - f.mean()).sum() / n - sigmoid(-(f - r.mean())))
    np.testing.assert_allclose(tape.gradient(g_loss, fake_t)[:, 0], g_grad, rtol=1e-4)
    assert tape.gradient(g_loss, real_t) is None or not np.any(tape.gradient(g_loss, real_t))
    # The discriminator: d/dr_i = (sigmoid(r_i - mean f) - 1) / 2n, d/df_j = sigmoid(f_j -
    # mean r) / 2n, nothing through the means.
    np.testing.assert_allclose(tape.gradient(d_loss, real_t)[:, 0],
                               (sigmoid(r - f.mean()) - 1) / (2 * n), rtol=1e-4)
    np.testing.assert_allclose(tape.gradient(d_loss, fake_t)[:, 0],
                               sigmoid(f - r.mean()) / (2 * n), rtol=1e-4)
    np.testing.assert_allclose(losses.relativistic_accuracy(real, fake),
                               0.5 * ((r > f.mean()) + (f < r.mean())))


def test_pixel_losses_are_on_the_unit_scale():
    lr, hr = toy_batches(2)
    sr = hr + np.float32(25.5)
    np.testing.assert_allclose(losses.l1_pixel_loss(hr, sr), [0.1, 0.1], rtol=1e-5)
    np.testing.assert_allclose(losses.mse_pixel_loss(hr, sr), [0.01, 0.01], rtol=1e-5)


def test_usm_of_a_batch_is_that_of_each_image():
    _, hr = toy_batches(2, seed=3)
    sharp = usm_sharpen_batch(tf.constant(hr)).numpy()
    for image, expected in zip(hr, sharp):
        np.testing.assert_allclose(
            degradation_ops.usm_sharpen(tf.constant(image / 255.0)).numpy() * 255.0,
            expected, atol=1e-3)
    assert not np.allclose(sharp, hr)


# -- the train step ----------------------------------------------------------------------
def tiny_gan(vgg_weights, model_class=LogitsGAN, discriminator=None, **compile_args):
    keras.utils.set_random_seed(5)
    gan = model_class(edsr(4, num_filters=4, num_res_blocks=1),
                      discriminator or pixel_discriminator(),
                      losses.vgg_feature_extractor("VGG22", weights=vgg_weights))
    compile_args.setdefault("g_optimizer", keras.optimizers.Adam(1e-3))
    compile_args.setdefault("d_optimizer", keras.optimizers.Adam(1e-3))
    gan.compile(**compile_args)
    return gan


def test_the_step_uses_each_losss_target_and_weights(vgg_weights):
    gan = tiny_gan(vgg_weights, content_weight=0.5, adversarial_weight=0.1, pixel_weight=2.0,
                   usm_targets=["pixel", "content"])
    lr, hr = toy_batches(2, seed=4)
    sharp = usm_sharpen_batch(tf.constant(hr)).numpy()
    sr = gan.generator(lr, training=True).numpy()
    real = gan.discriminator(hr).numpy().astype("float64")  # D sees the HR as it is
    fake = gan.discriminator(sr).numpy().astype("float64")
    pixel = np.abs(sr - sharp).mean() / 255.0
    content = float(np.mean(gan.content(sharp, sr)))
    adversarial = softplus(-fake).mean()
    d_loss = softplus(-real).mean() + softplus(fake).mean()
    logs = {k: float(v) for k, v in gan.train_step((lr, hr)).items()}
    np.testing.assert_allclose(logs["pixel_loss"], pixel, rtol=1e-4)
    np.testing.assert_allclose(logs["content_loss"], content, rtol=1e-4)
    np.testing.assert_allclose(logs["adversarial_loss"], adversarial, rtol=1e-4)
    np.testing.assert_allclose(logs["discriminator_loss"], d_loss, rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], 2 * pixel + 0.5 * content + 0.1 * adversarial,
                               rtol=1e-4)


def test_srgan_logs_no_pixel_loss_without_its_weight(vgg_weights):
    from sisr.model import discriminator

    gan = tiny_gan(vgg_weights, model_class=SRGAN,
                   discriminator=discriminator(hr_size=HR, num_filters=4))
    logs = gan.train_step(toy_batches(2))
    assert "pixel_loss" not in logs and not gan.ema_variables
    assert sorted(logs) == sorted(["loss", "content_loss", "adversarial_loss",
                                   "discriminator_loss", "discriminator_accuracy"])


def test_ema_after_n_steps_is_the_closed_form(vgg_weights):
    """ema_n = d^n w_0 + (1 - d) sum_k d^(n-k) w_k, w_k the weights after step k."""
    decay, steps = 0.9, 3
    gan = tiny_gan(vgg_weights, model_class=RelativisticGAN,
                   discriminator=image_discriminator(), ema_decay=decay,
                   g_optimizer=keras.optimizers.SGD(1e-2))
    trainable = gan.generator.trainable_variables
    history = [[np.asarray(v).astype("float64") for v in trainable]]
    for step in range(steps):
        gan.train_step(toy_batches(2, seed=step))
        history.append([np.asarray(v).astype("float64") for v in trainable])
    assert any(not np.allclose(a, b) for a, b in zip(history[0], history[-1]))
    for i, average in enumerate(gan.ema_variables):
        expected = decay ** steps * history[0][i] + sum(
            (1 - decay) * decay ** (steps - k) * history[k][i] for k in range(1, steps + 1))
        np.testing.assert_allclose(np.asarray(average), expected, rtol=1e-5, atol=1e-7)
    # The exported weights: the EMA for the trainable ones, the generator's for the rest.
    exported = gan.export_weights()
    ema = {id(v): np.asarray(a) for v, a in zip(trainable, gan.ema_variables)}
    for value, variable in zip(exported, gan.generator.weights):
        np.testing.assert_array_equal(value, ema.get(id(variable), np.asarray(variable)))


def test_backup_restores_the_ema_exactly(vgg_weights, tmp_path):
    gan = tiny_gan(vgg_weights, ema_decay=0.5, usm_targets=["pixel"], pixel_weight=1.0)
    for step in range(2):
        gan.train_step(toy_batches(2, seed=step))
    path = str(tmp_path / "gan.weights.h5")
    save_backup(gan, path)
    fresh = tiny_gan(vgg_weights, ema_decay=0.5, usm_targets=["pixel"], pixel_weight=1.0)
    assert not np.allclose(np.asarray(fresh.ema_variables[0]),
                           np.asarray(gan.ema_variables[0]))
    load_backup(fresh, path, iterations=2)
    for a, b in zip(fresh.ema_variables, gan.ema_variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(fresh.export_weights(), gan.export_weights()):
        np.testing.assert_array_equal(a, b)
    # ... and both go on identically.
    batch = toy_batches(2, seed=9)
    gan.train_step(batch)
    fresh.train_step(batch)
    for a, b in zip(fresh.ema_variables, gan.ema_variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_compile_rejects_bad_gan_arguments(vgg_weights):
    gan = tiny_gan(vgg_weights)
    for kwargs, message in (({"pixel_loss": "l2"}, "pixel_loss"),
                            ({"usm_targets": ["gan"]}, "usm_targets"),
                            ({"ema_decay": 1.0}, "ema_decay"),
                            ({"pixel_weight": -1}, "pixel_weight")):
        with pytest.raises(ValueError, match=message):
            gan.compile(keras.optimizers.Adam(), keras.optimizers.Adam(), **kwargs)


# -- the recipes -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rrdbnet_x4(tmp_path_factory):
    """A tiny RRDBNet x4, as a realesrnet-x4 / rrdbnet-psnr-x4 run saves it."""
    import sisr
    from sisr.model import get_spec

    path = str(tmp_path_factory.mktemp("rrdb") / "rrdbnet_x4.keras")
    keras.utils.set_random_seed(2)
    sisr.save_model(get_spec("rrdbnet").builder(scale=4, num_feat=8, num_block=1,
                                                num_grow_ch=4), path)
    return path


def recipe_config(generator, pretrained, *more):
    from sisr import train_gan

    return train_gan.new_config(train_gan.make_parser().parse_args(
        ["--generator", generator, "--pretrained-model", pretrained, *more]))


def test_recipes_bring_their_keys_and_schedule(rrdbnet_x4):
    config = recipe_config("realesrgan-x4", rrdbnet_x4)
    assert (config["num_feat"], config["num_block"]) == (8, 1)  # from the pretrained model
    assert config["gan_generator"] == "realesrgan-x4"
    assert (config["lr_patch"], config["batch_size"], config["learning_rate"]) == (64, 12, 1e-4)
    assert config["lr_decay_steps"] == [400000] and config["optimizer"] == "torch_adam"
    assert config["degradation"] == "realesrgan"
    assert config["gan_perceptual_layers"] == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0,
                                               "conv4_4": 1.0, "conv5_4": 1.0}
    assert (config["gan_pixel_weight"], config["gan_content_weight"],
            config["gan_adversarial_weight"]) == (1.0, 1.0, 0.1)
    assert config["gan_usm_targets"] == ["pixel", "content"]
    assert (config["gan_adversarial_loss"], config["gan_discriminator"],
            config["gan_ema_decay"], config["gan_adam_betas"]) == (
        "vanilla", "unet-discriminator-sn", 0.999, [0.9, 0.99])
    config = recipe_config("esrgan-x4", rrdbnet_x4, "--batch-size", "4", "--set",
                           "lr_decay_steps=[10]", "--ema-decay", "0.99")
    assert (config["lr_patch"], config["batch_size"], config["lr_decay_steps"]) == (32, 4, [10])
    assert config["degradation"] is None and config["downgrade"] == "bicubic"
    assert config["gan_perceptual_layers"] == {"conv5_4": 1.0}
    assert (config["gan_pixel_weight"], config["gan_adversarial_weight"]) == (0.01, 0.005)
    assert (config["gan_adversarial_loss"], config["gan_discriminator"],
            config["gan_ema_decay"]) == ("ragan", "vgg-discriminator", 0.99)


@pytest.mark.parametrize("setting, message", [
    ("gan_adversarial_loss=bce", "does not fit `gan_discriminator` unet-discriminator-sn"),
    ('gan_usm_targets=["gan"]', "`gan_usm_targets` must be a list of pixel"),
    ('gan_perceptual_layers={"conv6_1": 1}', "`gan_perceptual_layers` must map"),
    ("gan_ema_decay=1", "`gan_ema_decay` must be in [0, 1)"),
    ("gan_adam_betas=[0.9]", "`gan_adam_betas` must be two numbers"),
    ("gan_discriminator=patchgan", "`gan_discriminator` must be one of"),
])
def test_recipe_keys_are_checked(rrdbnet_x4, setting, message):
    from sisr.training.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        recipe_config("realesrgan-x4", rrdbnet_x4, "--set", setting)


def test_the_vgg_discriminator_needs_hr_128(rrdbnet_x4):
    from sisr.training.config import ConfigError
    from sisr.training.gan import GANTrainer

    config = recipe_config("esrgan-x4", rrdbnet_x4, "--set", "lr_patch=16")
    with pytest.raises(ConfigError, match="lr_patch"):
        GANTrainer(config).check_memory()


def test_realesrgan_trainer_builds_its_gan(rrdbnet_x4, vgg_weights, monkeypatch):
    import sisr
    from sisr.training.gan import GANTrainer

    config = recipe_config("realesrgan-x4", rrdbnet_x4, "--set", "lr_patch=8",
                           "--discriminator-filters", "4")
    trainer = GANTrainer(config, vgg_weights=vgg_weights)
    trainer.pretrained = sisr.load_model(rrdbnet_x4)
    gan = trainer.build(resume=False)
    assert type(gan) is LogitsGAN and gan.discriminator.name == "unet_discriminator_sn"
    assert gan.usm_targets == ("pixel", "content") and gan.pixel_weight == 1.0
    assert len(gan.ema_variables) == len(gan.generator.trainable_variables)
    for average, weight in zip(gan.ema_variables, trainer.pretrained.trainable_variables):
        np.testing.assert_array_equal(np.asarray(average), np.asarray(weight))
    for optimizer in (gan.optimizer, gan.d_optimizer):
        assert type(optimizer).__name__ == "TorchAdam"
        assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.99, 1e-8)
    assert trainer.run_name() == "realesrgan-x4"
    # The degradation's own target is the HR as it is: the GAN sharpens per loss.
    from sisr.training import gan as gan_module

    seen = []
    monkeypatch.setattr(gan_module, "make_pipelines",
                        lambda config, datasets, epoch: seen.append(config["degradation"]))
    trainer.pipelines(None)
    assert seen[0]["type"] == "realesrgan" and seen[0]["gt_usm"] is False
    assert config["degradation"] == "realesrgan"


def flat_discriminator():
    """Per-image logits without batch norm (each replica's batch alone gives the same)."""
    x_in = keras.Input((HR, HR, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x_in)
    x = keras.layers.Conv2D(4, 3, strides=4, activation="tanh")(x)
    x = keras.layers.Dense(1, dtype="float32")(keras.layers.Flatten()(x))
    return keras.Model(x_in, x, name="flat_critic")


def one_relativistic_step(vgg_weights, strategy, initial):
    with strategy.scope():
        gan = tiny_gan(vgg_weights, model_class=RelativisticGAN,
                       discriminator=flat_discriminator(), content_weight=0.0,
                       adversarial_weight=1.0, pixel_weight=1.0, ema_decay=0.5,
                       g_optimizer=keras.optimizers.SGD(10.0),
                       d_optimizer=keras.optimizers.SGD(1.0))
        gan.generator.set_weights(initial[0])
        gan.discriminator.set_weights(initial[1])
        data = tf.data.Dataset.from_tensors(toy_batches(4, seed=6)).repeat()
        history = gan.fit(data, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    return ([np.asarray(w) for w in gan.export_weights()],
            [np.asarray(w) for w in gan.discriminator.get_weights()], history.history)


@pytest.mark.slow
def test_relativistic_means_are_over_the_global_batch(vgg_weights):
    """Two replicas of 2 images take the same step (and the same EMA) as one of 4."""
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs two logical CPU devices (tests/conftest.py)")
    from sisr.training.trainer import make_strategy

    keras.utils.set_random_seed(0)
    initial = (edsr(4, num_filters=4, num_res_blocks=1).get_weights(),
               flat_discriminator().get_weights())
    single = one_relativistic_step(vgg_weights, tf.distribute.get_strategy(), initial)
    double = one_relativistic_step(vgg_weights, make_strategy("mirrored"), initial)
    for key in ("adversarial_loss", "discriminator_loss", "pixel_loss"):
        np.testing.assert_allclose(double[2][key], single[2][key], rtol=1e-5, err_msg=key)
    for got, expected, before in ((double[0], single[0], initial[0]),
                                  (double[1], single[1], initial[1])):
        assert any(not np.allclose(a, b) for a, b in zip(expected, before))
        for a, b, w0 in zip(got, expected, before):
            np.testing.assert_allclose(a - w0, b - w0, rtol=1e-3, atol=1e-6)


# -- python -m sisr.train, then python -m sisr.train_gan -----------------------------------
TINY_RRDB = ["--set", "num_block=1", "--set", "num_feat=8", "--set", "num_grow_ch=4"]


def pixel_run(outdir, profile, *more, steps=10):
    """best.keras of a tiny `python -m sisr.train --profile PROFILE` on demo."""
    from sisr import train

    assert train.main(["--profile", profile, "--dataset", "demo", "--epochs", "1",
                       "--steps-per-epoch", str(steps), *TINY_RRDB, "--set", "lr_patch=16",
                       "--batch-size", "2", "--seed", "1", "--outdir", str(outdir),
                       "--verbose", "0", *more]) == 0
    [run_dir] = list(outdir.iterdir())
    return str(run_dir / "best.keras")


def gan_run(generator, pretrained, outdir, vgg_weights, *more):
    """The run directory of a tiny `python -m sisr.train_gan --generator GENERATOR`."""
    from sisr import train_gan

    assert train_gan.main(["--generator", generator, "--pretrained-model", pretrained,
                           "--dataset", "demo", "--vgg-weights", vgg_weights,
                           "--discriminator-filters", "4", "--steps-per-epoch", "1",
                           "--batch-size", "2", "--seed", "1", "--outdir", str(outdir),
                           "--verbose", "0", *more]) == 0
    [run_dir] = list(outdir.iterdir())
    return str(run_dir)


def backup_variables(run_dir):
    """{path: array} of every variable of a run's last backup (.weights.h5)."""
    import h5py

    from sisr.training.callbacks import read_state

    found = {}
    with h5py.File(os.path.join(run_dir, "backup", read_state(run_dir)["backup"]), "r") as f:
        f.visititems(lambda name, item: found.__setitem__(name, item[()])
                     if isinstance(item, h5py.Dataset) else None)
    return found


def resume(run_dir, vgg_weights, epochs, *more):
    from sisr import train_gan

    assert train_gan.main(["--resume", run_dir, "--epochs", str(epochs), "--verbose", "0",
                           "--vgg-weights", vgg_weights, *more]) == 0


@pytest.mark.slow
def test_realesrgan_from_a_realesrnet_run_resumes_exactly(tmp_path, vgg_weights):
    """realesrnet-x4 on demo with the realesrgan degradations, then realesrgan-x4 from its
    result; a run resumed after epoch 1 ends with every variable of an uninterrupted one
    (both networks, both optimizers, the discriminator's u and v, the EMA)."""
    import sisr
    from sisr.training.callbacks import read_state

    pretrained = pixel_run(tmp_path / "pixel", "realesrnet-x4", "--degradation", "realesrgan")
    run_dir = gan_run("realesrgan-x4", pretrained, tmp_path / "gan", vgg_weights,
                      "--epochs", "1", "--set", "lr_patch=8")
    assert os.path.basename(run_dir).endswith("-realesrgan-x4")
    resume(run_dir, vgg_weights, 2)
    assert read_state(run_dir)["iterations"] == 2
    whole = gan_run("realesrgan-x4", pretrained, tmp_path / "whole", vgg_weights,
                    "--epochs", "2", "--set", "lr_patch=8")
    got, expected = backup_variables(run_dir), backup_variables(whole)
    assert sorted(got) == sorted(expected)
    assert any(key.startswith("vars/") for key in got)  # the EMA
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    with open(os.path.join(run_dir, "training.csv")) as f:
        header = f.readline()
    assert "pixel_loss" in header and "val_psnr" in header
    # The saved generator is the EMA: its weights are the backup's EMA variables.
    generator = sisr.load_model(os.path.join(run_dir, "last.keras"))
    ema = [got[f"vars/{i}"] for i in range(len(generator.trainable_weights))]
    for a, b in zip(generator.trainable_weights, ema):
        np.testing.assert_array_equal(np.asarray(a), b)


@pytest.mark.slow
def test_esrgan_from_an_rrdbnet_psnr_run_in_bfloat16_resumes(tmp_path, vgg_weights):
    import sisr
    from sisr.training.callbacks import read_state

    pretrained = pixel_run(tmp_path / "pixel", "rrdbnet-psnr-x4", steps=2)
    run_dir = gan_run("esrgan-x4", pretrained, tmp_path / "gan", vgg_weights,
                      "--epochs", "1", "--precision", "mixed_bfloat16")
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert (config["lr_patch"], config["gan_adversarial_loss"]) == (32, "ragan")
    resume(run_dir, vgg_weights, 2)
    assert read_state(run_dir)["iterations"] == 2
    generator = sisr.load_model(os.path.join(run_dir, "last.keras"))
    assert generator.compute_dtype == "float32"
    assert sisr.resolve(generator, np.zeros((1, 6, 5, 3), np.uint8)).shape == (1, 24, 20, 3)


@pytest.mark.slow
def test_realesrgan_in_bfloat16_resumes(tmp_path, vgg_weights, rrdbnet_x4):
    """bfloat16: the U-Net's spectral norm in float32, the USM targets, the EMA in float32
    variables; the resumed run restores both optimizers (else it stops)."""
    import sisr
    from sisr.training.callbacks import read_state

    run_dir = gan_run("realesrgan-x4", rrdbnet_x4, tmp_path / "gan", vgg_weights,
                      "--epochs", "1", "--set", "lr_patch=8", "--precision", "mixed_bfloat16")
    resume(run_dir, vgg_weights, 2)
    assert read_state(run_dir)["iterations"] == 2
    variables = backup_variables(run_dir)
    assert all(variables[f"vars/{i}"].dtype == np.float32 for i in range(4))
    generator = sisr.load_model(os.path.join(run_dir, "last.keras"))
    assert generator.compute_dtype == "float32"
    assert sisr.resolve(generator, np.zeros((1, 6, 5, 3), np.uint8)).shape == (1, 24, 20, 3)


def test_sisr_train_points_a_recipe_to_train_gan(capsys):
    from sisr import train

    assert train.main(["--profile", "esrgan-x4", "--dataset", "demo"]) == 2
    err = capsys.readouterr().err
    assert "profile esrgan-x4 is a GAN recipe" in err
    assert "python -m sisr.train_gan --generator esrgan-x4" in err
