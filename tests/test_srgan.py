"""SRGAN model (train step, mixed precision, tf.distribute, backups) and python -m sisr.train_gan.

Tiny networks and a VGG19 with random weights (the tests never fetch ImageNet weights).
"""

import csv
import json
import os

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import sisr
from sisr import losses, train_gan
from sisr.training.callbacks import StopOnNonFiniteLoss, read_state
from sisr.model import discriminator, edsr, srresnet
from sisr.training.srgan import SRGAN, load_backup, save_backup
from sisr.training.trainer import make_strategy

HR = 32  # HR patch side of the tiny discriminator; LR 8 at x4


def tiny_gan(vgg_weights, generator=None, seed=0, **compile_args):
    keras.utils.set_random_seed(seed)
    gan = SRGAN(generator or srresnet(4, num_filters=8, num_res_blocks=1),
                discriminator(hr_size=HR, num_filters=4),
                losses.vgg_feature_extractor("VGG22", weights=vgg_weights))
    compile_args.setdefault("g_optimizer", keras.optimizers.Adam(1e-3))
    compile_args.setdefault("d_optimizer", keras.optimizers.Adam(1e-3))
    gan.compile(**compile_args)
    return gan


def toy_batches(batch, seed=0):
    """(lr, hr) float32 batches: HR is pixel noise, LR its 4x4 block means."""
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, (batch, HR, HR, 3)).astype("float32")
    lr = hr.reshape(batch, HR // 4, 4, HR // 4, 4, 3).mean(axis=(2, 4))
    return lr, hr


def dataset(batch, seed=0):
    return tf.data.Dataset.from_tensors(toy_batches(batch, seed)).repeat()


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


# -- a few GAN steps -------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(vgg_weights):
    gan = tiny_gan(vgg_weights, label_noise=0.1)
    before = {name: weights_of(getattr(gan, name)) for name in ("generator", "discriminator")}
    before["features"] = weights_of(gan.content.feature_extractor)
    lr, hr = toy_batches(2, seed=5)
    history = gan.fit(dataset(4), epochs=1, steps_per_epoch=3, verbose=0, shuffle=False,
                      validation_data=tf.data.Dataset.from_tensors((lr, hr)))
    return gan, before, history.history


def test_gan_steps_log_finite_losses(trained):
    gan, _, history = trained
    keys = {"loss", "content_loss", "adversarial_loss", "discriminator_loss",
            "discriminator_accuracy", "val_psnr"}
    assert keys <= set(history)
    assert all(np.isfinite(history[k][0]) for k in keys)
    # loss = content + 1e-3 * adversarial (means over the same images).
    np.testing.assert_allclose(
        history["loss"][0], history["content_loss"][0] + 1e-3 * history["adversarial_loss"][0],
        rtol=1e-5)
    assert int(gan.optimizer.iterations.numpy()) == 3
    assert int(gan.d_optimizer.iterations.numpy()) == 3


def test_gan_steps_train_g_and_d_but_not_the_features(trained):
    gan, before, _ = trained
    assert changed(before["generator"], weights_of(gan.generator))
    assert changed(before["discriminator"], weights_of(gan.discriminator))
    assert not changed(before["features"], weights_of(gan.content.feature_extractor))
    # Each optimizer only holds state for its own network.
    n_g, n_d = len(gan.generator.trainable_variables), len(gan.discriminator.trainable_variables)
    assert len(gan.optimizer.variables) == 2 + 2 * n_g
    assert len(gan.d_optimizer.variables) == 2 + 2 * n_d


def test_label_noise_is_bounded_and_changes_per_step(trained):
    gan, _, _ = trained
    real, fake = (t.numpy() for t in gan._targets(64))
    assert real.shape == fake.shape == (64, 1)
    assert np.all((real > 0.9) & (real <= 1.0)) and np.all((fake >= 0) & (fake < 0.1))
    again, _ = gan._targets(64)
    np.testing.assert_array_equal(again.numpy(), real)  # a function of seed and step
    gan.optimizer.iterations.assign_add(1)
    try:
        assert not np.array_equal(gan._targets(64)[0].numpy(), real)
    finally:
        gan.optimizer.iterations.assign_add(-1)


def test_backup_restores_everything_exactly(trained, vgg_weights, tmp_path):
    gan, _, _ = trained
    path = tmp_path / "backup.weights.h5"
    save_backup(gan, path)
    with h5py.File(path) as f:
        assert sorted(f) == ["d_optimizer", "discriminator", "generator", "optimizer", "vars"]

    fresh = tiny_gan(vgg_weights, seed=7, label_noise=0.1)
    assert changed(weights_of(gan.generator), weights_of(fresh.generator))
    assert load_backup(fresh, path, iterations=3) == 3
    for name in ("generator", "discriminator"):
        for a, b in zip(weights_of(getattr(gan, name)), weights_of(getattr(fresh, name))):
            np.testing.assert_array_equal(a, b)
    for name in ("optimizer", "d_optimizer"):
        for a, b in zip(getattr(gan, name).variables, getattr(fresh, name).variables):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                          keras.ops.convert_to_numpy(b))


def test_backup_is_atomic(trained, tmp_path, monkeypatch):
    gan, _, _ = trained
    path = tmp_path / "backup.weights.h5"
    save_backup(gan, path)
    original = path.read_bytes()

    def crash(filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(gan, "save_weights", crash)
    with pytest.raises(OSError, match="disk full"):
        save_backup(gan, path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["backup.weights.h5"]


def test_load_backup_refuses_a_partial_restore(trained, vgg_weights, tmp_path):
    gan, _, _ = trained
    save_backup(gan, tmp_path / "b.weights.h5")
    # Loss scaling changes the optimizer's variables: Keras would only warn and skip them.
    other = tiny_gan(vgg_weights, g_optimizer=keras.optimizers.LossScaleOptimizer(
        keras.optimizers.Adam(1e-3)))
    with pytest.raises(ValueError, match="optimizer state was not restored"):
        load_backup(other, tmp_path / "b.weights.h5", iterations=3)


def test_compile_rejects_bad_arguments(vgg_weights):
    gan = SRGAN(srresnet(4, num_filters=8, num_res_blocks=1),
                discriminator(hr_size=HR, num_filters=4),
                losses.vgg_feature_extractor("VGG22", weights=vgg_weights))
    adam = keras.optimizers.Adam()
    with pytest.raises(ValueError, match="two distinct"):
        gan.compile(adam, adam)
    with pytest.raises(ValueError, match="label_noise"):
        gan.compile(keras.optimizers.Adam(), keras.optimizers.Adam(), label_noise=0.7)


# -- loss hooks: another GAN is a short subclass -----------------------------------------
def _bce_with_logits(target, logits):
    """Per-image BCE of logits [batch, 1] against a scalar target."""
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.fill(tf.shape(logits), float(target)), logits=logits), axis=1)


class RelativisticSRGAN(SRGAN):
    """ESRGAN's relativistic average GAN (Wang et al. 2018): D_ra(x_r, x_f) =
    sigmoid(C(x_r) - mean C(x_f)), D_ra(x_f, x_r) = sigmoid(C(x_f) - mean C(x_r)), with a
    discriminator C that outputs logits."""

    def relativistic(self, real, fake):
        return real - tf.reduce_mean(fake), fake - tf.reduce_mean(real)

    def adversarial_loss(self, real, fake):
        # -E[log(1 - D_ra(x_r, x_f))] - E[log D_ra(x_f, x_r)]
        real_vs_fake, fake_vs_real = self.relativistic(real, fake)
        return _bce_with_logits(0.0, real_vs_fake) + _bce_with_logits(1.0, fake_vs_real)

    def discriminator_loss(self, real, fake, real_target, fake_target):
        # -E[log D_ra(x_r, x_f)] - E[log(1 - D_ra(x_f, x_r))]
        real_vs_fake, fake_vs_real = self.relativistic(real, fake)
        return (_bce_with_logits(real_target, real_vs_fake)
                + _bce_with_logits(fake_target, fake_vs_real))

    def discriminator_accuracy(self, real, fake):
        real_vs_fake, fake_vs_real = self.relativistic(real, fake)
        return 0.5 * (tf.cast(real_vs_fake[:, 0] > 0, tf.float32)
                      + tf.cast(fake_vs_real[:, 0] < 0, tf.float32))


def logits_discriminator():
    x_in = keras.Input((HR, HR, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x_in)
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(x)
    x = keras.layers.Dense(1, dtype="float32")(keras.layers.Flatten()(x))
    return keras.Model(x_in, x, name="critic")


def _softplus(x):
    return np.logaddexp(0.0, x)


@pytest.mark.parametrize("kind", ["standard", "relativistic"])
def test_loss_hooks_give_the_hand_computed_losses(kind, vgg_weights):
    keras.utils.set_random_seed(3)
    generator = edsr(4, num_filters=8, num_res_blocks=1)
    if kind == "standard":
        gan = SRGAN(generator, discriminator(hr_size=HR, num_filters=4),
                    losses.vgg_feature_extractor("VGG22", weights=vgg_weights))
    else:
        gan = RelativisticSRGAN(generator, logits_discriminator(),
                                losses.vgg_feature_extractor("VGG22", weights=vgg_weights))
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3),
                adversarial_weight=0.5)
    lr, hr = toy_batches(4, seed=11)
    # By hand, with the weights before the step (G has no batch norm; D's batch norm sees
    # each batch alone, as in the train step).
    sr = generator(lr, training=True).numpy().astype("float64")
    real = gan.discriminator(hr, training=True).numpy().astype("float64")
    fake = gan.discriminator(sr.astype("float32"), training=True).numpy().astype("float64")
    features = gan.content.feature_extractor(np.concatenate([hr, sr]).astype("float32"))
    features = np.asarray(features, "float64") / losses.FEATURE_SCALE
    content = np.mean((features[:4] - features[4:]) ** 2)
    if kind == "standard":  # BCE(1, D(SR)); BCE(1, D(HR)) + BCE(0, D(SR))
        adversarial = np.mean(-np.log(fake))
        d_loss = np.mean(-np.log(real) - np.log(1 - fake))
    else:
        real_vs_fake, fake_vs_real = real - fake.mean(), fake - real.mean()
        adversarial = np.mean(_softplus(real_vs_fake) + _softplus(-fake_vs_real))
        d_loss = np.mean(_softplus(-real_vs_fake) + _softplus(fake_vs_real))

    logs = {k: float(v) for k, v in gan.train_step((lr, hr)).items()}
    np.testing.assert_allclose(logs["content_loss"], content, rtol=1e-4)
    np.testing.assert_allclose(logs["adversarial_loss"], adversarial, rtol=1e-4)
    np.testing.assert_allclose(logs["discriminator_loss"], d_loss, rtol=1e-4)
    np.testing.assert_allclose(logs["loss"], content + 0.5 * adversarial, rtol=1e-4)
    assert int(gan.optimizer.iterations.numpy()) == 1


def test_gan_trainer_hooks_build_another_gan(pretrained, vgg_weights):
    from sisr.training.gan import GANTrainer

    class RelativisticTrainer(GANTrainer):
        model_class = RelativisticSRGAN

        def build_discriminator(self):
            return logits_discriminator()

    args = train_gan.make_parser().parse_args(
        ["--generator", "sr-resnet", "--pretrained-model", pretrained["srresnet_x4"],
         "--content-loss", "VGG22", "--adversarial-weight", "0.005", "--batch-size", "2"])
    config = train_gan.new_config(args)
    trainer = RelativisticTrainer(config, vgg_weights=vgg_weights)
    trainer.pretrained = sisr.load_model(pretrained["srresnet_x4"])
    gan = trainer.build(resume=False)
    assert type(gan) is RelativisticSRGAN and gan.discriminator.name == "critic"
    assert gan.adversarial_weight == 0.005
    for a, b in zip(gan.generator.get_weights(), trainer.pretrained.get_weights()):
        np.testing.assert_array_equal(a, b)
    lr, hr = toy_batches(2, seed=1)
    logs = gan.train_step((lr, hr))
    assert all(np.isfinite(float(v)) for v in logs.values())
    # val_loss is the subclass's content loss.
    sr = gan.generator(lr)
    np.testing.assert_allclose(float(trainer.validation_loss(gan)(hr, sr)),
                               float(np.mean(gan.content_loss(hr, sr))), rtol=1e-6)


# -- the discriminator learns ----------------------------------------------------------
def test_discriminator_separates_hr_from_bicubic(vgg_weights):
    x_in = keras.Input((None, None, 3))
    bicubic = keras.Model(x_in, keras.layers.UpSampling2D(4, interpolation="bicubic")(x_in),
                          name="bicubic")
    gan = tiny_gan(vgg_weights, generator=bicubic, d_optimizer=keras.optimizers.Adam(3e-3))
    pairs = [toy_batches(8, seed) for seed in range(60)]
    batches = tf.data.Dataset.from_tensor_slices((np.stack([lr for lr, _ in pairs]),
                                                  np.stack([hr for _, hr in pairs])))
    history = gan.fit(batches, epochs=3, steps_per_epoch=20, verbose=0,
                      shuffle=False).history
    # Measured on each batch before D trains on it: accuracy on unseen images.
    accuracy = history["discriminator_accuracy"]
    assert accuracy[-1] >= 0.8 and accuracy[-1] > accuracy[0] + 0.2, history

    lr, hr = toy_batches(16, seed=10_000)
    real = gan.discriminator(hr, training=False).numpy()
    fake = gan.discriminator(bicubic(lr), training=False).numpy()
    assert 0.5 * (np.mean(real > 0.5) + np.mean(fake < 0.5)) >= 0.75


# -- precision and distribution --------------------------------------------------------
def test_mixed_float16_uses_loss_scaling(vgg_weights):
    keras.mixed_precision.set_global_policy("mixed_float16")
    gan = tiny_gan(vgg_weights)
    assert isinstance(gan.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(gan.d_optimizer, keras.optimizers.LossScaleOptimizer)
    before = weights_of(gan.generator)
    history = gan.fit(dataset(4), epochs=1, steps_per_epoch=2, verbose=0,
                      shuffle=False).history
    assert all(np.isfinite(v[0]) for v in history.values())
    assert changed(before, weights_of(gan.generator))
    assert gan.generator.trainable_variables[0].dtype == "float32"


def one_sgd_step(vgg_weights, strategy, initial):
    """One step with only the content loss (no batch norm in G): the same update on any
    number of replicas if the loss is scaled right."""
    with strategy.scope():
        gan = tiny_gan(vgg_weights, generator=edsr(4, num_filters=8, num_res_blocks=1),
                       g_optimizer=keras.optimizers.SGD(1.0),
                       d_optimizer=keras.optimizers.SGD(0.1), adversarial_weight=0.0,
                       label_noise=0.1)
        gan.generator.set_weights(initial)
        history = gan.fit(dataset(4, seed=3), epochs=1, steps_per_epoch=1, verbose=0,
                              shuffle=False)
    return weights_of(gan.generator), history.history["loss"][0]


def test_mirrored_strategy_matches_one_device(vgg_weights):
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices (tests/conftest.py)")
    keras.utils.set_random_seed(0)
    initial = edsr(4, num_filters=8, num_res_blocks=1).get_weights()
    single, loss_single = one_sgd_step(vgg_weights, tf.distribute.get_strategy(), initial)
    mirrored = make_strategy("mirrored")  # all logical CPUs, as python -m sisr.train_gan
    double, loss_double = one_sgd_step(vgg_weights, mirrored, initial)
    assert changed(initial, single)
    np.testing.assert_allclose(loss_double, loss_single, rtol=1e-5)
    for a, b, w0 in zip(double, single, initial):
        np.testing.assert_allclose(a - w0, b - w0, rtol=1e-3, atol=1e-6)


# -- python -m sisr.train_gan ----------------------------------------------------------
@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrained")
    keras.utils.set_random_seed(2)
    paths = {}
    for name, model in (("srresnet_x4", srresnet(4, num_filters=8, num_res_blocks=1)),
                        ("srresnet_x2", srresnet(2, num_filters=8, num_res_blocks=1)),
                        ("edsr_x4", edsr(4, num_filters=8, num_res_blocks=2))):
        paths[name] = str(folder / f"{name}.keras")
        sisr.save_model(model, paths[name])
    # Named like SRResNet x4 but built otherwise: only copying the weights can tell.
    x_in = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="head_conv")(x_in)
    x = keras.layers.Conv2D(8, 3, padding="same", name="block1_conv1")(x)
    x = keras.layers.Conv2D(48, 3, padding="same", name="upsample_x4_conv1")(x)
    paths["impostor"] = str(folder / "impostor.keras")
    sisr.save_model(keras.Model(x_in, x, name="srresnet"), paths["impostor"])
    # An SRResNet whose record of its builder arguments has been tampered with.
    tampered = srresnet(4, num_filters=8, num_res_blocks=1)
    tampered.arguments["num_res_blocks"] = 1e308
    paths["tampered"] = str(folder / "tampered.keras")
    sisr.save_model(tampered, paths["tampered"])
    return paths


def tiny_args(pretrained, vgg_weights, outdir, **changes):
    args = {"--generator": "sr-resnet", "--pretrained-model": pretrained["srresnet_x4"],
            "--dataset": "demo", "--vgg-weights": vgg_weights, "--content-loss": "VGG22",
            "--discriminator-filters": "4", "--epochs": "1", "--steps-per-epoch": "2",
            "--batch-size": "2", "--outdir": str(outdir), "--seed": "1", "--verbose": "0"}
    args.update(changes)
    return [item for key, value in args.items() if value is not None
            for item in (key, value)]


@pytest.mark.slow
def test_cli_runs_on_demo_and_resumes(pretrained, vgg_weights, tmp_path, capsys):
    outdir = tmp_path / "runs"
    assert train_gan.main(tiny_args(pretrained, vgg_weights, outdir)) == 0
    [run_dir] = [str(p) for p in outdir.iterdir()]
    assert os.path.basename(run_dir).endswith("-srgan-sr-resnet")
    state = read_state(run_dir)
    assert state["epoch"] == 1 and state["iterations"] == 2
    assert sorted(os.listdir(os.path.join(run_dir, "backup"))) == ["epoch-001.weights.h5",
                                                                   "state.json"]
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["model"] == "srresnet" and config["num_filters"] == 8
    assert config["lr_decay_steps"] == [100000] and config["gan_content_loss"] == "VGG22"
    out = capsys.readouterr().out
    assert "generator" in out and "bicubic" in out

    # The generator is a standalone x4 model for sisr.resolve / sisr.upscale.
    generator = sisr.load_model(os.path.join(run_dir, "last.keras"))
    assert generator.name == "srresnet"
    assert sisr.resolve(generator, np.zeros((1, 5, 6, 3), np.uint8)).shape == (1, 20, 24, 3)

    assert train_gan.main(["--resume", run_dir, "--epochs", "2", "--verbose", "0",
                           "--vgg-weights", vgg_weights]) == 0
    state = read_state(run_dir)
    assert state["epoch"] == 2 and state["iterations"] == 4
    assert sorted(os.listdir(os.path.join(run_dir, "backup"))) == ["epoch-002.weights.h5",
                                                                   "state.json"]
    with open(os.path.join(run_dir, "training.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"loss", "discriminator_loss", "val_psnr", "val_loss"} <= set(rows[0])
    models = sorted(os.listdir(os.path.join(run_dir, "models")))
    assert [m[:9] for m in models] == ["epoch-001", "epoch-002"]
    assert any(name.startswith("events.") for _, _, files in
               os.walk(os.path.join(run_dir, "logs")) for name in files)
    assert not [n for _, _, files in os.walk(run_dir) for n in files if n.startswith(".tmp-")]


def write_bad_vgg(path):
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"block1_conv1"]
        group = f.create_group("block1_conv1")
        group.attrs["weight_names"] = [b"k", b"b"]
        group.create_dataset("k", data=np.zeros((3, 3, 3, 32), "float32"))
        group.create_dataset("b", data=np.zeros(32, "float32"))
    return str(path)


@pytest.mark.parametrize("case, message", [
    ("edsr_as_srresnet", "model 'edsr' is not a sr-resnet generator"),
    ("x2_generator", "an x2 srresnet model; SRGAN fine-tuning needs an x4 generator"),
    ("scale_2", "--scale 2: SRGAN fine-tuning is x4 only"),
    # A Keras model named like a sisr generator, without its builder record: refused.
    ("impostor", "impostor.keras: a model without sisr's builder record is not a sr-resnet"),
    ("missing_pretrained", "no such file"),
    ("wrong_vgg", "does not hold VGG19 weights: expected the 16 conv layers"),
    ("no_vgg_offline", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("label_noise", "--label-noise must be in [0, 0.5)"),
    ("huge_discriminator", "--discriminator-filters 99999999: the discriminator model"),
    ("tampered_record", "`num_res_blocks` recorded in --pretrained-model"),
])
def test_cli_rejects_bad_input_before_training(case, message, pretrained, vgg_weights,
                                               tmp_path, monkeypatch, capsys):
    outdir = tmp_path / "runs"
    changes = {
        "edsr_as_srresnet": {"--pretrained-model": pretrained["edsr_x4"]},
        "x2_generator": {"--pretrained-model": pretrained["srresnet_x2"]},
        "scale_2": {"--scale": "2"},
        "impostor": {"--pretrained-model": pretrained["impostor"]},
        "missing_pretrained": {"--pretrained-model": str(tmp_path / "absent.keras")},
        "wrong_vgg": {"--vgg-weights": write_bad_vgg(tmp_path / "bad.h5")},
        "no_vgg_offline": {"--vgg-weights": None},
        "label_noise": {"--label-noise": "0.6"},
        "huge_discriminator": {"--discriminator-filters": "99999999"},
        "tampered_record": {"--pretrained-model": pretrained["tampered"]},
    }[case]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(losses.OFFLINE_ENV, "1")
    assert train_gan.main(tiny_args(pretrained, vgg_weights, outdir, **changes)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    if case == "no_vgg_offline":
        assert str(tmp_path / "keras" / "models") in err and "--vgg-weights" in err
    assert not outdir.exists()


def test_cli_accepts_an_edsr_generator_of_any_size(pretrained, vgg_weights):
    args = train_gan.make_parser().parse_args(
        ["--generator", "edsr-gen", "--pretrained-model", pretrained["edsr_x4"]])
    config = train_gan.new_config(args)
    assert (config["model"], config["num_filters"], config["num_res_blocks"]) == ("edsr", 8, 2)
    assert (config["scale"], config["lr_patch"], config["batch_size"]) == (4, 24, 16)
    assert config["gan_content_loss"] == "VGG54" and config["gan_adversarial_weight"] == 1e-3


def test_any_profile_of_a_gan_generator_may_be_fine_tuned(pretrained, capsys):
    # edsr-16 (an x2 profile whose scales include 4) builds EDSR, a GAN generator.
    args = train_gan.make_parser().parse_args(
        ["--generator", "edsr-16", "--pretrained-model", pretrained["edsr_x4"],
         "--label-smoothing", "0.1"])
    config = train_gan.new_config(args)
    assert (config["gan_generator"], config["profile"], config["model"]) == \
        ("edsr-16", "edsr-16", "edsr")
    assert (config["scale"], config["num_filters"], config["gan_label_smoothing"]) == (4, 8, 0.1)
    # WDSR is not a GAN generator in the registry: refused, naming the ones that are.
    assert train_gan.main(["--generator", "wdsr-b-8", "--pretrained-model",
                           pretrained["edsr_x4"]]) == 2
    err = capsys.readouterr().err
    assert "--generator wdsr-b-8: its model wdsr_b is not a GAN generator" in err
    assert "edsr-gen" in err and "sr-resnet" in err


def test_gan_generators_derive_from_the_registry(monkeypatch, capsys):
    import dataclasses

    from sisr.model import registry
    from sisr.training import config as cfg

    generators = cfg.gan_generator_profiles()
    assert {"sr-resnet", "edsr-gen", "edsr-16"} <= set(generators)
    assert not [name for name in generators if name.startswith("wdsr")]
    # Named when --generator is missing (not by --help, which does without the registry's
    # Keras).
    assert train_gan.main(["--pretrained-model", "x.keras"]) == 2
    assert f"profiles of GAN generators: {', '.join(generators)}" in capsys.readouterr().err
    monkeypatch.setitem(registry.MODELS, "wdsr_b", dataclasses.replace(
        registry.MODELS["wdsr_b"], gan_generator=True))
    assert "wdsr-b-8" in cfg.gan_generator_profiles()
    assert cfg.gan_generator_model("wdsr-b-8") == "wdsr_b"


@pytest.mark.slow
def test_a_run_with_a_nested_gan_section_resumes(pretrained, vgg_weights, tmp_path):
    # Runs saved before the flat gan_* keys kept the GAN settings in a `gan` section.
    outdir = tmp_path / "runs"
    assert train_gan.main(tiny_args(pretrained, vgg_weights, outdir, **{
        "--steps-per-epoch": "1", "--label-noise": "0.05"})) == 0
    [run_dir] = [str(p) for p in outdir.iterdir()]
    path = os.path.join(run_dir, "config.json")
    with open(path) as f:
        config = json.load(f)
    old = {k: v for k, v in config.items() if not k.startswith("gan_")}
    old["gan"] = {k[len("gan_"):]: v for k, v in config.items() if k.startswith("gan_")}
    old["gan"]["vgg_weights"] = "/elsewhere/vgg19.h5"
    with open(path, "w") as f:
        json.dump(old, f)

    assert train_gan.main(["--resume", run_dir, "--epochs", "2", "--verbose", "0",
                           "--vgg-weights", vgg_weights]) == 0
    assert read_state(run_dir)["iterations"] == 2
    with open(path) as f:
        resumed = json.load(f)
    assert "gan" not in resumed
    assert resumed == {**config, "epochs": 2}


def test_cli_resume_refuses_changed_settings(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(
        {"model": "srresnet", "precision": "float32", "gan": {}}))
    assert train_gan.main(["--resume", str(run_dir), "--content-loss", "VGG54"]) == 2
    assert "only --epochs, --precision, --strategy and --vgg-weights" in capsys.readouterr().err
    # Loss scaling would add optimizer state that the backup does not have.
    assert train_gan.main(["--resume", str(run_dir), "--precision", "mixed_float16"]) == 2
    assert "cannot be switched on or off when resuming" in capsys.readouterr().err


def test_any_non_finite_loss_stops_training(trained):
    gan, _, _ = trained
    guard = StopOnNonFiniteLoss()
    guard.set_model(gan)
    guard.on_train_batch_end(0, {"loss": 0.5, "discriminator_loss": 0.7})
    assert guard.failure is None and not gan.stop_training
    guard.on_train_batch_end(1, {"loss": 0.5, "discriminator_loss": float("nan")})
    assert guard.failure == (0, 1, "discriminator_loss = nan") and gan.stop_training
    gan.stop_training = False
