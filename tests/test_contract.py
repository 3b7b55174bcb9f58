"""The architecture contract: every registered network passes the same checks.

Parametrised over the registry (`sisr.model.MODELS`) with each spec's tiny arguments, so a
network added through `register()` gets every check without a line here: output shapes at
every scale, config / `.keras` / `.weights.h5` round trips, gradients to every weight,
tiled = whole-image upscaling, the bfloat16 copy, the tail rewrite, names and parameter
counts. Checks that only make sense for SR networks run on `generators()`.
"""

import fnmatch
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

import sisr
from sisr import upscale_image
from sisr.model import MODELS, generators, model_info, spec_of
from sisr.precision import mixed_copy
from sisr.rewrite import shuffle_last
from sisr.receptive_field import locality
from sisr.upscaling import NotTileableError

# (name, scale) of every tiny configuration: generators at each of their scales, models
# without a scale (the discriminator) once, with scale None.
ALL = [(name, scale) for name, spec in MODELS.items() for scale in (spec.scales or (None,))]
GENERATORS = [(name, scale) for name, scale in ALL if name in generators()]


def _id(value):
    return f"x{value}" if isinstance(value, int) else str(value)


def each(cases):
    return pytest.mark.parametrize("name,scale", cases, ids=[
        f"{name}-{_id(scale)}" for name, scale in cases])


@pytest.fixture(scope="module")
def built():
    """`built(name, scale)`: the tiny model, built once per module (seed 0). Tests must
    leave it as they found it (weights included)."""
    cache = {}

    def get(name, scale):
        if (name, scale) not in cache:
            keras.utils.set_random_seed(0)
            cache[name, scale] = MODELS[name].build_tiny(scale)
        return cache[name, scale]

    yield get
    cache.clear()
    keras.backend.clear_session()


def inputs(model, n=2, size=(7, 11), seed=0):
    """A float32 batch of random pixel values for `model`: `size` where its input takes any
    size (an LR image of odd size for generators), else its fixed input size."""
    _, h, w, c = model.input_shape
    h, w = h or size[0], w or size[1]
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w, c)).astype(np.float32)


def outputs(model, x):
    return np.asarray(model(x, training=False))


# ---------------------------------------------------------------------- outputs


@each(ALL)
def test_output_shape_dtype_and_finite(built, name, scale):
    model = built(name, scale)
    if not MODELS[name].generator:
        x = inputs(model)
        out = model(x)
        assert tuple(out.shape) == (2, *model.output_shape[1:])
        assert out.dtype == "float32" and np.isfinite(out).all()
        return
    for h, w in [(7, 11), (9, 9)]:
        out = model(inputs(model, 2, (h, w)))
        assert tuple(out.shape) == (2, scale * h, scale * w, 3)
        assert out.dtype == "float32"
        assert np.isfinite(out).all()


# ---------------------------------------------------------------- serialisation


@each(ALL)
def test_builder_record(built, name, scale):
    spec = MODELS[name]
    model = built(name, scale)
    assert spec_of(model) is spec
    info = model_info(model)
    assert info["builder"] == spec.name and info["scale"] == scale
    assert info["arguments"] == {**info["arguments"], **spec.tiny}
    assert ("scale" in info["arguments"]) == bool(spec.scales)


@each(ALL)
def test_config_round_trip(built, name, scale):
    model = built(name, scale)
    x = inputs(model)
    config = model.get_config()
    clone = model.__class__.from_config(config)
    assert type(clone) is type(model)
    assert model_info(clone) == model_info(model)
    assert clone.get_config() == config
    # Keras' generic functional loader reads the same config (without the builder record).
    for copy in (clone, keras.Model.from_config(config)):
        assert [layer.name for layer in copy.layers] == [layer.name for layer in model.layers]
        copy.set_weights(model.get_weights())
        np.testing.assert_array_equal(outputs(copy, x), outputs(model, x))


@each(ALL)
def test_keras_file_round_trip_in_safe_mode(built, name, scale, tmp_path):
    model = built(name, scale)
    x = inputs(model)
    path = str(tmp_path / f"{name}.keras")
    sisr.save_model(model, path)
    for loaded in (sisr.load_model(path), keras.saving.load_model(path, safe_mode=True)):
        assert type(loaded) is type(model)
        assert model_info(loaded) == model_info(model)
        assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
        np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))
        assert loaded.count_params() == model.count_params() > 0


@each(ALL)
def test_weights_file_round_trip(built, name, scale, tmp_path):
    model = built(name, scale)
    x = inputs(model)
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    keras.utils.set_random_seed(1)
    fresh = MODELS[name].build_tiny(scale)
    assert not np.array_equal(outputs(fresh, x), outputs(model, x))  # another init
    fresh.load_weights(path)
    np.testing.assert_array_equal(outputs(fresh, x), outputs(model, x))


# -------------------------------------------------------------------- training


@each(ALL)
def test_gradients_reach_every_trainable_weight(built, name, scale):
    model = built(name, scale)
    x = inputs(model)
    before = model.get_weights()  # training=True moves batch-norm statistics
    try:
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            high = 255.0 if MODELS[name].generator else 1.0
            target = np.random.default_rng(1).uniform(0, high, out.shape).astype(np.float32)
            loss = tf.reduce_mean(tf.abs(out - target))
        grads = tape.gradient(loss, model.trainable_variables)
    finally:
        model.set_weights(before)
    assert len(grads) == len(model.trainable_variables) > 0
    for variable, grad in zip(model.trainable_variables, grads):
        assert grad is not None, variable.path
        grad = np.asarray(grad)
        assert np.isfinite(grad).all(), variable.path
        assert np.abs(grad).sum() > 0, variable.path


# ------------------------------------------------------------------- inference


@each(GENERATORS)
def test_tiled_upscaling_equals_whole_image(built, name, scale, caplog):
    model = built(name, scale)
    image = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    if not MODELS[name].local:
        # Never silently wrong tiles: asked for tiles, it refuses; by default, whole images.
        with pytest.raises(NotTileableError, match="registered as not local"):
            upscale_image(model, image, tile=12)
        np.testing.assert_array_equal(upscale_image(model, image),
                                      np.asarray(sisr.resolve(model, image[None]))[0])
        return
    # A spec declared local must be: its layers are read, not its word taken.
    radius, reason = locality(model)
    assert radius is not None, f"{name} is registered as local, but {reason}"
    # Tiles of 12 with the margins of the tiny models' receptive fields (4-12 LR pixels)
    # are windows smaller than the image, cut at its borders.
    whole = upscale_image(model, image)
    np.testing.assert_array_equal(whole, np.asarray(sisr.resolve(model, image[None]))[0])
    tiles = []
    with caplog.at_level(logging.WARNING):
        # overlap=None: the margin is the model's receptive field, read from its layers;
        # sisr warns when it cannot read it and guesses.
        tiled = upscale_image(model, image, tile=12, on_tile=lambda: tiles.append(1))
    assert not [r for r in caplog.records
                if r.name.split(".")[0] == "sisr" and r.levelno >= logging.WARNING], caplog.text
    assert len(tiles) == 4 * 4
    assert tiled.shape == whole.shape == (40 * scale, 48 * scale, 3)
    np.testing.assert_array_equal(tiled, whole)
    # Without margins the tile borders show: the tiles really are run separately.
    seamy = upscale_image(model, image, tile=12, overlap=0)
    assert not np.array_equal(seamy, whole)


# Mean |bfloat16 - float32| of the uint8 outputs of the tiny random models, in grey
# levels: measured 0.006-0.07 (largest: WDSR, SRResNet), every pixel within 1 level. The
# bounds leave a wide margin for other CPUs and seeds, yet a layer that should stay float32
# but runs in bfloat16 at the input (8 significant bits of a pixel) breaks them.
BF16_MEAN_LEVELS = 0.5
BF16_MAX_LEVELS = 4


@each(GENERATORS)
def test_bfloat16_copy(built, name, scale):
    spec = MODELS[name]
    model = built(name, scale)
    x = inputs(model)
    exact = np.asarray(sisr.resolve(model, x)).astype(int)
    fast = np.asarray(sisr.resolve(model, x, precision="bfloat16")).astype(int)
    assert fast.shape == exact.shape
    diff = np.abs(fast - exact)
    assert diff.mean() < BF16_MEAN_LEVELS and diff.max() <= BF16_MAX_LEVELS, \
        (diff.mean(), diff.max())

    copy = mixed_copy(model)
    assert [layer.name for layer in copy.layers] == [layer.name for layer in model.layers]
    for layer in copy.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        keep = any(fnmatch.fnmatchcase(layer.name, p) for p in spec.float32_layers)
        assert layer.compute_dtype == ("float32" if keep else "bfloat16"), layer.name
        assert layer.variable_dtype == "float32", layer.name
    assert copy(x).dtype == "float32"


@pytest.mark.parametrize("name", list(MODELS))
def test_every_float32_pattern_names_a_layer(built, name):
    # A pattern that matches no layer at any scale is a typo: that layer runs in bfloat16.
    spec = MODELS[name]
    names = {layer.name for scale in (spec.scales or (None,))
             for layer in built(name, scale).layers}
    for pattern in spec.float32_layers:
        assert fnmatch.filter(names, pattern), f"{name}: {pattern!r} matches no layer"


# Max |rewritten - model| on the 0..255 scale: measured <= 6e-5 (float32 sums in another
# order); a wrong kernel rearrangement is off by whole grey levels.
REWRITE_ATOL = 2e-3


@each(ALL)
def test_shuffle_last_is_exact_or_a_no_op(built, name, scale):
    model = built(name, scale)
    rewritten, copy_weights = shuffle_last(model)
    if rewritten is model:
        assert copy_weights is None
        return
    assert callable(copy_weights)
    assert type(rewritten) is type(model) and model_info(rewritten) == model_info(model)
    assert {layer.name for layer in rewritten.layers} == {layer.name for layer in model.layers}
    x = inputs(model)
    np.testing.assert_allclose(outputs(rewritten, x), outputs(model, x), atol=REWRITE_ATOL)


# ----------------------------------------------------------------------- naming


@each(ALL)
def test_layers_and_weights_are_named(built, name, scale):
    model = built(name, scale)
    names = [layer.name for layer in model.layers]
    assert len(set(names)) == len(names)
    paths = [variable.path for variable in model.weights]
    assert len(set(paths)) == len(paths)
    # Keras names an unnamed layer after its class and a session counter ("conv2d",
    # "conv2d_1"): two builds in one session give the same names only if the builder names
    # every layer (house rule), which weight transfers by name and the port rely on.
    again = [[layer.name for layer in MODELS[name].build_tiny(scale).layers] for _ in "ab"]
    assert again == [names, names]
