"""Model builders: shapes, serialisation, gradients, parameter counts, naming, bad input."""

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import sisr
from sisr.model import MODELS, build, discriminator, edsr, get_spec, srresnet, wdsr_a, wdsr_b
from sisr.saving import ModelError

# Tiny configurations: the same code paths as the published sizes, fast on a CPU.
TINY = {
    "edsr": dict(num_filters=8, num_res_blocks=2, res_block_scaling=0.1),
    "wdsr_a": dict(num_filters=8, num_res_blocks=2, res_block_expansion=2, res_block_scaling=0.5),
    "wdsr_b": dict(num_filters=8, num_res_blocks=2, res_block_expansion=3),
    "srresnet": dict(num_filters=8, num_res_blocks=2),
}
GENERATORS = sorted(TINY)
GEN_SCALES = [(name, s) for name in GENERATORS for s in MODELS[name].scales]


def tiny(name, scale=2):
    return build(name, scale=scale, **TINY[name])


def lr_batch(n=2, h=7, w=11, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3)).astype(np.float32)


def test_registry_lists_every_builder():
    assert set(MODELS) == {"edsr", "wdsr_a", "wdsr_b", "srresnet", "discriminator"}
    assert get_spec("wdsr-b").builder is wdsr_b
    with pytest.raises(ValueError, match="unknown model 'rcan'.*edsr"):
        get_spec("rcan")
    with pytest.raises(ValueError, match="num_blocks"):
        build("edsr", scale=2, num_blocks=3)


def test_import_paths():
    import importlib

    module = importlib.import_module("sisr.model.wdsr_b")
    assert module.wdsr_b is wdsr_b
    assert callable(edsr) and callable(wdsr_a) and callable(srresnet) and callable(discriminator)


@pytest.mark.parametrize("name,scale", GEN_SCALES)
@pytest.mark.parametrize("h,w", [(7, 11), (9, 9)])
def test_output_shape_every_scale(name, scale, h, w):
    model = tiny(name, scale)
    out = model(lr_batch(2, h, w))
    assert tuple(out.shape) == (2, h * scale, w * scale, 3)
    assert out.dtype == "float32"


@pytest.mark.parametrize("name", GENERATORS)
def test_config_round_trip(name):
    model = tiny(name)
    clone = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    clone.set_weights(model.get_weights())
    x = lr_batch()
    np.testing.assert_array_equal(clone(x).numpy(), model(x).numpy())


@pytest.mark.parametrize("name", GENERATORS + ["discriminator"])
def test_keras_save_load_safe_mode(name, tmp_path):
    if name == "discriminator":
        model, x = discriminator(hr_size=32, num_filters=4), lr_batch(2, 32, 32)
    else:
        model, x = tiny(name, 3), lr_batch()
    path = str(tmp_path / f"{name}.keras")
    sisr.save_model(model, path)
    # Keras' own loader, default safe mode, no custom_objects: the layers are registered.
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    loaded = sisr.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


@pytest.mark.parametrize("name", GENERATORS)
def test_weights_h5_round_trip(name, tmp_path):
    model, other = tiny(name), tiny(name)
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    other.load_weights(path)
    x = lr_batch()
    np.testing.assert_array_equal(other(x).numpy(), model(x).numpy())


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


@pytest.mark.parametrize("name", GENERATORS + ["discriminator"])
def test_gradients_reach_every_weight(name):
    if name == "discriminator":
        model, x = discriminator(hr_size=32, num_filters=4), lr_batch(2, 32, 32)
    else:
        model, x = tiny(name, 4), lr_batch()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(grads) == len(model.trainable_variables) > 0
    for var, grad in zip(model.trainable_variables, grads):
        assert grad is not None, var.path
        assert float(tf.reduce_sum(tf.abs(grad))) > 0, var.path


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
        assert model.get_layer("head_conv").compute_dtype == "bfloat16"
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
