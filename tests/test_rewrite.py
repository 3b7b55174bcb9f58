"""sisr.rewrite.shuffle_last: the last pixel shuffle moved after the output conv."""

import keras
import numpy as np
import pytest

import sisr
from sisr.layers import PixelShuffle
from sisr.model import edsr, srresnet
from sisr.rewrite import shuffle_last


def _randomise(model, seed=0):
    """Trained-like weights: nonzero biases, PReLU slopes and batch-norm statistics."""
    rng = np.random.default_rng(seed)
    model.set_weights([(w + rng.normal(0, 0.1, w.shape)).astype(np.float32)
                       if w.ndim <= 3 else w for w in model.get_weights()])
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape))


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_srresnet_tail_is_rewritten_and_computes_the_same(scale, tmp_path):
    keras.utils.set_random_seed(scale)
    model = srresnet(scale, num_filters=8, num_res_blocks=1)
    _randomise(model)
    fast, copy_weights = shuffle_last(model)
    assert fast is not model and type(fast) is type(model) and fast.builder == "srresnet"
    r = 3 if scale == 3 else 2
    assert fast.get_layer("output_conv").kernel.shape == (5, 5, 8 * r * r, 3 * r * r)
    names = [layer.name for layer in fast.layers]
    assert set(names) == {layer.name for layer in model.layers}
    assert names.index("output_conv") < names.index(names[-3]) and \
        names[-3].startswith("upsample_x") and "shuffle" in names[-3]
    lr = np.random.default_rng(1).uniform(0, 255, (2, 7, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(fast(lr).numpy(), model(lr).numpy(), atol=2e-3)

    # Later changes of the model reach the copy through copy_weights.
    model.get_layer("output_conv").bias.assign([0.3, -0.2, 0.1])
    act = model.get_layer(names[names.index("output_conv") - 1])  # PReLU, now pre-shuffle
    assert isinstance(act, keras.layers.PReLU)
    act.alpha.assign(np.full(act.alpha.shape, 0.7, np.float32))
    copy_weights(fast, model)
    np.testing.assert_allclose(fast(lr).numpy(), model(lr).numpy(), atol=2e-3)

    path = str(tmp_path / "fast.keras")
    sisr.save_model(fast, path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(loaded(lr).numpy(), fast(lr).numpy())


def test_only_large_output_convs_after_a_shuffle_are_rewritten():
    model = edsr(2, num_filters=8, num_res_blocks=1)
    assert shuffle_last(model) == (model, None)  # a 3x3 output conv: nothing to gain

    def tail(middle, kernel=5, strides=1):
        x_in = keras.Input((6, 4, 3))
        x = keras.layers.Conv2D(16, 3, padding="same", name="pre")(x_in)
        x = PixelShuffle(2, name="shuffle")(x)
        if middle is not None:
            x = middle(x)
        x = keras.layers.Conv2D(3, kernel, strides=strides, padding="same", name="out")(x)
        return keras.Model(x_in, x)

    per_channel = tail(keras.layers.PReLU(shared_axes=[1, 2], name="act"))
    fast, _ = shuffle_last(per_channel)
    assert fast is not per_channel and fast.get_layer("out").kernel.shape == (3, 3, 16, 12)
    lr = np.random.default_rng(2).normal(size=(1, 6, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(fast(lr).numpy(), per_channel(lr).numpy(), atol=1e-5)
    relu = tail(keras.layers.Activation("relu", name="act"))
    np.testing.assert_allclose(shuffle_last(relu)[0](lr).numpy(), relu(lr).numpy(), atol=1e-5)
    for model in (tail(keras.layers.PReLU(name="act")),  # a slope per pixel
                  tail(None, kernel=3), tail(None, strides=2),
                  tail(keras.layers.BatchNormalization(name="bn"))):
        assert shuffle_last(model) == (model, None)


def test_resolve_uses_the_rewrite_and_follows_training(monkeypatch):
    import sisr.inference
    from sisr.precision import inference_copy

    model = srresnet(2, num_filters=8, num_res_blocks=1)
    _randomise(model, seed=3)
    lr = np.random.default_rng(4).integers(0, 256, (1, 8, 6, 3)).astype(np.uint8)
    expected = np.clip(np.round(model(lr.astype(np.float32)).numpy()), 0, 255)
    compiled, ran = sisr.inference.compiled_forward, []
    monkeypatch.setattr(sisr.inference, "compiled_forward",
                        lambda runner: ran.append(runner) or compiled(runner))
    assert np.abs(sisr.resolve(model, lr) - expected).max() <= 1
    # What ran is the rewritten copy: its output conv makes the 3 * 2 * 2 channels that
    # the last pixel shuffle, now after it, arranges (the model's makes 3, at HR size).
    [runner] = ran
    assert runner is not model and runner is inference_copy(model, "float32")
    assert model.get_layer("output_conv").kernel.shape[-1] == 3
    assert runner.get_layer("output_conv").kernel.shape[-1] == 12
    model.get_layer("output_conv").bias.assign([0.2, 0.2, 0.2])  # tanh shifts the output
    moved = np.clip(np.round(model(lr.astype(np.float32)).numpy()), 0, 255)
    assert np.abs(moved - expected).max() > 5
    assert np.abs(sisr.resolve(model, lr) - moved).max() <= 1
