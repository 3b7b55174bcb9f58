"""RRDBNet (ESRGAN, Real-ESRGAN x4plus / x2plus) and SRVGGNetCompact (Real-ESRGAN compact):
parameter counts of the official modules, ports of official state_dicts against fixtures
made by the official code (tests/data/rrdb, tests/data/make_rrdb_fixtures.py), the x2
pixel unshuffle (odd sizes, tiles), PyTorch files read without torch, and weight blending
(Real-ESRGAN's denoise strength)."""

import hashlib
import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

import sisr
from reference_data import DATA
from sisr import blend, upscale_image
from sisr.model import get_spec, rrdbnet, srvgg_compact
from sisr.model.sizing import count_parameters
from sisr.port import PortError, port, port_checkpoint
from sisr.port.io import CheckpointError, load_state_dict
from sisr.receptive_field import alignment, locality

RRDB = os.path.join(DATA, "rrdb")
TOLERANCE = 1e-3  # on the 0..255 scale
# sum(p.numel() for p in net.parameters()) of the official modules (BasicSR RRDBNet,
# Real-ESRGAN SRVGGNetCompact) in the published configurations.
OFFICIAL_COUNTS = [
    ("rrdbnet", {"scale": 4}, 16_697_987),                   # RealESRGAN_x4plus, ESRGAN
    ("rrdbnet", {"scale": 2}, 16_703_171),                   # RealESRGAN_x2plus
    ("rrdbnet", {"scale": 4, "num_block": 6}, 4_467_779),    # RealESRGAN_x4plus_anime_6B
    ("srvgg_compact", {"scale": 4, "num_conv": 32}, 1_213_296),  # realesr-general-x4v3
    ("srvgg_compact", {"scale": 4, "num_conv": 16}, 621_424),    # realesr-animevideov3
]


def manifest():
    with open(os.path.join(RRDB, "manifest.json")) as f:
        return json.load(f)


def fixture(name):
    with np.load(os.path.join(RRDB, name)) as z:
        state = {k[3:]: z[k] for k in z.files if k.startswith("sd/")}
        return state, z["input"].transpose(0, 2, 3, 1), z["output"].transpose(0, 2, 3, 1)


NPZ = sorted(n for n in manifest()["files"] if n.endswith(".npz"))


# ------------------------------------------------------------------------ builders

@pytest.mark.parametrize("name,kwargs,expected", OFFICIAL_COUNTS,
                         ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k, _ in
                              OFFICIAL_COUNTS])
def test_parameter_counts_of_the_official_modules(name, kwargs, expected):
    assert count_parameters(get_spec(name), kwargs) == expected


@pytest.mark.parametrize("call,message", [
    (lambda: rrdbnet(3), "`scale` must be one of [2, 4]"),
    (lambda: rrdbnet(4, num_grow_ch=0), "`num_grow_ch` must be a positive integer"),
    (lambda: srvgg_compact(4, act="gelu"), "`act` must be one of"),
    (lambda: srvgg_compact(8), "`scale` must be one of [2, 3, 4]"),
])
def test_bad_arguments_fail_in_one_line(call, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call()


# ------------------------------------------------------------------------ the port

@pytest.mark.parametrize("name", NPZ)
def test_port_reproduces_the_official_module(name):
    state, x, expected = fixture(name)
    entry = manifest()["files"][name]
    ported = port_checkpoint(state)
    got = np.asarray(ported.model(x))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    config = entry["config"]
    args = ported.plan.args
    if entry["arch"] == "SRVGGNetCompact":
        assert (args["scale"], args["num_feat"], args["num_conv"]) == (
            config["upscale"], config["num_feat"], config["num_conv"])
        assert ported.model.arguments["act"] == config["act_type"]
    else:
        expected_args = (config.get("scale", 4), config.get("num_feat", config.get("nf")),
                         config.get("num_block", config.get("nb")),
                         config.get("num_grow_ch", config.get("gc")))
        assert (args["scale"], args["num_feat"], args["num_block"],
                args["num_grow_ch"]) == expected_args


def test_each_layout_is_detected_from_its_keys_alone():
    for name, source in [("basicsr_rrdb_f12_b2_g6_x2.npz", "basicsr-rrdb"),
                         ("esrgan_rrdb_f8_b1_g4_x4.npz", "esrgan-old"),
                         ("srvgg_f8_c2_relu_x3.npz", "realesrgan-srvgg")]:
        assert port_checkpoint(fixture(name)[0]).plan.source == source


def test_a_missing_or_foreign_key_is_named():
    state = dict(fixture("basicsr_rrdb_f12_b2_g6_x4.npz")[0])
    del state["body.1.rdb3.conv5.bias"]
    with pytest.raises(PortError, match=r"body\.1\.rdb3\.conv5\.bias"):
        port(state)
    state = dict(fixture("srvgg_f8_c3_prelu_x4.npz")[0], **{"conv_hr.weight": np.zeros(1)})
    with pytest.raises(PortError, match="conv_hr.weight"):
        port(state, source="realesrgan-srvgg")


def test_requested_arguments_are_checked_against_the_checkpoint():
    state = fixture("basicsr_rrdb_f8_b1_g4_x2.npz")[0]
    with pytest.raises(PortError, match=r"scale: requested 4, the state_dict has 2 "
                                        r"\(conv_first\.weight .* 12 input channels"):
        port(state, scale=4)
    with pytest.raises(PortError, match="num_block: requested 23"):
        port(state, num_block=23)


def test_an_x1_rrdbnet_is_refused_clearly():
    state = dict(fixture("basicsr_rrdb_f8_b1_g4_x2.npz")[0])
    state["conv_first.weight"] = np.zeros((8, 48, 3, 3), np.float32)
    with pytest.raises(PortError, match=r"input channels are 3 \(x4\), 12 \(x2\)"):
        port(state, source="basicsr-rrdb")


def test_srvgg_without_prelu_weights_assumes_relu():
    ported = port_checkpoint(fixture("srvgg_f8_c2_relu_x3.npz")[0])
    assert ported.model.arguments["act"] == "relu"
    assert "act" in ported.plan.assumed


# --------------------------------------------------------- x2: the pixel unshuffle

def test_x2_odd_sizes_are_padded_by_reflection_as_real_esrgan():
    # Real-ESRGAN pads an x2 input to even sizes by reflection and crops the output; the
    # model does it inside. The fixture proves the even case against the official code.
    state, x, _ = fixture("basicsr_rrdb_f8_b1_g4_x2.npz")
    model = port(state)
    odd = x[:, :11, :13]
    padded = np.pad(odd, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="reflect")
    expected = np.asarray(model(padded))[:, :22, :26]
    np.testing.assert_allclose(np.asarray(model(odd)), expected, rtol=0, atol=1e-4)
    one = np.asarray(model(x[:, :1, :3]))  # one row: nothing to reflect, the row repeats
    assert one.shape == (1, 2, 6, 3) and np.isfinite(one).all()


def test_x2_tiles_are_cut_on_the_unshuffle_grid():
    keras.utils.set_random_seed(1)
    model = rrdbnet(2, num_feat=8, num_block=1, num_grow_ch=4)
    radius = locality(model).radius
    assert alignment(model) == 2 and radius % 2 == 1  # margins alone would cut odd windows
    image = np.random.default_rng(0).integers(0, 256, (121, 96, 3), dtype=np.uint8)
    whole = upscale_image(model, image)
    np.testing.assert_array_equal(upscale_image(model, image, tile=30), whole)
    assert alignment(srvgg_compact(4, 8, 2)) == 1
    # Odd sizes, flips and rotations (self-ensemble) included: every window on one grid.
    odd = image[:57, :43]
    whole = upscale_image(model, odd, self_ensemble=True)
    np.testing.assert_array_equal(upscale_image(model, odd, tile=14, self_ensemble=True),
                                  whole)
    np.testing.assert_array_equal(upscale_image(model, odd),
                                  np.asarray(sisr.resolve(model, odd[None]))[0])


# ------------------------------------------------------- PyTorch files, without torch

def test_published_file_layouts_are_read_without_torch():
    files = manifest()["files"]
    for name, entry in files.items():
        with open(os.path.join(RRDB, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"], name
    state = fixture("basicsr_rrdb_f8_b1_g4_x2.npz")[0]
    legacy = os.path.join(RRDB, "basicsr_rrdb_f8_b1_g4_x2_legacy.pth")
    ema = load_state_dict(legacy, param_key="params_ema")
    assert sorted(ema) == sorted(state)
    assert all(np.array_equal(ema[k], state[k]) for k in state)
    bare = load_state_dict(os.path.join(RRDB, "srvgg_f8_c3_prelu_x4.pth"))
    expected = fixture("srvgg_f8_c3_prelu_x4.npz")[0]
    assert all(np.array_equal(bare[k], expected[k]) for k in expected)


def test_params_ema_is_preferred_for_real_esrgan_files(caplog):
    state, x, expected = fixture("basicsr_rrdb_f8_b1_g4_x2.npz")
    legacy = os.path.join(RRDB, "basicsr_rrdb_f8_b1_g4_x2_legacy.pth")
    for source in ("auto", "basicsr-rrdb", "realesrgan"):
        with caplog.at_level("INFO", logger="sisr"):
            model = port(legacy, source=source)
        np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=0, atol=TOLERANCE)
        assert "using 'params'" not in caplog.text, source  # no log of a choice not made
    other = port_checkpoint(legacy, param_key="params").model  # params = 0.5 x params_ema
    np.testing.assert_allclose(other.get_layer("output_conv").get_weights()[0],
                               0.5 * model.get_layer("output_conv").get_weights()[0],
                               rtol=1e-6)


def test_a_file_with_a_generator_and_a_discriminator_is_refused():
    path = os.path.join(RRDB, "generator_and_discriminator.pth")
    with pytest.raises(CheckpointError, match=r"holds both a generator \(params\) and a "
                                              r"discriminator \(params_d\).*--param-key"):
        port(path)
    assert port_checkpoint(path, param_key="params").plan.model == "srvgg_compact"


def test_a_pickle_with_code_is_refused_without_running_it(tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo ran > " + str(tmp_path / "ran"),))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:  # the legacy format's pickles
        for obj in (0x1950A86A20F9469CFC6C, 1001, {}, {"x": Payload()}, []):
            pickle.dump(obj, f, protocol=2)
    with pytest.raises(CheckpointError, match="posix.system|os.system"):
        load_state_dict(path)
    assert not (tmp_path / "ran").exists()


# ------------------------------------------------------------- blending (denoise)

def test_interpolate_blends_weight_by_weight():
    keras.utils.set_random_seed(2)
    a, b = srvgg_compact(4, 8, 2), srvgg_compact(4, 8, 2)
    mixed = blend.interpolate(a, b, 0.3)
    for wa, wb, wm in zip(a.get_weights(), b.get_weights(), mixed.get_weights()):
        np.testing.assert_allclose(wm, 0.3 * wa + 0.7 * wb, rtol=1e-6, atol=1e-7)
    with pytest.raises(blend.BlendError, match="different architectures"):
        blend.interpolate(a, srvgg_compact(4, 8, 3), 0.5)
    with pytest.raises(blend.BlendError, match=r"in \[0, 1\]"):
        blend.interpolate(a, b, 1.5)


def _registry(tmp_path, files):
    """A registry of tiny SRVGG entries of `files` {name: (path, weak partner or None)}."""
    models = {}
    parameters = srvgg_compact(4, 8, 3).count_params()
    for name, (path, partner) in files.items():
        models[name] = {
            "description": name, "builder": "srvgg_compact",
            "args": {"scale": 4, "num_feat": 8, "num_conv": 3, "act": "prelu"}, "scale": 4,
            "parameters": parameters, "url": path.as_uri(), "file": path.name, "source": "tests",
            "homepage": "https://example.org", "licence": "BSD-3-Clause",
            "converter": "realesrgan-srvgg", "archive": False,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "installed": []}
        if partner:
            models[name]["weak_denoise"] = partner
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"format": 1, "models": models}))
    return str(registry)


@pytest.fixture
def pair(tmp_path, monkeypatch):
    """A strong/weak denoising pair of tiny SRVGG files (.pth, read without torch) in a
    test registry, and an empty cache."""
    state = fixture("srvgg_f8_c3_prelu_x4.npz")[0]
    server = tmp_path / "server"
    server.mkdir()
    strong = server / "general.pth"
    strong.write_bytes(open(os.path.join(RRDB, "srvgg_f8_c3_prelu_x4.pth"), "rb").read())
    weak = server / "general-wdn.npz"
    np.savez(weak, **{k: v * 0.5 for k, v in state.items()})
    monkeypatch.setenv("SISR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SISR_OFFLINE", "1")
    monkeypatch.setenv("SISR_PRETRAINED_REGISTRY", _registry(
        tmp_path, {"general": (strong, "general-wdn"), "general-wdn": (weak, None)}))
    return {"strong": strong, "weak": weak, "state": state}


def test_denoise_strength_blends_the_pair_into_one_model(pair, tmp_path):
    from sisr import pretrained
    from sisr.pretrained.cli import main as cli_main

    assert cli_main(["fetch", "general", "--file", str(pair["strong"])]) == 0
    assert cli_main(["fetch", "general-wdn", "--file", str(pair["weak"])]) == 0
    model = pretrained.denoise_model("general", 0.25)
    strong = pretrained.load("general")
    weak = pretrained.load("general-wdn")
    for ws, ww, wm in zip(strong.get_weights(), weak.get_weights(), model.get_weights()):
        np.testing.assert_allclose(wm, 0.25 * ws + 0.75 * ww, rtol=1e-6, atol=1e-7)
    assert pretrained.denoise_model("general", 1) is not None
    with pytest.raises(pretrained.PretrainedError, match="no denoise strength"):
        pretrained.denoise_model("general-wdn", 0.5)


def test_fetch_a_pth_file_and_upscale_with_denoise(pair, tmp_path, capsys):
    from sisr import upscale
    from sisr.pretrained.cli import main as cli_main

    assert cli_main(["fetch", "general", "--file", str(pair["strong"])]) == 0
    assert cli_main(["fetch", "general-wdn", "--file", str(pair["weak"])]) == 0
    image = tmp_path / "in.png"
    rgb = np.random.default_rng(0).integers(0, 256, (9, 7, 3), np.uint8)
    Image.fromarray(rgb).save(image)
    out = tmp_path / "out"
    assert upscale.main(["-i", str(image), "-o", str(out), "--model", "general", "-q"]) == 0
    with Image.open(out / "in_x4.png") as result:
        plain = np.asarray(result)
    expected = upscale_image(port(pair["state"]), rgb)
    np.testing.assert_array_equal(plain, expected)
    assert upscale.main(["-i", str(image), "-o", str(out), "--model", "general", "-q",
                         "--denoise", "0.5", "--force"]) == 0
    with Image.open(out / "in_x4.png") as result:
        blended = np.asarray(result)
    half = port({k: 0.75 * v for k, v in pair["state"].items()})  # 0.5 a + 0.5 (0.5 a)
    np.testing.assert_array_equal(blended, upscale_image(half, rgb))
    assert upscale.main(["-i", str(image), "-o", str(out), "--model", "general-wdn", "-q",
                         "--denoise", "0.5", "--force"]) == 2
    assert "no denoise strength" in capsys.readouterr().err


def _full_size_state(seed=0):
    """A BasicSR RRDBNet x4 state_dict of RealESRGAN_x4plus's shapes, small random weights."""
    rng = np.random.default_rng(seed)

    def conv(out, inp):
        return {"weight": rng.normal(0, 0.01, (out, inp, 3, 3)).astype(np.float32),
                "bias": np.zeros(out, np.float32)}

    convs = {"conv_first": conv(64, 3), "conv_body": conv(64, 64), "conv_up1": conv(64, 64),
             "conv_up2": conv(64, 64), "conv_hr": conv(64, 64), "conv_last": conv(3, 64)}
    for i in range(23):
        for j in (1, 2, 3):
            for k in range(1, 6):
                convs[f"body.{i}.rdb{j}.conv{k}"] = conv(32 if k < 5 else 64, 64 + 32 * (k - 1))
    return {f"{prefix}.{name}": value for prefix, parts in convs.items()
            for name, value in parts.items()}


@pytest.mark.slow
def test_a_full_size_realesrgan_x4plus_file_is_fetched_and_upscales(tmp_path, monkeypatch):
    """The mechanism at full size: a 67 MB state_dict of RealESRGAN_x4plus's layout and
    shapes, fetched with --file under a registry entry like the shipped one, then used by
    `python -m sisr.upscale --model NAME`."""
    from sisr import pretrained, upscale
    from sisr.pretrained.cli import main as cli_main

    weights = tmp_path / "RealESRGAN_x4plus.npz"
    np.savez(weights, **_full_size_state())
    shipped = pretrained.get_entry("realesrgan-x4plus",
                                   pretrained.registry.DEFAULT_REGISTRY)
    raw = {key: getattr(shipped, key) for key in (
        "description", "builder", "args", "scale", "parameters", "source", "homepage",
        "licence", "converter", "archive")}
    raw.update(url=weights.as_uri(), file=weights.name, installed=[],
               sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"format": 1, "models": {"realesrgan-x4plus": raw}}))
    monkeypatch.setenv("SISR_PRETRAINED_REGISTRY", str(registry))
    monkeypatch.setenv("SISR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SISR_OFFLINE", "1")
    assert cli_main(["fetch", "realesrgan-x4plus", "--file", str(weights)]) == 0
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (12, 10, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    assert upscale.main(["-i", str(image), "-o", str(out), "--model", "realesrgan-x4plus",
                         "-q"]) == 0
    with Image.open(out / "photo_x4.png") as result:
        assert result.size == (40, 48)


# ------------------------------------------------ upscaling real photographs (CLI)

@pytest.fixture
def compact_file(tmp_path):
    from sisr.saving import save_model

    model = port(fixture("srvgg_f8_c3_prelu_x4.npz")[0])
    path = tmp_path / "compact.keras"
    save_model(model, str(path))
    return model, str(path)


def test_outscale_resizes_the_output_with_lanczos(compact_file, tmp_path):
    from sisr import upscale
    from sisr.upscaling import resize_output

    model, path = compact_file
    rgb = np.random.default_rng(4).integers(0, 256, (9, 7, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    out = tmp_path / "out"
    assert upscale.main(["-i", str(tmp_path / "in.png"), "-o", str(out), "--model", path,
                         "--outscale", "3.5", "-q"]) == 0
    with Image.open(out / "in_x3.5.png") as result:
        got = np.asarray(result)
    assert got.shape == (31, 24, 3)  # int(9 * 3.5) x int(7 * 3.5), as Real-ESRGAN
    np.testing.assert_array_equal(got, resize_output(upscale_image(model, rgb), 31, 24))
    with pytest.raises(SystemExit) as exit_info:
        upscale.main(["-i", str(tmp_path / "in.png"), "-o", str(out), "--model", path,
                      "--outscale", "0", "-q"])
    assert exit_info.value.code == 2


def test_alpha_is_upscaled_with_the_model_when_asked(compact_file, tmp_path):
    from sisr import upscale
    from sisr.upscaling import Upscaler, bicubic_upscale

    model, path = compact_file
    rgba = np.random.default_rng(5).integers(0, 256, (6, 8, 4), np.uint8)
    Image.fromarray(rgba).save(tmp_path / "in.png")
    upscaler = Upscaler(model)
    by_model = upscaler(np.repeat(rgba[..., 3:], 3, axis=-1), gray=True)
    for mode, expected in (("model", by_model), ("bicubic", bicubic_upscale(rgba[..., 3], 4))):
        out = tmp_path / mode
        assert upscale.main(["-i", str(tmp_path / "in.png"), "-o", str(out), "--model",
                             path, "--alpha", mode, "-q"]) == 0
        with Image.open(out / "in_x4.png") as result:
            got = np.asarray(result)
        np.testing.assert_array_equal(got[..., 3], expected)
        np.testing.assert_array_equal(got[..., :3], upscaler(rgba[..., :3]))
    assert not np.array_equal(by_model, bicubic_upscale(rgba[..., 3], 4))
