"""resolve / resolve_single: compiled forward pass, clip + round, uint8, input checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import sisr
from sisr.inference import _forward_fn
from sisr.model import edsr


def affine_model(scale_factor=1.7, offset=-40.0):
    """A model whose outputs are easy to predict: y = a * x + b (no upsampling)."""
    x_in = keras.Input((None, None, 3))
    y = keras.layers.Rescaling(scale_factor, offset=offset)(x_in)
    return keras.Model(x_in, y)


def test_resolve_clips_rounds_and_casts():
    model = affine_model()
    lr = np.random.default_rng(1).integers(0, 256, (2, 5, 6, 3)).astype(np.uint8)
    expected = np.clip(np.round(lr.astype(np.float32) * 1.7 - 40.0), 0, 255).astype(np.uint8)
    out = sisr.resolve(model, lr)
    assert out.dtype == tf.uint8
    np.testing.assert_array_equal(out.numpy(), expected)
    np.testing.assert_array_equal(sisr.resolve_single(model, lr[0]).numpy(), expected[0])


def test_resolve_traces_once_for_all_sizes():
    model = edsr(2, num_filters=4, num_res_blocks=1)
    fn = _forward_fn(model)
    assert isinstance(fn, tf.types.experimental.PolymorphicFunction)
    for shape in [(1, 5, 7, 3), (3, 9, 4, 3), (1, 16, 16, 3)]:
        out = sisr.resolve(model, np.zeros(shape, np.uint8))
        assert tuple(out.shape) == (shape[0], shape[1] * 2, shape[2] * 2, 3)
    assert fn.experimental_get_tracing_count() == 1
    assert _forward_fn(model) is fn


def test_resolve_matches_eager_model():
    model = edsr(3, num_filters=4, num_res_blocks=1)
    lr = np.random.default_rng(2).integers(0, 256, (1, 6, 5, 3)).astype(np.uint8)
    eager = np.clip(np.round(model(lr.astype(np.float32)).numpy()), 0, 255)
    np.testing.assert_array_equal(sisr.resolve(model, lr).numpy(), eager.astype(np.uint8))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: sisr.resolve(m, np.zeros((1, 4, 4, 4))), r"lr_batch must be RGB.*\(1, 4, 4, 4\)"),
        (lambda m: sisr.resolve(m, np.zeros((4, 4, 3))), r"lr_batch must be RGB"),
        (lambda m: sisr.resolve_single(m, np.zeros((4, 4))), r"lr must be an RGB image"),
        (lambda m: sisr.resolve(m, np.zeros((1, 0, 4, 3))), r"lr_batch is empty"),
    ],
)
def test_resolve_rejects_bad_shapes(call, match):
    with pytest.raises(ValueError, match=match):
        call(affine_model())
