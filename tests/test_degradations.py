"""On-the-fly degradations: kernels and operations against BasicSR's code (fixtures in
tests/data/degradations, made by tests/data/make_degradation_fixtures.py), presets,
determinism and the tf.data stage."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from sisr.data import demo
from sisr.data.degradations import (PRESET_NAMES, DegradationError, degradation, kernels,
                                    load_preset, ops)

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "degradations", "basicsr.npz")


@pytest.fixture(scope="module")
def ref():
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def _psnr(a, b):
    mse = np.mean((np.float64(a) - np.float64(b)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse) if mse else float("inf")


def test_kernels_match_basicsr(ref):
    for expected, (shape, k, sx, sy, theta, beta, cutoff) in zip(ref["kernels"],
                                                                 ref["kernel_params"]):
        got = kernels.kernel(21, tf.constant(int(shape)), tf.constant(int(k)),
                             tf.constant(sx, tf.float32), tf.constant(sy, tf.float32),
                             tf.constant(theta, tf.float32), tf.constant(beta, tf.float32),
                             tf.constant(cutoff, tf.float32))
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5,
                                   err_msg=f"kernel type {shape} size {k}")


def test_jpeg_is_real_jpeg_within_psnr_bound_of_opencv(ref):
    # Same libjpeg quantisation tables; decoders' IDCT and upsampling may differ a little:
    # bound 44 dB (a JPEG approximation or a wrong quality falls far below it).
    image = tf.constant(ref["image"], tf.float32) / 255.0
    for quality, expected in zip(ref["jpeg_qualities"], ref["jpeg"]):
        got = np.round(ops.jpeg(image, int(quality)).numpy() * 255.0)
        assert _psnr(got, expected) > 44, quality
    assert _psnr(got, ref["image"]) < 60  # it did compress


def test_resize_within_psnr_bound_of_opencv(ref):
    # Every mode as OpenCV's (bicubic with its a = -0.75, not TensorFlow's -0.5), no
    # antialiasing: 80 dB allows float rounding only.
    image = tf.constant(ref["image"], tf.float32) / 255.0
    for mode, expected in enumerate(ref["resized"]):
        got = ops.resize(image, 16, 16, tf.constant(mode)).numpy()
        assert _psnr(got * 255, expected * 255) > 80, ops.RESIZE_MODES[mode]


def test_usm_sharpen_matches_basicsr(ref):
    image = tf.constant(ref["image"], tf.float32) / 255.0
    np.testing.assert_allclose(ops.usm_sharpen(image).numpy(), ref["usm"], atol=2e-4)


def test_gaussian_noise_gray_is_the_same_in_every_channel():
    image = tf.fill([8, 8, 3], 0.5)
    noisy = ops.gaussian_noise(image, tf.constant([1, 2]), 20.0, tf.constant(True)).numpy()
    np.testing.assert_array_equal(noisy[..., 0], noisy[..., 2])
    assert 10 < np.std(noisy - 0.5) * 255 < 30
    colour = ops.gaussian_noise(image, tf.constant([1, 2]), 20.0, tf.constant(False)).numpy()
    assert not np.array_equal(colour[..., 0], colour[..., 1])


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_are_deterministic_per_seed(name):
    degrade = tf.function(degradation(name, 4))
    hr = tf.random.stateless_uniform([64, 64, 3], [0, 1])
    lr1, target = degrade(hr, tf.constant([3, 4]))
    lr2, _ = degrade(hr, tf.constant([3, 4]))
    lr3, _ = degrade(hr, tf.constant([5, 4]))
    assert lr1.shape == (16, 16, 3) and target.shape == (64, 64, 3)
    np.testing.assert_array_equal(lr1.numpy(), lr2.numpy())
    assert not np.array_equal(lr1.numpy(), lr3.numpy())


def test_realesrgan_target_is_sharpened_and_simple_target_is_hr():
    hr = tf.random.stateless_uniform([64, 64, 3], [0, 1])
    _, target = degradation("realesrgan", 4)(hr, tf.constant([1, 1]))
    assert not np.allclose(target.numpy(), hr.numpy())
    _, target = degradation("simple", 4)(hr, tf.constant([1, 1]))
    np.testing.assert_array_equal(target.numpy(), hr.numpy())


def test_bad_preset_names_the_key(tmp_path):
    values = load_preset("realesrgan")
    values["noise_range2"] = [5]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(values))
    with pytest.raises(DegradationError, match=r"mine.json: key `noise_range2`"):
        load_preset(str(path))
    values.pop("noise_range2")
    path.write_text(json.dumps(values))
    with pytest.raises(DegradationError, match=r"missing key `noise_range2`"):
        load_preset(str(path))
    with pytest.raises(DegradationError, match="unknown degradation 'nope'"):
        load_preset("nope")


def test_pipeline_stream_is_resumable():
    data = demo("train", 4)
    full = data.train(batch_size=2, lr_patch=16, seed=5, degradation="simple")
    batches = [(lr.numpy(), hr.numpy()) for lr, hr in full.take(3)]
    assert batches[0][0].shape == (2, 16, 16, 3) and batches[0][1].shape == (2, 64, 64, 3)
    assert batches[0][0].dtype == np.uint8
    resumed = data.train(batch_size=2, lr_patch=16, seed=5, degradation="simple",
                         skip_batches=2)
    lr, hr = next(iter(resumed))
    np.testing.assert_array_equal(lr.numpy(), batches[2][0])
    np.testing.assert_array_equal(hr.numpy(), batches[2][1])


def _train(args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "sisr.train", *args], cwd=str(cwd),
                          capture_output=True, text=True, env=env, timeout=900)


def test_cli_bad_degradation_json_is_one_line_naming_the_key(tmp_path, capsys):
    from sisr import train

    values = load_preset("bsrgan")
    values["jpeg_range"] = [30, 120]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(values))
    outdir = tmp_path / "runs"
    code = train.main(["--profile", "realesrnet-x4", "--dataset", "demo", "--degradation",
                       str(path), "--outdir", str(outdir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and not outdir.exists()
    assert len(err) == 1 and "bad.json" in err[0] and "`jpeg_range`" in err[0], err


@pytest.mark.slow
def test_realesrnet_profile_trains_in_bf16_and_resumes(tmp_path):
    tiny = ["--set", "num_block=1", "--set", "num_feat=8", "--set", "num_grow_ch=4",
            "--set", "lr_patch=16", "--set", "valid_crop=16"]
    result = _train(["--profile", "realesrnet-x4", "--dataset", "demo", "--degradation",
                     "realesrgan", "--epochs", "1", "--steps-per-epoch", "2",
                     "--batch-size", "2", "--seed", "1", "--precision", "mixed_bfloat16",
                     "--outdir", str(tmp_path / "runs"), "--verbose", "0", *tiny], tmp_path)
    assert result.returncode == 0, result.stderr
    [run_dir] = list((tmp_path / "runs").iterdir())
    with open(run_dir / "config.json") as f:
        saved = json.load(f)
    assert saved["degradation"] == "realesrgan" and saved["model"] == "rrdbnet"
    result = _train(["--resume", str(run_dir), "--epochs", "2", "--verbose", "0"], tmp_path)
    assert result.returncode == 0, result.stderr
    with open(run_dir / "training.csv") as f:
        assert len(f.read().strip().splitlines()) == 3  # header + 2 epochs
