"""VDSR and sisr's MATLAB bicubic layer against EDSR-PyTorch's VDSR (tests/data/vdsr/,
made by tests/data/make_vdsr_fixtures.py from the official src/model/vdsr.py)."""

import json
import os

import numpy as np
import pytest

from reference_data import DATA
from sisr.imresize import imresize
from sisr.layers import BicubicUpsample
from sisr.model import vdsr
from sisr.port import port
from sisr.port.formats import edsr_pytorch, edsr_pytorch_vdsr
from sisr.receptive_field import receptive_radius
from sisr.training.trainer import make_loss, make_optimizer

VDSR = os.path.join(DATA, "vdsr")


def manifest():
    with open(os.path.join(VDSR, "manifest.json")) as f:
        return json.load(f)


def load(name):
    with np.load(os.path.join(VDSR, name)) as z:
        return {k: z[k] for k in z.files}


def state_dict(arrays, prefix="sd/"):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("shape", [(7, 5), (1, 3), (13, 2)])
def test_bicubic_layer_is_matlab_imresize(scale, shape):
    x = np.random.default_rng(scale).uniform(0, 255, (2, *shape, 3)).astype(np.float32)
    y = np.asarray(BicubicUpsample(scale)(x))
    expected = np.stack([imresize(image.astype(np.float64), scale) for image in x])
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() < 1e-4


def test_bicubic_layer_config_round_trip():
    layer = BicubicUpsample(3, name="up")
    again = BicubicUpsample.from_config(layer.get_config())
    assert again.scale == 3 and again.name == "up"
    with pytest.raises(ValueError, match="scale"):
        BicubicUpsample(0)


def test_vdsr_tiles_exactly_with_the_bicubic_reach():
    # 2 LR pixels for the bicubic, then 3 convs of radius 1 at scale x2: 3 * 1 / 2
    assert receptive_radius(vdsr(2, num_filters=4, num_layers=3)) == 4


def test_default_parameters_equal_official_vdsr():
    # EDSR-PyTorch's VDSR r20f64 (counted from the official module by the fixture script):
    # 20 3x3 convs with biases, 3 -> 64 -> ... -> 64 -> 3
    official = manifest()["official_r20f64_trainable_parameters"]
    assert official == (3 * 9 + 1) * 64 + 18 * (64 * 9 + 1) * 64 + (64 * 9 + 1) * 3
    for scale in (2, 3, 4):
        assert vdsr(scale).count_params() == official


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_port_reproduces_official_vdsr(scale):
    name = f"vdsr_f16_d6_x{scale}.npz"
    arrays = load(name)
    sd = state_dict(arrays)
    assert edsr_pytorch_vdsr.detect(sd) and not edsr_pytorch.detect(sd)
    model = port(sd, scale=scale)  # auto-detected
    assert model.builder == "vdsr"
    assert model.arguments["num_filters"] == 16 and model.arguments["num_layers"] == 6
    x = arrays["input"].transpose(0, 2, 3, 1)
    # the model's own bicubic is the input the official network was fed
    upscaled = np.asarray(model.get_layer("bicubic")(x)).transpose(0, 3, 1, 2)
    assert np.abs(upscaled - arrays["input_large"]).max() < 1e-3
    y = np.asarray(model(x)).transpose(0, 3, 1, 2)
    expected = arrays["output"]
    assert y.shape == expected.shape == (1, 3, 12 * scale, 16 * scale)
    assert np.abs(y - expected).max() < 1e-3
    # the residual carries the image: the network's own part is far from zero
    assert np.abs(expected - arrays["input_large"]).mean() > 1
    # the biases matter: without them the output is another
    unbiased = port({k: 0 * v if k.startswith("body.") and k.endswith(".bias") else v
                     for k, v in sd.items()}, scale=scale)
    assert np.abs(np.asarray(unbiased(x)).transpose(0, 3, 1, 2) - expected).max() > 1


def test_port_reproduces_official_vdsr_at_rgb_range_1():
    # EDSR-PyTorch at rgb_range 1 works on [0, 1]: its biases are 255 times smaller
    arrays = load("vdsr_f16_d6_x2_rgb1.npz")
    sd = state_dict(arrays)
    model = port(sd, scale=2)
    y = np.asarray(model(arrays["input"].transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    expected = arrays["output"] * 255.0
    assert np.abs(y - expected).max() < 1e-3
    # read as if at rgb_range 255 (the biases unscaled), the output is another
    as_255 = port(dict(sd, **{k: v * 255.0 for k, v in sd.items() if k.endswith("_mean.bias")}),
                  scale=2)
    y = np.asarray(as_255(arrays["input"].transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    assert np.abs(y - expected).max() > 1


def test_port_needs_the_scale_and_refuses_a_wrong_depth():
    sd = state_dict(load("vdsr_f16_d6_x2.npz"))
    with pytest.raises(ValueError, match="does not show the scale: give it"):
        port(sd)
    with pytest.raises(ValueError, match="num_layers"):
        port(sd, scale=2, num_layers=20)
    del sd["body.3.0.weight"]
    with pytest.raises(ValueError, match="body.N.0.weight"):
        port(sd, source="edsr-pytorch-vdsr", scale=2)
    # EDSR-PyTorch's vdsr.py before "fix vdsr bugs" built its convs without biases
    bias_free = {k: v for k, v in state_dict(load("vdsr_f16_d6_x2.npz")).items()
                 if not k.endswith(".0.bias")}
    assert not edsr_pytorch_vdsr.detect(bias_free)
    with pytest.raises(ValueError, match="body.0.0.bias; a VDSR without biases"):
        port(bias_free, source="edsr-pytorch-vdsr", scale=2)


def train_against_official(optimizer):
    """sisr's 5 steps from the fixture's initial state: [(loss, official loss, |sisr -
    official| weights in units of the learning rate)] per step."""
    entry = manifest()["files"]["vdsr_f16_d6_x2_train.npz"]
    arrays = load("vdsr_f16_d6_x2_train.npz")
    model = port(state_dict(arrays, "init/"), scale=2)
    config = {"learning_rate": entry["learning_rate"], "loss": "l1"}
    model.compile(optimizer=optimizer, loss=make_loss(config))
    with np.load(os.path.join(DATA, "training", "batches_x2.npz")) as z:
        batches = [(lr.transpose(0, 2, 3, 1).astype(np.float32),
                    hr.transpose(0, 2, 3, 1).astype(np.float32))
                   for lr, hr in zip(z["lr"], z["hr"])]
    initial = np.concatenate([w.ravel() for w in model.get_weights()])
    results = []
    for step, (lr, hr) in enumerate(batches, 1):
        loss = float(model.train_on_batch(lr, hr))
        official = port(state_dict(arrays, f"step{step}/"), scale=2)
        mine = np.concatenate([w.ravel() for w in model.get_weights()])
        theirs = np.concatenate([w.ravel() for w in official.get_weights()])
        results.append((loss, entry["losses"][step - 1],
                        np.abs(mine - theirs) / entry["learning_rate"]))
    moved = np.median(np.abs(mine - initial)) / entry["learning_rate"]
    return results, moved


def test_training_steps_equal_official():
    # EDSR-PyTorch trains VDSR with L1 and Adam (lr 1e-4 here); sisr's VDSR has the same
    # parametrisation (x - mean on 0..255), so the losses and gradients are the official ones.
    import keras

    config = {"optimizer": "adam", "learning_rate": 1e-4, "lr_decay_steps": [],
              "lr_decay_factor": 0.5}
    results, moved = train_against_official(make_optimizer(config))
    assert moved > 3
    for loss, official, difference in results:
        assert loss == pytest.approx(official, rel=1e-5)
        # Keras adds Adam's epsilon to sqrt(v), PyTorch to sqrt(v / (1 - beta_2^t)): at
        # step 1 Keras' is ~32x PyTorch's, which a default-initialised deep VDSR's
        # near-zero gradients feel (measured: 99% within 0.48 steps, all within 1.9)
        assert np.percentile(difference, 99) < 0.6
        assert difference.max() < 2.5
    # with PyTorch's step-1 epsilon the steps agree (measured 99%: 7e-5 .. 0.017 steps;
    # the largest, 1.75, is a weight whose gradient is float32 noise on both sides)
    matched = keras.optimizers.Adam(1e-4, epsilon=1e-8 * (1 - 0.999) ** 0.5)
    results, _ = train_against_official(matched)
    for step, (_, _, difference) in enumerate(results, 1):
        assert np.percentile(difference, 99) < (1e-3 if step == 1 else 0.03), step
        assert np.percentile(difference, 99.9) < 0.2, step
    # a wrong rule breaks it: MSE instead of L1
    model = port(state_dict(load("vdsr_f16_d6_x2_train.npz"), "init/"), scale=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
    lr, hr = (z.transpose(0, 2, 3, 1).astype(np.float32) for z in
              (np.load(os.path.join(DATA, "training", "batches_x2.npz"))[k][0]
               for k in ("lr", "hr")))
    model.train_on_batch(lr, hr)
    wrong = port(state_dict(load("vdsr_f16_d6_x2_train.npz"), "step1/"), scale=2)
    difference = np.concatenate([np.abs(a - b).ravel() for a, b in
                                 zip(model.get_weights(), wrong.get_weights())]) / 1e-4
    assert np.percentile(difference, 99) > 0.6


@pytest.mark.parametrize("fmt", ["litert", "onnx"])
def test_bicubic_models_export(tmp_path, fmt):
    # The bicubic layer's mirrored borders survive conversion (a modulo of negative
    # indices did not, in ONNX), at any size including one pixel
    import importlib.util

    from sisr.export import export, run_exported

    if fmt == "onnx" and not all(importlib.util.find_spec(m)
                                 for m in ("tf2onnx", "onnx", "onnxruntime")):
        pytest.skip("ONNX export needs tf2onnx, onnx and onnxruntime")
    model = vdsr(3, num_filters=4, num_layers=3)
    out = str(tmp_path / f"m.{'tflite' if fmt == 'litert' else 'onnx'}")
    export(model, out, format=fmt)
    for shape in ((1, 7, 5, 3), (2, 1, 4, 3)):
        x = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
        got = run_exported(out, fmt, x)
        assert np.abs(got - np.asarray(model(x))).max() < 1e-3
