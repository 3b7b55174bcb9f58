"""Profiles and configuration resolution for `python -m sisr.train`."""

import json

import pytest

from sisr.training import config as cfg
from sisr import train
from sisr.model import build

EXPECTED_PROFILES = {
    "edsr-8", "edsr-16", "edsr", "edsr-gen", "wdsr-a-8", "wdsr-a-16", "wdsr-a-32",
    "wdsr-b-8", "wdsr-b-16", "wdsr-b-32", "sr-resnet",
    "rcan", "rdn", "rdn-a",
}
# Profiles of the smaller networks, whose recipes are their papers' / keras-io's.
SMALL_PROFILES = {"vdsr": ("l1", 1e-4), "srcnn": ("mse", 1e-4), "fsrcnn": ("mse", 1e-3),
                  "espcn": ("mse", 1e-3)}
# ESRGAN's PSNR-oriented RRDBNet (the generator its GAN stage starts from), on bicubic data.
RRDB_PROFILES = {"rrdbnet-psnr-x4"}
# OpenCV dnn_superres's networks, with the recipes of the repositories that trained its
# .pb files: (loss, learning rate, batch, LR patch, scales, the official files' sizes and
# parameter count at the profile's scale).
OPENCV_PROFILES = {
    # fannymonori/TF-ESPCN: MSE, Adam 0.01 (main.py), batch 32, LR patches 17.
    "espcn-opencv": ("mse", 1e-2, 32, 17, [2, 3, 4],
                     {"num_filters": [64, 32], "kernel_sizes": [5, 3, 3]}, 22_729),
    # Saafke/FSRCNN_Tensorflow: MSE, Adam 1e-3, batch 1, LR patches 10 at x2.
    "fsrcnn-opencv": ("mse", 1e-3, 1, 10, [2, 3, 4], {"d": 56, "s": 12, "m": 4}, 8_500),
    # fannymonori/TF-LapSRN: Charbonnier sqrt(d^2 + 1e-6) on [0, 1], which is L1 within
    # 1e-3; Adam 1e-4 x 0.95 every 10k steps, batch 32, HR patches 128.
    "lapsrn-opencv": ("l1", 1e-4, 32, 32, [2, 4, 8],
                      {"num_filters": 64, "depth": 10, "negative_slope": 0.2}, 674_304),
}


def test_every_published_profile_is_shipped():
    assert EXPECTED_PROFILES | set(SMALL_PROFILES) | RRDB_PROFILES | set(OPENCV_PROFILES) \
        <= set(cfg.list_profiles())


@pytest.mark.parametrize("name", sorted(OPENCV_PROFILES))
def test_opencv_profiles_follow_the_repositories_of_its_files(name):
    loss, learning_rate, batch, patch, scales, sizes, count = OPENCV_PROFILES[name]
    config = cfg.resolve(name)
    assert config["model"] == name.replace("-", "_")
    assert (config["loss"], config["optimizer"], config["learning_rate"]) == \
        (loss, "adam", learning_rate)
    assert (config["batch_size"], config["lr_patch"], config["scales"]) == \
        (batch, patch, scales)
    assert {k: config[k] for k in sizes} == sizes
    assert build(config["model"], **cfg.builder_kwargs(config)).count_params() == count
    if name == "lapsrn-opencv":
        assert config["scale"] * config["lr_patch"] == 128
        assert config["lr_decay_steps"] == list(range(10_000, 100_000, 10_000))
        assert config["lr_decay_factor"] == 0.95
    else:
        assert config["lr_decay_steps"] == []


def test_rrdbnet_psnr_profile_follows_esrgan():
    # ESRGAN paper sec. 4.1 (PSNR-oriented model): L1, Adam lr 2e-4 halved every 200k
    # updates, batch 16, HR patches 128 (LR 32), bicubic x4; ESRGAN's 23 RRDBs of 64 filters.
    config = cfg.resolve("rrdbnet-psnr-x4")
    assert (config["model"], config["loss"], config["optimizer"]) == ("rrdbnet", "l1", "adam")
    assert (config["learning_rate"], config["lr_decay_factor"]) == (2e-4, 0.5)
    assert config["lr_decay_steps"] == [200_000, 400_000, 600_000, 800_000]
    assert config["epochs"] * config["steps_per_epoch"] == 1_000_000
    assert (config["batch_size"], config["lr_patch"], config["scale"]) == (16, 32, 4)
    assert config["downgrade"] == "bicubic"
    model = build("rrdbnet", **cfg.builder_kwargs(config))
    assert model.count_params() == 16_697_987  # the published RRDB_ESRGAN_x4 / x4plus


@pytest.mark.parametrize("name", sorted(SMALL_PROFILES))
def test_small_profiles_resolve_to_their_recipes(name):
    config = cfg.resolve(name)
    assert config["model"] == name and config["optimizer"] == "adam"
    assert (config["loss"], config["learning_rate"]) == SMALL_PROFILES[name]
    assert build(name, **{k: config[k] for k in ("scale",)}).count_params() == \
        build(name, **{k: v for k, v in config.items()
                       if k in ("scale", "num_filters", "num_layers", "kernel_sizes", "d",
                                "s", "m", "activation")}).count_params()


@pytest.mark.parametrize("name", sorted(EXPECTED_PROFILES))
def test_profiles_resolve_and_follow_the_papers(name):
    config = cfg.resolve(name)
    assert config["profile"] == name
    assert (config["epochs"], config["steps_per_epoch"]) == (300, 1000)
    assert config["lr_decay_steps"] == [200_000] and config["lr_decay_factor"] == 0.5
    assert config["batch_size"] == 16
    if name.startswith("wdsr"):
        assert config["optimizer"] == "weight_norm_adam" and config["learning_rate"] == 1e-3
        assert config["num_filters"] == 32
        assert config["num_res_blocks"] == int(name.rsplit("-", 1)[1])
        assert config["loss"] == "l1"
    else:
        assert config["optimizer"] == "adam" and config["learning_rate"] == 1e-4
    if name == "sr-resnet":
        assert (config["model"], config["loss"], config["scale"]) == ("srresnet", "mse", 4)
        assert config["lr_patch"] == 24
    if name == "edsr":
        assert (config["num_filters"], config["num_res_blocks"],
                config["res_block_scaling"]) == (256, 32, 0.1)


def test_profile_builder_keys_build_the_model():
    config = cfg.resolve("wdsr-b-16")
    model = build(config["model"], **cfg.builder_kwargs(config))
    assert model.count_params() == 299_564  # WDSR-B baseline x2, docs/reference.md §3


def test_upsample_init_is_a_builder_key_off_by_default():
    from sisr.initializers import ICNR

    assert cfg.resolve("wdsr-b-8")["upsample_init"] == "default"  # the official init
    config = cfg.resolve("edsr-8", {"upsample_init": "icnr"},
                         origins={"upsample_init": "--set upsample_init=icnr"})
    model = build(config["model"], **dict(cfg.builder_kwargs(config), num_res_blocks=1))
    assert isinstance(model.get_layer("upsample_x2_conv1").kernel_initializer, ICNR)
    with pytest.raises(cfg.ConfigError, match=r"--set upsample_init=checker: .*`upsample_init` "
                                              r"must be one of \('default', 'icnr'\)"):
        cfg.resolve("wdsr-a-8", {"upsample_init": "checker"},
                    origins={"upsample_init": "--set upsample_init=checker"})


def test_flags_override_profile():
    config = cfg.resolve("wdsr-a-8", {"scale": 4, "epochs": 3, "learning_rate": 5e-4,
                                      "seed": None})
    assert (config["scale"], config["epochs"], config["learning_rate"]) == (4, 3, 5e-4)
    assert cfg.learning_rate_values(config) == [5e-4, 2.5e-4]


def test_user_profile_from_path(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"model": "edsr", "num_filters": 16, "num_res_blocks": 2}))
    config = cfg.resolve(str(path))
    assert config["profile"] == "mine" and config["num_filters"] == 16


@pytest.mark.parametrize(
    "profile,overrides,match",
    [
        ("nope", {}, r"unknown profile 'nope'; known profiles: .*wdsr-b-8"),
        ("wdsr-b-8", {"num_blocks": 3}, r"unknown key\(s\) for model wdsr_b: num_blocks"),
        ("sr-resnet", {"scale": 2}, r"scale 2 is not supported by profile sr-resnet.*\[4\]"),
        ("edsr-8", {"scale": 5}, r"scale 5 is not supported"),
        ("edsr-8", {"epochs": 0}, r"`epochs` must be at least 1"),
        ("edsr-8", {"precision": "fp8"}, r"`precision` must be one of"),
        ("edsr-8", {"learning_rate": -1.0}, r"`learning_rate` must be a positive finite"),
        ("edsr-8", {"learning_rate": float("inf")}, (r"`learning_rate` must be a positive "
                                                     r"finite number, got inf")),
        ("edsr-8", {"lr_decay_factor": "x"}, r"`lr_decay_factor` must be a positive"),
        ("edsr-8", {"lr_decay_factor": -0.5}, r"`lr_decay_factor` must be a positive"),
        ("edsr-8", {"valid_crop": 0}, r"`valid_crop` must be at least 1"),
        ("edsr-8", {"scales": 2}, r"`scales` must be a list of ints, got 2"),
        ("edsr-8", {"lr_decay_steps": [5, 2]}, r"`lr_decay_steps` must be an increasing"),
        (None, {}, r"no model given"),
    ],
)
def test_bad_configuration_is_rejected(profile, overrides, match):
    with pytest.raises(cfg.ConfigError, match=match):
        cfg.resolve(profile, overrides)


def test_help_lists_profiles(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in EXPECTED_PROFILES:
        assert name in out


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--profile", "wdsr-z"], "unknown profile 'wdsr-z'; known profiles"),
        (["--profile", "wdsr-b-8", "--set", "depth=3"], "unknown key"),
        (["--profile", "wdsr-b-8", "--set", "oops"], "--set expects KEY=VALUE"),
        (["--profile", "edsr-gen", "--scale", "2"], "scale 2 is not supported by profile"),
        (["--profile", "wdsr-b-8", "--pretrained-model", "/no/such.keras"], "no such file"),
    ],
)
def test_cli_rejects_bad_input(argv, match, capsys, tmp_path):
    assert train.main(argv + ["--outdir", str(tmp_path)]) == 2
    assert match in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no run directory was created


def test_resume_needs_a_run_directory(tmp_path, capsys):
    assert train.main(["--resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


# RCAN's ~2000-layer graph takes ~10 s to build: checked in the slow tier.
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.slow] if name == "rcan" else [])
    for name in sorted(EXPECTED_PROFILES | set(SMALL_PROFILES) | RRDB_PROFILES
                       | set(OPENCV_PROFILES))])
def test_every_profile_trains_on_the_demo_set(name):
    # The inputs are checked as `python -m sisr.train --profile NAME --dataset demo` does
    # before its run directory exists, then one batch of each pipeline is read.
    from sisr.training.trainer import Trainer, make_pipelines

    config = cfg.resolve(name, {"dataset": "demo", "batch_size": 2, "seed": 0})
    datasets = Trainer(config).prepare()
    train_ds, valid_ds = make_pipelines(config, datasets)
    lr, hr = next(iter(train_ds))
    patch = config["lr_patch"]
    assert lr.shape == (2, patch, patch, 3)
    assert hr.shape == (2, patch * config["scale"], patch * config["scale"], 3)
    crops = [(lr.shape, hr.shape) for lr, hr in valid_ds]
    assert len(crops) == len(datasets[1])
    for lr_shape, hr_shape in crops:
        assert max(lr_shape[1:3]) <= config["valid_crop"]
        assert hr_shape[1:3] == (lr_shape[1] * config["scale"], lr_shape[2] * config["scale"])


# -- the recipe tables -----------------------------------------------------------------
def test_recipe_tables_are_the_allowed_names(monkeypatch):
    from sisr.training import recipe, trainer

    for key, table in (("loss", recipe.LOSSES), ("optimizer", recipe.OPTIMIZERS),
                       ("strategy", recipe.STRATEGIES), ("init", recipe.INITS)):
        with pytest.raises(cfg.ConfigError,
                           match=f"`{key}` must be one of {', '.join(table)}, got 'nope'"):
            cfg.resolve("edsr-8", {key: "nope"})

    # One table entry adds a loss: the check accepts it and the trainer builds it.
    made = []

    def charbonnier(config):
        made.append(config["loss"])
        return "a charbonnier loss"

    monkeypatch.setitem(recipe.LOSSES, "charbonnier", charbonnier)
    config = cfg.resolve("edsr-8", {"loss": "charbonnier"})
    assert trainer.make_loss(config) == "a charbonnier loss" and made == ["charbonnier"]
    with pytest.raises(cfg.ConfigError, match="must be one of l1, mse, charbonnier"):
        cfg.resolve("edsr-8", {"loss": "huber"})


def test_optimizer_factories_keep_pytorch_adam():
    import keras

    from sisr.optimizers import WeightNormAdam
    from sisr.training import trainer

    adam = trainer.make_optimizer(cfg.resolve("edsr-8"))
    wn = trainer.make_optimizer(cfg.resolve("wdsr-b-8", {"lr_decay_steps": []}))
    assert type(adam) is keras.optimizers.Adam and isinstance(wn, WeightNormAdam)
    for optimizer in (adam, wn):
        assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.999, 1e-8)
    assert float(wn.learning_rate) == pytest.approx(1e-3)
    assert type(trainer.make_loss(cfg.resolve("sr-resnet"))) is keras.losses.MeanSquaredError
    assert type(trainer.make_loss(cfg.resolve("edsr-8"))) is keras.losses.MeanAbsoluteError


def test_a_strategy_entry_is_checked_then_made(monkeypatch):
    import tensorflow as tf

    from sisr.training import recipe
    from sisr.training.trainer import Trainer

    calls = []
    monkeypatch.setitem(recipe.STRATEGIES, "toy", recipe.Strategy(
        make=lambda: calls.append("make") or tf.distribute.get_strategy(),
        check=lambda config: calls.append(("check", config["precision"]))))
    config = cfg.resolve("edsr-8", {"strategy": "toy"})
    assert Trainer(config).start() is tf.distribute.get_strategy()
    assert calls == [("check", "float32"), "make"]
    # multi-worker's own check: mixed_float16 is refused before any cluster is joined.
    config = cfg.resolve("edsr-8", {"strategy": "multi-worker", "precision": "mixed_float16"})
    with pytest.raises(cfg.ConfigError, match="mixed_float16 with --strategy multi-worker"):
        Trainer(config).start()


def test_init_is_refused_with_a_pretrained_model():
    with pytest.raises(cfg.ConfigError, match="`init` data_dependent would overwrite"):
        cfg.resolve("wdsr-b-8", {"init": "data_dependent", "pretrained_model": "x.keras"})
    assert cfg.resolve("wdsr-b-8", {"init": "data_dependent"})["init"] == "data_dependent"


# -- GAN keys ---------------------------------------------------------------------------
def test_gan_keys_have_defaults_and_are_checked():
    config = cfg.resolve("sr-resnet", {"gan_generator": "sr-resnet"})
    for key, value in cfg.GAN_DEFAULTS.items():
        assert config[key] == ("sr-resnet" if key == "gan_generator" else value), key
    assert "gan_label_noise" not in cfg.resolve("sr-resnet")  # a pixel configuration
    with pytest.raises(cfg.ConfigError, match=r"unknown key\(s\).*gan_label_noise"):
        cfg.resolve("sr-resnet", {"gan_label_noise": 0.1})


@pytest.mark.parametrize("key,value,match", [
    ("gan_content_loss", "VGG33", "--content-loss must be VGG22 or VGG54"),
    ("gan_label_noise", 0.5, (r"--label-noise must be in \[0, 0.5\), got 0.5 "
                              r"\(config key `gan_label_noise`\)")),
    ("gan_label_smoothing", -0.1, r"--label-smoothing must be in \[0, 0.5\)"),
    ("gan_adversarial_weight", -1, "--adversarial-weight must be >= 0"),
    ("gan_adversarial_weight", "x", "--adversarial-weight must be >= 0"),
    ("gan_discriminator_filters", 0, "--discriminator-filters must be an int >= 1"),
    ("gan_vgg_weights", 3, "`gan_vgg_weights` must be str"),
    ("gan_generator", "", "`gan_generator` must be a profile name"),
])
def test_bad_gan_keys_are_rejected(key, value, match):
    with pytest.raises(cfg.ConfigError, match=match):
        cfg.resolve("sr-resnet", {"gan_generator": "sr-resnet", key: value})


def test_a_wdsr_profile_is_no_gan_generator():
    with pytest.raises(cfg.ConfigError, match="its model wdsr_b is not a GAN generator; "
                                              "profiles of GAN generators: .*sr-resnet"):
        cfg.resolve("wdsr-b-8", {"gan_generator": "wdsr-b-8"})
    with pytest.raises(cfg.ConfigError, match="--generator nope: unknown profile 'nope'"):
        cfg.gan_generator_model("nope")


def test_a_nested_gan_section_is_read_as_gan_keys(tmp_path, capsys):
    saved = {**cfg.resolve("sr-resnet"), "gan": {
        "generator": "sr-resnet", "content_loss": "VGG22", "vgg_weights": None,
        "adversarial_weight": 1e-3, "label_noise": 0.1, "label_smoothing": 0.0,
        "discriminator_filters": 4}}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = cfg.resume_config(str(tmp_path), {"epochs": 7})
    assert "gan" not in config and config["epochs"] == 7
    assert (config["gan_generator"], config["gan_content_loss"], config["gan_label_noise"],
            config["gan_discriminator_filters"]) == ("sr-resnet", "VGG22", 0.1, 4)
    # sisr.train does not resume it as a pixel run.
    assert train.main(["--resume", str(tmp_path)]) == 2
    assert "an SRGAN run; resume it with python -m sisr.train_gan" in capsys.readouterr().err
