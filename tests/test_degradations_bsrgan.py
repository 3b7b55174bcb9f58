"""The `bsrgan` preset's steps against BSRGAN's own code (cszn/BSRGAN utils/utils_blindsr.py),
on the draws recorded in tests/data/degradations/bsrgan.npz (made by
tests/data/make_bsrgan_fixtures.py): blur kernels and the blur step, the two downsampling
branches, the three Gaussian noises and JPEG."""

import os

import numpy as np
import pytest
import tensorflow as tf

from sisr.data.degradations import kernels, models, ops

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "degradations", "bsrgan.npz")
# OpenCV's interpolation codes as BSRGAN draws them -> sisr's RESIZE_MODES index
CV2_MODES = {1: 1, 2: 2, 3: 0}  # INTER_LINEAR, INTER_CUBIC, INTER_AREA


@pytest.fixture(scope="module")
def ref():
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def _psnr(a, b):
    mse = np.mean((np.float64(a) - np.float64(b)) ** 2)
    return 10 * np.log10(1.0 / mse) if mse else float("inf")


def _f32(*values):
    return [tf.constant(v, tf.float32) for v in values]


def _image(ref):
    return tf.constant(ref["image"], tf.float32) / 255.0


def test_kernels_match_anisotropic_gaussian_and_fspecial(ref):
    for (k, theta, l1, l2), expected in zip(ref["aniso_params"], ref["aniso_kernels"]):
        got = kernels.kernel(25, tf.constant(0), tf.constant(int(k)), *_f32(
            np.sqrt(l1), np.sqrt(l2), theta, 1.0, 0.0))
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, err_msg=f"aniso {k}")
    for (k, sigma), expected in zip(ref["iso_params"], ref["iso_kernels"]):
        got = kernels.kernel(25, tf.constant(0), tf.constant(int(k)), *_f32(
            sigma, sigma, 0.0, 1.0, 0.0))
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, err_msg=f"iso {k}")


def test_blur_step_matches_add_blur_on_its_draws(ref):
    image = _image(ref)[:ref["blur_outputs"].shape[1], :ref["blur_outputs"].shape[2]]
    kinds = set()
    for draws, sf, expected in zip(ref["blur_draws"], ref["blur_factors"],
                                   ref["blur_outputs"]):
        # add_blur's draws in call order: the branch (aniso if < 0.5), then anisotropic:
        # l1, l2, randint(2, 11), theta; isotropic: randint(2, 11), sigma.
        aniso = bool(draws[0] < 0.5)
        if aniso:
            u1, u2, k, u3, u4 = draws[1], draws[2], 2 * int(draws[3]) + 3, draws[4], 0.0
        else:
            u1, u2, u3, k, u4 = 0.0, 0.0, 0.0, 2 * int(draws[1]) + 3, draws[2]
        kinds.add((aniso, int(sf)))
        kernel = models.bsrgan_blur_kernel(25, float(sf), tf.constant(aniso), tf.constant(k),
                                           *(tf.constant(u, tf.float32)
                                             for u in (u1, u2, u3, u4)))
        got = ops.filter2d(image, kernel).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"{draws}")
    assert kinds == {(True, 4), (False, 4), (True, 2), (False, 2)}


def test_random_interpolation_downsampling_matches_cv2_resize(ref):
    # Every mode as OpenCV's (bicubic with a = -0.75): the bound 80 dB allows float
    # rounding only (TensorFlow's own bicubic, a = -0.5, is ~45 dB from it here).
    image = _image(ref)
    for i, (factor, mode) in enumerate(ref["resize_params"]):
        size = int(1 / factor * 64)
        got = tf.clip_by_value(ops.resize(image, size, size, tf.constant(CV2_MODES[mode])),
                               0.0, 1.0).numpy()
        expected = ref[f"resized_{i}"]
        assert got.shape == expected.shape
        assert _psnr(got, expected) > 80, (factor, mode, _psnr(got, expected))


def test_blur_and_nearest_downsampling_matches_shift_pixel(ref):
    image = _image(ref)
    for i, ((sf, sigma), official) in enumerate(zip(ref["shifted_params"],
                                                    ref["shifted_kernels"])):
        kernel = kernels.shifted_gaussian(25, tf.constant(sigma, tf.float32),
                                          tf.constant((sf - 1) / 2, tf.float32)).numpy()
        # BSRGAN convolves (ndimage.convolve), sisr correlates: the same kernel flipped.
        np.testing.assert_allclose(kernel, official[::-1, ::-1], atol=1e-5,
                                   err_msg=f"sf {sf} sigma {sigma}")
        step = int(sf)
        got = tf.clip_by_value(ops.filter2d(image, kernel)[::step, ::step], 0.0, 1.0)
        np.testing.assert_allclose(got.numpy(), ref[f"nearest_{i}"], atol=1e-5)


def _noise(ref, kind, **draws):
    flat = ref[f"noise_{kind}_output"] * 0 + 0.5
    h, w = flat.shape[:2]
    inputs = {"colour_z": np.zeros([h, w, 3]), "gray_z": np.zeros([h, w, 1]),
              "d": np.ones(3), "a": np.eye(3), "correlated_z": np.zeros([h, w, 3]), **draws}
    return models.bsrgan_noise(
        tf.constant(flat, tf.float32), tf.constant(int(ref[f"noise_{kind}_level"])),
        tf.constant(ref[f"noise_{kind}_kind"], tf.float32),
        *(tf.constant(inputs[key], tf.float32)
          for key in ("colour_z", "gray_z", "d", "a", "correlated_z")), 25 / 255.0).numpy()


def test_colour_and_grey_noise_equal_add_gaussian_noise_on_the_same_draws(ref):
    assert ref["noise_colour_kind"] > 0.6 and ref["noise_gray_kind"] < 0.4
    got = _noise(ref, "colour", colour_z=ref["noise_colour_z"])
    np.testing.assert_allclose(got, ref["noise_colour_output"], atol=1e-6)
    got = _noise(ref, "gray", gray_z=ref["noise_gray_z"])
    np.testing.assert_allclose(got, ref["noise_gray_output"], atol=1e-6)
    assert np.array_equal(got[..., 0], got[..., 2])


def test_correlated_noise_has_add_gaussian_noises_covariance(ref):
    # The samples cannot be equal (NumPy factors the covariance by an SVD whose signs are
    # its own), so compare covariances: sisr's from the same uniform draws d and a equals
    # the one NumPy samples with (the covariance BSRGAN passes, made positive as NumPy's
    # SVD sampling does) to float precision; and the sample covariances of BSRGAN's and
    # sisr's noise (4096 pixels, standard error ~2.2% of the variance) agree within 10% of
    # the largest variance.
    assert 0.4 <= ref["noise_correlated_kind"] <= 0.6
    passed = ref["noise_correlated_cov"]
    values, vectors = np.linalg.eigh(passed)
    sampled = vectors @ np.diag(np.abs(values)) @ vectors.T
    root = models.correlated_noise_root(tf.constant(ref["noise_correlated_d"], tf.float32),
                                        tf.constant(ref["noise_correlated_a"], tf.float32),
                                        25 / 255.0).numpy()
    np.testing.assert_allclose(root @ root.T, sampled, atol=1e-6 * np.abs(sampled).max())

    official = (ref["noise_correlated_output"] - 0.5).reshape(-1, 3)
    got = _noise(ref, "correlated", d=ref["noise_correlated_d"], a=ref["noise_correlated_a"],
                 correlated_z=ref["noise_correlated_z"]) - 0.5
    scale = np.abs(sampled).max()
    assert np.abs(np.cov(official.T) - sampled).max() < 0.1 * scale
    assert np.abs(np.cov(got.reshape(-1, 3).T) - np.cov(official.T)).max() < 0.1 * scale


def test_jpeg_step_within_bounds_of_add_jpeg_noise(ref):
    # libjpeg in both; OpenCV's and TensorFlow's decoders differ a little: 43.6 dB and at
    # most 3 levels apart here, where another quality (30 to 70) is 7 to 11 levels apart.
    got = np.round(ops.jpeg(_image(ref), int(ref["jpeg_quality"])).numpy() * 255.0)
    assert _psnr(got / 255.0, ref["jpeg"] / 255.0) > 43
    assert np.abs(got - ref["jpeg"]).max() <= 4
    assert 30 <= ref["jpeg_quality"] <= 95
