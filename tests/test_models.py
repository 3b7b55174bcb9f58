"""Model builders: parameter counts, naming, transfers between scales, initialisation, bad
input. The checks every registered architecture passes (shapes, round trips, gradients,
tiling, bf16 copies) are in test_contract.py."""

import fnmatch
import glob
import itertools
import json
import os
import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import sisr
from sisr.data import demo
from sisr.initializers import FanInUniform
from sisr.model import (
    MODELS, build, discriminator, edsr, generators, get_spec, srresnet, wdsr_a, wdsr_b,
)
from sisr.optimizers import data_dependent_init
from sisr.saving import ModelError

# Tiny configurations (the registry's): the same code paths as the published sizes, fast.
TINY = {name: dict(MODELS[name].tiny) for name in generators()}
GENERATORS = sorted(TINY)


def tiny(name, scale=2):
    return build(name, scale=scale, **TINY[name])


def lr_batch(n=2, h=7, w=11, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3)).astype(np.float32)


def test_registry_lists_every_builder():
    assert set(MODELS) == {"edsr", "wdsr_a", "wdsr_b", "srresnet", "discriminator",
                           "rrdbnet", "srvgg_compact", "mdsr", "vdsr", "srcnn", "fsrcnn",
                           "espcn", "rcan", "rdn", "unet_discriminator_sn",
                           "vgg_style_discriminator", "espcn_opencv", "fsrcnn_opencv",
                           "lapsrn_opencv"}
    assert get_spec("wdsr-b").builder is wdsr_b
    with pytest.raises(ValueError, match="unknown model 'han'.*edsr"):
        get_spec("han")
    with pytest.raises(ValueError, match="num_blocks"):
        build("edsr", scale=2, num_blocks=3)


def test_import_paths():
    import importlib

    module = importlib.import_module("sisr.model.wdsr_b")
    assert module.wdsr_b is wdsr_b
    assert callable(edsr) and callable(wdsr_a) and callable(srresnet) and callable(discriminator)


def test_loader_refuses_lambda(tmp_path):
    x_in = keras.Input((None, None, 3))
    model = keras.Model(x_in, keras.layers.Lambda(lambda t: t * 2.0)(x_in))
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    with pytest.raises(ValueError, match="Lambda"):
        sisr.load_model(path)


def test_loader_rejects_non_model_files(tmp_path):
    bogus = tmp_path / "notes.keras"
    bogus.write_text("not a model")
    with pytest.raises(ValueError, match="notes.keras.*not a .keras"):
        sisr.load_model(str(bogus))
    with pytest.raises(ModelError, match="missing.keras: no such model file"):
        sisr.load_model(str(tmp_path / "missing.keras"))


def test_save_model_is_atomic(tmp_path, monkeypatch):
    model = tiny("edsr")
    path = tmp_path / "m.keras"
    sisr.save_model(model, str(path))
    before = path.read_bytes()

    def crash(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    assert path.stat().st_mode & 0o644 == 0o644  # readable by others, like any saved file
    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        sisr.save_model(model, str(path))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]


# Trainable parameters of the official implementations (docs/reference.md §3).
PARAM_COUNTS = [
    ("edsr", dict(scale=2), 1_369_859),
    ("edsr", dict(scale=3), 1_554_499),
    ("edsr", dict(scale=4), 1_517_571),
    ("edsr", dict(scale=2, num_filters=256, num_res_blocks=32, res_block_scaling=0.1), 40_729_603),
    ("edsr", dict(scale=3, num_filters=256, num_res_blocks=32, res_block_scaling=0.1), 43_680_003),
    ("edsr", dict(scale=4, num_filters=256, num_res_blocks=32, res_block_scaling=0.1), 43_089_923),
    ("wdsr_a", dict(scale=2, num_res_blocks=16), 1_187_484),
    ("wdsr_a", dict(scale=3, num_res_blocks=16), 1_192_959),
    ("wdsr_a", dict(scale=4, num_res_blocks=16), 1_200_624),
    ("wdsr_b", dict(scale=2, num_res_blocks=16), 299_564),
    ("wdsr_b", dict(scale=3, num_res_blocks=16), 305_039),
    ("wdsr_b", dict(scale=4, num_res_blocks=16), 312_704),
    ("wdsr_b", dict(scale=2, num_res_blocks=8), 152_420),
    ("srresnet", dict(scale=4), 1_554_883),
]


@pytest.mark.parametrize("name,kwargs,expected", PARAM_COUNTS)
def test_parameter_counts_match_papers(name, kwargs, expected):
    assert build(name, **kwargs).count_params() == expected


def test_wdsr_b_low_rank_width():
    model = wdsr_b(2, num_filters=32, num_res_blocks=1)
    assert model.get_layer("block1_conv1").filters == 192
    assert model.get_layer("block1_conv2").filters == 25  # int(32 * 0.8)
    assert model.get_layer("block1_conv3").kernel_size == (3, 3)


@pytest.mark.parametrize("name", ["edsr", "wdsr_a", "wdsr_b", "srresnet"])
def test_scale_independent_layers_transfer_by_name(name):
    x2, x4 = tiny(name, 2), tiny(name, 4)
    shared = {layer.name for layer in x2.layers} & {layer.name for layer in x4.layers}
    for layer in x2.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if re.search(r"_x\d+_", layer.name):
            assert layer.name not in shared, layer.name
        else:
            target = x4.get_layer(layer.name)
            assert [w.shape for w in target.get_weights()] == [w.shape for w in weights]


def test_layer_names_are_stable():
    names = [layer.name for layer in edsr(4, num_res_blocks=1).layers]
    assert names == [
        "lr", "normalize", "head_conv", "block1_conv1", "block1_conv2", "block1_add",
        "body_conv", "body_add", "upsample_x4_conv1", "upsample_x4_shuffle1",
        "upsample_x4_conv2", "upsample_x4_shuffle2", "output_conv", "denormalize",
    ]


def test_pixel_shuffle_channel_order():
    r, c = 2, 3
    x = np.arange(1 * 2 * 2 * r * r * c, dtype=np.float32).reshape(1, 2, 2, r * r * c)
    y = sisr.layers.PixelShuffle(r)(x).numpy()
    for h in range(2):
        for w in range(2):
            for i in range(r):
                for j in range(r):
                    for ch in range(c):
                        assert y[0, h * r + i, w * r + j, ch] == x[0, h, w, (i * r + j) * c + ch]


def test_normalisation_matches_spec():
    model = edsr(2, num_filters=4, num_res_blocks=1)
    x = np.full((1, 2, 2, 3), 255.0, np.float32)
    normalised = model.get_layer("normalize")(x).numpy()[0, 0, 0]
    mean = np.array([0.4488, 0.4371, 0.4040]) * 255
    np.testing.assert_allclose(normalised, (255 - mean) / 127.5, rtol=1e-6)
    denormalised = model.get_layer("denormalize")(np.zeros((1, 1, 1, 3), np.float32)).numpy()
    np.testing.assert_allclose(denormalised[0, 0, 0], mean, rtol=1e-6)


def test_discriminator_shapes():
    model = discriminator()
    assert model.input_shape == (None, 96, 96, 3)
    out = model(np.zeros((2, 96, 96, 3), np.float32)).numpy()
    assert out.shape == (2, 1) and np.all((out > 0) & (out < 1))


def test_mixed_precision_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    for name in GENERATORS:
        model = tiny(name)
        # The head conv (RRDBNet x2's reads the unshuffled input: head_x2_conv; networks
        # without a head block name theirs in HEAD_LAYERS).
        head = model.get_layer(HEAD_LAYERS[name]) if name in HEAD_LAYERS else next(
            layer for layer in model.layers if fnmatch.fnmatch(layer.name, "head*conv"))
        assert head.compute_dtype == "bfloat16"
        assert model(lr_batch()).dtype == "float32"


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: edsr(5), r"edsr: `scale` must be one of \[2, 3, 4, 8\], got 5"),
        (lambda: wdsr_a(scale=6), r"wdsr_a: `scale`.*got 6"),
        (lambda: wdsr_b(2, num_filters=0), r"wdsr_b: `num_filters` must be a positive integer"),
        (lambda: edsr(2, num_res_blocks=-1), r"`num_res_blocks` must be a positive integer"),
        (lambda: edsr(2, res_block_scaling=-0.1), r"`res_block_scaling` must be None or a pos"),
        (lambda: srresnet(scale="4"), r"srresnet: `scale`"),
        (lambda: discriminator(hr_size=90), r"`hr_size` must be a multiple of 16"),
        (lambda: wdsr_b(2, res_block_expansion=0), r"`res_block_expansion`"),
    ],
)
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- initialisation

def _conv_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


@pytest.mark.parametrize("name", ["edsr", "wdsr_a", "wdsr_b"])
def test_official_models_get_pytorchs_default_conv_init(name):
    # EDSR-PyTorch and the official WDSR keep nn.Conv2d's init (WDSR's weight norm starts
    # from g = ||v||, so its kernels are v): kernels and biases U(+-1/sqrt(fan_in)).
    model = build(name, scale=4, num_filters=32, num_res_blocks=2)
    for layer in _conv_layers(model):
        kernel, bias = (w.numpy() for w in (layer.kernel, layer.bias))
        bound = 1.0 / np.sqrt(np.prod(kernel.shape[:3]))
        assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound, layer.name
        # uniform on +-bound: std bound/sqrt(3) (the smallest kernel has 900 values)
        assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.1), layer.name
        assert np.count_nonzero(bias) == bias.size, layer.name
        assert isinstance(layer.bias_initializer, FanInUniform)
        assert layer.bias_initializer.fan_in == int(np.prod(kernel.shape[:3]))


def test_srgan_models_keep_keras_default_init():
    for model in (srresnet(4, num_filters=32, num_res_blocks=2),
                  discriminator(hr_size=32, num_filters=16)):
        for layer in _conv_layers(model):
            kernel = layer.kernel.numpy()
            receptive = np.prod(kernel.shape[:2])
            fan_in, fan_out = receptive * kernel.shape[2], receptive * kernel.shape[3]
            bound = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
            assert np.abs(kernel).max() <= bound, layer.name
            assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.1), layer.name
            assert not layer.bias.numpy().any(), layer.name


def test_fan_in_uniform_serialises_and_checks_its_arguments():
    init = FanInUniform(27, gain=2.0, seed=3)
    config = keras.saving.serialize_keras_object(init)
    assert config["registered_name"] == "sisr>FanInUniform"
    clone = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert (clone.fan_in, clone.gain) == (27, 2.0)
    values = clone((1000,)).numpy()
    np.testing.assert_array_equal(values, init((1000,)).numpy())  # same seed, same draw
    assert np.abs(values).max() <= 2.0 / np.sqrt(27) < 1.05 * np.abs(values).max()
    with pytest.raises(ValueError, match="`fan_in` must be a positive int, got 0"):
        FanInUniform(0)
    with pytest.raises(ValueError, match="`gain` must be a positive number"):
        FanInUniform(9, gain=-1.0)


def test_saved_model_with_official_init_loads_in_safe_mode(tmp_path):
    model = tiny("wdsr_a")
    path = str(tmp_path / "wdsr_a.keras")
    sisr.save_model(model, path)
    with zipfile.ZipFile(path) as archive:
        assert "sisr>FanInUniform" in archive.read("config.json").decode()
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(lr_batch()).numpy(), model(lr_batch()).numpy())
    clone = keras.Model.from_config(loaded.get_config())  # rebuilt with the same initializers
    assert isinstance(clone.get_layer("head_conv").bias_initializer, FanInUniform)


def test_import_sisr_alone_loads_models_with_the_official_init(tmp_path):
    # A fresh process that imports only `sisr` (not sisr.model) must know FanInUniform.
    path = str(tmp_path / "edsr.keras")
    sisr.save_model(tiny("edsr"), path)
    code = f"import sisr; print(sisr.load_model({path!r}).get_layer('head_conv').bias_initializer)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "FanInUniform" in result.stdout


def test_conv_rejects_an_unknown_init():
    from sisr.model.common import conv

    with pytest.raises(ValueError, match="`init` must be one of .*'torch', 'keras'.*'he'"):
        conv(8, 3, "c", init="he")


def test_icnr_kernel_shuffles_to_nearest_neighbour_upsampling():
    from sisr.initializers import ICNR, torch_kernel
    from sisr.layers import PixelShuffle

    r, channels = 3, 2
    init = ICNR(r, torch_kernel(seed=1))
    kernel = init((3, 3, 4, channels * r * r)).numpy()
    bias = ICNR(r, FanInUniform(36, seed=2))((channels * r * r,)).numpy()
    # The r*r channels that the shuffle puts in one block are copies of channel k % C ...
    for k in range(channels * r * r):
        np.testing.assert_array_equal(kernel[..., k], kernel[..., k % channels])
        assert bias[k] == bias[k % channels]
    assert not np.array_equal(kernel[..., 0], kernel[..., 1])  # ... and the C are distinct
    # ... so the conv, shuffled, is the nearest-neighbour upsampling of the conv to C
    # channels with the base weights.
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 4)).astype("float32")
    conv = keras.layers.Conv2D(channels * r * r, 3, padding="same", kernel_initializer=init)
    conv.build(x.shape)
    conv.set_weights([kernel, bias])
    features = conv(x).numpy()
    shuffled = PixelShuffle(r)(features).numpy()
    base = features[..., :channels]
    np.testing.assert_array_equal(shuffled, base.repeat(r, axis=1).repeat(r, axis=2))
    with pytest.raises(ValueError, match=r"multiple of scale\*\*2 = 9"):
        init((3, 3, 4, 10))
    with pytest.raises(ValueError, match="`scale` must be a positive int"):
        ICNR(0)


@pytest.mark.parametrize("name", ["edsr", "wdsr_a", "wdsr_b"])
def test_icnr_upsample_init_starts_without_a_checkerboard(name, tmp_path):
    from sisr.initializers import ICNR

    model = build(name, scale=4, **TINY[name], upsample_init="icnr")
    assert model.arguments["upsample_init"] == "icnr"
    shuffles = [layer for layer in model.layers if type(layer).__name__ == "PixelShuffle"]
    assert shuffles
    outputs = keras.Model(model.input, [layer.output for layer in shuffles])(lr_batch())
    for shuffle, out in zip(shuffles, outputs):
        conv = model.get_layer(shuffle.name.replace("shuffle", "conv"))
        assert isinstance(conv.kernel_initializer, ICNR)
        assert isinstance(conv.bias_initializer, ICNR)  # the official init's bias is random
        # Every r x r block of the shuffled output starts flat: a nearest-neighbour
        # upsampling, no sub-pixel checkerboard.
        r, out = shuffle.scale, out.numpy()
        n, h, w, c = out.shape
        blocks = out.reshape(n, h // r, r, w // r, r, c)
        np.testing.assert_array_equal(blocks, np.broadcast_to(blocks[:, :, :1, :, :1],
                                                              blocks.shape))
    path = str(tmp_path / f"{name}.keras")
    sisr.save_model(model, path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(lr_batch()).numpy(), model(lr_batch()).numpy())
    assert loaded.arguments["upsample_init"] == "icnr"
    clone = keras.Model.from_config(loaded.get_config())  # rebuilt with the same initializers
    conv = clone.get_layer(shuffles[0].name.replace("shuffle", "conv"))
    assert isinstance(conv.kernel_initializer, ICNR)
    assert conv.kernel_initializer.scale == shuffles[0].scale
    assert isinstance(conv.bias_initializer.base, FanInUniform)


@pytest.mark.parametrize("name", ["edsr", "wdsr_a", "wdsr_b"])
def test_upsample_init_defaults_to_the_official_init(name):
    from sisr.initializers import ICNR

    model = tiny(name)
    assert model.arguments["upsample_init"] == "default"
    assert not any(isinstance(layer.kernel_initializer, ICNR) for layer in _conv_layers(model))
    with pytest.raises(ValueError, match="`upsample_init` must be one of"):
        build(name, scale=2, **TINY[name], upsample_init="nearest")


def test_data_dependent_init_still_applies():
    model = tiny("wdsr_b")
    x = lr_batch(4, 9, 9)
    names = data_dependent_init(model, x)
    assert sorted(names) == sorted(layer.name for layer in _conv_layers(model))
    head = keras.Model(model.input, model.get_layer("head_conv").output)(x).numpy()
    np.testing.assert_allclose(head.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(head.std(axis=(0, 1, 2)), 1.0, rtol=1e-3)


# Untrained output statistics of every shipped profile, at its own sizes, on 4 demo
# patches (LR 12x12 centre crops), averaged over seeds 0 and 1: L1 to HR and output std
# on the 0..255 scale, and std of the head conv's output. Each band spans the single-seed
# values of seeds 0-7 with the shipped initialisation, widened by about 3%. Glorot kernels
# with zero biases (Keras' default) leave the band of every EDSR and WDSR profile (full
# EDSR, 256 filters and residual scaling 0.1, only in the head std), and PyTorch's init
# leaves SRResNet's (output std 3, head std 0.2).
INIT_BANDS = {  # profile: (L1, output std, head conv std)
    "edsr": ((60.5, 71), (13.4, 18.6), (0.32, 0.36)),
    "edsr-8": ((59, 75), (13.5, 21), (0.30, 0.40)),
    "edsr-16": ((58, 71), (14.5, 22), (0.30, 0.40)),
    "edsr-gen": ((61.5, 66.5), (9.8, 14.8), (0.29, 0.37)),
    "mdsr": ((68, 87.3), (40.6, 73.3), (0.30, 0.40)),
    "mdsr-16": ((63, 72.7), (17.9, 27.1), (0.30, 0.40)),
    "sr-resnet": ((75.5, 94), (37.9, 57.4), (0.095, 0.121)),
    "wdsr-a-8": ((59, 79), (39.8, 68), (0.27, 0.44)),
    "wdsr-a-16": ((58, 84.5), (43.6, 65), (0.27, 0.44)),
    "wdsr-a-32": ((62, 93), (47, 94), (0.27, 0.44)),
    "wdsr-b-8": ((55.7, 99), (41.4, 62), (0.27, 0.44)),
    "wdsr-b-16": ((59, 81.5), (43.8, 63), (0.27, 0.44)),
    "wdsr-b-32": ((63, 94), (43, 68), (0.27, 0.44)),
    # VDSR: 20 layers at PyTorch's init shrink the residual to ~0, so the output is the
    # bicubic; its head sees x - mean on 0..255, as RCAN's (seeds 0-7: 22.2 .. 30.4)
    "vdsr": ((6.5, 8), (74, 78), (20, 33)),
    "srcnn": ((100, 120), (12, 35), (0.10, 0.18)),
    "fsrcnn": ((105, 115), (1.5, 5), (0.55, 0.72)),
    "espcn": ((95, 105), (25, 45), (0.25, 0.32)),
    "rcan": ((64, 91), (46.4, 79), (35.3, 49.2)),
    # RDN has no normalisation (the official network on 0..255): its head sees raw pixels
    "rdn": ((102, 121), (16.6, 30), (61, 90)),
    "rdn-a": ((100, 118), (15, 38.4), (61, 90)),
    # OpenCV dnn_superres's networks at the builders' inits; FSRCNN's seven
    # he-normal PReLU stages spread seeds 0-7 widely.
    "espcn-opencv": ((90.5, 106), (26.7, 30.2), (0.039, 0.056)),
    "fsrcnn-opencv": ((108, 412), (68, 328), (0.58, 0.82)),
    "lapsrn-opencv": ((66.5, 92), (29.7, 66), (0.064, 0.086)),
    # RRDBNet (23 blocks) at BasicSR's init: seeds 0-7 spread widely at its output.
    "realesrnet-x4": ((66, 248), (35.8, 175), (0.238, 0.317)),
    # The same RRDBNet x4 (only the data and the recipe differ): the same statistics.
    "rrdbnet-psnr-x4": ((66, 248), (35.8, 175), (0.238, 0.317)),
    # The GAN recipes fine-tune the same RRDBNet x4 (built here untrained all the same).
    "realesrgan-x4": ((66, 248), (35.8, 175), (0.238, 0.317)),
    "esrgan-x4": ((66, 248), (35.8, 175), (0.238, 0.317)),
}
# The layer whose output std is the "head std" where a network has no `head_conv`.
HEAD_LAYERS = {"vdsr": "body_conv1", "srcnn": "conv1", "fsrcnn": "feature_conv",
               "espcn": "conv1", "espcn_opencv": "conv1", "fsrcnn_opencv": "feature_conv",
               "lapsrn_opencv": "level1_conv1"}
PROFILES = sorted(glob.glob(os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "sisr", "profiles", "*.json")))


def demo_patches(scale, count=4, size=12):
    """float32 LR/HR centre crops (LR `size` x `size`) of the first `count` demo images."""
    lrs, hrs = [], []
    for _, lr, hr in itertools.islice(demo("train", scale=scale).pairs(), count):
        top, left = (lr.shape[0] - size) // 2, (lr.shape[1] - size) // 2
        lrs.append(lr[top:top + size, left:left + size])
        hrs.append(hr[top * scale:(top + size) * scale, left * scale:(left + size) * scale])
    return np.stack(lrs).astype(np.float32), np.stack(hrs).astype(np.float32)


def untrained_statistics(config, seeds=(0, 1)):
    """Mean over `seeds` of (L1 to HR, output std, head conv output std), freshly built."""
    spec = get_spec(config["model"])
    kwargs = {k: config[k] for k in spec.arguments() if k in config}
    lr, hr = demo_patches(config["scale"])
    stats = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        model = spec.builder(**kwargs)
        head = model.get_layer(HEAD_LAYERS.get(config["model"], "head_conv"))
        probe = keras.Model(model.input, [model.output, head.output])
        sr, head = (np.asarray(t) for t in probe(lr))
        stats.append((np.abs(sr - hr).mean(), sr.std(), head.std()))
        keras.backend.clear_session()
    return np.mean(stats, axis=0)


def test_every_profile_has_an_init_band():
    assert sorted(os.path.basename(p)[:-5] for p in PROFILES) == sorted(INIT_BANDS)


# RCAN's 1,400 layers take a minute to build twice on a loaded machine
# The RRDBNet x4 of the GAN recipes and of rrdbnet-psnr-x4 (~6 s each) is realesrnet-x4's,
# checked in the default tier.
SLOW_PROFILES = {"rcan", "realesrgan-x4", "esrgan-x4", "rrdbnet-psnr-x4"}


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.slow) if os.path.basename(p)[:-5] in SLOW_PROFILES
    else p for p in PROFILES], ids=lambda p: os.path.basename(p)[:-5])
def test_untrained_output_statistics_of_every_profile(path):
    with open(path) as f:
        config = json.load(f)
    bands = INIT_BANDS[os.path.basename(path)[:-5]]
    stats = untrained_statistics(config)
    for what, value, (low, high) in zip(("L1", "output std", "head std"), stats, bands):
        assert low <= value <= high, f"{what} {value:.3f} outside [{low}, {high}]"
