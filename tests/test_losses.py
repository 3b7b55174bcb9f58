"""SRGAN losses: VGG19 weights files, feature extractor, content and adversarial losses."""

import socket

import h5py
import keras
import numpy as np
import pytest

from sisr import losses
from sisr.losses import VGGWeightsError


def write_legacy_h5(path, layers):
    """Writes {name: [arrays]} in the legacy Keras HDF5 layout of the published files."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for name, arrays in layers.items():
            group = f.create_group(name)
            names = [f"{name}_{tag}_1:0" for tag in ("W", "b")][: len(arrays)]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n, array in zip(names, arrays):
                group.create_dataset(n, data=array)


def images(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype(
        "float32")


# -- weights files ---------------------------------------------------------------------
def test_conv_shapes_are_vgg19s():
    model = keras.applications.VGG19(include_top=False, weights=None)
    expected = {layer.name: [tuple(w.shape) for w in layer.weights]
                for layer in model.layers if layer.weights}
    assert losses.vgg19_conv_shapes() == expected


def test_extractor_matches_keras_vgg19_on_legacy_and_keras3_files(vgg_weights, tmp_path):
    stored = losses.read_h5_weights(vgg_weights)
    legacy = tmp_path / "vgg19_legacy.h5"
    # The classifier layers of an include_top file are extra layers: they must be ignored.
    write_legacy_h5(legacy, {**{n: stored[n] for n in losses.vgg19_conv_shapes()},
                             "fc1": [np.zeros((4, 2), "float32"), np.zeros(2, "float32")]})
    reference = keras.applications.VGG19(include_top=False, weights=vgg_weights,
                                         input_shape=(None, None, 3))
    trunk = keras.Model(reference.input, reference.get_layer("block2_conv2").output)
    x = images(2, 24)
    expected = trunk(keras.applications.vgg19.preprocess_input(x.copy())).numpy()

    for path in (vgg_weights, str(legacy)):
        extractor = losses.vgg_feature_extractor("VGG22", weights=path)
        features = extractor(x).numpy()
        assert features.shape == (2, 12, 12, 128)
        np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-3)
        assert not extractor.trainable and not extractor.trainable_weights


def test_vgg54_cut_and_frozen(vgg_weights):
    extractor = losses.vgg_feature_extractor("VGG54", weights=vgg_weights)
    assert extractor(images(1, 32)).shape == (1, 2, 2, 512)
    assert extractor.layers[-1].layers[-1].name == "block5_conv4"
    assert len(extractor.non_trainable_weights) == 32


def test_caffe_preprocess_matches_keras():
    x = images(2, 5)
    expected = keras.applications.vgg19.preprocess_input(x.copy())
    np.testing.assert_allclose(losses.CaffePreprocess()(x).numpy(), expected, atol=1e-4)


def test_wrong_shaped_file_says_what_was_expected(tmp_path):
    path = tmp_path / "not_vgg19.h5"
    write_legacy_h5(path, {"block1_conv1": [np.zeros((3, 3, 3, 32), "float32"),
                                            np.zeros(32, "float32")]})
    with pytest.raises(VGGWeightsError) as info:
        losses.check_vgg19_weights(path)
    message = str(info.value)
    assert "block1_conv1 has shapes [(3, 3, 3, 32), (32,)]" in message
    assert "expected [(3, 3, 3, 64), (64,)]" in message
    assert "block1_conv2 missing" in message and "16 conv layers" in message


def test_vgg16_file_is_rejected(tmp_path):
    # Same layer names as VGG19 up to block5_conv3, but no conv4 in blocks 3-5.
    shapes = losses.vgg19_conv_shapes()
    vgg16 = {n: [np.zeros(s, "float32") for s in shapes[n]] for n in shapes
             if not n.endswith("conv4")}
    write_legacy_h5(tmp_path / "vgg16.h5", vgg16)
    with pytest.raises(VGGWeightsError, match="block3_conv4 missing"):
        losses.vgg_feature_extractor("VGG22", weights=tmp_path / "vgg16.h5")


def test_not_hdf5_and_missing_file(tmp_path):
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(VGGWeightsError, match="not an HDF5 weights file"):
        losses.check_vgg19_weights(tmp_path / "x.h5")
    with pytest.raises(VGGWeightsError, match="no such file"):
        losses.vgg19_weights_path(tmp_path / "absent.h5")


# -- finding the ImageNet weights without network --------------------------------------
@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """An empty Keras home, and any connection attempt fails the test."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv(losses.OFFLINE_ENV, raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the test tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return tmp_path / "keras" / "models" / losses.VGG19_WEIGHTS_FILE


def assert_names_file_and_place(message, cache_file):
    assert losses.VGG19_WEIGHTS_URL in message
    assert str(cache_file) in message
    assert "--vgg-weights" in message


def test_missing_weights_offline_names_file_and_place(no_network, monkeypatch):
    monkeypatch.setenv(losses.OFFLINE_ENV, "1")
    with pytest.raises(VGGWeightsError) as info:
        losses.vgg19_weights_path()
    assert_names_file_and_place(str(info.value), no_network)
    with pytest.raises(VGGWeightsError, match="downloading is disabled"):
        losses.vgg19_weights_path(download=None)


def test_failed_download_names_file_and_place(no_network):
    def unreachable():
        raise OSError("[Errno 101] Network is unreachable")

    with pytest.raises(VGGWeightsError) as info:
        losses.vgg19_weights_path(download=unreachable)
    assert "Network is unreachable" in str(info.value)
    assert_names_file_and_place(str(info.value), no_network)


def test_default_download_checks_the_connection_first(no_network, monkeypatch):
    calls = []

    def unreachable(address, timeout=None):
        calls.append((address, timeout))
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(VGGWeightsError, match="Name or service not known"):
        losses.vgg19_weights_path()
    assert calls == [(("storage.googleapis.com", 443), 10.0)]


def test_cached_file_is_used(no_network, vgg_weights):
    no_network.parent.mkdir(parents=True)
    no_network.symlink_to(vgg_weights)
    assert losses.vgg19_weights_path() == str(no_network)


# -- losses ----------------------------------------------------------------------------
def test_content_loss_is_feature_mse_over_12_75(vgg_weights):
    extractor = losses.vgg_feature_extractor("VGG22", weights=vgg_weights)
    hr, sr = images(3, 16, seed=1), images(3, 16, seed=2)
    loss = losses.ContentLoss(extractor)(hr, sr).numpy()
    diff = (extractor(hr).numpy() - extractor(sr).numpy()) / 12.75
    np.testing.assert_allclose(loss, np.mean(diff**2, axis=(1, 2, 3)), rtol=1e-4)
    assert loss.shape == (3,) and np.all(loss > 0)
    np.testing.assert_allclose(losses.ContentLoss(extractor)(hr, hr).numpy(), 0, atol=1e-9)


def test_adversarial_losses_are_bce():
    real = np.array([[0.9], [0.6]], "float32")
    fake = np.array([[0.2], [0.7]], "float32")
    np.testing.assert_allclose(losses.generator_adversarial_loss(fake).numpy(),
                               -np.log(fake[:, 0]), rtol=1e-5)
    np.testing.assert_allclose(losses.discriminator_loss(real, fake).numpy(),
                               -np.log(real[:, 0]) - np.log(1 - fake[:, 0]), rtol=1e-5)
    # Per-image targets (label noise) and a smoothed real target.
    t_real, t_fake = np.array([[0.9], [1.0]], "float32"), np.array([[0.1], [0.0]], "float32")
    expected = (-(t_real * np.log(real) + (1 - t_real) * np.log(1 - real))
                - (t_fake * np.log(fake) + (1 - t_fake) * np.log(1 - fake)))[:, 0]
    np.testing.assert_allclose(
        losses.discriminator_loss(real, fake, t_real, t_fake).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(losses.discriminator_accuracy(real, fake).numpy(), [1.0, 0.5])
