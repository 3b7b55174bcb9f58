"""sisr.imresize: MATLAB-compatible bicubic resize."""

import numpy as np
import pytest

from reference_data import metrics_reference
from sisr.imresize import imresize, output_size


def _reference():
    """The arrays of tests/data/metrics_reference.npz (BasicSR's MATLAB imresize)."""
    return metrics_reference()[0]


@pytest.mark.parametrize("scale", [2, 4])
def test_downscale_matches_matlab_reference(scale):
    ref = _reference()
    hr = ref["hr_u8"]
    lr_float = imresize(hr / 255.0, 1 / scale)
    assert lr_float.shape == ref[f"lr_x{scale}_f32"].shape
    # The reference is float32: agree far below one grey level.
    assert np.abs(lr_float - ref[f"lr_x{scale}_f32"]).max() * 255 < 1e-3
    lr_u8 = imresize(hr, 1 / scale)
    assert lr_u8.dtype == np.uint8
    assert np.mean(lr_u8 == ref[f"lr_x{scale}_u8"]) >= 0.999
    assert np.abs(lr_u8.astype(int) - ref[f"lr_x{scale}_u8"]).max() <= 1


@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_matches_matlab_reference(scale):
    ref = _reference()
    lr = ref[f"lr_x{scale}_u8"]
    up = imresize(lr / 255.0, scale)
    assert np.abs(up - ref[f"up_x{scale}_f32"]).max() * 255 < 1e-3
    assert np.mean(imresize(lr, scale) == ref[f"sr_bicubic_x{scale}_u8"]) >= 0.999


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3])
def test_linear_ramp_is_reproduced_at_matlab_sample_positions(scale):
    # The cubic kernel (a = -0.5) reproduces linear functions exactly, so away from the
    # mirrored borders the output is the ramp sampled at u = x/scale + 0.5(1 - 1/scale).
    width = 96
    ramp = np.tile(np.arange(1, width + 1, dtype=np.float64), (8, 1))
    out = imresize(ramp, scale)
    x = np.arange(1, out.shape[1] + 1)
    expected = x / scale + 0.5 * (1 - 1 / scale)
    margin = int(np.ceil(3 / min(scale, 1))) + 1
    interior = slice(margin, out.shape[1] - margin)
    np.testing.assert_allclose(out[0, interior], expected[interior], atol=1e-9)


def test_output_sizes_follow_matlab_ceil():
    image = np.zeros((99, 101, 3), np.uint8)
    assert imresize(image, 1 / 3).shape == (33, 34, 3)
    assert output_size((99, 101), 1 / 3) == (33, 34)
    assert imresize(image, output_shape=(10, 20)).shape == (10, 20, 3)
    assert imresize(image, 2).shape == (198, 202, 3)


def test_constant_image_and_dtypes():
    flat = np.full((30, 40, 3), 77, np.uint8)
    out = imresize(flat, 1 / 3)
    assert out.dtype == np.uint8 and np.all(out == 77)
    out = imresize(flat.astype(np.float32) / 255, 0.5)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, 77 / 255, atol=1e-12)


def test_uint8_output_is_rounded_and_clipped():
    # A sharp edge overshoots with the bicubic kernel: uint8 output must clip, not wrap.
    edge = np.zeros((16, 16), np.uint8)
    edge[:, 8:] = 255
    as_float = imresize(edge.astype(np.float64), 2)
    assert as_float.max() > 255 and as_float.min() < 0
    as_uint8 = imresize(edge, 2)
    np.testing.assert_array_equal(as_uint8, np.floor(np.clip(as_float, 0, 255) + 0.5))


def test_grayscale_equals_each_channel_and_axes_are_separable():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (24, 36, 3))
    out = imresize(image, output_shape=(12, 27))
    for c in range(3):
        np.testing.assert_allclose(imresize(image[:, :, c], output_shape=(12, 27)),
                                   out[:, :, c], atol=1e-12)
    # Resizing one axis at a time gives the same result (the passes are separable).
    rows = imresize(image, output_shape=(12, 36))
    np.testing.assert_allclose(imresize(rows, output_shape=(12, 27)), out, atol=1e-12)


def test_antialias_widens_the_kernel_on_downscale():
    rng = np.random.default_rng(1)
    noise = rng.uniform(0, 1, (64, 64))
    smooth = imresize(noise, 0.25)
    aliased = imresize(noise, 0.25, antialias=False)
    assert smooth.std() < 0.6 * aliased.std()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"scale": 0.5, "output_shape": (2, 2)}, "exactly one"),
        ({}, "exactly one"),
        ({"scale": -1}, "positive"),
        ({"output_shape": (0, 3)}, "output_shape"),
    ],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(ValueError, match=error):
        imresize(np.zeros((8, 8), np.uint8), **kwargs)


def test_bad_images():
    with pytest.raises(ValueError, match="HxW"):
        imresize(np.zeros((2, 8, 8, 3), np.uint8), 0.5)
    with pytest.raises(TypeError, match="int16"):
        imresize(np.zeros((8, 8), np.int16), 0.5)
