"""PSNR / SSIM against the official reference values (BasicSR, EDSR) and as Keras metrics."""

import math

import keras
import numpy as np
import pytest

from reference_data import metrics_reference
from sisr import metrics


@pytest.fixture
def reference():
    """(arrays, values) of tests/data/metrics_reference.npz / .json (BasicSR, EDSR code)."""
    return metrics_reference()


@pytest.mark.parametrize("scale", [2, 4])
def test_psnr_reproduces_basicsr_and_edsr(reference, scale):
    arrays, values = reference
    hr, sr = arrays["hr_u8"], arrays[f"sr_bicubic_x{scale}_u8"]
    cases = {
        f"basicsr_psnr_rgb_x{scale}": metrics.psnr(sr, hr, shave=scale),
        f"basicsr_psnr_rgb_x{scale}_crop0": metrics.psnr(sr, hr),
        f"basicsr_psnr_y_x{scale}": metrics.psnr(sr, hr, shave=scale, y_only=True),
        f"edsr_calc_psnr_benchmark_y_x{scale}": metrics.psnr(
            sr, hr, shave=metrics.benchmark_shave(scale), y_only=True),
        f"edsr_calc_psnr_div2k_rgb_x{scale}": metrics.psnr(
            sr, hr, shave=metrics.div2k_shave(scale)),
    }
    for key, got in cases.items():
        assert got == pytest.approx(values[key], abs=1e-4), key
    # Feeding RGB where BGR is expected gives the documented wrong value; we must not.
    wrong = values[f"basicsr_psnr_y_x{scale}_rgb_passed_as_bgr_PITFALL"]
    assert abs(cases[f"basicsr_psnr_y_x{scale}"] - wrong) > 1e-2


@pytest.mark.parametrize("scale", [2, 4])
def test_ssim_reproduces_basicsr(reference, scale):
    arrays, values = reference
    hr, sr = arrays["hr_u8"], arrays[f"sr_bicubic_x{scale}_u8"]
    assert metrics.ssim(sr, hr, shave=scale) == pytest.approx(
        values[f"basicsr_ssim_rgb_x{scale}"], abs=1e-5)
    assert metrics.ssim(sr, hr, shave=scale, y_only=True) == pytest.approx(
        values[f"basicsr_ssim_y_x{scale}"], abs=1e-5)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("y_only", [False, True])
def test_tensor_versions_match_reference(reference, scale, y_only):
    arrays, values = reference
    hr, sr = arrays["hr_u8"][None], arrays[f"sr_bicubic_x{scale}_u8"][None]
    space = "y" if y_only else "rgb"
    got_psnr = metrics.psnr_tf(hr, sr, shave=scale, y_only=y_only)
    got_ssim = metrics.ssim_tf(hr, sr, shave=scale, y_only=y_only)
    assert got_psnr.shape == (1,) and got_ssim.shape == (1,)
    assert float(got_psnr[0]) == pytest.approx(values[f"basicsr_psnr_{space}_x{scale}"], abs=1e-4)
    assert float(got_ssim[0]) == pytest.approx(values[f"basicsr_ssim_{space}_x{scale}"], abs=2e-5)


def test_rgb_to_y_is_matlab_studio_swing():
    image = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], np.uint8)
    np.testing.assert_allclose(metrics.rgb_to_y(image)[0], [16.0, 235.0, 16.0 + 65.481], atol=1e-9)


def test_identical_and_known_mse():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert metrics.psnr(a, a) == math.inf
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    b = a.copy()
    b[0, 0, 0] ^= 1  # flipping the lowest bit changes one value by exactly 1
    expected = 10 * math.log10(255.0**2 / (1.0 / a.size))
    assert metrics.psnr(a, b) == pytest.approx(expected, abs=1e-9)
    # The changed pixel lies in the shaved border: scores as identical.
    assert metrics.psnr(a, b, shave=1) == math.inf


def test_ssim_matches_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (30, 33, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    expected = skm.structural_similarity(
        a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255)
    assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-9)


def test_grayscale_images_are_accepted():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    b = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    assert metrics.psnr(a, b) == pytest.approx(metrics.psnr(a[..., None], b[..., None]))
    assert 0 < metrics.psnr(a, b) < 20


def test_bad_input_is_refused_clearly():
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        metrics.psnr(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(a, a[:8])
    with pytest.raises(ValueError, match="too small"):
        metrics.psnr(a, a, shave=8)
    with pytest.raises(ValueError, match="too small"):
        metrics.ssim(a, a, shave=3)  # 10x10 left, less than the 11x11 window
    with pytest.raises(ValueError, match="shave"):
        metrics.psnr(a, a, shave=-1)
    with pytest.raises(ValueError, match="HxWx3"):
        metrics.psnr(a[..., :2], a[..., :2], y_only=True)


def _batch(seed, n=3, size=24):
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    noise = rng.normal(0, 12, hr.shape)
    return hr, np.clip(hr + noise, 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("y_only", [False, True])
def test_keras_metrics_average_per_image_scores(y_only):
    hr, sr = _batch(3)
    shave = 2
    # Unrounded, out-of-range predictions: the metric quantises them like resolve() does.
    pred = sr.astype(np.float32) + 0.3
    pred[sr == 255] += 40.0
    psnr_metric = metrics.PSNR(shave=shave, y_only=y_only)
    ssim_metric = metrics.SSIM(shave=shave, y_only=y_only)
    for m in (psnr_metric, ssim_metric):
        m.update_state(hr[:2].astype(np.float32), pred[:2])
        m.update_state(hr[2:].astype(np.float32), pred[2:])
    expected_psnr = np.mean([metrics.psnr(s, h, shave, y_only) for h, s in zip(hr, sr)])
    expected_ssim = np.mean([metrics.ssim(s, h, shave, y_only) for h, s in zip(hr, sr)])
    assert float(psnr_metric.result()) == pytest.approx(expected_psnr, abs=1e-3)
    assert float(ssim_metric.result()) == pytest.approx(expected_ssim, abs=1e-4)
    psnr_metric.reset_state()
    assert float(psnr_metric.result()) == 0.0


def test_keras_metric_config_round_trip_and_direction():
    m = metrics.PSNR(shave=4, y_only=True, name="val_psnr_y")
    clone = keras.metrics.deserialize(keras.metrics.serialize(m))
    assert isinstance(clone, metrics.PSNR)
    assert (clone.shave, clone.y_only, clone.name) == (4, True, "val_psnr_y")
    assert clone._direction == "up"
    with pytest.raises(ValueError, match="shave"):
        metrics.SSIM(shave=-2)


def test_keras_metric_in_compiled_model():
    # An identity "model" scored against HR + 1 everywhere: PSNR = 20 log10(255 / 1).
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    model.compile(loss="mae", metrics=[metrics.PSNR(shave=1), metrics.SSIM()])
    hr, _ = _batch(4, n=4, size=16)
    hr = np.minimum(hr, 254)
    results = model.evaluate(hr.astype(np.float32), hr.astype(np.float32) + 1.0,
                             batch_size=2, verbose=0, return_dict=True)
    assert results["psnr"] == pytest.approx(20 * math.log10(255.0), abs=1e-3)
    assert 0.99 < results["ssim"] < 1.0
