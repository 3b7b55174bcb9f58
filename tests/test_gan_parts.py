"""ESRGAN / Real-ESRGAN GAN parts against BasicSR: the U-Net SN discriminator (and its
PyTorch-exact spectral normalisation), the VGG-style discriminator and the pre-activation
VGG19 perceptual loss. Fixtures: tests/data/gan, made by tests/data/make_gan_fixtures.py
from BasicSR's own modules."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from reference_data import DATA
from sisr.model import get_spec, unet_discriminator_sn, vgg_style_discriminator
from sisr.model import unet_discriminator as unet_module
from sisr.model import vgg_discriminator as vgg_module
from sisr.model.sizing import count_parameters
from sisr.port import PortError, port, port_checkpoint
from sisr.port import cli as port_cli
from sisr.port.formats import basicsr_unet_discriminator as unet_layout
from sisr.perceptual import DEFAULT_LAYER_WEIGHTS, PerceptualLoss
from sisr.spectral_norm import SpectralConv2D
from test_losses import write_legacy_h5

GAN = os.path.join(DATA, "gan")
# float32 against float32 PyTorch: summation order differs, nothing else (measured: outputs
# within 1e-7 of values ~0.1, VGG features within 3e-5 of values ~15, loss values within
# 3e-7 relative).
RTOL, ATOL = 1e-4, 1e-5


def manifest():
    with open(os.path.join(GAN, "manifest.json")) as f:
        return json.load(f)


def load(name):
    with np.load(os.path.join(GAN, name)) as z:
        return {k: z[k] for k in z.files}


def prefixed(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def nhwc(x):
    return np.ascontiguousarray(np.asarray(x).transpose(0, 2, 3, 1)).astype(np.float32)


def fixture_tools():
    spec = importlib.util.spec_from_file_location(
        "fixture_tools", os.path.join(DATA, "fixture_tools.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stand_in_vgg(tmp_path_factory):
    """The generator's stand-in VGG19 weights as a Keras VGG19 weights file."""
    convs = fixture_tools().stand_in_vgg19(manifest()["seed"])
    path = tmp_path_factory.mktemp("gan_vgg") / "vgg19_stand_in.h5"
    write_legacy_h5(path, {name: [kernel, bias] for name, kernel, bias in convs})
    return str(path)


def unet_from_fixture(name, **kwargs):
    arrays = load(name)
    model = unet_discriminator_sn(num_feat=4, **kwargs)
    unet_module.load_basicsr_state(model, prefixed(arrays, "sd/"))
    return model, arrays


def sn_layers(model):
    return {layer.name: layer for layer in model.layers if isinstance(layer, SpectralConv2D)}


def torch_name(layer_name):
    return {v: f"conv{i}" for i, v in unet_layout.LAYERS.items()}[layer_name]


# ------------------------------------------------------------- U-Net SN discriminator

def test_unet_eval_forward_uses_stored_vectors():
    model, arrays = unet_from_fixture("unet_sn_f4.npz")
    before = {n: (lyr.u.numpy().copy(), lyr.v.numpy().copy())
              for n, lyr in sn_layers(model).items()}
    out = model(nhwc(arrays["input"]), training=False)
    assert out.dtype == "float32" and tuple(out.shape) == (2, 16, 24, 1)
    np.testing.assert_allclose(out, nhwc(arrays["output_eval"]), rtol=RTOL, atol=ATOL)
    for name, layer in sn_layers(model).items():  # inference never iterates
        np.testing.assert_array_equal(layer.u, before[name][0])
        np.testing.assert_array_equal(layer.v, before[name][1])


def test_unet_training_forward_iterates_once_and_matches_gradients():
    model, arrays = unet_from_fixture("unet_sn_f4.npz")
    after = prefixed(arrays, "sd_after/")
    grads = prefixed(arrays, "grad/")
    with tf.GradientTape() as tape:
        out = model(nhwc(arrays["input"]), training=True)
        loss = tf.reduce_mean(out)
    np.testing.assert_allclose(out, nhwc(arrays["output_train"]), rtol=RTOL, atol=ATOL)
    for name, layer in sn_layers(model).items():
        np.testing.assert_allclose(layer.u, after[f"{torch_name(name)}.weight_u"],
                                   rtol=RTOL, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(layer.v, after[f"{torch_name(name)}.weight_v"],
                                   rtol=RTOL, atol=1e-6, err_msg=name)
    # Gradients flow through sigma (u, v constant), as PyTorch's.
    variables = model.trainable_variables
    for variable, grad in zip(variables, tape.gradient(loss, variables)):
        layer, kind = variable.path.split("/")
        key = f"{torch_name(layer)}." + (
            "bias" if kind == "bias" else
            "weight_orig" if isinstance(model.get_layer(layer), SpectralConv2D) else "weight")
        expected = grads[key]
        if kind == "kernel":
            expected = expected.transpose(2, 3, 1, 0)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-5 * scale,
                                   err_msg=variable.path)
    # An eval forward now uses the updated vectors without iterating again.
    np.testing.assert_allclose(model(nhwc(arrays["input"]), training=False),
                               nhwc(arrays["output_eval_after"]), rtol=RTOL, atol=ATOL)


def test_unet_without_skip_connections():
    model, arrays = unet_from_fixture("unet_sn_f4_noskip.npz", skip_connection=False)
    np.testing.assert_allclose(model(nhwc(arrays["input"]), training=False),
                               nhwc(arrays["output_eval"]), rtol=RTOL, atol=ATOL)


def test_unet_state_dict_must_match_exactly():
    model, arrays = unet_from_fixture("unet_sn_f4.npz")
    state = prefixed(arrays, "sd/")
    with pytest.raises(PortError, match="missing conv3.weight_v"):
        unet_module.load_basicsr_state(model, {k: v for k, v in state.items()
                                               if k != "conv3.weight_v"})
    with pytest.raises(PortError, match=r"unexpected key\(s\).*: extra"):
        unet_module.load_basicsr_state(model, {**state, "extra": np.zeros(1)})
    with pytest.raises(PortError, match="does not fit sisr's down1_conv"):
        unet_module.load_basicsr_state(unet_discriminator_sn(num_feat=8), state)


def test_unet_reads_a_basicsr_discriminator_file():
    # {"params": state_dict} as BasicSR's save_network writes net_d (and Real-ESRGAN's
    # published *_netD.pth), read without torch.
    model, arrays = unet_from_fixture("unet_sn_f4.npz")
    from_file = unet_discriminator_sn(num_feat=4)
    unet_module.load_basicsr_state(from_file, os.path.join(GAN, "unet_sn_f4_netd.pth"))
    for a, b in zip(from_file.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_discriminator_files_are_ported_as_a_new_model(tmp_path, capsys):
    # Auto-detected from the key set; the model is the registered builder's.
    ported = port_checkpoint(os.path.join(GAN, "unet_sn_f4_netd.pth"))
    assert ported.plan.source == "basicsr-unet-discriminator"
    assert ported.model.builder == "unet_discriminator_sn"
    assert ported.model.arguments == {"num_in_ch": 3, "num_feat": 4,
                                      "skip_connection": True, "input_size": None}
    arrays = load("unet_sn_f4.npz")
    np.testing.assert_allclose(ported.model(nhwc(arrays["input"])),
                               nhwc(arrays["output_eval"]), rtol=RTOL, atol=ATOL)
    vgg = load("vgg_disc_f2_128.npz")
    model = port(prefixed(vgg, "sd/"))
    assert (model.builder, model.arguments) == ("vgg_style_discriminator",
                                                {"hr_size": 128, "num_feat": 2})
    np.testing.assert_allclose(model(nhwc(vgg["input"])), vgg["output_eval"],
                               rtol=RTOL, atol=ATOL)
    out = tmp_path / "netd.keras"
    assert port_cli.main([os.path.join(GAN, "unet_sn_f4_netd.pth"), "-o", str(out)]) == 0
    assert "unet_discriminator_sn" in capsys.readouterr().out
    loaded = keras.saving.load_model(out, safe_mode=True)
    np.testing.assert_array_equal(loaded(nhwc(arrays["input"])),
                                  ported.model(nhwc(arrays["input"])))


def test_unet_keras_round_trip_keeps_vectors(tmp_path):
    model, arrays = unet_from_fixture("unet_sn_f4.npz", input_size=16)
    x = nhwc(arrays["input"])[:, :, :16]
    model(x, training=True)  # u, v moved from the checkpoint's
    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.input_shape == (None, 16, 16, 3)
    for name, layer in sn_layers(model).items():
        np.testing.assert_array_equal(loaded.get_layer(name).u, layer.u)
        np.testing.assert_array_equal(loaded.get_layer(name).v, layer.v)
    np.testing.assert_array_equal(loaded(x, training=False), model(x, training=False))


@pytest.mark.slow
def test_a_saved_discriminator_loads_after_import_sisr_alone(tmp_path):
    model = unet_discriminator_sn(num_feat=4, input_size=16)
    model.save(tmp_path / "d.keras")
    code = ("import sys, keras, sisr; "
            "m = keras.saving.load_model(sys.argv[1], safe_mode=True); "
            "print(type(m.get_layer('down1_conv')).__name__)")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d.keras")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("SpectralConv2D")


def test_spectral_conv_updates_vectors_only_in_training():
    layer = SpectralConv2D(5, 3, use_bias=False, name="sn")
    x = np.random.default_rng(0).normal(size=(1, 8, 8, 3)).astype(np.float32)
    layer(x)
    u, v = layer.u.numpy().copy(), layer.v.numpy().copy()
    np.testing.assert_allclose(np.linalg.norm(u), 1.0, rtol=1e-6)
    layer(x, training=False)
    np.testing.assert_array_equal(layer.u, u)
    layer(x, training=True)
    assert not np.allclose(layer.u, u) and not np.allclose(layer.v, v)
    assert [w.name for w in layer.non_trainable_weights] == ["u", "v"]
    # After many iterations sigma is the kernel's largest singular value.
    for _ in range(50):
        layer(x, training=True)
    matrix = np.asarray(layer.weight_matrix())
    normalized = np.asarray(layer.normalized_kernel(training=False))
    np.testing.assert_allclose(np.asarray(layer.kernel) / normalized,
                               np.linalg.svd(matrix, compute_uv=False)[0], rtol=1e-4)


def test_unet_bfloat16_keeps_float32_weights_and_updates_vectors():
    model, arrays = unet_from_fixture("unet_sn_f4.npz")
    reference = np.asarray(model(nhwc(arrays["input"]), training=False))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        low, _ = unet_from_fixture("unet_sn_f4.npz")
    finally:
        keras.config.set_dtype_policy(previous)
    layer = low.get_layer("down2_conv")
    assert layer.compute_dtype == "bfloat16"
    assert {w.dtype for w in layer.weights} == {"float32"}
    out = low(nhwc(arrays["input"]), training=False)
    assert out.dtype == "float32"
    np.testing.assert_allclose(out, reference, atol=0.05 * np.abs(reference).max())
    u = layer.u.numpy().copy()
    low(nhwc(arrays["input"]), training=True)
    assert not np.array_equal(layer.u, u)


@pytest.mark.slow
def test_unet_trains_under_a_distribution_strategy():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices (tests/conftest.py)")
    reference = unet_discriminator_sn(num_feat=4, input_size=16)
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = unet_discriminator_sn(num_feat=4, input_size=16)
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(model.trainable_variables)
    model.set_weights(reference.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    reference(x, training=True)  # u and v do not depend on the data

    @tf.function
    def step(batch):
        def replica(images):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.nn.softplus(-model(images, training=True))) / 4.0
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss
        return strategy.run(replica, args=(batch,))

    batches = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(x).batch(4))
    for batch in batches:
        step(batch)
    for name in sn_layers(model):
        expected = reference.get_layer(name)
        for vector in ("u", "v"):
            copies = strategy.experimental_local_results(getattr(model.get_layer(name),
                                                                 vector).value)
            assert len(copies) == 2
            for copy in copies:  # every replica holds the one update
                np.testing.assert_allclose(copy, getattr(expected, vector).numpy(),
                                           rtol=1e-5, atol=1e-7, err_msg=f"{name} {vector}")


def test_unet_arguments_are_checked():
    with pytest.raises(ValueError, match="multiple of 8"):
        unet_discriminator_sn(input_size=20)
    with pytest.raises(ValueError, match="num_feat"):
        unet_discriminator_sn(num_feat=0)
    assert get_spec("unet-discriminator-sn").builder is unet_discriminator_sn


# --------------------------------------------------------------- VGG discriminator

def test_vgg_discriminator_matches_basicsr_eval_and_training():
    arrays = load("vgg_disc_f2_128.npz")
    model = vgg_style_discriminator(hr_size=128, num_feat=2)
    vgg_module.load_basicsr_state(model, prefixed(arrays, "sd/"))
    x = nhwc(arrays["input"])
    out = model(x, training=False)
    assert out.dtype == "float32" and tuple(out.shape) == (2, 1)
    np.testing.assert_allclose(out, arrays["output_eval"], rtol=RTOL, atol=ATOL)
    # Training: batch statistics (PyTorch normalises with the biased variance, as Keras).
    np.testing.assert_allclose(model(x, training=True), arrays["output_train"],
                               rtol=RTOL, atol=ATOL)


def test_vgg_discriminator_round_trip_and_checks(tmp_path):
    model = vgg_style_discriminator(hr_size=128, num_feat=2)
    x = np.random.default_rng(1).uniform(0, 255, (1, 128, 128, 3)).astype(np.float32)
    model.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras", safe_mode=True)
    np.testing.assert_array_equal(loaded(x), model(x))
    with pytest.raises(ValueError, match="128, 256"):
        vgg_style_discriminator(hr_size=96)
    assert get_spec("vgg-discriminator").builder is vgg_style_discriminator


# ------------------------------------------------------------------ parameter counts

@pytest.mark.parametrize("key,build", [
    ("UNetDiscriminatorSN(3, 64)", lambda: unet_discriminator_sn()),
    ("VGGStyleDiscriminator(3, 64, 128)", lambda: vgg_style_discriminator(128)),
])
def test_parameter_counts_of_the_official_modules(key, build):
    # Trainable = PyTorch's parameters(); non-trainable = its buffers (u, v; BN running
    # mean and variance), as the generator counted them.
    expected = manifest()["param_counts"][key]
    model = build()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert (trainable, frozen) == (expected["parameters"], expected["buffers"])


def test_parameter_count_of_the_256_discriminator():
    expected = manifest()["param_counts"]["VGGStyleDiscriminator(3, 64, 256)"]
    count = count_parameters(get_spec("vgg_style_discriminator"), {"hr_size": 256})
    assert count == expected["parameters"] + expected["buffers"]


# ------------------------------------------------------------------ perceptual loss

@pytest.fixture(scope="module")
def default_loss(stand_in_vgg):
    return PerceptualLoss(vgg_weights=stand_in_vgg)


def test_preactivation_features_match_basicsr(default_loss):
    arrays = load("perceptual.npz")
    extractor = default_loss.feature_extractor
    assert extractor.name == "vgg19_preactivation" and not extractor.trainable_weights
    for which in ("hr", "sr"):
        features = extractor(nhwc(arrays[which])[:1])
        assert set(features) == set(DEFAULT_LAYER_WEIGHTS)
        for tap in DEFAULT_LAYER_WEIGHTS:
            expected = arrays[f"features/{which}/{tap}"].transpose(1, 2, 0)
            got = np.asarray(features[tap])[0]
            np.testing.assert_allclose(got, expected, rtol=RTOL,
                                       atol=1e-5 * np.abs(expected).max(),
                                       err_msg=f"{which} {tap}")
            if tap.startswith("conv"):
                assert got.min() < 0, tap  # before the ReLU


def check_loss(loss, index):
    arrays = load("perceptual.npz")
    hr, sr = nhwc(arrays["hr"]), nhwc(arrays["sr"])
    percep, style = loss.parts(hr, sr)
    for got, key in ((percep, "percep"), (style, "style")):
        expected = float(arrays[f"setting{index}/{key}"])
        if np.isnan(expected):  # BasicSR's None: weight 0
            assert got is None
            continue
        assert tuple(got.shape) == (2,) and got.dtype == "float32"
        np.testing.assert_allclose(float(np.mean(got)), expected, rtol=1e-5)
    total = sum(np.nan_to_num(float(arrays[f"setting{index}/{k}"])) for k in ("percep", "style"))
    np.testing.assert_allclose(float(loss.mean(hr, sr)), total, rtol=1e-5)


def test_perceptual_loss_matches_basicsr(default_loss):
    assert manifest()["files"]["perceptual.npz"]["settings"][0] == {
        "layer_weights": DEFAULT_LAYER_WEIGHTS, "use_input_norm": True, "range_norm": False,
        "perceptual_weight": 1.0, "style_weight": 0.0, "criterion": "l1"}
    check_loss(default_loss, 0)


@pytest.mark.parametrize("index", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_perceptual_and_style_loss_settings_match_basicsr(stand_in_vgg, index):
    setting = manifest()["files"]["perceptual.npz"]["settings"][index]
    check_loss(PerceptualLoss(vgg_weights=stand_in_vgg, **setting), index)


def test_perceptual_loss_is_not_tracked_and_checks_arguments(stand_in_vgg):
    loss = PerceptualLoss({"conv1_2": 1.0}, vgg_weights=stand_in_vgg)

    class Holder(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)
            self.loss_fn = loss

        def call(self, x):
            return self.dense(x)

    holder = Holder()
    holder(np.zeros((1, 2), np.float32))
    assert len(holder.weights) == 2  # the Dense's only
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    hr = tf.constant(x)
    sr = tf.Variable(x[::-1].copy())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(hr)
        value = tf.reduce_mean(loss(hr, sr))
    hr_grad = tape.gradient(value, hr)  # HR features carry no gradient
    assert hr_grad is None or not np.asarray(hr_grad).any()
    assert np.abs(tape.gradient(value, sr)).sum() > 0
    with pytest.raises(ValueError, match="conv6_1"):
        PerceptualLoss({"conv6_1": 1.0}, vgg_weights=stand_in_vgg)
    with pytest.raises(ValueError, match="criterion"):
        PerceptualLoss(vgg_weights=stand_in_vgg, criterion="fro")


def test_range_norm_takes_minus_one_to_one(stand_in_vgg):
    x = np.random.default_rng(3).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    y = x[::-1].copy()
    plain = PerceptualLoss({"conv2_1": 1.0}, vgg_weights=stand_in_vgg)
    signed = PerceptualLoss({"conv2_1": 1.0}, vgg_weights=stand_in_vgg, range_norm=True)
    np.testing.assert_allclose(signed(x / 127.5 - 1, y / 127.5 - 1), plain(x, y), rtol=1e-5)


@pytest.mark.slow
def test_perceptual_loss_under_bfloat16(stand_in_vgg):
    arrays = load("perceptual.npz")
    expected = float(arrays["setting0/percep"])
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        loss = PerceptualLoss(vgg_weights=stand_in_vgg)
    finally:
        keras.config.set_dtype_policy(previous)
    assert loss.feature_extractor.get_layer("input_norm").compute_dtype == "float32"
    assert loss.feature_extractor.get_layer("block3_conv4").compute_dtype == "bfloat16"
    value = loss(nhwc(arrays["hr"]), nhwc(arrays["sr"]))
    assert value.dtype == "float32"
    np.testing.assert_allclose(float(np.mean(value)), expected, rtol=0.05)
