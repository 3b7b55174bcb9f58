"""RCAN and RDN: published parameter counts, and the ports and training steps against
fixtures made by the official code (tests/data/rcan_rdn/, tests/data/isr/; provenance in
tests/data/README.md). No torch or network needed."""

import json
import os

import numpy as np
import pytest

from reference_data import DATA, TRAINING, load_training
from sisr.model import get_spec
from sisr.model.sizing import count_parameters
from sisr.port import port
from sisr.port.plan import PortError
from sisr.training.trainer import make_loss, make_optimizer

FIXTURES = os.path.join(DATA, "rcan_rdn")
ISR = os.path.join(DATA, "isr")
# The ports meet 5e-5 on the 0..255 scale in float32; the bound.
PORT_ATOL = 1e-3


def manifest(folder):
    with open(os.path.join(folder, "manifest.json")) as f:
        return json.load(f)


def forward_names():
    return sorted(n for n in manifest(FIXTURES)["files"] if not n.startswith("train_"))


# sisr's count (trainable weights; the MeanShift of the official RCAN is frozen) equals the
# official module's (the manifest, counted by the generator) and these published sizes:
# RCAN ~16M (paper, Table 6: 15.6M at x4); RDN ~22M (configuration B).
SLOW = pytest.mark.slow  # a full RCAN takes seconds even to count
PARAMETERS = [
    pytest.param("rcan", {"scale": 2}, "rcan_x2", 15_444_643, marks=SLOW),
    pytest.param("rcan", {"scale": 3}, "rcan_x3", 15_629_283, marks=SLOW),
    ("rcan", {"scale": 4}, "rcan_x4", 15_592_355),
    pytest.param("rcan", {"scale": 8}, "rcan_x8", 15_740_067, marks=SLOW),
    ("rdn", {"scale": 2}, "rdn_B_x2", 22_123_395),
    pytest.param("rdn", {"scale": 3}, "rdn_B_x3", 22_308_035, marks=SLOW),
    ("rdn", {"scale": 4}, "rdn_B_x4", 22_271_107),
    ("rdn", {"scale": 2, "num_blocks": 20, "num_layers": 6, "growth_rate": 32},
     "rdn_A_x2", 5_541_795),
    pytest.param("rdn", {"scale": 4, "num_blocks": 20, "num_layers": 6, "growth_rate": 32},
                 "rdn_A_x4", 5_578_787, marks=SLOW),
]


@pytest.mark.parametrize("name,kwargs,official,expected", PARAMETERS)
def test_parameter_counts_match_the_official_modules(name, kwargs, official, expected):
    assert manifest(FIXTURES)["official_parameter_counts"][official] == expected
    assert count_parameters(get_spec(name), kwargs) == expected


def load_forward(name):
    entry = manifest(FIXTURES)["files"][name]
    with np.load(os.path.join(FIXTURES, name)) as z:
        state_dict = {k[len("sd/"):]: z[k] for k in z.files if k.startswith("sd/")}
        x, y = z["input"], z["output"]
    if entry["output_scale"].startswith("[0, 1]"):
        y = y * 255.0
    return state_dict, x, y, entry


def run(model, x_nchw):
    return np.asarray(model(x_nchw.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)


SOURCES = {"EDSR-PyTorch RCAN": "edsr-pytorch-rcan", "BasicSR RCAN": "basicsr-rcan",
           "EDSR-PyTorch RDN": "edsr-pytorch-rdn"}


@pytest.mark.parametrize("name", forward_names())
def test_port_reproduces_the_official_module(name):
    state_dict, x, expected, entry = load_forward(name)
    model = port(state_dict, scale=entry["scale"])  # the layout is detected
    assert model.builder == ("rdn" if "RDN" in entry["arch"] else "rcan")
    y = run(model, x)
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() < PORT_ATOL
    # and by name, with the arguments the checkpoint shows
    named = port(state_dict, source=SOURCES[entry["arch"]])
    assert named.arguments["scale"] == entry["scale"]
    assert np.abs(run(named, x) - y).max() == 0


def test_wrong_normalisation_breaks_the_rcan_match():
    # BasicSR's img_range is not stored; another value changes the attention's input
    state_dict, x, expected, _ = load_forward("basicsr_rcan_x2.npz")
    wrong = port(state_dict, source="basicsr-rcan", img_range=1.0)
    assert np.abs(run(wrong, x) - expected).max() > 1


def test_layouts_do_not_claim_each_other():
    rcan_sd = load_forward("rcan_x2.npz")[0]
    with pytest.raises(PortError):
        port(rcan_sd, source="edsr-pytorch")
    with pytest.raises(PortError):
        port(rcan_sd, source="basicsr-rcan")
    rdn_sd = load_forward("rdn_x2.npz")[0]
    with pytest.raises(PortError):
        port(rdn_sd, source="edsr-pytorch-rcan")


def test_rcan_groups_of_different_sizes_are_refused():
    state_dict = load_forward("rcan_x2.npz")[0]
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("body.1.body.1.")}
    with pytest.raises(PortError, match="blocks"):
        port(state_dict, source="edsr-pytorch-rcan")


# ------------------------------------------------------------------------- training

def training(name):
    return load_training(name, FIXTURES)


def batches(steps):
    with np.load(os.path.join(TRAINING, "batches_x2.npz")) as z:
        return [(lr.transpose(0, 2, 3, 1).astype(np.float32),
                 hr.transpose(0, 2, 3, 1).astype(np.float32))
                for lr, hr in list(zip(z["lr"], z["hr"]))[:steps]]


def weights(model):
    return {layer.name: [w.copy() for w in layer.get_weights()]
            for layer in model.layers if layer.weights}


def flat(snapshot):
    return np.concatenate([w.ravel() for name in sorted(snapshot) for w in snapshot[name]])


# Same parametrisation on both sides (rgb_range 255, no rescaled biases): the losses agree
# to float32 rounding, the weights to a fraction of one Adam step (lr). Where a gradient is
# tiny (RDN's dense-block kernels on channels that ReLU mostly zeroes) Keras' epsilon
# placement (added to sqrt(v), not to sqrt(v / (1 - beta_2^t)): ~32x PyTorch's at step 1)
# shortens the step, and the few weights concerned stay behind: with Keras' epsilon set to
# PyTorch's step-1 equivalent, 1e-8 * sqrt(1 - 0.999), every RDN weight agrees to 5e-4 of a
# step after step 1. Measured at the trainer's settings, steps 1-3, in steps (lr): RCAN 99%
# 0.0015, max 0.34; RDN 99% 0.066 / 0.13 / 0.16, max 0.62 / 0.86 / 1.2; losses 1.2e-7.
LOSS_RTOL = 1e-5
P99 = {"train_rcan_x2.npz": 0.01, "train_rdn_x2.npz": 0.25}
MAX = {"train_rcan_x2.npz": 0.5, "train_rdn_x2.npz": 1.5}


def check_training(name, learning_rate=None, loss="l1"):
    entry = manifest(FIXTURES)["files"][name]
    states, official_losses = training(name)
    source = SOURCES[entry["arch"]]
    lr = entry["learning_rate"]
    config = {"optimizer": "adam", "learning_rate": learning_rate or lr,
              "lr_decay_steps": [], "lr_decay_factor": 0.5, "loss": loss}
    model = port(states["init"], source=source, scale=entry["scale"])
    initial = flat(weights(model))
    model.compile(optimizer=make_optimizer(config), loss=make_loss(config))
    for step, (x, y) in enumerate(batches(len(official_losses)), 1):
        loss_value = float(model.train_on_batch(x, y))
        np.testing.assert_allclose(loss_value, official_losses[step - 1], rtol=LOSS_RTOL)
        mine = flat(weights(model))
        theirs = flat(weights(port(states[f"step{step}"], source=source,
                                   scale=entry["scale"])))
        assert np.percentile(np.abs(mine - theirs), 99) < P99[name] * lr, step
        assert np.abs(mine - theirs).max() < MAX[name] * lr, step
    assert np.median(np.abs(mine - initial)) > lr  # the steps moved the weights


@pytest.mark.parametrize("name", ["train_rcan_x2.npz", "train_rdn_x2.npz"])
def test_training_steps_equal_official(name):
    check_training(name)


@pytest.mark.parametrize("broken", [{"learning_rate": 1.2e-4},
                                    pytest.param({"loss": "mse"}, marks=SLOW)])
def test_a_wrong_training_rule_breaks_the_match(broken):
    with pytest.raises(AssertionError):
        check_training("train_rcan_x2.npz", **broken)


# ------------------------------------------------------------------------- idealo ISR

def isr_names():
    return sorted(n for n in manifest(ISR)["files"] if n.endswith(".hdf5"))


@pytest.mark.parametrize("name", isr_names())
def test_isr_port_reproduces_isr(name):
    # ISR's own RDN wrote the file (save_weights) and computed the output for x / 255
    entry = manifest(ISR)["files"][name]
    stem = name[:-len(".hdf5")]
    with np.load(os.path.join(ISR, "reference.npz")) as z:
        x, expected = z[f"{stem}__x"], z[f"{stem}__y"] * 255.0
    model = port(os.path.join(ISR, name))  # detected among the HDF5 formats
    params = entry["arch_params"]
    assert model.arguments == {
        "scale": params["x"], "num_blocks": params["D"], "num_layers": params["C"],
        "growth_rate": params["G"], "num_filters": params["G0"],
        "upsampler": "isr" if entry["upscaling"] == "ups" else "isr-shuffle"}
    y = np.asarray(model(x))
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() < PORT_ATOL


def test_isr_file_with_a_missing_layer_is_refused(tmp_path):
    import h5py

    source = os.path.join(ISR, isr_names()[0])
    broken = tmp_path / "broken.hdf5"
    with h5py.File(source) as f, h5py.File(broken, "w") as g:
        names = [n for n in f.attrs["layer_names"] if n != "LFF_2"]
        for key, value in f.attrs.items():
            g.attrs[key] = value
        g.attrs["layer_names"] = names
        for n in names:
            f.copy(n, g)
    with pytest.raises(PortError, match="LFF_2|isr-rdn"):
        port(str(broken), source="isr-rdn")


# ------------------------------------------------------------- zip archives (RCAN's files)

def test_rcan_weights_from_a_zip_archive(tmp_path, monkeypatch, capsys):
    # like rcan-x2: the official models come in one .zip; the member is extracted alone
    import hashlib
    import zipfile

    from sisr import pretrained
    from sisr.pretrained.cli import main

    state_dict, x, expected, entry = load_forward("rcan_x2.npz")
    member = "models_ECCV2018RCAN/RCAN_BIX2.npz"
    weights = tmp_path / "RCAN_BIX2.npz"
    np.savez(weights, **state_dict)
    archive = tmp_path / "models_ECCV2018RCAN.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(weights, member)
        zf.writestr("../../escaped.npz", b"evil")  # never extracted
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    args = {"scale": 2, "num_groups": 2, "num_blocks": 2, "num_filters": 8, "reduction": 4}
    raw = {"description": "tiny RCAN", "builder": "rcan", "args": args, "scale": 2,
           "parameters": count_parameters(get_spec("rcan"), args),
           "url": archive.as_uri(), "file": member, "source": "tests",
           "homepage": "https://example.org", "licence": "MIT",
           "converter": "edsr-pytorch-rcan", "archive": True, "installed": []}
    registry = tmp_path / "registry.json"
    models = {"tiny-rcan": {**raw, "sha256": digest},
              "tiny-rcan-missing": {**raw, "file": "models_ECCV2018RCAN/RCAN_BIX3.npz"}}
    registry.write_text(json.dumps({"format": 1, "models": models}))
    monkeypatch.setenv("SISR_PRETRAINED_REGISTRY", str(registry))
    monkeypatch.setenv("SISR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SISR_OFFLINE", raising=False)

    model = pretrained.load("tiny-rcan")  # downloaded (file://), extracted, verified
    assert np.abs(run(model, x) - expected).max() < PORT_ATOL
    extracted = tmp_path / "home" / "downloads" / "models_ECCV2018RCAN"
    assert sorted(os.listdir(extracted)) == ["RCAN_BIX2.npz"]
    assert not (tmp_path / "escaped.npz").exists()
    assert main(["fetch", "tiny-rcan-missing", "--file", str(archive)]) == 1
    assert "has no file models_ECCV2018RCAN/RCAN_BIX3.npz" in capsys.readouterr().err
